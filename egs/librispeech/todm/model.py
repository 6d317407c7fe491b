"""The TODM supernet transducer: config, flags, construction and subnet extraction.

``build_model(config)`` builds the largest subnet of ``config.search_space``; every other
subnet runs on prefix slices of its weights via ``forward_encoder(..., spec=...)``, and
``extract(spec)`` copies those slices into a standalone, physically smaller ``Transducer``
whose config holds exactly that spec. Only the encoder is elastic; decoder, joiner and the
simple projections (used by the pruned RNN-T loss) are shared by all subnets.

Defaults (all configurable, none confirmed by the TODM or MH-SSM papers, whose bodies are not
available): a CPU-sized supernet for the built-in ~1-2 h corpus, encoder_dim 144, 6 blocks,
FFN 576, 4 heads of 36 channels, SSM state 16, decoder/joiner 192: 3.05M parameters in all
with a 500-token vocabulary (2.4M in the encoder blocks, 0.2M in the conv front end); the
smallest subnet L2-F144-H1 has 0.82M. ``bench/bench_subnets.py`` prints the table. The
paper-scale LibriSpeech preset is chosen by the training recipe's flags.
"""

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from todm.decoder import Decoder
from todm.encoder import Encoder
from todm.joiner import Joiner
from todm.subnet import SearchSpace, SubnetSpec, count_macs_per_second, count_parameters
from todm.subsampling import Conv2dSubsampling
from todm.utils import str2bool

# The cost model lives in subnet.py; re-exported here so ``from todm.model import count_parameters`` works.
__all__ = [
    "DEFAULT_SEARCH_SPACE", "Transducer", "TransducerConfig", "add_model_arguments", "build_model",
    "config_from_args", "count_macs_per_second", "count_parameters",
]

DEFAULT_SEARCH_SPACE = SearchSpace(layers=(2, 3, 4, 5, 6), ffn_dims=(144, 288, 432, 576), heads=(1, 2, 3, 4))


@dataclass(frozen=True)
class TransducerConfig:
    """Every shape hyper-parameter of the model; stored in checkpoints via ``to_dict()``."""

    vocab_size: int
    blank_id: int = 0
    feature_dim: int = 80
    subsampling_channels: tuple[int, int, int] = (8, 32, 64)
    encoder_dim: int = 144
    head_dim: int = 36
    state_dim: int = 16
    ssm_dt_min: float = 1e-3
    ssm_dt_max: float = 1.0
    causal: bool = False
    decoder_dim: int = 192
    joiner_dim: int = 192
    context_size: int = 2
    dropout: float = 0.1
    use_ctc: bool = False  # an auxiliary CTC head on the encoder (icefall's --use-ctc)
    search_space: SearchSpace = field(default=DEFAULT_SEARCH_SPACE)

    def __post_init__(self) -> None:
        object.__setattr__(self, "subsampling_channels", tuple(self.subsampling_channels))
        positive = ("vocab_size", "feature_dim", "encoder_dim", "head_dim", "decoder_dim", "joiner_dim", "context_size")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"TransducerConfig.{name} must be a positive integer, got {value!r}")
        if len(self.subsampling_channels) != 3 or min(self.subsampling_channels) <= 0:
            raise ValueError(
                f"TransducerConfig.subsampling_channels must be 3 positive ints, got {self.subsampling_channels}"
            )
        if self.feature_dim < 7:
            raise ValueError(f"TransducerConfig.feature_dim must be >= 7, got {self.feature_dim}")
        if self.state_dim < 2 or self.state_dim % 2:
            raise ValueError(f"TransducerConfig.state_dim must be an even integer >= 2, got {self.state_dim}")
        if not 0 < self.ssm_dt_min < self.ssm_dt_max:
            raise ValueError(
                f"TransducerConfig needs 0 < ssm_dt_min < ssm_dt_max, got {self.ssm_dt_min}, {self.ssm_dt_max}"
            )
        if self.decoder_dim % 4:
            raise ValueError(f"TransducerConfig.decoder_dim must be a multiple of 4, got {self.decoder_dim}")
        if not 0 <= self.blank_id < self.vocab_size:
            raise ValueError(f"TransducerConfig.blank_id must be in [0, vocab_size), got {self.blank_id}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TransducerConfig.dropout must be in [0, 1), got {self.dropout}")
        if not isinstance(self.search_space, SearchSpace):
            raise ValueError(f"TransducerConfig.search_space must be a SearchSpace, got {self.search_space!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (search space as its string form), for checkpoints and JSON."""
        d = dataclasses.asdict(self)
        d["subsampling_channels"] = list(self.subsampling_channels)
        d["search_space"] = str(self.search_space)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TransducerConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"TransducerConfig.from_dict: unknown keys {unknown}")
        values = dict(d)
        if isinstance(values.get("search_space"), str):
            values["search_space"] = SearchSpace.parse(values["search_space"])
        return cls(**values)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    return values


def _join(values: tuple[int, ...]) -> str:
    return ",".join(map(str, values))


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Model flags (icefall style). The three search-space flags take comma-separated choices;
    a single value each (e.g. --num-layers 4 --ffn-dim 288 --num-heads 2) is one fixed model."""
    d = TransducerConfig(vocab_size=1)
    space = d.search_space
    group = parser.add_argument_group("model")
    group.add_argument("--num-layers", type=_int_list, default=space.layers,
                       help=f"choices of encoder depth (first L blocks kept); default {_join(space.layers)}")
    group.add_argument("--ffn-dim", type=_int_list, default=space.ffn_dims,
                       help=f"choices of feed-forward hidden size; default {_join(space.ffn_dims)}")
    group.add_argument("--num-heads", type=_int_list, default=space.heads,
                       help=f"choices of MH-SSM head count; default {_join(space.heads)}")
    group.add_argument("--feature-dim", type=int, default=d.feature_dim, help="input fbank dimension")
    group.add_argument("--subsampling-channels", type=_int_list, default=d.subsampling_channels,
                       help="channels of the three conv2d subsampling layers")
    group.add_argument("--encoder-dim", type=int, default=d.encoder_dim, help="encoder model dimension (not elastic)")
    group.add_argument("--head-dim", type=int, default=d.head_dim, help="channels per MH-SSM head")
    group.add_argument("--state-dim", type=int, default=d.state_dim, help="SSM state size per channel (even)")
    group.add_argument("--ssm-dt-min", type=float, default=d.ssm_dt_min, help="smallest initial SSM step (global head)")
    group.add_argument("--ssm-dt-max", type=float, default=d.ssm_dt_max, help="largest initial SSM step (local head)")
    group.add_argument("--causal", type=str2bool, default=d.causal, help="streaming encoder: SSMs see only the past")
    group.add_argument("--decoder-dim", type=int, default=d.decoder_dim, help="stateless decoder embedding dimension")
    group.add_argument("--joiner-dim", type=int, default=d.joiner_dim, help="joiner hidden dimension")
    group.add_argument("--context-size", type=int, default=d.context_size, help="decoder context: 1 bigram, 2 trigram")
    group.add_argument("--dropout", type=float, default=d.dropout,
                       help="encoder dropout of the largest subnet (the default when forward_encoder gets none)")
    group.add_argument("--use-ctc", type=str2bool, default=d.use_ctc,
                       help="add a CTC head on the encoder, trained with --ctc-loss-scale (not exported)")


def config_from_args(args: argparse.Namespace, vocab_size: int, blank_id: int = 0) -> TransducerConfig:
    """The config described by ``add_model_arguments`` flags; errors name the flag."""
    try:
        space = SearchSpace(layers=args.num_layers, ffn_dims=args.ffn_dim, heads=args.num_heads)
    except ValueError as e:
        raise ValueError(f"--num-layers/--ffn-dim/--num-heads: {e}") from None
    return TransducerConfig(
        vocab_size=vocab_size,
        blank_id=blank_id,
        feature_dim=args.feature_dim,
        subsampling_channels=args.subsampling_channels,
        encoder_dim=args.encoder_dim,
        head_dim=args.head_dim,
        state_dim=args.state_dim,
        ssm_dt_min=args.ssm_dt_min,
        ssm_dt_max=args.ssm_dt_max,
        causal=args.causal,
        decoder_dim=args.decoder_dim,
        joiner_dim=args.joiner_dim,
        context_size=args.context_size,
        dropout=args.dropout,
        use_ctc=args.use_ctc,
        search_space=space,
    )


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
        fft: SSM convolution by FFT (True) or by the ONNX-exportable direct form (False);
          None = FFT, except while tracing/exporting to ONNX.
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
        small = Transducer(dataclasses.replace(self.config, search_space=SearchSpace.single(spec)))
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
