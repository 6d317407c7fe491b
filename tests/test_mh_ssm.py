"""MH-SSM layer: kernel vs a complex-arithmetic reference, the FFT convolution vs an explicit
double sum, FFT vs scan path (tests/test_ssm_scan.py tests the scan itself), masking,
causality, head slicing, time-scale bands, dropout."""

import math

import pytest
import torch

from todm.mh_ssm import MultiHeadSSM, fft_conv, s4d_modes
from todm.ssm_scan import kernel


def test_kernel_matches_complex_reference():
    torch.manual_seed(0)
    channels, modes, length = 5, 3, 17
    log_dt = torch.empty(channels).uniform_(math.log(1e-3), math.log(1.0))
    log_a_real = torch.randn(channels, modes) * 0.3
    a_imag = torch.randn(channels, modes) * 3
    c = torch.randn(channels, modes, 2)
    # S4D's Vandermonde kernel in complex float64.
    a = -log_a_real.double().exp() + 1j * a_imag.double()
    dta = log_dt.double().exp()[:, None] * a
    coef = torch.complex(c[..., 0].double(), c[..., 1].double()) * (dta.exp() - 1) / a
    l = torch.arange(length, dtype=torch.float64)
    reference = 2 * (coef[..., None] * (dta[..., None] * l).exp()).sum(1).real
    got = kernel(s4d_modes(log_dt, log_a_real, a_imag, c), length)
    torch.testing.assert_close(got.double(), reference, rtol=1e-4, atol=1e-5)


def _naive_conv(u, k_fwd, k_bwd):
    b, ch, t = u.shape
    y = torch.zeros(b, ch, t, dtype=torch.float64)
    for i in range(t):
        for s in range(t):
            if s <= i:
                y[:, :, i] += k_fwd[:, i - s].double() * u[:, :, s].double()
            elif k_bwd is not None:
                y[:, :, i] += k_bwd[:, s - i - 1].double() * u[:, :, s].double()
    return y


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("length", [1, 2, 9])
def test_fft_conv_matches_explicit_sum(bidirectional, length):
    torch.manual_seed(length)
    u = torch.randn(2, 3, length)
    k_fwd = torch.randn(3, length)
    k_bwd = torch.randn(3, length) if bidirectional else None
    reference = _naive_conv(u, k_fwd, k_bwd)
    torch.testing.assert_close(fft_conv(u, k_fwd, k_bwd).double(), reference, rtol=1e-4, atol=1e-5)


def _layer(causal=False, heads=3, seed=0):
    torch.manual_seed(seed)
    return MultiHeadSSM(dim=12, num_heads=heads, head_dim=4, state_dim=6, causal=causal).eval()


@pytest.mark.parametrize("causal", [False, True])
def test_fft_path_equals_scan_path(causal):
    layer = _layer(causal)
    x = torch.randn(2, 40, 12)
    mask = torch.zeros(2, 40, dtype=torch.bool)
    mask[1, 25:] = True
    for heads in (1, 3):
        a = layer(x, mask, num_heads=heads, fft=True)
        b = layer(x, mask, num_heads=heads, fft=False)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fft", [True, False])
def test_padding_never_changes_valid_frames(fft):
    layer = _layer()
    x = torch.randn(2, 30, 12)
    mask = torch.zeros(2, 30, dtype=torch.bool)
    mask[0, 18:] = True
    y = layer(x, mask, fft=fft)
    x2 = x.clone()
    x2[0, 18:] = 1e3 * torch.randn(12, 12)
    y2 = layer(x2, mask, fft=fft)
    torch.testing.assert_close(y2[0, :18], y[0, :18])
    alone = layer(x[:1, :18], torch.zeros(1, 18, dtype=torch.bool), fft=fft)
    torch.testing.assert_close(alone[0], y[0, :18], rtol=1e-4, atol=1e-5)
    # Without the mask the padded garbage does leak backwards (the test can fail).
    leaked = layer(x2, torch.zeros_like(mask), fft=fft)
    assert not torch.allclose(leaked[0, :18], y[0, :18], atol=1e-3)


@pytest.mark.parametrize("fft", [True, False])
def test_causal_never_looks_ahead(fft):
    x = torch.randn(1, 32, 12)
    mask = torch.zeros(1, 32, dtype=torch.bool)
    x2 = x.clone()
    x2[0, 20] += 5.0
    causal = _layer(causal=True)
    y, y2 = causal(x, mask, fft=fft), causal(x2, mask, fft=fft)
    torch.testing.assert_close(y2[:, :20], y[:, :20])
    assert not torch.allclose(y2[:, 20:], y[:, 20:], atol=1e-4)
    bidirectional = _layer(causal=False)
    y, y2 = bidirectional(x, mask, fft=fft), bidirectional(x2, mask, fft=fft)
    assert not torch.allclose(y2[:, :20], y[:, :20], atol=1e-4)


def test_head_prefix_equals_a_smaller_layer():
    big = _layer(heads=4)
    small = MultiHeadSSM(dim=12, num_heads=2, head_dim=4, state_dim=6).eval()
    width = 2 * 4
    with torch.no_grad():
        small.in_proj.weight.copy_(big.in_proj.weight[:width])
        small.in_proj.bias.copy_(big.in_proj.bias[:width])
        small.gate_proj.weight.copy_(big.gate_proj.weight[:width, :width])
        small.gate_proj.bias.copy_(big.gate_proj.bias[:width])
        small.out_proj.weight.copy_(big.out_proj.weight[:, :width])
        small.out_proj.bias.copy_(big.out_proj.bias)
        for name in ("log_dt", "log_a_real", "a_imag", "c_fwd", "c_bwd", "skip"):
            getattr(small, name).copy_(getattr(big, name)[:2])
    x = torch.randn(2, 15, 12)
    mask = torch.zeros(2, 15, dtype=torch.bool)
    torch.testing.assert_close(big(x, mask, num_heads=2), small(x, mask))
    assert not torch.allclose(big(x, mask, num_heads=3), small(x, mask), atol=1e-4)
    with pytest.raises(ValueError, match="num_heads"):
        big(x, mask, num_heads=5)


def test_heads_start_on_separate_time_scale_bands():
    layer = MultiHeadSSM(dim=8, num_heads=4, head_dim=16, dt_min=1e-3, dt_max=1.0)
    dt = layer.log_dt.detach().exp()
    edges = [10 ** (-0.75 * h) for h in range(5)]  # 1, 0.178, 0.0316, 0.0056, 0.001
    for h in range(4):
        assert dt[h].max() <= edges[h] * (1 + 1e-5) and dt[h].min() >= edges[h + 1] * (1 - 1e-5)


def test_dropout_only_in_training_and_gradients_reach_ssm_parameters():
    layer = _layer()
    x = torch.randn(2, 10, 12)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    torch.testing.assert_close(layer(x, mask, dropout=0.5), layer(x, mask, dropout=0.0))
    layer.train()
    torch.manual_seed(1)
    assert not torch.allclose(layer(x, mask, dropout=0.5), layer(x, mask, dropout=0.0))
    layer(x, mask).square().sum().backward()
    for name in ("log_dt", "log_a_real", "a_imag", "c_fwd", "c_bwd"):
        grad = getattr(layer, name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
