"""Multi-head state-space (MH-SSM) sequence-mixing layer with S4D-style diagonal heads.

What is known: MH-SSM (Fathullah et al., Interspeech 2023) replaces multi-head attention by
parallel SSM heads "taught to learn local and global temporal dynamics", with "special gating
mechanisms". Its equations are NOT public (paper body unavailable offline), so everything
below is our reconstruction, built on the verified S4D block (state-spaces/s4, s4d.py):

1. ``in_proj`` (D -> H*P) gives each of the H heads P channels.
2. Each channel is a diagonal SSM with N/2 complex modes (S4D-Lin init: A = -0.5 + i*pi*n,
   C complex normal, skip D), ZOH-discretised with its own step dt, as a convolution kernel
   K[l] = 2 Re sum_n C_n (exp(dt A_n) - 1) / A_n * exp(dt A_n l).
   Time scales per head: the range [dt_min, dt_max] is split into H log-uniform bands and
   head h draws its log dt from band h, head 0 taking the largest dt (fastest decay: local
   dynamics) and the last head the smallest dt (slowest decay: global dynamics). With the
   default dt in [1e-3, 1] and A_real = -0.5 the memory at 40 ms frames ranges from about 2
   frames (head 0) to 2000 frames. S4D's default dt_max = 0.1 would start no head local.
   Subnets keep the first heads, so a small subnet sees the shorter horizons first.
3. Bidirectional (default): a forward kernel over past and current frames and a backward
   kernel over strictly future frames; the two directions share A and dt and have their own
   C (as S4's bidirectional kernel). Causal: the forward kernel only, never a future frame.
4. GELU, then inter-head gating: every channel is multiplied by a sigmoid gate computed from
   a linear mix of all active heads' outputs (so local heads modulate global ones and the
   reverse). A fixed "head i gates head j" pairing would break odd head counts in the search
   space; the mixing gate slices to any head prefix.
5. Dropout, then ``out_proj`` (H*P -> D).

Padding: padded frames are zeroed right before the convolution, the only op that mixes time,
so they never change a valid frame (the backward kernel would read them otherwise).

Two exact ways to run the convolution (``fft`` argument):
- FFT (training): O(T log T) via rfft/irfft of length 2T (no circular wrap-around).
- scan (ONNX export, inference): ``todm.ssm_scan``, the same function as a diagonal linear
  recurrence over chunks of frames, linear in T. torch.fft does not export to ONNX.
Both start from the discretised modes of ``s4d_modes`` (the kernel is a function of them).
Everything is real arithmetic (ONNX has no complex tensors).

Elastic width: ``forward(num_heads=h)`` uses the first h heads: rows [:h*P] of in_proj, the
first h heads' SSM parameters, the [:h*P, :h*P] block of gate_proj and columns [:h*P] of
out_proj. A model built with h heads and those slices computes the same function.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from todm.dropout import dropout as apply_dropout
from todm.ssm_scan import Modes, causal_scan, chunk_step, kernel, scan_conv


# Parameters that are log time steps, decay rates and frequencies rather than weights. As in
# S4, the optimizer must not treat them like weight matrices: ScaledAdam's RMS-relative steps
# and its RMS ceiling (3.0) shrink a_imag (0..7*pi) and log_dt (down to log 1e-3) as a whole,
# which flattens every kernel (seen in training). ``optimizer_setup`` gives them plain Adam.
DYNAMICS_PARAMETERS = ("log_dt", "log_a_real", "a_imag")


def is_dynamics_parameter(name: str) -> bool:
    """Whether ``model.named_parameters()`` name ``name`` is an SSM dynamics parameter."""
    return name.rsplit(".", 1)[-1] in DYNAMICS_PARAMETERS


def s4d_modes(log_dt: torch.Tensor, log_a_real: torch.Tensor, a_imag: torch.Tensor, c: torch.Tensor) -> Modes:
    """ZOH-discretised modes of C diagonal SSM channels with M complex modes each.

    Args:
      log_dt: [C] log step sizes.
      log_a_real: [C, M]; A = -exp(log_a_real) + i * a_imag.
      a_imag: [C, M].
      c: [C, M, 2] output weights (real, imaginary), the input weight B folded in as in S4D.
    Returns:
      z = exp(dt A) as (log_decay, angle) = (dt Re A, dt Im A), and W = C (exp(dt A) - 1) / A,
      so that the kernel is K[l] = 2 Re sum_m W_m z_m^l (``todm.ssm_scan.kernel``).
    """
    dt = log_dt.exp().unsqueeze(-1)  # [C, 1]
    a_re = -log_a_real.exp()  # [C, M], negative: decaying modes
    dta_re, dta_im = dt * a_re, dt * a_imag
    # (exp(dt A) - 1) / A, written out in real and imaginary parts.
    decay = dta_re.exp()
    num_re, num_im = decay * dta_im.cos() - 1.0, decay * dta_im.sin()
    norm = a_re * a_re + a_imag * a_imag
    q_re = (num_re * a_re + num_im * a_imag) / norm
    q_im = (num_im * a_re - num_re * a_imag) / norm
    return Modes(dta_re, dta_im, c[..., 0] * q_re - c[..., 1] * q_im, c[..., 0] * q_im + c[..., 1] * q_re)


def fft_conv(u: torch.Tensor, k_fwd: torch.Tensor, k_bwd: torch.Tensor | None) -> torch.Tensor:
    """y[t] = sum_{s<=t} k_fwd[t-s] u[s] + sum_{s>t} k_bwd[s-t-1] u[s], via FFT.

    u: [B, C, T]; k_fwd, k_bwd: [C, T] (k_bwd None = causal). Returns [B, C, T]. Computed in
    float32 (torch.fft has no bfloat16) and cast back to u's dtype.
    """
    length = u.size(-1)
    k = k_fwd.float()
    if k_bwd is not None:
        # Circular layout of length 2T: lag 0..T-1 at 0..T-1, lag -j at 2T-j.
        k = torch.cat([k, k.new_zeros(k.size(0), 1), k_bwd[:, : length - 1].float().flip(-1)], dim=-1)
    n = 2 * length
    y = torch.fft.irfft(torch.fft.rfft(u.float(), n=n) * torch.fft.rfft(k, n=n), n=n)[..., :length]
    return y.to(u.dtype)


class MultiHeadSSM(nn.Module):
    """Multi-head SSM layer: [B, T, dim] -> [B, T, dim], elastic in the number of heads.

    Args:
      dim: model dimension D.
      num_heads: heads H of the full layer.
      head_dim: channels P per head.
      state_dim: SSM state size N per channel (N/2 complex modes); must be even.
      dt_min, dt_max: range of the initial step sizes, split into H bands (see module doc).
      causal: use only past and current frames.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        head_dim: int,
        state_dim: int = 16,
        dt_min: float = 1e-3,
        dt_max: float = 1.0,
        causal: bool = False,
    ) -> None:
        super().__init__()
        if state_dim < 2 or state_dim % 2:
            raise ValueError(f"state_dim must be an even number >= 2, got {state_dim}")
        if not 0 < dt_min < dt_max:
            raise ValueError(f"need 0 < dt_min < dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        self.num_heads, self.head_dim, self.causal = num_heads, head_dim, causal
        width, modes = num_heads * head_dim, state_dim // 2
        self.in_proj = nn.Linear(dim, width)
        self.gate_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, dim)

        bands = torch.linspace(math.log(dt_max), math.log(dt_min), num_heads + 1)
        fraction = torch.rand(num_heads, head_dim)
        self.log_dt = nn.Parameter(bands[:-1, None] + fraction * (bands[1:, None] - bands[:-1, None]))
        self.log_a_real = nn.Parameter(torch.full((num_heads, head_dim, modes), math.log(0.5)))
        self.a_imag = nn.Parameter(math.pi * torch.arange(modes).float().expand(num_heads, head_dim, modes).clone())
        # Complex normal C (variance 1/2 per part) per direction, as S4D's torch.randn(cfloat).
        self.c_fwd = nn.Parameter(torch.randn(num_heads, head_dim, modes, 2) * math.sqrt(0.5))
        self.c_bwd = None if causal else nn.Parameter(torch.randn(num_heads, head_dim, modes, 2) * math.sqrt(0.5))
        self.skip = nn.Parameter(torch.randn(num_heads, head_dim))

    def modes(self, num_heads: int) -> tuple[Modes, Modes | None]:
        """Forward and backward modes of the h*P channels of the first ``num_heads`` heads."""
        width = num_heads * self.head_dim
        shared = (
            self.log_dt[:num_heads].reshape(width),
            self.log_a_real[:num_heads].reshape(width, -1),
            self.a_imag[:num_heads].reshape(width, -1),
        )
        fwd = s4d_modes(*shared, self.c_fwd[:num_heads].reshape(width, -1, 2))
        if self.c_bwd is None:
            return fwd, None
        return fwd, s4d_modes(*shared, self.c_bwd[:num_heads].reshape(width, -1, 2))

    def kernels(self, num_heads: int, length: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Forward and backward kernels [h*P, length] of the first ``num_heads`` heads."""
        fwd, bwd = self.modes(num_heads)
        return kernel(fwd, length), None if bwd is None else kernel(bwd, length)

    def forward(
        self,
        x: torch.Tensor,
        pad_mask: torch.Tensor,
        num_heads: int | None = None,
        dropout: float = 0.0,
        fft: bool = True,
    ) -> torch.Tensor:
        """x: [B, T, dim]; pad_mask: [B, T] bool, True at padded frames -> [B, T, dim].

        ``num_heads`` (None = all) selects a head prefix; ``dropout`` is applied to the gated
        SSM output (in training mode); ``fft`` picks the FFT or the scan convolution.
        """
        h = self.num_heads if num_heads is None else num_heads
        if not 1 <= h <= self.num_heads:
            raise ValueError(f"num_heads must be in 1..{self.num_heads}, got {h}")
        width = h * self.head_dim
        u = F.linear(x, self.in_proj.weight[:width], self.in_proj.bias[:width])
        u = u.masked_fill(pad_mask.unsqueeze(-1), 0.0).transpose(1, 2)  # [B, W, T]
        y = fft_conv(u, *self.kernels(h, u.size(-1))) if fft else scan_conv(u, *self.modes(h))
        return self._output(u, y, h, dropout)

    def _output(self, u: torch.Tensor, y: torch.Tensor, num_heads: int, dropout: float) -> torch.Tensor:
        """Steps 4-5 of the module doc on the convolution's input u and output y [B, W, T]:
        skip, GELU, inter-head gate, dropout, out_proj -> [B, T, dim]. Frame by frame: no time mixing."""
        width = num_heads * self.head_dim
        y = y + self.skip[:num_heads].reshape(width, 1).to(u.dtype) * u
        y = F.gelu(y).transpose(1, 2)  # [B, T, W]
        gate = torch.sigmoid(F.linear(y, self.gate_proj.weight[:width, :width], self.gate_proj.bias[:width]))
        y = apply_dropout(y * gate, dropout, self.training)
        return F.linear(y, self.out_proj.weight[:, :width], self.out_proj.bias)

    def streaming_forward(
        self, x: torch.Tensor, state: torch.Tensor, num_heads: int | None = None, chunk: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The next T frames of a stream: x [B, T, dim] (every frame valid), state [B, h*P, 2, M]
        -> (y [B, T, dim], the state after them). Causal layers only (eval mode: no dropout).

        The state is ``todm.ssm_scan.causal_scan``'s: each channel's M complex modes after the
        last frame seen (real parts, imaginary parts), zeros before the first. Fed piece by
        piece from the state each call returns, a stream gets what ``forward`` gives on the
        whole: the convolution is the only op that mixes time, and the state carries all of
        its past. ``chunk``: None for pieces of any length (``causal_scan``); an int when every
        piece is exactly that many frames (``chunk_step``: what the streaming export runs).
        """
        if self.c_bwd is not None:
            raise ValueError("a bidirectional MH-SSM reads future frames and cannot stream: train with --causal true")
        h = self.num_heads if num_heads is None else num_heads
        width = h * self.head_dim
        u = F.linear(x, self.in_proj.weight[:width], self.in_proj.bias[:width]).transpose(1, 2)  # [B, W, T]
        modes = self.modes(h)[0]
        y, state = causal_scan(u, modes, state) if chunk is None else chunk_step(u, modes, state, chunk)
        return self._output(u, y, h, 0.0), state
