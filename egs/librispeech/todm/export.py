#!/usr/bin/env python3
"""Deploy subnets of a trained supernet (stage 6): standalone checkpoints and sherpa-onnx ONNX.

For each subnet spec this writes, into ``<out-dir>/<spec>/``:

- ``pretrained.pt``: ``{"model": state_dict, "model_config": TransducerConfig.to_dict(), ...}``
  of ``model.extract(spec)``, loadable with ``build_model`` alone (no supernet, no flags);
- ``encoder-<suffix>.onnx``, ``decoder-<suffix>.onnx``, ``joiner-<suffix>.onnx`` in icefall's
  offline-transducer format, and their ``.int8.onnx`` (int8 weights, ``todm.onnx_io.quantize``);
- ``tokens.txt`` (a copy) and ``export.json`` (spec, parameters, files, the onnx_check errors);
- for a causal model (``--causal true``), ``streaming/``: the same subnet as a sherpa-onnx *online*
  transducer decoding chunks of ``--streaming-chunk`` encoder frames (``todm.streaming``).

    python -m todm.export --exp-dir exp/supernet --epoch 12 --avg 4 --use-averaged-model true \
        --tokens data/lang_bpe_64/tokens.txt --out-dir exp/deploy [--subnets "L2-F144-H1 L6-F576-H4"]

The three graphs follow icefall's ``export-onnx.py`` (see the conventions notes, section 6):

- encoder: ``x`` [N, T, 80] float, ``x_lens`` [N] int64 -> ``encoder_out`` [N, T', joiner_dim]
  (``joiner.encoder_proj`` folded in), ``encoder_out_lens`` [N] int64; N and T dynamic;
- decoder: ``y`` [N, context_size] int64 -> ``decoder_out`` [N, joiner_dim] (``need_pad=False``
  and ``joiner.decoder_proj`` folded in; id -1 is the zero start-of-decoding context);
- joiner: ``encoder_out``, ``decoder_out`` [N, joiner_dim] -> ``logit`` [N, vocab_size], i.e.
  ``output_linear(tanh(a + b))``.

The SSM convolution runs as a chunked recurrence in the graph (``todm.ssm_scan``: an ONNX Loop
over chunks of frames, linear in T), since torch.fft does not export; ``onnx_check`` compares
onnxruntime against the FFT form of PyTorch, so it checks the export and the equivalence of the
two forms at once. An input shorter than the conv front end's 9 frames fails in onnxruntime at
a node named ``input_needs_at_least_9_frames`` (``MinFramesCheck``). The legacy TorchScript
exporter (``dynamo=False``) is used: it traces the dynamic-T encoder reliably and needs no
onnxscript.
"""

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from todm.checkpoint import add_weight_arguments, load_model_state
from todm.decode import parse_subnets
from todm.cost import count_macs_per_second, count_parameters
from todm.model import Transducer, TransducerConfig, build_model
from todm.onnx_io import export_graph, quantize, session
from todm.streaming import DEFAULT_CHUNK, deploy_streaming
from todm.subnet import SubnetSpec
from todm.subsampling import MIN_INPUT_FRAMES
from todm.utils import atomic_write, console_logging, read_tokens, save_json, str2bool, torch_save

# sherpa-onnx routes "conformer", "zipformer" and "zipformer2" to its generic offline transducer;
# our macaron blocks (FFN, sequence mixer, FFN) are Conformer-shaped, so we name it that.
SHERPA_MODEL_TYPE = "conformer"
CHECK_NAME = f"input_needs_at_least_{MIN_INPUT_FRAMES}_frames"  # the node onnxruntime names when x is too short


class MinFramesCheck(nn.Module):
    """Makes onnxruntime fail on fewer than ``frames`` input frames, naming the requirement.

    ONNX has no assert, so this reads frame ``frames - 1`` with a Gather, which rejects an index
    out of range, and adds 0 times it. The exporter names nodes after the module path: with the
    module at attribute ``input_needs_at_least_9_frames`` a 5-frame input fails with "... Gather
    node. Name:'/input_needs_at_least_9_frames/Gather' ... idx=8 must be within the inclusive
    range [-5,4]" instead of a shape error deep in the conv front end.
    """

    def __init__(self, frames: int) -> None:
        super().__init__()
        self.frames = frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.0 * x.select(1, self.frames - 1).unsqueeze(1)


class OnnxEncoder(nn.Module):
    """encoder_embed + encoder (one fixed subnet, SSM convolution by scan) + joiner.encoder_proj."""

    def __init__(self, model: Transducer, spec: SubnetSpec) -> None:
        super().__init__()
        self.model, self.spec = model, spec
        setattr(self, CHECK_NAME, MinFramesCheck(MIN_INPUT_FRAMES))

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = getattr(self, CHECK_NAME)(x)
        encoder_out, encoder_out_lens = self.model.forward_encoder(x, x_lens, self.spec, dropout=0.0, fft=False)
        return self.model.joiner.encoder_proj(encoder_out), encoder_out_lens


class OnnxDecoder(nn.Module):
    """Stateless decoder on exactly ``context_size`` tokens + joiner.decoder_proj."""

    def __init__(self, model: Transducer) -> None:
        super().__init__()
        self.decoder, self.decoder_proj = model.decoder, model.joiner.decoder_proj

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.decoder_proj(self.decoder(y, need_pad=False).squeeze(1))


class OnnxJoiner(nn.Module):
    """The joiner on already projected inputs: output_linear(tanh(encoder_out + decoder_out))."""

    def __init__(self, model: Transducer) -> None:
        super().__init__()
        self.joiner = model.joiner

    def forward(self, encoder_out: torch.Tensor, decoder_out: torch.Tensor) -> torch.Tensor:
        return self.joiner(encoder_out, decoder_out, project_input=False)


def onnx_file_names(suffix: str) -> dict[str, str]:
    """icefall's names: ``encoder-<suffix>.onnx`` ... and ``.int8.onnx`` twins."""
    names = {}
    for part in ("encoder", "decoder", "joiner"):
        names[part] = f"{part}-{suffix}.onnx"
        names[f"{part}.int8"] = f"{part}-{suffix}.int8.onnx"
    return names


def export_onnx(model: Transducer, out_dir: Path, suffix: str, extra_meta: dict[str, str] | None = None,
                int8: bool = True) -> dict[str, Path]:
    """Export the fixed-spec ``model`` (an extracted subnet) as sherpa-onnx encoder/decoder/joiner.

    Returns {"encoder": path, "decoder": ..., "joiner": ..., and "*.int8" when int8}.
    """
    config = model.config
    spec = config.search_space.largest()
    if len(config.search_space.enumerate()) != 1:
        raise ValueError(f"export_onnx needs an extracted subnet (one spec), got search space {config.search_space}")
    model = model.to("cpu", torch.float32).eval()
    names = onnx_file_names(suffix)
    paths = {key: out_dir / name for key, name in names.items()}
    meta = {"model_type": SHERPA_MODEL_TYPE, "version": "1", "model_author": "todm",
            "comment": f"TODM subnet {spec} ({count_parameters(config, spec)} parameters), {suffix}",
            **(extra_meta or {})}

    x = torch.zeros(1, 100, config.feature_dim)
    x_lens = torch.tensor([100], dtype=torch.int64)
    export_graph(OnnxEncoder(model, spec), (x, x_lens), paths["encoder"], ["x", "x_lens"],
                 ["encoder_out", "encoder_out_lens"],
                 {"x": {0: "N", 1: "T"}, "x_lens": {0: "N"}, "encoder_out": {0: "N", 1: "T"},
                  "encoder_out_lens": {0: "N"}}, meta, keep_node_names=CHECK_NAME)
    y = torch.zeros(2, config.context_size, dtype=torch.int64)
    export_graph(OnnxDecoder(model), (y,), paths["decoder"], ["y"], ["decoder_out"],
                 {"y": {0: "N"}, "decoder_out": {0: "N"}},
                 {"context_size": str(config.context_size), "vocab_size": str(config.vocab_size)})
    a = torch.zeros(2, config.joiner_dim)
    export_graph(OnnxJoiner(model), (a, a.clone()), paths["joiner"], ["encoder_out", "decoder_out"], ["logit"],
                 {"encoder_out": {0: "N"}, "decoder_out": {0: "N"}, "logit": {0: "N"}},
                 {"joiner_dim": str(config.joiner_dim)})
    if not int8:
        return {k: v for k, v in paths.items() if not k.endswith("int8")}
    quantize(paths["encoder"], paths["encoder.int8"], ["MatMul"])
    quantize(paths["decoder"], paths["decoder.int8"], ["MatMul", "Gather"])
    quantize(paths["joiner"], paths["joiner.int8"], ["MatMul"])
    return paths


@torch.no_grad()
def onnx_check(model: Transducer, paths: dict[str, Path], seed: int = 0, int8: bool = False) -> dict[str, float]:
    """Max abs difference between onnxruntime and PyTorch (FFT path) on random inputs.

    Encoder: a batch of two utterances of different lengths (valid frames compared); decoder:
    contexts with -1 and random ids; joiner: random projected inputs. ``int8`` checks the
    ``*.int8`` files instead. Returns {"encoder_out": ..., "encoder_out_lens": ..., "decoder_out",
    "logit"}.
    """
    model = model.to("cpu", torch.float32).eval()
    config, spec = model.config, model.config.search_space.largest()
    g = torch.Generator().manual_seed(seed)
    tag = ".int8" if int8 else ""
    x = torch.randn(2, 153, config.feature_dim, generator=g)
    x_lens = torch.tensor([153, 97], dtype=torch.int64)
    ref, ref_lens = model.forward_encoder(x, x_lens, spec, dropout=0.0, fft=True)
    ref = model.joiner.encoder_proj(ref)
    out, out_lens = session(paths["encoder" + tag]).run(None, {"x": x.numpy(), "x_lens": x_lens.numpy()})
    diffs = {"encoder_out_lens": float(np.abs(out_lens - ref_lens.numpy()).max())}
    diffs["encoder_out"] = max(
        float(np.abs(out[b, :n] - ref[b, :n].numpy()).max()) for b, n in enumerate(ref_lens.tolist()))

    y = torch.randint(0, config.vocab_size, (4, config.context_size), generator=g)
    y[0, :-1] = -1
    y[0, -1] = config.blank_id
    ref_dec = model.joiner.decoder_proj(model.decoder(y, need_pad=False)[:, 0])
    (out_dec,) = session(paths["decoder" + tag]).run(None, {"y": y.numpy()})
    diffs["decoder_out"] = float(np.abs(out_dec - ref_dec.numpy()).max())

    a, b = torch.randn(5, config.joiner_dim, generator=g), torch.randn(5, config.joiner_dim, generator=g)
    ref_logit = model.joiner(a, b, project_input=False)
    (out_logit,) = session(paths["joiner" + tag]).run(None, {"encoder_out": a.numpy(), "decoder_out": b.numpy()})
    diffs["logit"] = float(np.abs(out_logit - ref_logit.numpy()).max())
    return diffs


def check_tokens(tokens: Path, config: TransducerConfig) -> None:
    """tokens.txt must match the model: same vocabulary size and ``<blk>`` = 0 (sherpa-onnx)."""
    table = read_tokens(tokens)
    vocab_size = max(table.values()) + 1
    if vocab_size != config.vocab_size:
        raise ValueError(f"{tokens} has {vocab_size} tokens but the model was trained with vocab_size "
                         f"{config.vocab_size}: pass the tokens.txt of the model's lang dir")
    if table.get("<blk>") != 0 or config.blank_id != 0:
        raise ValueError(f"{tokens}: sherpa-onnx needs <blk> = 0 and blank_id 0 "
                         f"(got <blk>={table.get('<blk>')}, blank_id={config.blank_id})")


def deploy_subnet(supernet: Transducer, spec: SubnetSpec, out_dir: Path, suffix: str, tokens: Path,
                  int8: bool = True, streaming_chunk: int = DEFAULT_CHUNK) -> dict[str, Any]:
    """Extract ``spec``, save ``pretrained.pt``, export and check ONNX, copy tokens.txt; for a
    causal model also the online model, chunks of ``streaming_chunk`` encoder frames (0: none).

    Returns the summary also written to ``<out_dir>/export.json``.
    """
    supernet_config = supernet.config
    subnet = supernet.extract(spec).to("cpu", torch.float32).eval()
    config = subnet.config
    params = count_parameters(supernet_config, spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch_save({"model": subnet.state_dict(), "model_config": config.to_dict(), "spec": str(spec),
                "supernet_search_space": str(supernet_config.search_space), "suffix": suffix},
               out_dir / "pretrained.pt")
    extra_meta = {"todm_spec": str(spec), "todm_num_params": str(params),
                  "todm_supernet_search_space": str(supernet_config.search_space),
                  "todm_encoder_dim": str(config.encoder_dim), "feature_dim": str(config.feature_dim)}
    paths = export_onnx(subnet, out_dir, suffix, extra_meta, int8=int8)
    atomic_write(out_dir / "tokens.txt", lambda tmp: shutil.copyfile(tokens, tmp))
    summary = {
        "spec": str(spec),
        "suffix": suffix,
        "params": params,
        "macs_per_second": count_macs_per_second(supernet_config, spec),
        "model_type": SHERPA_MODEL_TYPE,
        "files": {key: p.name for key, p in paths.items()},
        "file_bytes": {key: p.stat().st_size for key, p in paths.items()},
        "onnx_check_fp32": onnx_check(subnet, paths),
    }
    if int8:
        summary["onnx_check_int8"] = onnx_check(subnet, paths, int8=True)
    if config.causal and streaming_chunk:
        summary["streaming"] = deploy_streaming(subnet, out_dir, suffix, streaming_chunk, extra_meta, int8)
    save_json(summary, out_dir / "export.json")
    return summary


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_weight_arguments(parser)
    parser.add_argument("--subnets", type=str, default="",
                        help="space/comma separated specs such as L2-F144-H1; default: the deployable specs")
    parser.add_argument("--tokens", type=Path, required=True, help="tokens.txt of the lang dir (symbol id)")
    parser.add_argument("--out-dir", type=Path, default=Path("exp/deploy"), help="writes <out-dir>/<spec>/")
    parser.add_argument("--enable-int8-quantization", type=str2bool, default=True, help="also write *.int8.onnx")
    parser.add_argument("--max-check-diff", type=float, default=1e-3,
                        help="fail if onnx_check (fp32) differs from PyTorch by more than this")
    parser.add_argument("--streaming-chunk", type=int, default=DEFAULT_CHUNK,
                        help="a causal model also gets <out-dir>/<spec>/streaming/, a sherpa-onnx online model "
                             "decoding chunks of this many encoder frames (40 ms each; 0: no online model)")
    return parser


def main() -> None:
    args = get_parser().parse_args()
    console_logging()
    torch.set_num_threads(1)
    if not args.tokens.is_file():
        raise FileNotFoundError(f"--tokens {args.tokens} does not exist: run stage 2 (BPE) first")
    state, params, suffix = load_model_state(args.exp_dir, args.epoch, args.avg, args.use_averaged_model, args.iter)
    if "model_config" not in params:
        raise ValueError(f"checkpoints in {args.exp_dir} hold no model_config: were they written by todm.train?")
    config = TransducerConfig.from_dict(params["model_config"])
    check_tokens(args.tokens, config)
    supernet = build_model(config)
    supernet.load_state_dict(state)
    supernet.eval()
    specs = parse_subnets(args.subnets.replace(",", " "), config)
    for spec in specs:
        out_dir = args.out_dir / str(spec)
        summary = deploy_subnet(supernet, spec, out_dir, suffix, args.tokens, int8=args.enable_int8_quantization,
                                streaming_chunk=args.streaming_chunk)
        checks = dict(summary["onnx_check_fp32"])
        if "streaming" in summary:
            checks["streaming encoder_out"] = summary["streaming"]["streaming_check_fp32"]
        worst = max(checks.values())
        logging.info(f"{spec}: {summary['params']} params -> {out_dir}; onnx_check fp32 max |diff| {worst:.2e}"
                     + (f", int8 {json.dumps(summary['onnx_check_int8'])}" if "onnx_check_int8" in summary else ""))
        if worst > args.max_check_diff:
            raise RuntimeError(f"{spec}: ONNX fp32 differs from PyTorch by {worst:.3e} > --max-check-diff "
                               f"{args.max_check_diff} ({checks})")
    logging.info(f"Exported {len(specs)} subnets to {args.out_dir}")


if __name__ == "__main__":
    main()
