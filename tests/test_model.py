"""The supernet transducer: forward_encoder, extraction, config/flags, decoder, joiner, ONNX."""

import argparse
import dataclasses
import io
import json
import random

import numpy as np
import pytest
import torch

from todm.cost import count_parameters
from todm.model import build_model
from todm.model_config import TransducerConfig, add_model_arguments, config_from_args
from todm.subnet import SearchSpace, SubnetSpec

TINY = TransducerConfig(
    vocab_size=20,
    subsampling_channels=(2, 4, 8),
    encoder_dim=16,
    head_dim=4,
    state_dim=4,
    decoder_dim=16,
    joiner_dim=12,
    search_space=SearchSpace(layers=(1, 2, 3), ffn_dims=(8, 16, 32), heads=(1, 2, 3)),
)


def _model(config=TINY, seed=0):
    torch.manual_seed(seed)
    return build_model(config).eval()


def _inputs(batch=3, frames=61, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, frames, 80, generator=g)
    lens = torch.tensor([frames, frames - 20, 30][:batch])
    return x, lens


def _all_outputs(model, spec, x, lens):
    """Encoder, decoder, joiner and simple projections of one subnet (eval mode)."""
    enc, enc_lens = model.forward_encoder(x, lens, spec=spec)
    y = torch.tensor([[-1, 0], [3, 5], [7, 19]])
    dec = model.decoder(y, need_pad=False)
    logits = model.joiner(enc[:, :, None, :], dec[:, None, :, :])
    return enc, enc_lens, dec, logits, model.simple_am_proj(enc), model.simple_lm_proj(dec)


def test_forward_encoder_shapes_and_lengths():
    model = _model()
    x, lens = _inputs()
    out, out_lens = model.forward_encoder(x, lens)
    assert out.shape == (3, ((61 - 7) // 2 + 1) // 2, 16)
    assert out_lens.tolist() == [((n - 7) // 2 + 1) // 2 for n in lens.tolist()]


def test_padding_never_changes_valid_frames():
    model = _model()
    x, lens = _inputs()
    x[1, lens[1] :] = 50.0
    out, out_lens = model.forward_encoder(x, lens, spec=SubnetSpec(2, 16, 2))
    for b in range(3):
        alone, _ = model.forward_encoder(x[b : b + 1, : lens[b]], lens[b : b + 1], spec=SubnetSpec(2, 16, 2))
        torch.testing.assert_close(out[b, : out_lens[b]], alone[0], rtol=1e-4, atol=1e-4)


def test_causal_model_never_looks_ahead():
    model = _model(dataclasses.replace(TINY, causal=True))
    x, _ = _inputs(batch=1)
    lens = torch.tensor([61])
    x2 = x.clone()
    x2[0, 40] += torch.randn(80)
    out, out2 = model.forward_encoder(x, lens)[0], model.forward_encoder(x2, lens)[0]
    # Encoder frame j reads fbank frames 4j .. 4j+8 (conv subsampling), then only the past.
    first_affected = (40 - 8 + 3) // 4
    torch.testing.assert_close(out2[:, :first_affected], out[:, :first_affected])
    assert not torch.allclose(out2[:, first_affected:], out[:, first_affected:], atol=1e-4)


@pytest.mark.parametrize("which", ["largest", "smallest", "random0", "random1", "random2"])
def test_extracted_subnet_equals_supernet(which):
    model = _model()
    space = TINY.search_space
    if which == "largest":
        spec = space.largest()
    elif which == "smallest":
        spec = space.smallest()
    else:
        spec = space.sample(random.Random(int(which[-1])))
    small = model.extract(spec)
    assert small.config.search_space == SearchSpace.single(spec) and not small.training
    x, lens = _inputs()
    with torch.no_grad():
        for a, b in zip(_all_outputs(model, spec, x, lens), _all_outputs(small, None, x, lens)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    if spec != space.largest():
        full = model.forward_encoder(x, lens)[0]
        assert not torch.allclose(full, small.forward_encoder(x, lens)[0], atol=1e-4)


def _state_bytes(model):
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def test_extracted_model_is_standalone_and_smaller():
    model = _model()
    spec = SubnetSpec(2, 16, 1)
    small = model.extract(spec)
    assert count_parameters(TINY, spec) == sum(p.numel() for p in small.parameters())
    assert count_parameters(TINY, TINY.search_space.largest()) == sum(p.numel() for p in model.parameters())
    assert _state_bytes(small) < 0.8 * _state_bytes(model)
    # Reload through the checkpoint format: plain config dict + state dict, no supernet involved.
    config = TransducerConfig.from_dict(json.loads(json.dumps(small.config.to_dict())))
    fresh = build_model(config).eval()
    fresh.load_state_dict(small.state_dict(), strict=True)
    x, lens = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(fresh.forward_encoder(x, lens)[0], model.forward_encoder(x, lens, spec=spec)[0])
    with pytest.raises(ValueError, match="num_layers=3"):
        fresh.forward_encoder(x, lens, spec=SubnetSpec(3, 16, 1))


def test_bad_spec_and_dropout_are_rejected():
    model = _model()
    x, lens = _inputs()
    with pytest.raises(ValueError, match="ffn_dim=12"):
        model.forward_encoder(x, lens, spec=SubnetSpec(2, 12, 1))
    with pytest.raises(ValueError, match="num_heads=4"):
        model.extract(SubnetSpec(2, 16, 4))
    with pytest.raises(ValueError, match="dropout"):
        model.forward_encoder(x, lens, dropout=1.5)


def test_dropout_argument_changes_outputs_only_in_training():
    model = _model()
    x, lens = _inputs()
    torch.testing.assert_close(
        model.forward_encoder(x, lens, dropout=0.4)[0], model.forward_encoder(x, lens, dropout=0.0)[0]
    )
    model.train()
    dropped, clean = model.forward_encoder(x, lens, dropout=0.4)[0], model.forward_encoder(x, lens, dropout=0.0)[0]
    assert not torch.allclose(dropped, clean)


def test_config_round_trip_and_validation():
    assert TransducerConfig.from_dict(TINY.to_dict()) == TINY
    assert isinstance(TINY.to_dict()["search_space"], str)
    with pytest.raises(ValueError, match="state_dim"):
        dataclasses.replace(TINY, state_dim=5)
    with pytest.raises(ValueError, match="decoder_dim"):
        dataclasses.replace(TINY, decoder_dim=18)
    with pytest.raises(ValueError, match="unknown keys"):
        TransducerConfig.from_dict({**TINY.to_dict(), "encoder_dims": 3})


def test_flags_build_the_config(capsys):
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    assert config_from_args(parser.parse_args([]), vocab_size=500) == TransducerConfig(vocab_size=500)
    args = parser.parse_args("--num-layers 4 --ffn-dim 288 --num-heads 2 --causal true".split())
    config = config_from_args(args, vocab_size=30, blank_id=0)
    assert config.search_space == SearchSpace.single(SubnetSpec(4, 288, 2)) and config.causal
    with pytest.raises(ValueError, match="--num-layers"):
        config_from_args(parser.parse_args(["--num-layers", "4,2"]), vocab_size=30)
    with pytest.raises(SystemExit):
        parser.parse_args(["--ffn-dim", "1x"])
    assert "argument --ffn-dim: expected comma-separated integers, got '1x'" in capsys.readouterr().err


def test_decoder_context_and_padding():
    model = _model()
    y = torch.tensor([[4, 9, 2, 11]])
    padded = model.decoder(y)
    assert padded.shape == (1, 4, 16)
    # Output u of the padded form sees tokens (u-1, u); the first one sees (-1, y0).
    contexts = torch.tensor([[-1, 4], [4, 9], [9, 2], [2, 11]])
    torch.testing.assert_close(model.decoder(contexts, need_pad=False)[:, 0], padded[0])
    zero = model.decoder(torch.tensor([[-1, -1]]), need_pad=False)
    torch.testing.assert_close(zero, torch.zeros_like(zero))
    with pytest.raises(ValueError, match="2 tokens"):
        model.decoder(y, need_pad=False)
    assert (model.decoder.context_size, model.decoder.blank_id, model.decoder.vocab_size) == (2, 0, 20)


def test_joiner_formula():
    joiner = _model().joiner
    e, d = torch.randn(2, 5, 1, 16), torch.randn(2, 1, 3, 16)
    manual = joiner.output_linear(torch.tanh(joiner.encoder_proj(e) + joiner.decoder_proj(d)))
    torch.testing.assert_close(joiner(e, d), manual)
    projected = joiner(joiner.encoder_proj(e), joiner.decoder_proj(d), project_input=False)
    torch.testing.assert_close(projected, manual)
    assert joiner(e, d).shape == (2, 5, 3, 20)


def test_extracted_encoder_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    small = _model().extract(SubnetSpec(2, 16, 2))

    class EncoderWrapper(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x, x_lens):
            return self.model.forward_encoder(x, x_lens)

    path = tmp_path / "encoder.onnx"
    x, lens = _inputs(batch=1, frames=45)
    # export() restores the wrapper's train/eval mode afterwards, recursively: build it in eval.
    torch.onnx.export(
        EncoderWrapper(small).eval(), (x, torch.tensor([45])), str(path), dynamo=False, opset_version=13,
        input_names=["x", "x_lens"], output_names=["encoder_out", "encoder_out_lens"],
        dynamic_axes={
            "x": {0: "N", 1: "T"}, "x_lens": {0: "N"}, "encoder_out": {0: "N", 1: "T"}, "encoder_out_lens": {0: "N"}
        },
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x, lens = _inputs(batch=3, frames=77)
    out, out_lens = session.run(None, {"x": x.numpy(), "x_lens": lens.numpy()})
    with torch.no_grad():
        ref, ref_lens = small.forward_encoder(x, lens, fft=True)
    np.testing.assert_array_equal(out_lens, ref_lens.numpy())
    for b, n in enumerate(ref_lens.tolist()):
        np.testing.assert_allclose(out[b, :n], ref[b, :n].numpy(), rtol=1e-4, atol=1e-4)
