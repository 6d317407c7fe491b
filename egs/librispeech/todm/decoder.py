"""Stateless prediction network (icefall's ``decoder.py`` convention, sherpa-onnx compatible).

The "state" is just the last ``context_size`` tokens: an embedding, then (context_size > 1) a
grouped Conv1d over those tokens (kernel = context_size, groups = decoder_dim // 4, no bias),
then ReLU. Token id -1 (the start-of-decoding context, ``[-1] * (context_size - 1) + [blank]``
in icefall and sherpa-onnx) maps to a zero embedding.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class Decoder(nn.Module):
    def __init__(self, vocab_size: int, decoder_dim: int, blank_id: int = 0, context_size: int = 2) -> None:
        super().__init__()
        if context_size < 1:
            raise ValueError(f"context_size must be >= 1, got {context_size}")
        if decoder_dim % 4:
            raise ValueError(f"decoder_dim must be a multiple of 4 (conv groups of 4), got {decoder_dim}")
        self.vocab_size, self.blank_id, self.context_size = vocab_size, blank_id, context_size
        self.embedding = nn.Embedding(vocab_size, decoder_dim)
        self.conv = (
            nn.Conv1d(decoder_dim, decoder_dim, kernel_size=context_size, groups=decoder_dim // 4, bias=False)
            if context_size > 1
            else None
        )

    def forward(self, y: torch.Tensor, need_pad: bool = True) -> torch.Tensor:
        """y: [B, U] int64 token ids (-1 allowed) -> [B, U, decoder_dim].

        need_pad=True (training): left-pad with context_size - 1 zero embeddings, so output u
        sees tokens u-context_size+1 .. u. need_pad=False (decoding): y holds exactly
        context_size tokens per row and the output has U = 1.
        """
        if not torch.jit.is_tracing() and not need_pad and y.size(1) != self.context_size:
            raise ValueError(f"need_pad=False expects {self.context_size} tokens per row, got {y.size(1)}")
        emb = self.embedding(y.clamp(min=0)) * (y >= 0).unsqueeze(-1).to(self.embedding.weight.dtype)
        if self.conv is not None:
            emb = emb.permute(0, 2, 1)  # [B, dim, U]
            if need_pad:
                emb = F.pad(emb, (self.context_size - 1, 0))
            emb = self.conv(emb).permute(0, 2, 1)
        return F.relu(emb)
