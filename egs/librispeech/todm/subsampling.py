"""Convolutional front end: 80-dim fbank at 10 ms -> encoder frames at 40 ms (icefall-style).

Three 3x3 convolutions over (time, frequency), ReLU after each, then a linear layer to the
encoder dimension:

    conv1: stride 1,  no time padding, frequency padded by 1   T1 = T - 2
    conv2: stride 2,  no padding                              T2 = (T1 - 3) // 2 + 1
    conv3: stride 2,  no padding                              T3 = (T2 - 3) // 2 + 1

which gives T' = ((T - 7) // 2 + 1) // 2, the length rule of icefall's transducer recipes
(``remove_short_and_long_utt`` and sherpa-onnx assume it).

Padding: output frame j reads input frames 4j .. 4j+8 only (no time padding anywhere), and
the last valid output of an utterance of length T, j = T' - 1, reads up to frame 4T' + 4 <= T - 1.
So valid outputs never see padded input frames and no mask is needed here; the padded outputs
are masked later, before each sequence-mixing (SSM) layer.
"""

import torch
import torch.nn as nn

MIN_INPUT_FRAMES = 9  # the smallest T with T' >= 1


def subsampled_lengths(x_lens: torch.Tensor | int) -> torch.Tensor | int:
    """Number of encoder frames for utterances of ``x_lens`` fbank frames (a tensor or an int)."""
    return ((x_lens - 7) // 2 + 1) // 2


def frequency_sizes(in_dim: int) -> tuple[int, int, int]:
    """Frequency bins after each of the three convolutions (conv1 keeps them: padded by 1)."""
    f2 = (in_dim - 3) // 2 + 1
    return in_dim, f2, (f2 - 3) // 2 + 1


class Conv2dSubsampling(nn.Module):
    """[B, T, in_dim] fbank -> [B, T', out_dim] encoder input, T' = ((T-7)//2 + 1)//2."""

    def __init__(self, in_dim: int = 80, out_dim: int = 144, channels: tuple[int, int, int] = (8, 32, 64)) -> None:
        super().__init__()
        if in_dim < 7:
            raise ValueError(f"feature_dim must be >= 7 for the conv subsampling, got {in_dim}")
        c1, c2, c3 = channels
        self.in_dim = in_dim
        self.conv = nn.Sequential(
            nn.Conv2d(1, c1, kernel_size=3, stride=1, padding=(0, 1)),
            nn.ReLU(),
            nn.Conv2d(c1, c2, kernel_size=3, stride=2),
            nn.ReLU(),
            nn.Conv2d(c2, c3, kernel_size=3, stride=2),
            nn.ReLU(),
        )
        self.out = nn.Linear(c3 * frequency_sizes(in_dim)[2], out_dim)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [B, T, in_dim] float, x_lens: [B] int64 -> ([B, T', out_dim], [B] int64)."""
        if not torch.jit.is_tracing():
            if x.dim() != 3 or x.size(2) != self.in_dim:
                raise ValueError(f"features must be [batch, frames, {self.in_dim}], got {list(x.shape)}")
            if x.size(1) < MIN_INPUT_FRAMES:
                raise ValueError(f"need at least {MIN_INPUT_FRAMES} frames for 4x subsampling, got {x.size(1)}")
        x = self.conv(x.unsqueeze(1))  # [B, c3, T', F']
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))
        return x, subsampled_lengths(x_lens)
