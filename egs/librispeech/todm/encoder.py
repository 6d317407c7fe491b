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
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from todm.dropout import dropout as apply_dropout
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
    """A stack of ``num_layers`` Stateformer blocks; a subnet runs the first L of them."""

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
    ) -> None:
        super().__init__()
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
        for layer in self.layers[:depth]:
            x = layer(x, pad_mask, ffn_dim, num_heads, dropout, fft)
        return self.norm_out(x)

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
        ``chunk``: see ``MultiHeadSSM.streaming_forward``.
        """
        if not 1 <= len(states) <= len(self.layers):
            raise ValueError(f"need one state per block, 1..{len(self.layers)}, got {len(states)}")
        new_states = []
        for layer, state in zip(self.layers, states):
            x, state = layer.streaming_forward(x, state, ffn_dim, num_heads, chunk)
            new_states.append(state)
        return self.norm_out(x), new_states
