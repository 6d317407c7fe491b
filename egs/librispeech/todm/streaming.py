"""Streaming subnets: a causal MH-SSM transducer as a sherpa-onnx *online* model.

How our encoder streams
-----------------------
A subnet trained with ``--causal true`` never reads a future frame, and only two of its parts
mix time at all:

- the conv front end (``todm.subsampling``, no time padding): encoder frame j reads fbank frames
  4j .. 4j+8. So k encoder frames need 4(k-1) + 9 = 4k + 5 fbank frames, and the next k start
  4k fbank frames later: chunks of ``chunk_input_frames(k)`` frames with a hop of 4k, each
  re-reading the last 5 frames of the one before. That overlap is the front end's whole state;
  no tensor carries it.
- the MH-SSM of each block (``MultiHeadSSM.streaming_forward``): a diagonal linear recurrence
  (``todm.ssm_scan``) whose state, M complex modes for each of its C = heads x head_dim
  channels, summarises everything it has seen: a real tensor [B, C, 2, M] (real parts,
  imaginary parts), zeros at the start of an utterance. A chunk of k frames is one
  ``ssm_scan.chunk_step``: two matrix products with a k x k Toeplitz matrix and the state's
  readout, whose matrices onnxruntime folds when it loads the model (k is fixed in the graph).

Everything else (LayerNorms, feed-forward blocks, the SSM's skip, GELU and gate, the joiner's
encoder projection) works frame by frame. So a chunk of k frames run from the states the
previous chunk left gives exactly the frames the offline causal model computes on the whole
utterance: the chunk size changes latency and speed, never the result.

What sherpa-onnx runs
---------------------
That makes our encoder a recurrent network with one state per layer, which is the contract of
sherpa-onnx's ``lstm`` online transducer (``online-lstm-transducer-model.cc``): it feeds the
encoder ``T`` feature frames per call, advances ``decode_chunk_len`` frames, and carries two
tensors from each call to the next, stacking streams along dimension 1. We put the SSM states
of the L layers into them:

    inputs   x [N, T, 80], T = 4k + 5      h [L, N, C*M] (real parts)   c [L, N, C*M] (imaginary parts)
    outputs  encoder_out [N, k, joiner_dim] (joiner.encoder_proj applied)   next_h   next_c
    metadata model_type=lstm, num_encoder_layers=L, T=4k+5, decode_chunk_len=4k,
             d_model = rnn_hidden_size = C*M   (and our todm_* keys: spec, chunk, layout)

sherpa-onnx starts every stream with zero h and c (our zero state), and its greedy search
(one symbol per frame, <unk> as blank) and modified beam search are those of
``todm.beam_search``; the decoder and joiner are the offline export's files. The encoder's T is
fixed in the graph, so a chunk of another length is refused by onnxruntime, naming input x and
the length it expects.

``deploy_streaming`` writes ``<spec dir>/streaming/``, a complete online model directory
(encoder fp32 and int8, the decoder and joiner of the offline export, tokens.txt, export.json),
and checks it: the streaming encoder run chunk by chunk in onnxruntime against the offline
causal model (PyTorch, FFT convolution) on the same features. ``todm.sherpa_stream`` decodes
with it.
"""

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from todm.model import Transducer
from todm.onnx_io import export_graph, quantize, session
from todm.subnet import SubnetSpec
from todm.subsampling import MIN_INPUT_FRAMES
from todm.utils import atomic_write, save_json

SHERPA_ONLINE_MODEL_TYPE = "lstm"
SUBSAMPLING = 4
DEFAULT_CHUNK = 8  # encoder frames per chunk: 320 ms (icefall's decode_chunk_len 32)
STREAMING_DIR = "streaming"
STATE_LAYOUT = "h[l], c[l] = real, imaginary parts of layer l's SSM scan state [N, C, 2, M], flattened to [N, C*M]"


def chunk_input_frames(chunk: int) -> int:
    """fbank frames that ``chunk`` encoder frames read: 4 (chunk - 1) + 9 (sherpa-onnx's T)."""
    if chunk < 1:
        raise ValueError(f"a streaming chunk needs at least 1 encoder frame, got {chunk}")
    return SUBSAMPLING * (chunk - 1) + MIN_INPUT_FRAMES


def chunk_multiple(model: Transducer) -> int:
    """Chunks (encoder frames) must be multiples of this: every downsampling factor divides it."""
    return math.lcm(*model.config.downsampling_factors)  # lcm() of nothing is 1


def state_shape(model: Transducer) -> tuple[int, int, int]:
    """(layers L, channels C, modes M) of the SSM states of the extracted subnet ``model``."""
    spec = model.config.search_space.largest()
    return spec.num_layers, spec.num_heads * model.config.head_dim, model.config.state_dim // 2


def initial_states(model: Transducer, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero (h, c) [L, batch, C*M] each: the state of every stream before its first frame."""
    layers, channels, modes = state_shape(model)
    zeros = torch.zeros(layers, batch, channels * modes)
    return zeros, zeros.clone()


class OnnxStreamingEncoder(nn.Module):
    """One chunk through the front end, the causal encoder and joiner.encoder_proj, with the
    SSM states in sherpa-onnx's lstm layout: (x [N, 4k+5, 80], h, c) -> (encoder_out [N, k,
    joiner_dim], next_h, next_c). ``model`` is an extracted causal subnet."""

    def __init__(self, model: Transducer, chunk: int) -> None:
        super().__init__()
        if not model.config.causal:
            raise ValueError("a bidirectional model reads future frames and cannot stream: train with --causal true")
        if chunk % chunk_multiple(model):
            raise ValueError(f"chunks of {chunk} encoder frames: blocks at a lower frame rate stream only whole groups "
                             f"of their frames; choose a chunk divisible by {chunk_multiple(model)}")
        self.model, self.chunk = model, chunk
        self.spec: SubnetSpec = model.config.search_space.largest()
        _, self.channels, self.modes = state_shape(model)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        embedded, _ = self.model.encoder_embed(x, torch.full(x.shape[:1], x.size(1)))
        states = [torch.stack([re.reshape(-1, self.channels, self.modes), im.reshape(-1, self.channels, self.modes)], 2)
                  for re, im in zip(h.unbind(0), c.unbind(0))]
        out, states = self.model.encoder.streaming_forward(embedded, states, self.spec.ffn_dim, self.spec.num_heads,
                                                           chunk=self.chunk)
        next_h = torch.stack([s[:, :, 0].flatten(1) for s in states])
        next_c = torch.stack([s[:, :, 1].flatten(1) for s in states])
        return self.model.joiner.encoder_proj(out), next_h, next_c


def streaming_metadata(model: Transducer, chunk: int) -> dict[str, str]:
    """The encoder metadata sherpa-onnx's lstm model reads, and ours."""
    layers, channels, modes = state_shape(model)
    return {"model_type": SHERPA_ONLINE_MODEL_TYPE, "version": "1", "model_author": "todm",
            "comment": f"TODM streaming subnet {model.config.search_space.largest()}, chunks of {chunk} frames",
            "num_encoder_layers": str(layers), "T": str(chunk_input_frames(chunk)),
            "decode_chunk_len": str(SUBSAMPLING * chunk), "d_model": str(channels * modes),
            "rnn_hidden_size": str(channels * modes), "todm_spec": str(model.config.search_space.largest()),
            "todm_chunk_frames": str(chunk), "todm_state_layout": STATE_LAYOUT}


def export_streaming_encoder(model: Transducer, path: Path, chunk: int, extra_meta: dict[str, str]) -> None:
    """Write the online encoder of the extracted causal subnet ``model`` (batch N dynamic, T fixed)."""
    model = model.to("cpu", torch.float32).eval()
    x = torch.zeros(1, chunk_input_frames(chunk), model.config.feature_dim)
    export_graph(OnnxStreamingEncoder(model, chunk), (x, *initial_states(model)), path, ["x", "h", "c"],
                 ["encoder_out", "next_h", "next_c"],
                 {"x": {0: "N"}, "h": {1: "N"}, "c": {1: "N"}, "encoder_out": {0: "N"}, "next_h": {1: "N"},
                  "next_c": {1: "N"}}, {**streaming_metadata(model, chunk), **extra_meta})


def run_chunks(encoder: ort.InferenceSession, feats: np.ndarray, chunk: int) -> np.ndarray:
    """Run an online encoder (an onnxruntime session) over feats [N, F, 80] chunk by chunk, as
    sherpa-onnx does, and return the encoder frames of every whole chunk [N, k * chunks, dim]."""
    size, hop = chunk_input_frames(chunk), SUBSAMPLING * chunk
    layers, batch = int(encoder.get_inputs()[1].shape[0]), feats.shape[0]
    width = int(encoder.get_inputs()[1].shape[2])
    h = c = np.zeros((layers, batch, width), dtype=np.float32)
    outs = []
    for start in range(0, feats.shape[1] - size + 1, hop):
        out, h, c = encoder.run(None, {"x": feats[:, start:start + size], "h": h, "c": c})
        outs.append(out)
    return np.concatenate(outs, 1)


@torch.no_grad()
def streaming_check(model: Transducer, encoder_path: Path, chunk: int, num_chunks: int = 7,
                    seed: int = 0) -> float:
    """Max |difference| between the online encoder run chunk by chunk (two streams at once) and
    the offline causal model (PyTorch, FFT convolution) + encoder_proj on the same features."""
    model = model.to("cpu", torch.float32).eval()
    frames = chunk_input_frames(chunk) + SUBSAMPLING * chunk * (num_chunks - 1)
    feats = torch.randn(2, frames, model.config.feature_dim, generator=torch.Generator().manual_seed(seed))
    ref, _ = model.forward_encoder(feats, torch.tensor([frames, frames]), fft=True)
    ref = model.joiner.encoder_proj(ref).numpy()
    out = run_chunks(session(encoder_path), feats.numpy(), chunk)
    if out.shape != ref.shape:
        raise RuntimeError(f"{encoder_path}: {out.shape[1]} frames from {num_chunks} chunks, the offline model "
                           f"{ref.shape[1]}")
    return float(np.abs(out - ref).max())


def deploy_streaming(model: Transducer, spec_dir: Path, suffix: str, chunk: int = DEFAULT_CHUNK,
                     extra_meta: dict[str, str] | None = None, int8: bool = True) -> dict[str, Any]:
    """Write ``<spec_dir>/streaming/`` for the extracted causal subnet ``model``, whose offline
    export (decoder, joiner, tokens.txt) is already in ``spec_dir``; returns the summary also
    written to its export.json."""
    out_dir = spec_dir / STREAMING_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    tags = ["", ".int8"] if int8 else [""]
    files = {}
    for part in ("decoder", "joiner"):
        for tag in tags:
            name = f"{part}-{suffix}{tag}.onnx"
            atomic_write(out_dir / name, lambda tmp, src=spec_dir / name: shutil.copyfile(src, tmp))
            files[part + tag] = name
    atomic_write(out_dir / "tokens.txt", lambda tmp: shutil.copyfile(spec_dir / "tokens.txt", tmp))
    encoder = out_dir / f"encoder-{suffix}.onnx"
    export_streaming_encoder(model, encoder, chunk, extra_meta or {})
    files["encoder"] = encoder.name
    summary: dict[str, Any] = {"spec": str(model.config.search_space.largest()), "suffix": suffix,
                               "model_type": SHERPA_ONLINE_MODEL_TYPE, "chunk_frames": chunk,
                               "chunk_ms": chunk * SUBSAMPLING * 10,
                               "streaming_check_fp32": streaming_check(model, encoder, chunk)}
    if int8:
        quantize(encoder, out_dir / f"encoder-{suffix}.int8.onnx", ["MatMul"])
        files["encoder.int8"] = f"encoder-{suffix}.int8.onnx"
        summary["streaming_check_int8"] = streaming_check(model, out_dir / files["encoder.int8"], chunk)
    summary["files"] = files
    summary["file_bytes"] = {key: (out_dir / name).stat().st_size for key, name in files.items()}
    save_json(summary, out_dir / "export.json")
    return summary
