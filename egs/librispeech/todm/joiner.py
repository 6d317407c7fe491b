"""RNN-T joiner: logits = output_linear(tanh(encoder_proj(e) + decoder_proj(d))) (icefall)."""

import torch
import torch.nn as nn


class Joiner(nn.Module):
    def __init__(self, encoder_dim: int, decoder_dim: int, joiner_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.encoder_proj = nn.Linear(encoder_dim, joiner_dim)
        self.decoder_proj = nn.Linear(decoder_dim, joiner_dim)
        self.output_linear = nn.Linear(joiner_dim, vocab_size)

    def forward(
        self, encoder_out: torch.Tensor, decoder_out: torch.Tensor, project_input: bool = True
    ) -> torch.Tensor:
        """encoder_out [..., encoder_dim], decoder_out [..., decoder_dim] (broadcastable, same
        number of dims) -> unnormalised logits [..., vocab_size].

        project_input=False: the inputs are already projected to joiner_dim (the pruned loss
        and the decoders project once, before expanding over the lattice).
        """
        if encoder_out.dim() != decoder_out.dim():
            raise ValueError(
                f"encoder_out and decoder_out need the same number of dims, got "
                f"{list(encoder_out.shape)} and {list(decoder_out.shape)}"
            )
        if project_input:
            encoder_out, decoder_out = self.encoder_proj(encoder_out), self.decoder_proj(decoder_out)
        return self.output_linear(torch.tanh(encoder_out + decoder_out))
