"""The TODM supernet transducer: construction and subnet extraction.

``build_model(config)`` builds the largest subnet of ``config.search_space`` (a
``TransducerConfig``, model_config.py); every other subnet runs on prefix slices of its weights
via ``forward_encoder(..., spec=...)``, and ``extract(spec)`` copies those slices into a
standalone, physically smaller ``Transducer`` whose config holds exactly that spec. Only the
encoder is elastic; decoder, joiner and the simple projections (used by the pruned RNN-T loss)
are shared by all subnets.
"""

import dataclasses

import torch
import torch.nn as nn

from todm.decoder import Decoder
from todm.encoder import Encoder
from todm.joiner import Joiner
from todm.model_config import TransducerConfig
from todm.subnet import SearchSpace, SubnetSpec
from todm.subsampling import Conv2dSubsampling

__all__ = ["Transducer", "TransducerConfig", "build_model"]


class Transducer(nn.Module):
    """RNN-T with an elastic MH-SSM encoder (the supernet, or an extracted subnet)."""

    def __init__(self, config: TransducerConfig) -> None:
        super().__init__()
        self.config = config
        largest = config.search_space.largest()
        self.encoder_embed = Conv2dSubsampling(config.feature_dim, config.encoder_dim, config.subsampling_channels)
        self.encoder = Encoder(
            num_layers=largest.num_layers,
            dim=config.encoder_dim,
            ffn_dim=largest.ffn_dim,
            num_heads=largest.num_heads,
            head_dim=config.head_dim,
            state_dim=config.state_dim,
            dt_min=config.ssm_dt_min,
            dt_max=config.ssm_dt_max,
            causal=config.causal,
            downsampling_factors=config.downsampling_factors,
        )
        self.decoder = Decoder(config.vocab_size, config.decoder_dim, config.blank_id, config.context_size)
        self.joiner = Joiner(config.encoder_dim, config.decoder_dim, config.joiner_dim, config.vocab_size)
        self.simple_am_proj = nn.Linear(config.encoder_dim, config.vocab_size)
        self.simple_lm_proj = nn.Linear(config.decoder_dim, config.vocab_size)
        # Auxiliary CTC head: encoder frames -> token log-probabilities. CTC learns to align
        # sooner than the transducer, and its gradient reaches the encoder directly.
        self.ctc_output = nn.Linear(config.encoder_dim, config.vocab_size) if config.use_ctc else None

    def forward_encoder(
        self,
        x: torch.Tensor,
        x_lens: torch.Tensor,
        spec: SubnetSpec | None = None,
        dropout: float | None = None,
        fft: bool | None = None,
        embedded: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [B, T, feature_dim] fbank, x_lens: [B] -> ([B, T', encoder_dim], [B]), T' = ((T-7)//2+1)//2.

        spec: the subnet (None = the largest of the search space).
        dropout: encoder dropout rate for this call (None = config.dropout); train mode only.
        fft: SSM convolution by FFT (True) or by the ONNX-exportable chunked recurrence of
          todm.ssm_scan (False); None = FFT, except while tracing/exporting to ONNX.
        embedded: ``self.encoder_embed(x, x_lens)`` computed by the caller (the front end is
          not elastic, so the sandwich runs it once per batch for all its subnets).
        """
        spec = self.config.search_space.largest() if spec is None else spec
        self.config.search_space.validate(spec)
        p = self.config.dropout if dropout is None else dropout
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        if fft is None:
            fft = not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export())
        x, x_lens = self.encoder_embed(x, x_lens) if embedded is None else embedded
        x = self.encoder(x, x_lens, spec.num_layers, spec.ffn_dim, spec.num_heads, p, fft)
        return x, x_lens

    def extract(self, spec: SubnetSpec) -> "Transducer":
        """A standalone model of the subnet ``spec``, with its own (smaller) weights.

        Every parameter of the subnet model is the leading block (prefix along each dim) of the
        supernet parameter of the same name; blocks beyond spec.num_layers do not exist in it.
        """
        self.config.search_space.validate(spec)
        factors = self.config.downsampling_factors[:spec.num_layers]
        small = Transducer(dataclasses.replace(self.config, search_space=SearchSpace.single(spec),
                                               downsampling_factors=factors))
        big_state = self.state_dict()
        state = {}
        for name, target in small.state_dict().items():
            source = big_state[name]
            if source.dim() != target.dim() or any(s < t for s, t in zip(source.shape, target.shape)):
                raise RuntimeError(f"extract: {name} {list(target.shape)} is not a prefix of {list(source.shape)}")
            state[name] = source[tuple(slice(0, n) for n in target.shape)]
        small.load_state_dict(state)
        reference = next(self.parameters())
        return small.to(device=reference.device, dtype=reference.dtype).train(self.training)


def build_model(config: TransducerConfig) -> Transducer:
    """The supernet of ``config.search_space`` (a fixed model when the space holds one spec)."""
    return Transducer(config)
