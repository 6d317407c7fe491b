"""Streaming subnets (todm.streaming, todm.sherpa_stream): a causal encoder run piece by piece
equals the offline causal encoder, and sherpa-onnx's OnlineRecognizer, chunk by chunk, decodes
every deployed subnet of a tiny random causal supernet to exactly the tokens of PyTorch's offline
greedy and modified beam search (todm.beam_search) on the same audio.

The references are independent of the streaming code: the *supernet* under each spec, FFT
convolution, over lhotse fbank of the whole (padded) utterance.
"""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from kaldialign import edit_distance
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument
from test_export import SUFFIX, _fbank, _ids, tiny_supernet, write_tokens, write_wav

from todm.beam_search import greedy_search_batch, modified_beam_search
from todm.encoder import Encoder
from todm.export import deploy_subnet
from todm.mh_ssm import MultiHeadSSM
from todm.onnx_io import session
from todm.ssm_scan import Modes, causal_scan, chunk_step
from todm.sherpa_stream import make_online_recognizer, padded_for_stream, recognize_streaming, stream_geometry
from todm.streaming import chunk_input_frames, export_streaming_encoder, run_chunks
from todm.subsampling import subsampled_lengths

CHUNK = 3  # encoder frames per chunk in the deployed models (small: many chunks per utterance)


@torch.no_grad()
def test_encoder_streamed_in_pieces_equals_the_whole():
    torch.manual_seed(0)
    encoder = Encoder(num_layers=3, dim=16, ffn_dim=32, num_heads=2, head_dim=4, state_dim=4, causal=True).eval()
    x = torch.randn(2, 61, 16)
    whole = encoder(x, torch.tensor([61, 61]), num_layers=2, ffn_dim=24, num_heads=1)
    for chunk, bounds in ((None, (0, 1, 17, 18, 50, 61)), (4, range(0, 61, 4))):  # pieces of 1..32 or 4 frames
        states = [torch.zeros(2, 4, 2, 2)] * 2  # 2 blocks, 1 head of 4 channels, 2 modes
        pieces = []
        for start, end in zip(bounds, bounds[1:]):
            out, states = encoder.streaming_forward(x[:, start:end], states, ffn_dim=24, num_heads=1, chunk=chunk)
            pieces.append(out)
        n = bounds[-1]
        torch.testing.assert_close(torch.cat(pieces, 1), whole[:, :n], rtol=1e-5, atol=1e-5)


def test_chunk_step_is_causal_scan_of_one_chunk():
    g = torch.Generator().manual_seed(0)
    log_decay, angle, w_re, w_im = torch.randn(4, 6, 3, generator=g, dtype=torch.float64)
    modes = Modes(-log_decay.abs(), angle, w_re, w_im)  # 6 channels of 3 decaying modes
    u = torch.randn(2, 6, 35, generator=g, dtype=torch.float64)
    whole, final = causal_scan(u, modes)
    state, pieces = torch.zeros(2, 6, 2, 3, dtype=torch.float64), []
    for start in range(0, 35, 7):
        y, state = chunk_step(u[..., start:start + 7], modes, state, 7)
        pieces.append(y)
    torch.testing.assert_close(torch.cat(pieces, -1), whole, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(state, final, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="exactly 7 frames"):
        chunk_step(u[..., :6], modes, state, 7)


def test_a_bidirectional_layer_refuses_to_stream():
    layer = MultiHeadSSM(8, 2, 4, 4, causal=False)
    with pytest.raises(ValueError, match="--causal true"):
        layer.streaming_forward(torch.randn(1, 3, 8), torch.zeros(1, 8, 2, 2))


def test_chunk_input_frames_follow_the_front_end():
    for k in (1, 2, 8, 16):
        assert subsampled_lengths(chunk_input_frames(k)) == k  # exactly k frames ...
        assert subsampled_lengths(chunk_input_frames(k) - 1) == k - 1  # ... and not one frame less
    with pytest.raises(ValueError, match="at least 1 encoder frame"):
        chunk_input_frames(0)


@pytest.mark.parametrize("seconds", [0.05, 0.3, 1.0, 1.234, 5.0])
@pytest.mark.parametrize("k", [1, 3, 8])
def test_padding_makes_the_stream_cover_every_offline_frame(seconds, k):
    size, shift = chunk_input_frames(k), 4 * k
    audio = np.ones(int(16000 * seconds), dtype=np.float32)
    padded = padded_for_stream(audio, size, shift)
    np.testing.assert_array_equal(padded[:audio.size], audio)
    frames = lambda n: (n + 80) // 160  # noqa: E731 (kaldi fbank frames, snip_edges false)
    ready, offline = frames(padded.size), subsampled_lengths(frames(padded.size))
    chunks = (ready - size - 1) // shift + 1  # sherpa-onnx decodes a chunk once one more frame is ready
    assert chunks * k == offline >= subsampled_lengths(frames(audio.size))


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """Every deployable subnet of a tiny random causal supernet, offline and online."""
    root = tmp_path_factory.mktemp("deploy")
    supernet = tiny_supernet(causal=True)
    tokens = write_tokens(root / "tokens.txt")
    specs = supernet.config.search_space.deployable()
    summaries = {spec: deploy_subnet(supernet, spec, root / str(spec), SUFFIX, tokens, streaming_chunk=CHUNK)
                 for spec in specs}
    return supernet, root, summaries


def _files(spec_dir: Path, tag: str = "") -> dict[str, Path]:
    return {p: spec_dir / "streaming" / f"{p}-{SUFFIX}{tag}.onnx" for p in ("encoder", "decoder", "joiner")}


def test_online_model_files_and_metadata(deployed):
    supernet, root, summaries = deployed
    for spec, summary in summaries.items():
        files = _files(root / str(spec))
        meta = {p.key: p.value for p in onnx.load(str(files["encoder"])).metadata_props}
        width = spec.num_heads * 4 * 2  # heads x head_dim channels, state_dim 4 = 2 complex modes
        assert meta["model_type"] == "lstm" and meta["todm_spec"] == str(spec)
        assert (meta["num_encoder_layers"], meta["T"], meta["decode_chunk_len"]) == (
            str(spec.num_layers), str(4 * CHUNK + 5), str(4 * CHUNK))
        assert meta["d_model"] == meta["rnn_hidden_size"] == str(width)
        encoder = session(files["encoder"])
        assert [(i.name, i.shape) for i in encoder.get_inputs()] == [
            ("x", ["N", 4 * CHUNK + 5, 80]), ("h", [spec.num_layers, "N", width]), ("c", [spec.num_layers, "N", width])]
        assert [o.name for o in encoder.get_outputs()] == ["encoder_out", "next_h", "next_c"]
        streaming = summary["streaming"]
        assert streaming["streaming_check_fp32"] < 1e-4 and streaming["chunk_frames"] == CHUNK
        assert (files["decoder"].read_bytes() == (root / str(spec) / f"decoder-{SUFFIX}.onnx").read_bytes())
        for tag in ("", ".int8"):
            for path in _files(root / str(spec), tag).values():
                onnx.checker.check_model(onnx.load(str(path)))


def test_chunk_size_changes_nothing_and_a_short_chunk_is_refused(deployed, tmp_path):
    supernet, root, _ = deployed
    spec = supernet.config.search_space.largest()
    subnet = supernet.extract(spec).eval()
    export_streaming_encoder(subnet, tmp_path / "k5.onnx", 5, {})
    feats = np.random.default_rng(0).standard_normal((1, 4 * 15 + 5, 80)).astype(np.float32)
    one = run_chunks(session(_files(root / str(spec))["encoder"]), feats, CHUNK)  # 5 chunks of 3
    other = run_chunks(session(tmp_path / "k5.onnx"), feats, 5)  # 3 chunks of 5
    np.testing.assert_allclose(one, other, rtol=1e-5, atol=1e-5)
    h = np.zeros((spec.num_layers, 1, spec.num_heads * 8), dtype=np.float32)
    with pytest.raises(InvalidArgument, match=r"(?s)input: x .*Expected: 17"):
        session(_files(root / str(spec))["encoder"]).run(None, {"x": feats[:, :16], "h": h, "c": h})


@torch.no_grad()
def _references(supernet, spec, audio: np.ndarray) -> dict[str, list[int]]:
    """PyTorch's offline greedy and modified beam search of the supernet under ``spec``."""
    feats = _fbank(audio)
    enc, lens = supernet.forward_encoder(feats, torch.tensor([feats.size(1)]), spec, fft=True)
    return {"greedy_search": greedy_search_batch(supernet, enc, lens)[0],
            "modified_beam_search": modified_beam_search(supernet.extract(spec).eval(), enc, lens, beam=4)[0]}


@pytest.fixture(scope="module")
def decoded(deployed, tmp_path_factory):
    """Tokens of 12 s of audio for every deployed subnet: PyTorch's and sherpa-onnx's streaming."""
    supernet, root, summaries = deployed
    audio = write_wav(tmp_path_factory.mktemp("wav") / "a.wav", seconds=12.0)
    out = {}
    for spec in summaries:
        for tag in ("", ".int8"):
            files = _files(root / str(spec), tag)
            size, shift = stream_geometry(files["encoder"])
            padded = padded_for_stream(audio, size, shift)
            for method in ("greedy_search", "modified_beam_search"):
                recognizer = make_online_recognizer(files, root / str(spec) / "streaming" / "tokens.txt", method, 1, 4)
                out[spec, tag, method] = _ids(recognize_streaming(recognizer, audio, size, shift)[1])
        out[spec, "reference"] = _references(supernet, spec, padded)
    return out


@pytest.mark.parametrize("method", ["greedy_search", "modified_beam_search"])
def test_streaming_equals_offline_causal_decoding_for_every_subnet(deployed, decoded, method):
    for spec in deployed[2]:
        reference = decoded[spec, "reference"][method]
        assert len(reference) > 100, "the random test model should emit many tokens"
        assert decoded[spec, "", method] == reference, spec


def test_streaming_int8_decodes_close_to_pytorch(deployed, decoded):
    for spec in deployed[2]:
        reference = decoded[spec, "reference"]["greedy_search"]
        errors = edit_distance(reference, decoded[spec, ".int8", "greedy_search"])["total"]
        assert errors <= 0.10 * len(reference), (spec, errors, len(reference))
