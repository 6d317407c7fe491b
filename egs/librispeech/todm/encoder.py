"""Stateformer-like encoder: a stack of pre-norm macaron blocks around an MH-SSM layer, elastic
in depth, feed-forward width and SSM heads.

The MH-SSM paper says only that Stateformer "augments the transformer block with MH-SSM
layers"; the block order is not public. Ours is the Conformer macaron layout with the MH-SSM
in place of attention + convolution (attention-free: O(T log T) in training via the FFT
convolution), with the LayerNorms in front of each module (pre-norm) and one LayerNorm after
the last block:

    x = x + 1/2 * Dropout(FFN1(LN(x)))
    x = x + Dropout(MHSSM(LN(x)))
    x = x + 1/2 * Dropout(FFN2(LN(x)))
    ...                                    (every kept block)
    out = LN(x)

Why pre-norm: with Conformer's post-norm (a LayerNorm closing every block) the deeper models
learned *slower* per step than shallow ones (6 blocks: 98% test WER after 383 steps where 2
blocks were at 84%). In a pre-norm stack the residual path runs straight from the front end
to the output, and each block starts near the identity (its output projections are
initialised at 1/10 of the default scale), so a deep stack starts as a shallow one and grows
into its depth: 6 blocks reached 79% after 383 steps and 54% after 1148 (post-norm: 62%);
``bench/bench_convergence.py`` measures it.

Dropout sites, all at the rate passed to ``forward`` (the trainer sets it per sampled subnet
for adaptive dropout): the FFN hidden activation, the gated SSM output before its output
projection, and each module's output before it joins the residual stream.

The final LayerNorm is shared by every depth: a subnet of L blocks applies it after its L-th
block, so whatever L is, the joiner gets features on a common scale.

Frame rate: each block has a downsampling factor (``downsampling_factors``, all 1 by default);
a run of blocks with a factor f > 1 works at 1/f of the frame rate, with a residual around the
run (``todm.frame_rate``). Factors belong to blocks, so a subnet of L blocks keeps those of its
first L blocks.
"""
from itertools import groupby

import torch
import torch.nn as nn
import torch.nn.functional as F

from todm.dropout import dropout as apply_dropout
from todm.frame_rate import downsample, downsampled_lengths, upsample, validate_factors
from todm.mh_ssm import MultiHeadSSM

# Output projections of every module start at this fraction of PyTorch's default init.
OUTPUT_INIT_SCALE = 0.1


def make_pad_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B] lengths -> [B, max_len] bool, True at padded positions."""
    return torch.arange(max_len, device=lengths.device).unsqueeze(0) >= lengths.unsqueeze(1)


class FeedForward(nn.Module):
    """Linear -> SiLU -> Dropout -> Linear, elastic in the hidden size (a prefix of it)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.in_proj = nn.Linear(dim, hidden_dim)
        self.out_proj = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor, hidden_dim: int | None = None, dropout: float = 0.0) -> torch.Tensor:
        """x: [..., dim] -> [..., dim], using the first ``hidden_dim`` hidden units (None = all)."""
        h = self.hidden_dim if hidden_dim is None else hidden_dim
        if not 1 <= h <= self.hidden_dim:
            raise ValueError(f"ffn_dim must be in 1..{self.hidden_dim}, got {h}")
        x = F.silu(F.linear(x, self.in_proj.weight[:h], self.in_proj.bias[:h]))
        x = apply_dropout(x, dropout, self.training)
        return F.linear(x, self.out_proj.weight[:, :h], self.out_proj.bias)


class StateformerBlock(nn.Module):
    """One encoder block (see the module doc): [B, T, dim] -> [B, T, dim]."""

    def __init__(
        self,
        dim: int,
        ffn_dim: int,
        num_heads: int,
        head_dim: int,
        state_dim: int,
        dt_min: float,
        dt_max: float,
        causal: bool,
    ) -> None:
        super().__init__()
        self.norm_ffn1, self.ffn1 = nn.LayerNorm(dim), FeedForward(dim, ffn_dim)
        self.norm_ssm = nn.LayerNorm(dim)
        self.ssm = MultiHeadSSM(dim, num_heads, head_dim, state_dim, dt_min, dt_max, causal)
        self.norm_ffn2, self.ffn2 = nn.LayerNorm(dim), FeedForward(dim, ffn_dim)
        with torch.no_grad():  # start near the identity (see the module doc)
            for proj in (self.ffn1.out_proj, self.ssm.out_proj, self.ffn2.out_proj):
                proj.weight.mul_(OUTPUT_INIT_SCALE)
                proj.bias.mul_(OUTPUT_INIT_SCALE)

    def forward(
        self,
        x: torch.Tensor,
        pad_mask: torch.Tensor,
        ffn_dim: int | None = None,
        num_heads: int | None = None,
        dropout: float = 0.0,
        fft: bool = True,
    ) -> torch.Tensor:
        def residual(y: torch.Tensor) -> torch.Tensor:
            return apply_dropout(y, dropout, self.training)

        x = x + 0.5 * residual(self.ffn1(self.norm_ffn1(x), ffn_dim, dropout))
        x = x + residual(self.ssm(self.norm_ssm(x), pad_mask, num_heads, dropout, fft))
        return x + 0.5 * residual(self.ffn2(self.norm_ffn2(x), ffn_dim, dropout))

    def streaming_forward(
        self, x: torch.Tensor, state: torch.Tensor, ffn_dim: int | None = None, num_heads: int | None = None,
        chunk: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The next frames of a stream through the block: only the MH-SSM mixes time, so its
        scan state [B, C, 2, M] is the block's whole state (``MultiHeadSSM.streaming_forward``)."""
        x = x + 0.5 * self.ffn1(self.norm_ffn1(x), ffn_dim)
        y, state = self.ssm.streaming_forward(self.norm_ssm(x), state, num_heads, chunk)
        x = x + y
        return x + 0.5 * self.ffn2(self.norm_ffn2(x), ffn_dim), state


class Encoder(nn.Module):
    """A stack of ``num_layers`` Stateformer blocks; a subnet runs the first L of them.
    ``downsampling_factors``: one per block (() = all 1), see the module doc."""

    def __init__(
        self,
        num_layers: int,
        dim: int,
        ffn_dim: int,
        num_heads: int,
        head_dim: int,
        state_dim: int = 16,
        dt_min: float = 1e-3,
        dt_max: float = 1.0,
        causal: bool = False,
        downsampling_factors: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        self.factors = validate_factors(downsampling_factors, num_layers)
        self.layers = nn.ModuleList(
            StateformerBlock(dim, ffn_dim, num_heads, head_dim, state_dim, dt_min, dt_max, causal)
            for _ in range(num_layers)
        )
        self.norm_out = nn.LayerNorm(dim)

    def forward(
        self,
        x: torch.Tensor,
        x_lens: torch.Tensor,
        num_layers: int | None = None,
        ffn_dim: int | None = None,
        num_heads: int | None = None,
        dropout: float = 0.0,
        fft: bool = True,
    ) -> torch.Tensor:
        """x: [B, T, dim], x_lens: [B] -> [B, T, dim]; frames at t >= x_lens[b] are padding.

        ``num_layers``/``ffn_dim``/``num_heads`` (None = all) select the subnet.
        """
        depth = len(self.layers) if num_layers is None else num_layers
        if not 1 <= depth <= len(self.layers):
            raise ValueError(f"num_layers must be in 1..{len(self.layers)}, got {depth}")
        pad_mask = make_pad_mask(x_lens, x.size(1))
        for factor, layers in self._runs(depth):
            if factor == 1:
                for layer in layers:
                    x = layer(x, pad_mask, ffn_dim, num_heads, dropout, fft)
                continue
            xd = downsample(x, pad_mask, factor)
            mask_d = make_pad_mask(downsampled_lengths(x_lens, factor), xd.size(1))
            y = xd
            for layer in layers:
                y = layer(y, mask_d, ffn_dim, num_heads, dropout, fft)
            x = x + upsample(y - xd, factor, x.size(1))
        return self.norm_out(x)

    def _runs(self, depth: int) -> list[tuple[int, list[StateformerBlock]]]:
        """The first ``depth`` blocks as (factor, consecutive blocks of that factor) runs."""
        blocks = zip(self.factors[:depth], self.layers[:depth])
        return [(f, [layer for _, layer in run]) for f, run in groupby(blocks, key=lambda fl: fl[0])]

    def streaming_forward(
        self,
        x: torch.Tensor,
        states: list[torch.Tensor],
        ffn_dim: int | None = None,
        num_heads: int | None = None,
        chunk: int | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The next T frames of a stream, x [B, T, dim] (no padding), through the first
        len(states) blocks: states[i] [B, C, 2, M] is block i's scan state (zeros at the start,
        ``todm.streaming``). Returns ([B, T, dim], the states after these frames). Run piece by
        piece on a causal encoder it gives ``forward`` over the whole stream, frame for frame.
        ``chunk``: see ``MultiHeadSSM.streaming_forward``. Blocks at a lower frame rate need
        pieces of a whole number of their groups.
        """
        if not 1 <= len(states) <= len(self.layers):
            raise ValueError(f"need one state per block, 1..{len(self.layers)}, got {len(states)}")
        new_states = []
        remaining = iter(states)
        for factor, layers in self._runs(len(states)):
            if not torch.onnx.is_in_onnx_export() and x.size(1) % factor:  # an export checks its chunk before
                raise ValueError(f"pieces of {x.size(1)} frames: blocks at 1/{factor} of the frame rate stream "
                                 f"only whole groups of {factor} frames")
            y = x if factor == 1 else x.unflatten(1, (-1, factor)).mean(2)
            y_in = y
            for layer in layers:
                y, state = layer.streaming_forward(y, next(remaining), ffn_dim, num_heads,
                                                   None if chunk is None else chunk // factor)
                new_states.append(state)
            x = y if factor == 1 else x + upsample(y - y_in, factor, x.size(1))
        return self.norm_out(x), new_states
