"""Blocks at a lower frame rate: zipformer's idea for an MH-SSM stack.

Zipformer (icefall) runs its middle stacks at 1/2 to 1/8 of the encoder's frame rate: they see
coarser units (syllables rather than phones) and cost less per second of audio. The encoder
(``todm.encoder``) does the same with a downsampling factor per block: a run of consecutive
blocks with factor f > 1 gets the residual stream averaged over groups of f frames, and what
those blocks add to it comes back repeated f times, as a residual around the whole run:

    xd = downsample(x, f)          # [B, ceil(T/f), D], the mean of each group's valid frames
    y  = blocks(xd)                # at 1/f of the frame rate (f x 40 ms)
    x  = x + upsample(y - xd, f)   # back at the full rate

so a run starts as the identity, like every block (``todm.encoder``'s near-identity start).

Padding: the mean counts only valid frames, so a batch gives each utterance what it alone
would get. Streaming: a chunk must hold a whole number of groups (``Encoder.streaming_forward``
checks it); the frame-by-frame causal contract holds up to the group: each frame of a group
sees the group's last frame, a look-ahead of at most f - 1 frames inside the chunk.
"""

import torch
import torch.nn.functional as F

__all__ = ["downsample", "downsampled_lengths", "upsample", "validate_factors"]


def validate_factors(factors: tuple[int, ...], num_layers: int) -> tuple[int, ...]:
    """The per-block factors of an encoder of ``num_layers`` blocks (() = all 1); a clear error otherwise."""
    factors = tuple(factors) or (1,) * num_layers
    if len(factors) != num_layers:
        raise ValueError(f"downsampling factors (--downsampling-factor) need one per encoder block ({num_layers}), "
                         f"got {len(factors)}: {','.join(map(str, factors))}")
    if any(isinstance(f, bool) or not isinstance(f, int) or f < 1 for f in factors):
        raise ValueError(f"downsampling factors must be positive integers, got {factors}")
    return factors


def downsampled_lengths(lengths: torch.Tensor, factor: int) -> torch.Tensor:
    """Frames after downsampling [B] lengths by ``factor``: a partial last group still counts."""
    return (lengths + factor - 1) // factor


def downsample(x: torch.Tensor, pad_mask: torch.Tensor, factor: int) -> torch.Tensor:
    """x [B, T, D], pad_mask [B, T] (True = padding) -> [B, ceil(T/factor), D]: each group of
    ``factor`` frames averaged over its valid frames (0 where a group has none)."""
    valid = (~pad_mask).unsqueeze(1).to(x.dtype)  # [B, 1, T]
    # avg_pool's divisor is the same for both, so their ratio is the mean over valid frames.
    total = F.avg_pool1d(x.transpose(1, 2) * valid, factor, factor, ceil_mode=True)
    count = F.avg_pool1d(valid, factor, factor, ceil_mode=True)
    return (total / count.clamp_min(1e-4)).transpose(1, 2)


def upsample(y: torch.Tensor, factor: int, length: int) -> torch.Tensor:
    """y [B, T', D] -> [B, length, D], every frame repeated ``factor`` times (length <= T' * factor)."""
    b, t, d = y.shape
    return y.unsqueeze(2).expand(b, t, factor, d).reshape(b, t * factor, d)[:, :length]
