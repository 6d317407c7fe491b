"""todm.export: standalone checkpoint + sherpa-onnx ONNX of one subnet of a tiny random supernet.

References are independent of the export code: the *supernet* run under the spec with the FFT
convolution (not the extracted model, not the scan form), and a greedy search written here
over lhotse fbank features, compared with what sherpa-onnx (its own front end) decodes.
Lengths are realistic: 12 s of audio, about 300 encoder frames.
"""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import sherpa_onnx
import soundfile as sf
import torch
from kaldialign import edit_distance
from lhotse import Fbank, FbankConfig
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from todm.beam_search import modified_beam_search
from todm.cost import count_parameters
from todm.export import CHECK_NAME, check_tokens, deploy_subnet, export_onnx, get_parser
from todm.model import build_model
from todm.model_config import TransducerConfig
from todm.subnet import SearchSpace, SubnetSpec
from todm.subsampling import MIN_INPUT_FRAMES

SPEC = SubnetSpec(num_layers=1, ffn_dim=8, num_heads=2)
SUFFIX = "epoch-1_avg-1"


def tiny_supernet(seed: int = 0, causal: bool = False):
    """A random supernet small enough to export in well under a second."""
    torch.manual_seed(seed)
    config = TransducerConfig(vocab_size=20, encoder_dim=16, head_dim=4, state_dim=4, decoder_dim=16, joiner_dim=16,
                              subsampling_channels=(2, 4, 4), causal=causal,
                              search_space=SearchSpace(layers=(1, 2), ffn_dims=(8, 16), heads=(1, 2)))
    model = build_model(config).eval()
    with torch.no_grad():  # a larger output layer makes the random model emit tokens
        model.joiner.output_linear.weight.mul_(8.0)
    return model


def write_tokens(path: Path, vocab_size: int = 20) -> Path:
    words = [f"▁W{i}" for i in range(3, vocab_size)]
    path.write_text("".join(f"{s} {i}\n" for i, s in enumerate(["<blk>", "<sos/eos>", "<unk>", *words])))
    return path


def write_wav(path: Path, seconds: float = 1.2, seed: int = 0) -> np.ndarray:
    """A 16 kHz 16-bit wav of a chirp plus noise; returns the samples as written (float32)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    audio = 0.3 * np.sin(2 * np.pi * (200 + 600 * t) * t) + 0.05 * rng.standard_normal(t.size)
    sf.write(path, audio, 16000, subtype="PCM_16")
    return sf.read(path, dtype="float32")[0]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    supernet = tiny_supernet()
    tokens = write_tokens(root / "tokens.txt")
    out_dir = root / str(SPEC)
    summary = deploy_subnet(supernet, SPEC, out_dir, SUFFIX, tokens)
    return supernet, out_dir, summary


def _files(out_dir: Path, tag: str = "") -> dict[str, Path]:
    return {p: out_dir / f"{p}-{SUFFIX}{tag}.onnx" for p in ("encoder", "decoder", "joiner")}


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_files_checker_and_metadata(deployed):
    supernet, out_dir, summary = deployed
    for tag in ("", ".int8"):
        for path in _files(out_dir, tag).values():
            onnx.checker.check_model(onnx.load(str(path)))
    assert (out_dir / "tokens.txt").read_text() == (out_dir.parent / "tokens.txt").read_text()
    meta = {part: {p.key: p.value for p in onnx.load(str(path)).metadata_props}
            for part, path in _files(out_dir, ".int8").items()}  # int8 files must keep the metadata
    enc = meta["encoder"]
    assert enc["model_type"] in ("conformer", "zipformer", "zipformer2")
    assert enc["version"] == "1" and enc["model_author"] and str(SPEC) in enc["comment"]
    assert enc["todm_spec"] == str(SPEC)
    assert int(enc["todm_num_params"]) == count_parameters(supernet.config, SPEC) == summary["params"]
    assert meta["decoder"]["context_size"] == "2" and meta["decoder"]["vocab_size"] == "20"
    assert meta["joiner"]["joiner_dim"] == "16"
    assert max(summary["onnx_check_fp32"].values()) < 1e-4


@torch.no_grad()
def test_onnx_fp32_equals_supernet_under_spec(deployed):
    supernet, out_dir, _ = deployed
    files = _files(out_dir)
    enc, dec, join = (_session(files[p]) for p in ("encoder", "decoder", "joiner"))
    assert [i.name for i in enc.get_inputs()] == ["x", "x_lens"]
    assert [o.name for o in enc.get_outputs()] == ["encoder_out", "encoder_out_lens"]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 1207, 80, generator=g)  # 12 s; batch and length differ from the export's dummy input
    x_lens = torch.tensor([1207, 803, 40])
    ref, ref_lens = supernet.forward_encoder(x, x_lens, SPEC, fft=True)
    ref = supernet.joiner.encoder_proj(ref)
    out, out_lens = enc.run(None, {"x": x.numpy(), "x_lens": x_lens.numpy()})
    assert out_lens.dtype == np.int64 and out_lens.tolist() == ref_lens.tolist() == [300, 199, 8]
    for b, n in enumerate(ref_lens.tolist()):
        np.testing.assert_allclose(out[b, :n], ref[b, :n].numpy(), atol=1e-4, rtol=1e-4)

    y = torch.tensor([[-1, 0], [3, 7], [19, 5]])
    ref_dec = supernet.joiner.decoder_proj(supernet.decoder(y, need_pad=False)[:, 0])
    (out_dec,) = dec.run(None, {"y": y.numpy()})
    np.testing.assert_allclose(out_dec, ref_dec.numpy(), atol=1e-5, rtol=1e-5)

    a, b = out[0, :4], np.repeat(out_dec[:1], 4, axis=0)
    (logit,) = join.run(None, {"encoder_out": a, "decoder_out": b})
    ref_logit = supernet.joiner.output_linear(torch.tanh(torch.from_numpy(a) + torch.from_numpy(b)))
    assert logit.shape == (4, 20)
    np.testing.assert_allclose(logit, ref_logit.numpy(), atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_pretrained_checkpoint_loads_with_build_model_alone(deployed):
    supernet, out_dir, _ = deployed
    ckpt = torch.load(out_dir / "pretrained.pt", map_location="cpu", weights_only=True)
    model = build_model(TransducerConfig.from_dict(ckpt["model_config"])).eval()
    model.load_state_dict(ckpt["model"])
    assert model.config.search_space.enumerate() == [SPEC]
    assert sum(p.numel() for p in model.parameters()) == count_parameters(supernet.config, SPEC)
    x, x_lens = torch.randn(2, 60, 80), torch.tensor([60, 33])
    torch.testing.assert_close(model.forward_encoder(x, x_lens), supernet.forward_encoder(x, x_lens, SPEC))


@torch.no_grad()
def test_shortest_input_runs_and_a_shorter_one_is_named(deployed):
    supernet, out_dir, _ = deployed
    session = _session(_files(out_dir)["encoder"])
    x = torch.randn(1, MIN_INPUT_FRAMES, 80)
    out, lens = session.run(None, {"x": x.numpy(), "x_lens": np.array([MIN_INPUT_FRAMES])})
    ref, _ = supernet.forward_encoder(x, torch.tensor([MIN_INPUT_FRAMES]), SPEC, fft=True)
    assert lens.tolist() == [1]  # one encoder frame, the rest of its scan chunk padding
    np.testing.assert_allclose(out, supernet.joiner.encoder_proj(ref).numpy(), atol=1e-4, rtol=1e-4)
    with pytest.raises(InvalidArgument, match=f"input_needs_at_least_{MIN_INPUT_FRAMES}_frames"):
        session.run(None, {"x": x[:, :-1].numpy(), "x_lens": np.array([MIN_INPUT_FRAMES - 1])})


def test_int8_runs_close_to_fp32(deployed):
    _, out_dir, summary = deployed
    x, x_lens = np.random.default_rng(0).standard_normal((1, 120, 80)).astype(np.float32), np.array([120])
    fp32, _ = _session(_files(out_dir)["encoder"]).run(None, {"x": x, "x_lens": x_lens})
    int8, lens = _session(_files(out_dir, ".int8")["encoder"]).run(None, {"x": x, "x_lens": x_lens})
    assert int8.shape == fp32.shape and lens.tolist() == [28] and np.isfinite(int8).all()
    assert np.abs(int8 - fp32).max() < 0.2 * np.abs(fp32).max()
    ops = {n.op_type for n in onnx.load(str(_files(out_dir, ".int8")["encoder"])).graph.node}
    assert {"MatMulInteger", "ConvInteger", "Conv"} <= ops  # the fbank's own conv stays fp32
    assert summary["file_bytes"]["encoder.int8"] > 0


def test_int8_files_are_at_most_0_3x_fp32_for_the_smallest_default_subnet(tmp_path):
    # The default model's smallest subnet has the most graph per weight: the hardest case.
    torch.manual_seed(0)
    supernet = build_model(TransducerConfig(vocab_size=256))
    paths = export_onnx(supernet.extract(supernet.config.search_space.smallest()), tmp_path, SUFFIX)
    fp32, int8 = (sum(paths[p + tag].stat().st_size for p in ("encoder", "decoder", "joiner")) for tag in ("", ".int8"))
    assert int8 <= 0.3 * fp32, int8 / fp32
    names = [n.name for n in onnx.load(str(paths["encoder"])).graph.node]
    assert f"/{CHECK_NAME}/Gather" in names and all(len(n) < 8 for n in names if CHECK_NAME not in n)


def _recognizer(out_dir: Path, tag: str, method: str) -> sherpa_onnx.OfflineRecognizer:
    files = _files(out_dir, tag)
    # model_type "" makes sherpa-onnx route by the encoder's model_type metadata (as its CLI does)
    return sherpa_onnx.OfflineRecognizer.from_transducer(
        str(files["encoder"]), str(files["decoder"]), str(files["joiner"]), str(out_dir / "tokens.txt"),
        num_threads=1, decoding_method=method, model_type="")


def _fbank(audio: np.ndarray) -> torch.Tensor:
    """[1, T, 80] lhotse fbank, the training front end."""
    return torch.from_numpy(Fbank(FbankConfig(num_mel_bins=80)).extract(audio, 16000)).unsqueeze(0)


@torch.no_grad()
def _greedy_reference(model, audio: np.ndarray) -> list[int]:
    """One-symbol-per-frame greedy search over lhotse fbank (the training front end); <unk> (2)
    counts as blank, as in sherpa-onnx."""
    feats = _fbank(audio)
    enc, _ = model.forward_encoder(feats, torch.tensor([feats.size(1)]), SPEC)
    context, hyp = [-1, 0], []
    dec = model.decoder(torch.tensor([context]), need_pad=False)
    for t in range(enc.size(1)):
        token = int(model.joiner(enc[:, t:t + 1], dec).argmax(-1))
        if token not in (0, 2):
            hyp.append(token)
            context = [context[-1], token]
            dec = model.decoder(torch.tensor([context]), need_pad=False)
    return hyp


@torch.no_grad()
def _beam_reference(supernet, audio: np.ndarray) -> list[int]:
    """todm's modified beam search (beam 4, sherpa-onnx's default max_active_paths) on the supernet."""
    feats = _fbank(audio)
    subnet = supernet.extract(SPEC).eval()
    enc, enc_lens = subnet.forward_encoder(feats, torch.tensor([feats.size(1)]))
    return modified_beam_search(subnet, enc, enc_lens, beam=4)[0]


@pytest.fixture(scope="module")
def decoded(deployed, tmp_path_factory):
    """Token ids of 12 s of audio (300 encoder frames): PyTorch references and sherpa-onnx's."""
    supernet, out_dir, _ = deployed
    audio = write_wav(tmp_path_factory.mktemp("wav") / "a.wav", seconds=12.0)
    reference = {"greedy_search": _greedy_reference(supernet, audio),
                 "modified_beam_search": _beam_reference(supernet, audio)}
    assert len(reference["greedy_search"]) > 100, "the random test model should emit many tokens"
    sherpa = {}
    for tag in ("", ".int8"):
        for method in reference:
            recognizer = _recognizer(out_dir, tag, method)
            stream = recognizer.create_stream()
            stream.accept_waveform(16000, audio)
            recognizer.decode_stream(stream)
            sherpa[tag, method] = _ids(stream.result.tokens)
    return reference, sherpa


@pytest.mark.parametrize("method", ["greedy_search", "modified_beam_search"])
def test_sherpa_onnx_fp32_decodes_as_pytorch(decoded, method):
    reference, sherpa = decoded
    assert sherpa["", method] == reference[method]  # same model, fbank within rounding: same tokens


@pytest.mark.parametrize("method", ["greedy_search", "modified_beam_search"])
def test_sherpa_onnx_int8_decodes_close_to_pytorch(decoded, method):
    # 7-bit weights move the random model's near-tied argmaxes on a few frames: measured 7.8%
    # token errors for greedy search and 0.7% for beam search (a token on every frame here);
    # 8-bit weights, which saturate on CPUs without VNNI, gave 13% and 7.8%.
    reference, sherpa = decoded
    errors = edit_distance(reference[method], sherpa[".int8", method])["total"]
    assert errors <= 0.10 * len(reference[method]), (errors, len(reference[method]))


def _ids(pieces: list[str]) -> list[int]:
    table = {"<blk>": 0, "<sos/eos>": 1, "<unk>": 2, **{f"▁W{i}": i for i in range(3, 20)}}
    return [table[p.replace(" ", "▁")] for p in pieces]


def test_bad_input_is_named(tmp_path):
    supernet = tiny_supernet()
    with pytest.raises(ValueError, match="num_layers"):
        deploy_subnet(supernet, SubnetSpec(3, 8, 1), tmp_path / "x", SUFFIX, write_tokens(tmp_path / "t.txt"))
    with pytest.raises(ValueError, match="vocab_size"):
        check_tokens(write_tokens(tmp_path / "t10.txt", vocab_size=10), supernet.config)
    args = get_parser().parse_args(["--tokens", "t.txt", "--subnets", "L1-F8-H2,L2-F16-H2", "--avg", "2"])
    assert args.use_averaged_model is True and args.out_dir == Path("exp/deploy")
