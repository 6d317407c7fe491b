"""Blocks at a lower frame rate (todm.frame_rate, ``--downsampling-factor``): the pooling, the
encoder's runs, elastic depth, streaming in whole groups, the config and the ONNX exports."""

import dataclasses

import numpy as np
import pytest
import torch
from test_export import tiny_supernet

from todm.encoder import Encoder, make_pad_mask
from todm.export import export_onnx
from todm.frame_rate import downsample, downsampled_lengths, upsample, validate_factors
from todm.model import build_model
from todm.model_config import TransducerConfig
from todm.onnx_io import session
from todm.streaming import export_streaming_encoder, streaming_check
from todm.subnet import SearchSpace, SubnetSpec

FACTORS = (1, 2, 2, 1)


def test_downsample_averages_the_valid_frames_of_each_group():
    x = torch.arange(7.0).reshape(1, 7, 1).repeat(2, 1, 1)
    pad = make_pad_mask(torch.tensor([7, 3]), 7)
    out = downsample(x, pad, 2)
    assert out[0, :, 0].tolist() == [0.5, 2.5, 4.5, 6.0]  # the partial last group is its one frame
    assert out[1, :, 0].tolist() == [0.5, 2.0, 0.0, 0.0]  # padding never enters a mean; none left: 0
    assert downsampled_lengths(torch.tensor([7, 3, 0]), 2).tolist() == [4, 2, 0]
    assert upsample(out, 2, 7)[0, :, 0].tolist() == [0.5, 0.5, 2.5, 2.5, 4.5, 4.5, 6.0]


def test_factors_are_checked():
    assert validate_factors((), 3) == (1, 1, 1)
    with pytest.raises(ValueError, match="one per encoder block \\(4\\), got 3"):
        validate_factors((1, 2, 1), 4)
    with pytest.raises(ValueError, match="positive integers"):
        validate_factors((1, 0), 2)
    with pytest.raises(ValueError, match="TransducerConfig: downsampling factors .* need one per encoder block"):
        TransducerConfig(vocab_size=10, downsampling_factors=(1, 2))


def _encoder(causal=False, factors=FACTORS):
    torch.manual_seed(0)
    return Encoder(num_layers=len(factors), dim=16, ffn_dim=32, num_heads=2, head_dim=4, state_dim=4,
                   causal=causal, downsampling_factors=factors).eval()


@torch.no_grad()
@pytest.mark.parametrize("fft", [True, False])
def test_padding_never_changes_valid_frames_and_depth_is_elastic(fft):
    encoder = _encoder()
    x, lens = torch.randn(3, 25, 16), torch.tensor([25, 16, 7])
    x[1, 16:], x[2, 7:] = 1e3, -1e3
    for depth in (1, 2, 3, 4):
        out = encoder(x, lens, num_layers=depth, fft=fft)
        for b, n in enumerate(lens.tolist()):
            alone = encoder(x[b:b + 1, :n], lens[b:b + 1], num_layers=depth, fft=fft)
            torch.testing.assert_close(out[b:b + 1, :n], alone, rtol=1e-4, atol=1e-4)
    flat = _encoder(factors=(1, 1, 1, 1))  # the same weights at full rate: depth 1 is the same model
    torch.testing.assert_close(encoder(x, lens, num_layers=1), flat(x, lens, num_layers=1))
    assert not torch.allclose(encoder(x, lens, num_layers=3), flat(x, lens, num_layers=3), atol=1e-4)


@torch.no_grad()
def test_streaming_in_whole_groups_equals_the_whole_and_odd_pieces_are_refused():
    encoder = _encoder(causal=True)
    x = torch.randn(2, 24, 16)
    whole = encoder(x, torch.tensor([24, 24]))
    for chunk, bounds in ((None, (0, 2, 12, 14, 24)), (4, range(0, 25, 4))):
        states, pieces = [torch.zeros(2, 8, 2, 2)] * 4, []
        for start, end in zip(bounds, bounds[1:]):
            out, states = encoder.streaming_forward(x[:, start:end], states, chunk=chunk)
            pieces.append(out)
        torch.testing.assert_close(torch.cat(pieces, 1), whole, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="pieces of 3 frames: blocks at 1/2"):
        encoder.streaming_forward(x[:, :3], [torch.zeros(2, 8, 2, 2)] * 4)


def _config(**kw):
    return TransducerConfig(vocab_size=20, encoder_dim=16, head_dim=4, state_dim=4, decoder_dim=16, joiner_dim=16,
                            subsampling_channels=(2, 4, 4), downsampling_factors=FACTORS,
                            search_space=SearchSpace(layers=(2, 3, 4), ffn_dims=(8, 16), heads=(1, 2)), **kw)


def test_config_round_trip_old_configs_and_extraction():
    config = _config()
    assert TransducerConfig.from_dict(config.to_dict()) == config
    old = config.to_dict()
    del old["downsampling_factors"]  # written before the field existed: every block at full rate
    assert TransducerConfig.from_dict(old).downsampling_factors == ()
    supernet = build_model(config).eval()
    spec = SubnetSpec(3, 8, 1)  # a depth that ends inside the run at half rate
    small = supernet.extract(spec)
    assert small.config.downsampling_factors == (1, 2, 2)
    x, lens = torch.randn(2, 61, 80), torch.tensor([61, 40])
    with torch.no_grad():
        torch.testing.assert_close(small.forward_encoder(x, lens), supernet.forward_encoder(x, lens, spec))


@torch.no_grad()
def test_onnx_exports_equal_pytorch(tmp_path):
    supernet = build_model(_config()).eval()
    spec = supernet.config.search_space.largest()
    paths = export_onnx(supernet.extract(spec), tmp_path, "t", int8=False)
    x, x_lens = torch.randn(2, 1207, 80), torch.tensor([1207, 803])  # odd encoder lengths: 300 and 199
    ref, ref_lens = supernet.forward_encoder(x, x_lens, spec, fft=True)
    ref = supernet.joiner.encoder_proj(ref)
    out, out_lens = session(paths["encoder"]).run(None, {"x": x.numpy(), "x_lens": x_lens.numpy()})
    assert out_lens.tolist() == ref_lens.tolist() == [300, 199]
    for b, n in enumerate(ref_lens.tolist()):
        np.testing.assert_allclose(out[b, :n], ref[b, :n].numpy(), atol=1e-4, rtol=1e-4)

    causal = build_model(_config(causal=True)).eval().extract(spec)
    export_streaming_encoder(causal, tmp_path / "online.onnx", 4, {})
    assert streaming_check(causal, tmp_path / "online.onnx", 4) < 1e-4
    with pytest.raises(ValueError, match="chunks of 3 encoder frames: .*divisible by 2"):
        export_streaming_encoder(causal, tmp_path / "odd.onnx", 3, {})
