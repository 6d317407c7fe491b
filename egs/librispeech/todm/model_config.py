"""The model's config (every shape hyper-parameter) and the flags that describe it.

``TransducerConfig`` is what checkpoints store (``to_dict()``/``from_dict()``, key
``model_config``); ``add_model_arguments``/``config_from_args`` are the icefall-style flags of
todm.train (and of every script that builds a model from them). model.py builds the model of a
config, cost.py computes what its subnets cost.

Defaults (all configurable, none confirmed by the TODM or MH-SSM papers, whose bodies are not
available): a CPU-sized supernet for the built-in ~1-2 h corpus, encoder_dim 144, 6 blocks,
FFN 576, 4 heads of 36 channels, SSM state 16, decoder/joiner 192: 3.05M parameters in all
with a 500-token vocabulary (2.4M in the encoder blocks, 0.2M in the conv front end); the
smallest subnet L2-F144-H1 has 0.82M. ``bench/bench_subnets.py`` prints the table. The
paper-scale LibriSpeech preset is chosen by the training recipe's flags (conf/librispeech.sh).
"""

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from todm.frame_rate import validate_factors
from todm.subnet import SearchSpace
from todm.utils import int_list, str2bool

__all__ = ["DEFAULT_SEARCH_SPACE", "TransducerConfig", "add_model_arguments", "config_from_args"]

# The encoder's architecture version, stored with every config (``to_dict``) so that weights are
# never loaded into a model of another layout. 1 (configs without the key): post-norm blocks,
# a LayerNorm closing every block; 2: pre-norm blocks and one final LayerNorm (encoder.py).
ENCODER_VERSION = 2
_ENCODER_LAYOUTS = {1: "post-norm blocks", 2: "pre-norm blocks and a final LayerNorm"}

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
    downsampling_factors: tuple[int, ...] = ()  # one per encoder block, () = all 1 (todm.frame_rate)
    search_space: SearchSpace = field(default=DEFAULT_SEARCH_SPACE)

    def __post_init__(self) -> None:
        object.__setattr__(self, "subsampling_channels", tuple(self.subsampling_channels))
        object.__setattr__(self, "downsampling_factors", tuple(self.downsampling_factors))
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
        try:
            validate_factors(self.downsampling_factors, self.search_space.largest().num_layers)
        except ValueError as e:
            raise ValueError(f"TransducerConfig: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (search space as its string form), for checkpoints and JSON."""
        d = dataclasses.asdict(self)
        d["subsampling_channels"] = list(self.subsampling_channels)
        d["downsampling_factors"] = list(self.downsampling_factors)
        d["search_space"] = str(self.search_space)
        d["encoder_version"] = ENCODER_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TransducerConfig":
        problem = encoder_version_problem(d)
        if problem:
            raise ValueError(f"model config: {problem}")
        values = dict(d)
        values.pop("encoder_version")
        values.setdefault("downsampling_factors", ())  # configs written before the field: every block at full rate
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"TransducerConfig.from_dict: unknown keys {unknown}")
        if isinstance(values.get("search_space"), str):
            values["search_space"] = SearchSpace.parse(values["search_space"])
        return cls(**values)


def encoder_version_problem(config: dict[str, Any]) -> str | None:
    """Why weights saved with the config dict ``config`` cannot be loaded here (None: they can)."""
    version = config.get("encoder_version", 1)
    if version == ENCODER_VERSION:
        return None
    layout = _ENCODER_LAYOUTS.get(version, "unknown to this recipe")
    return (f"its model has encoder version {version} ({layout}) and this recipe builds version "
            f"{ENCODER_VERSION} ({_ENCODER_LAYOUTS[ENCODER_VERSION]}), whose weights do not fit it: retrain "
            f"(./run.sh --stage 3), or use the recipe version that wrote it")


def _join(values: tuple[int, ...]) -> str:
    return ",".join(map(str, values))


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Model flags (icefall style). The three search-space flags take comma-separated choices;
    a single value each (e.g. --num-layers 4 --ffn-dim 288 --num-heads 2) is one fixed model."""
    d = TransducerConfig(vocab_size=1)
    space = d.search_space
    group = parser.add_argument_group("model")
    group.add_argument("--num-layers", type=int_list, default=space.layers,
                       help=f"choices of encoder depth (first L blocks kept); default {_join(space.layers)}")
    group.add_argument("--ffn-dim", type=int_list, default=space.ffn_dims,
                       help=f"choices of feed-forward hidden size; default {_join(space.ffn_dims)}")
    group.add_argument("--num-heads", type=int_list, default=space.heads,
                       help=f"choices of MH-SSM head count; default {_join(space.heads)}")
    group.add_argument("--feature-dim", type=int, default=d.feature_dim, help="input fbank dimension")
    group.add_argument("--subsampling-channels", type=int_list, default=d.subsampling_channels,
                       help="channels of the three conv2d subsampling layers")
    group.add_argument("--encoder-dim", type=int, default=d.encoder_dim, help="encoder model dimension (not elastic)")
    group.add_argument("--head-dim", type=int, default=d.head_dim, help="channels per MH-SSM head")
    group.add_argument("--state-dim", type=int, default=d.state_dim, help="SSM state size per channel (even)")
    group.add_argument("--ssm-dt-min", type=float, default=d.ssm_dt_min, help="smallest initial SSM step (global head)")
    group.add_argument("--ssm-dt-max", type=float, default=d.ssm_dt_max, help="largest initial SSM step (local head)")
    group.add_argument("--causal", type=str2bool, default=d.causal, help="streaming encoder: SSMs see only the past")
    group.add_argument("--downsampling-factor", type=int_list, default=d.downsampling_factors,
                       help="one frame-rate divisor per encoder block (zipformer's flag), e.g. 1,1,2,2,1,1: "
                            "blocks 3-4 at 80 ms; empty = every block at 40 ms")
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
        downsampling_factors=args.downsampling_factor,
        search_space=space,
    )
