"""The MH-SSM convolution as a chunked diagonal recurrence: exact, linear in T, ONNX-exportable.

Training convolves with the S4D kernel by FFT (``mh_ssm.fft_conv``); torch.fft does not export
to ONNX, so inference and export compute the same function as a recurrence, here.

One channel of the layer has M complex modes z_m (|z_m| < 1) with output weights W_m, and its
kernel is K[l] = 2 Re sum_m W_m z_m^l (``kernel``). The causal convolution

    y[t] = sum_{s <= t} K[t - s] u[s]

is then the output of the diagonal linear recurrence

    h_m[t] = z_m h_m[t-1] + u[t],   y[t] = 2 Re sum_m W_m h_m[t],   h_m[-1] = 0,

whose state h[t] (M complex numbers per channel) summarises the whole past: O(T M) work
instead of the O(T^2) of the convolution written out. Frame by frame, that is T tiny steps,
slow in any runtime; so the sequence is cut into chunks of L frames (``CHUNK``):

- inside a chunk the convolution is written out, a Toeplitz matrix of K[0..L-1];
- between chunks only the state travels. With E_n the state entering chunk n (h just before
  its first frame) and x_0..x_(L-1) its frames:

      y[nL + i] = sum_{j <= i} K[i-j] x_j  +  2 Re sum_m W_m z_m^(i+1) E_n,m
      E_(n+1)   = z^L E_n + s_n,   s_n = sum_j z^(L-1-j) x_j  (what the chunk leaves behind).

The local outputs and s_n of all chunks come out of one batched matrix product (``step``), so
do the E_n terms (``readout``); only E_(n+1) = z^L E_n + s_n runs as a loop, T/L steps of
O(B C M) each (``carry``, scripted so that it exports as an ONNX Loop). Every tensor is real,
ONNX having no complex type: a state of M complex modes is a real [..., 2, M] tensor (real
parts, then imaginary parts; ``multiply`` multiplies it by z). The matrices depend on the
weights only: onnxruntime computes them once, when it loads the model.

Measured alternatives for the loop over chunks (onnxruntime, 1 thread, 60 s of audio, 1024
channels, M = 16, L = 16..32): a log-step doubling scan (all E_n in log2(T/L) vectorised steps)
was 1.8-3.4x slower, the E_n as one [T/L, T/L] matrix product per mode (quadratic) 14-38x.

A state [B, C, 2, M] can also be given at the start and is returned at the end
(``causal_scan``), so that a stream can be processed piece by piece with the result of one pass;
``chunk_step`` is the piece of exactly one chunk, what a streaming encoder runs (todm.streaming).

``scan_conv`` is the drop-in for ``fft_conv``: its backward direction (frames strictly in the
future, see ``fft_conv``) is the causal scan of the time-reversed input delayed by one frame.
"""

from typing import NamedTuple

import torch

# Frames per chunk. The matrix products cost L + 4M multiply-adds per frame and channel, the
# loop makes T/L steps, and the chunk matrices take 4 (L + 4M) L bytes per channel (5 MB per
# layer at the LibriSpeech preset: 1024 channels of both directions, M = 16). Measured on the
# whole encoder (bench/bench_onnx_encoder.py dimensions, 5 and 60 s of audio): 16 as fast as 32
# (within 5-9%) with half the memory; 8 is 1.2x slower at 60 s.
CHUNK = 16


class Modes(NamedTuple):
    """C channels of M discretised complex modes each, every field [C, M].

    z = exp(log_decay + i angle) is a mode's factor per frame (log_decay < 0: it decays),
    w_re + i w_im its complex output weight (input weight folded in).
    """

    log_decay: torch.Tensor
    angle: torch.Tensor
    w_re: torch.Tensor
    w_im: torch.Tensor


def concat_modes(a: Modes, b: Modes) -> Modes:
    """The channels of ``a`` followed by those of ``b``."""
    return Modes(*(torch.cat([x, y]) for x, y in zip(a, b)))


def powers(modes: Modes, exponents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z^k for every mode and exponent k: real and imaginary parts, [C, M, K] each."""
    k = exponents.to(modes.log_decay.dtype)
    magnitude = (modes.log_decay.unsqueeze(-1) * k).exp()
    phase = modes.angle.unsqueeze(-1) * k
    return magnitude * phase.cos(), magnitude * phase.sin()


def weight(modes: Modes, z_re: torch.Tensor, z_im: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """2 W z^k from z^k [C, M, K] (real and imaginary parts): a state z^k h adds Re(2 W z^k h)
    to y, the real part times Re h minus the imaginary part times Im h."""
    w_re, w_im = 2.0 * modes.w_re.unsqueeze(-1), 2.0 * modes.w_im.unsqueeze(-1)
    return w_re * z_re - w_im * z_im, w_re * z_im + w_im * z_re


def kernel(modes: Modes, length: int) -> torch.Tensor:
    """[C, length] convolution kernel K[l] = 2 Re sum_m W_m z_m^l (length may be a traced size)."""
    return weight(modes, *powers(modes, torch.arange(length, device=modes.angle.device)))[0].sum(1)


def chunk_operators(modes: Modes, chunk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The matrices of a chunk of L = ``chunk`` frames, all from one table of z^l, l = 0..L.

    Returns:
      step: [C, L, L + 2M]; the frames x [..., L] times step are [local y, s_re, s_im]: the
        Toeplitz part sum_{j <= i} K[i-j] x_j and what the chunk leaves behind, s = sum_j z^(L-1-j) x_j.
      readout: [C, 2M, L]; [E_re, E_im] times readout is what the entering state E adds to
        frame i, 2 Re sum_m W_m z_m^(i+1) E_m.
      a, b: [C, 2, M], the ``multiplier`` of z^L (a whole chunk's decay of the state).
    They depend on the weights only: in an exported graph onnxruntime computes them when it
    loads the model (constant folding), so they cost memory, not time. Computed per run instead
    they made an SSM layer 3-4x slower on short inputs; stored in the file, they would not shrink
    with int8 weights. onnxruntime holds every intermediate of the folding until it ends, so
    loading peaks above the resident memory (about 2x for the LibriSpeech preset's largest subnet).
    """
    lags = torch.arange(chunk + 1, device=modes.angle.device)
    z_re, z_im = powers(modes, lags)  # [C, M, L + 1]
    wz_re, wz_im = weight(modes, z_re, z_im)
    taps = wz_re[..., :chunk].sum(1)  # K[0..L-1]
    lag = lags[:chunk].unsqueeze(0) - lags[:chunk].unsqueeze(1)  # [j, i] -> i - j
    toeplitz = torch.where(lag >= 0, taps[:, lag.clamp(min=0)], 0.0)  # [C, L (from frame j), L (to frame i)]
    leave = torch.cat([z_re[..., :chunk], z_im[..., :chunk]], 1).flip(-1)  # z^(L-1-j): [C, 2M, L]
    step = torch.cat([toeplitz, leave.transpose(1, 2)], 2)
    readout = torch.cat([wz_re[..., 1:], -wz_im[..., 1:]], 1)
    return step, readout, *multiplier(z_re[..., chunk], z_im[..., chunk])


def multiplier(z_re: torch.Tensor, z_im: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) such that ``multiply(h, a, b)`` is z h, for z = z_re + i z_im [..., M].

    A complex vector h of M modes is stored as one real tensor [..., 2, M] (real parts, then
    imaginary parts); with z = c + i d, z (x + i y) = (c x - d y) + i (c y + d x), that is
    [c; c] * [x; y] + [-d; d] * [y; x], and [y; x] is h flipped along its re/im axis.
    """
    return torch.stack([z_re, z_re], -2), torch.stack([-z_im, z_im], -2)


def multiply(h: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """z h for a complex h [..., 2, M] and z's ``multiplier`` (a, b)."""
    return h * a + h.flip(-2) * b


@torch.jit.script
def carry(s: torch.Tensor, a: torch.Tensor, b: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The state entering each chunk, E <- z^L E + s_n, as a loop over chunks (an ONNX Loop).

    s: [N, B, C, 2, M], what each chunk leaves behind; (a, b): the ``multiplier`` of z^L; h:
    [B, C, 2, M], the state entering chunk 0. Returns the states entering chunks 0..N-1
    [N, B, C, 2, M] and the state after the last chunk [B, C, 2, M].
    """
    entering = []
    for n in range(s.size(0)):
        entering.append(h)
        h = multiply(h, a, b) + s[n]
    return torch.stack(entering), h


def initial_state_response(modes: Modes, state: torch.Tensor, offset: int, chunk: int) -> torch.Tensor:
    """What a state h [B, C, 2, M] entering at frame ``offset`` of a chunk adds to ``x @ step``.

    Returns [B, C, L + 2M]: 2 Re sum_m W_m z_m^(i+1-offset) h_m for frames i >= offset (earlier
    frames are padding: their exponent is clamped at 0 and their output dropped), then what h
    leaves behind at the chunk's end, z^(L-offset) h.
    """
    exponents = torch.arange(1, chunk + 1, device=state.device) - offset
    wz_re, wz_im = weight(modes, *powers(modes, exponents.clamp(min=0)))
    y = torch.einsum("bckm,ckml->bcl", state, torch.stack([wz_re, -wz_im], 1))
    z_re, z_im = (p.squeeze(-1) for p in powers(modes, exponents[-1:]))
    return torch.cat([y, multiply(state, *multiplier(z_re, z_im)).flatten(2)], -1)


def causal_scan(
    u: torch.Tensor, modes: Modes, state: torch.Tensor | None = None, chunk: int = CHUNK
) -> tuple[torch.Tensor, torch.Tensor]:
    """y[t] = sum_{s <= t} K[t-s] u[s] + 2 Re sum_m W_m z_m^(t+1) h_m and the state after frame T-1.

    u: [B, C, T], T >= 1; modes: C channels; state: [B, C, 2, M] (real parts, imaginary parts),
    the state h before frame 0 (None: zero). Returns y [B, C, T] and the final state. Run on
    consecutive pieces of a sequence, each starting from the state the previous one returned,
    it gives the result of one run over the whole.

    The input is padded at the front to whole chunks (zeros entering a zero state leave it
    zero, so the final state is exact); the initial state enters where the real frames begin.
    """
    batch, channels, length = u.shape
    if not torch.jit.is_tracing() and length == 0:
        raise ValueError(f"causal_scan needs at least one frame, got input of shape {list(u.shape)}")
    num_chunks = (length + chunk - 1) // chunk
    pad = num_chunks * chunk - length
    x = torch.cat([u.new_zeros(batch, channels, pad), u], -1).reshape(batch, channels, num_chunks, chunk)
    step, readout, a, b = (t.to(u.dtype) for t in chunk_operators(modes, chunk))
    local = torch.matmul(x, step)  # [B, C, N, L + 2M]: local outputs, then what each chunk leaves
    if state is not None:
        first = local[:, :, :1] + initial_state_response(modes, state, pad, chunk).to(u.dtype).unsqueeze(2)
        local = torch.cat([first, local[:, :, 1:]], 2)
    left = local[..., chunk:].reshape(batch, channels, num_chunks, 2, -1).permute(2, 0, 1, 3, 4)
    entering, final = carry(left, a, b, left.new_zeros(left.shape[1:]))  # the loop runs over chunks
    entering = entering.permute(1, 2, 0, 3, 4).reshape(batch, channels, num_chunks, -1)
    y = local[..., :chunk] + torch.matmul(entering, readout)
    return y.reshape(batch, channels, num_chunks * chunk)[..., pad:], final


def chunk_step(u: torch.Tensor, modes: Modes, state: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``causal_scan`` of exactly one chunk: u [B, C, chunk] after the state h [B, C, 2, M] ->
    (y [B, C, chunk], the state after it). What a stream computes per chunk.

    y = x @ Toeplitz + [h_re, h_im] @ readout and the state z^L h + s: two matrix products and a
    multiply, with no loop and no size read from the input, so that in a graph exported for a
    fixed ``chunk`` every matrix is folded when the model loads (``causal_scan`` places the
    state by the input's length at run time, which a streaming encoder paid for on every call).
    """
    if not torch.jit.is_tracing() and u.size(-1) != chunk:
        raise ValueError(f"chunk_step needs exactly {chunk} frames, got input of shape {list(u.shape)}")
    step, readout, a, b = (t.to(u.dtype) for t in chunk_operators(modes, chunk))
    local = torch.matmul(u.unsqueeze(2), step).squeeze(2)  # [B, C, L + 2M]: local outputs, what the chunk leaves
    y = local[..., :chunk] + torch.matmul(state.flatten(2).unsqueeze(2), readout).squeeze(2)
    return y, multiply(state, a, b) + local[..., chunk:].unflatten(-1, (2, -1))


def scan_conv(u: torch.Tensor, fwd: Modes, bwd: Modes | None, chunk: int = CHUNK) -> torch.Tensor:
    """What ``fft_conv`` computes with the kernels of ``fwd`` and ``bwd`` (None: causal), by scan.

    u: [B, C, T] -> [B, C, T]. The backward part, sum_{s > t} K_b[s-t-1] u[s], is in reversed
    time t' = T-1-t a causal convolution of the reversed input delayed by one frame; both
    directions run as one scan over 2C channels.
    """
    if bwd is None:
        return causal_scan(u, fwd, chunk=chunk)[0]
    batch, channels, _ = u.shape
    future = torch.cat([u.new_zeros(batch, channels, 1), u.flip(-1)[..., :-1]], -1)  # u[t+1] at t' = T-1-t
    y, _ = causal_scan(torch.cat([u, future], 1), concat_modes(fwd, bwd), chunk=chunk)
    return y[:, :channels] + y[:, channels:].flip(-1)
