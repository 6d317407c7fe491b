"""Conv subsampling and the Stateformer encoder: lengths, masking, causality, elastic slicing,
dropout."""

import pytest
import torch

from todm.encoder import Encoder, FeedForward, make_pad_mask
from todm.subsampling import Conv2dSubsampling, frequency_sizes, subsampled_lengths


def test_make_pad_mask():
    mask = make_pad_mask(torch.tensor([3, 1, 0]), 4)
    expected = torch.tensor([[0, 0, 0, 1], [0, 1, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(mask, expected)


def test_subsampling_shapes_and_icefall_length_rule():
    embed = Conv2dSubsampling(in_dim=80, out_dim=16, channels=(2, 4, 8))
    for frames in range(9, 60):
        out, lens = embed(torch.randn(1, frames, 80), torch.tensor([frames]))
        expected = ((frames - 7) // 2 + 1) // 2
        assert out.shape == (1, expected, 16) and lens.item() == expected, frames
    assert subsampled_lengths(torch.tensor([100, 1000])).tolist() == [23, 248]
    assert subsampled_lengths(100) == 23  # plain ints too (the data filter's cut lengths)


@pytest.mark.parametrize("in_dim", [7, 8, 13, 80, 81])
def test_frequency_sizes_are_the_convolutions_outputs(in_dim):
    embed = Conv2dSubsampling(in_dim=in_dim, out_dim=16, channels=(2, 4, 8))
    x = torch.randn(1, 1, 20, in_dim)
    sizes = []
    for layer in embed.conv:
        x = layer(x)
        if isinstance(layer, torch.nn.Conv2d):
            sizes.append(x.size(3))
    assert frequency_sizes(in_dim) == tuple(sizes)  # conv1 keeps in_dim (padded), conv2/conv3 halve it


def test_subsampling_valid_frames_ignore_padding():
    torch.manual_seed(0)
    embed = Conv2dSubsampling(in_dim=80, out_dim=16, channels=(2, 4, 8))
    for frames in range(9, 30):
        x = torch.randn(1, 40, 80)
        out, lens = embed(x, torch.tensor([frames]))
        alone, _ = embed(x[:, :frames], torch.tensor([frames]))
        torch.testing.assert_close(out[:, : lens.item()], alone)


def test_subsampling_rejects_bad_input():
    embed = Conv2dSubsampling(in_dim=80, out_dim=16)
    with pytest.raises(ValueError, match="80"):
        embed(torch.randn(1, 50, 40), torch.tensor([50]))
    with pytest.raises(ValueError, match="at least 9 frames"):
        embed(torch.randn(1, 8, 80), torch.tensor([8]))


def test_feed_forward_prefix_equals_smaller_module():
    torch.manual_seed(0)
    big, small = FeedForward(8, 32), FeedForward(8, 12)
    with torch.no_grad():
        small.in_proj.weight.copy_(big.in_proj.weight[:12])
        small.in_proj.bias.copy_(big.in_proj.bias[:12])
        small.out_proj.weight.copy_(big.out_proj.weight[:, :12])
        small.out_proj.bias.copy_(big.out_proj.bias)
    x = torch.randn(3, 5, 8)
    torch.testing.assert_close(big(x, hidden_dim=12), small(x))
    with pytest.raises(ValueError, match="ffn_dim"):
        big(x, hidden_dim=33)


def _encoder(causal=False, layers=3):
    torch.manual_seed(0)
    return Encoder(num_layers=layers, dim=16, ffn_dim=32, num_heads=2, head_dim=4, state_dim=4, causal=causal).eval()


@pytest.mark.parametrize("fft", [True, False])
@pytest.mark.parametrize("causal", [False, True])
def test_encoder_padding_never_changes_valid_frames(fft, causal):
    encoder = _encoder(causal)
    x = torch.randn(3, 25, 16)
    lens = torch.tensor([25, 17, 6])
    x[1, 17:] = 1e3
    x[2, 6:] = -1e3
    out = encoder(x, lens, fft=fft)
    for b, n in enumerate(lens.tolist()):
        alone = encoder(x[b : b + 1, :n], lens[b : b + 1], fft=fft)
        torch.testing.assert_close(out[b : b + 1, :n], alone, rtol=1e-4, atol=1e-4)


def test_causal_encoder_never_looks_ahead():
    x = torch.randn(1, 30, 16)
    x2 = x.clone()
    x2[0, 21] += 3.0 * torch.randn(16)
    lens = torch.tensor([30])
    causal = _encoder(causal=True)
    out, out2 = causal(x, lens), causal(x2, lens)
    torch.testing.assert_close(out2[:, :21], out[:, :21])
    assert not torch.allclose(out2[:, 21:], out[:, 21:], atol=1e-4)
    full = _encoder(causal=False)
    assert not torch.allclose(full(x2, lens)[:, :21], full(x, lens)[:, :21], atol=1e-4)


def test_depth_prefix_and_bad_depth():
    big, small = _encoder(layers=3), Encoder(num_layers=2, dim=16, ffn_dim=32, num_heads=2, head_dim=4, state_dim=4)
    small.load_state_dict({k: v for k, v in big.state_dict().items() if not k.startswith("layers.2.")})
    small.eval()
    x, lens = torch.randn(2, 12, 16), torch.tensor([12, 9])
    torch.testing.assert_close(big(x, lens, num_layers=2), small(x, lens))
    assert not torch.allclose(big(x, lens), small(x, lens), atol=1e-4)
    with pytest.raises(ValueError, match="num_layers"):
        big(x, lens, num_layers=4)


def test_dropout_argument_acts_only_in_training():
    encoder = _encoder()
    x, lens = torch.randn(2, 12, 16), torch.tensor([12, 9])
    torch.testing.assert_close(encoder(x, lens, dropout=0.3), encoder(x, lens, dropout=0.0))
    encoder.train()
    assert not torch.allclose(encoder(x, lens, dropout=0.3), encoder(x, lens, dropout=0.0))


def test_pre_norm_blocks_start_near_the_identity_and_the_output_is_normalised():
    # A deep stack must start as a shallow one (see encoder.py): each block barely changes the
    # residual stream at initialisation, and every depth ends in the shared final LayerNorm.
    torch.manual_seed(0)
    encoder = Encoder(num_layers=6, dim=32, ffn_dim=64, num_heads=2, head_dim=8).eval()
    x, lens = torch.randn(2, 40, 32), torch.tensor([40, 40])
    pad = make_pad_mask(lens, 40)
    for block in encoder.layers:
        change = (block(x, pad) - x).norm() / x.norm()
        assert change < 0.1, change
    for depth in (1, 6):
        out = encoder(x, lens, num_layers=depth)
        torch.testing.assert_close(out.mean(-1), torch.zeros(2, 40), atol=1e-5, rtol=0)
        torch.testing.assert_close(out.std(-1, unbiased=False), torch.ones(2, 40), atol=1e-3, rtol=0)
