"""todm.ssm_scan: the chunked recurrence against a frame-by-frame complex recurrence (float64)
and against the FFT convolution of training (float32, thousands of frames, every head count of
the default search space); pieces with a carried state; ONNX export with dynamic length."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from todm.mh_ssm import MultiHeadSSM, fft_conv
from todm.model_config import DEFAULT_SEARCH_SPACE, TransducerConfig
from todm.ssm_scan import CHUNK, Modes, causal_scan, kernel, scan_conv

DEFAULTS = TransducerConfig(vocab_size=1)


def default_layer(causal: bool, seed: int = 0) -> MultiHeadSSM:
    """An MH-SSM layer of the default model's dimensions (its initial dynamics)."""
    torch.manual_seed(seed)
    heads = max(DEFAULT_SEARCH_SPACE.heads)
    return MultiHeadSSM(DEFAULTS.encoder_dim, heads, DEFAULTS.head_dim, DEFAULTS.state_dim, causal=causal)


def double(modes: Modes) -> Modes:
    return Modes(*(t.detach().double() for t in modes))


def recurrence(u: torch.Tensor, modes: Modes, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """h[t] = z h[t-1] + u[t], y[t] = 2 Re sum_m W_m h_m[t], one frame at a time in complex128."""
    z = torch.complex(modes.log_decay, modes.angle).exp()
    w = torch.complex(modes.w_re, modes.w_im)
    ys = []
    for t in range(u.size(-1)):
        h = z * h + u[..., t : t + 1]
        ys.append(2 * (w * h).sum(-1).real)
    return torch.stack(ys, -1), h


@pytest.mark.parametrize("length", [1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5])
@pytest.mark.parametrize("with_state", [False, True])
def test_causal_scan_equals_frame_by_frame_recurrence(length, with_state):
    modes = double(default_layer(causal=True).modes(2)[0])
    g = torch.Generator().manual_seed(length)
    u = torch.randn(2, modes.angle.size(0), length, generator=g, dtype=torch.float64)
    channels, num_modes = modes.angle.shape
    h0 = torch.randn(2, channels, 2, num_modes, generator=g, dtype=torch.float64) if with_state else None
    y, h = causal_scan(u, modes, h0)
    ref_y, ref_h = recurrence(u, modes, torch.zeros(()) if h0 is None else torch.complex(h0[:, :, 0], h0[:, :, 1]))
    torch.testing.assert_close(y, ref_y, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(torch.complex(h[:, :, 0], h[:, :, 1]), ref_h.expand(2, channels, num_modes).to(
        torch.complex128), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("causal", [False, True])
def test_scan_conv_equals_fft_conv_for_every_head_count(causal):
    """float32, as exported: both agree to ~3e-7 of the output's scale (each as close to float64)."""
    layer = default_layer(causal)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for heads in DEFAULT_SEARCH_SPACE.heads:
            fwd, bwd = layer.modes(heads)
            for length in (1, 2 * CHUNK + 7, 3000):
                u = torch.randn(2, fwd.angle.size(0), length, generator=g)
                ref = fft_conv(u, kernel(fwd, length), None if bwd is None else kernel(bwd, length))
                got = scan_conv(u, fwd, bwd)
                assert (got - ref).abs().max() <= 1e-5 * ref.abs().max(), (heads, length)


def test_pieces_with_carried_state_equal_one_pass():
    modes = default_layer(causal=True).modes(3)[0]
    u = torch.randn(2, modes.angle.size(0), 200)
    with torch.no_grad():
        whole, final = causal_scan(u, modes)
        state, pieces = None, []
        for start, end in ((0, 5), (5, 5 + CHUNK), (5 + CHUNK, 6 + CHUNK), (6 + CHUNK, 200)):
            y, state = causal_scan(u[..., start:end], modes, state)
            pieces.append(y)
    torch.testing.assert_close(torch.cat(pieces, -1), whole, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state, final, rtol=1e-5, atol=1e-5)


def test_zero_frames_is_a_clear_error():
    modes = default_layer(causal=True).modes(1)[0]
    with pytest.raises(ValueError, match="at least one frame"):
        causal_scan(torch.zeros(1, modes.angle.size(0), 0), modes)


class Bidirectional(torch.nn.Module):
    def __init__(self, layer: MultiHeadSSM) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return scan_conv(u, *self.layer.modes(2))


class Stateful(torch.nn.Module):
    """What a streaming encoder will do: state in, state out."""

    def __init__(self, layer: MultiHeadSSM) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, u, h):
        return causal_scan(u, self.layer.modes(2)[0], h)


def _export(module: torch.nn.Module, args: tuple, path, names: list[str], outputs: list[str]) -> ort.InferenceSession:
    """The repository's exporter settings (todm.export): TorchScript-based, opset 13, dynamic N and T."""
    torch.onnx.export(module, args, str(path), opset_version=13, input_names=names, output_names=outputs,
                      dynamic_axes={names[0]: {0: "N", 2: "T"}}, dynamo=False)
    assert "Loop" in {node.op_type for node in onnx.load(str(path)).graph.node}
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@torch.no_grad()
def test_exports_to_onnx_with_dynamic_length(tmp_path):
    layer = default_layer(causal=False).eval()
    channels = 2 * DEFAULTS.head_dim
    session = _export(Bidirectional(layer), (torch.randn(1, channels, 40),), tmp_path / "conv.onnx", ["u"], ["y"])
    for length in (1, CHUNK, 3 * CHUNK + 1, 500):
        u = torch.randn(2, channels, length)
        (y,) = session.run(None, {"u": u.numpy()})
        np.testing.assert_allclose(y, Bidirectional(layer)(u).numpy(), rtol=1e-4, atol=1e-4)

    causal = default_layer(causal=True).eval()
    h = torch.randn(1, channels, 2, DEFAULTS.state_dim // 2)
    session = _export(Stateful(causal), (torch.randn(1, channels, 40), h), tmp_path / "state.onnx", ["u", "h"],
                      ["y", "next_h"])
    for length in (1, CHUNK + 3):
        u, h = torch.randn(1, channels, length), torch.randn_like(h)
        got = session.run(None, {"u": u.numpy(), "h": h.numpy()})
        for a, b in zip(got, Stateful(causal)(u, h)):
            np.testing.assert_allclose(a, b.numpy(), rtol=1e-4, atol=1e-4)
