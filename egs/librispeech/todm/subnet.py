"""Subnet specs, the elastic search space, and the cost of a subnet without building it.

A TODM supernet holds the weights of its largest subnet; every smaller subnet is a prefix slice
of them (OFA/BigNAS style). Three encoder dimensions are elastic (which ones TODM used is not
public; this is our documented choice):

- ``num_layers``: depth, the first L Stateformer blocks are kept;
- ``ffn_dim``: hidden size of both macaron feed-forward modules of every kept block
  (the first F rows of the input projection, first F columns of the output projection);
- ``num_heads``: number of MH-SSM heads of every kept block (the first H heads, with the
  in/gate/out projections sliced to their ``H * head_dim`` channels).

The model dimension ``encoder_dim`` is fixed. It is the width of the residual stream shared by
every block, the LayerNorms (whose statistics would change if channels were dropped), the conv
subsampling output and the joiner's encoder projection; the contract keeps decoder, joiner and
the simple projections shared by all subnets, which needs one encoder output size.

``count_parameters`` and ``count_macs_per_second`` follow the module definitions in
subsampling.py, mh_ssm.py, encoder.py, decoder.py and joiner.py; the tests check them against
built models.
"""

import itertools
import random
import re
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from todm.model import TransducerConfig

_FIELD_TAGS = (("num_layers", "L"), ("ffn_dim", "F"), ("num_heads", "H"))
_SPACE_KEYS = (("layers", "num_layers"), ("ffn", "ffn_dim"), ("heads", "num_heads"))


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class SubnetSpec:
    """One subnet: depth, feed-forward width, number of SSM heads. ``str()`` gives ``L6-F576-H4``."""

    num_layers: int
    ffn_dim: int
    num_heads: int

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_positive_int(f"subnet spec field {f.name}", getattr(self, f.name))

    def __str__(self) -> str:
        return "-".join(f"{tag}{getattr(self, name)}" for name, tag in _FIELD_TAGS)

    @classmethod
    def parse(cls, text: str) -> "SubnetSpec":
        """Inverse of ``str()``: ``"L6-F576-H4"`` -> SubnetSpec(6, 576, 4)."""
        parts = text.strip().split("-")
        if len(parts) != len(_FIELD_TAGS):
            raise ValueError(f"bad subnet spec {text!r}: expected the form L<layers>-F<ffn_dim>-H<heads>")
        values = {}
        for part, (name, tag) in zip(parts, _FIELD_TAGS):
            match = re.fullmatch(rf"{tag}([0-9]+)", part)
            if match is None:
                raise ValueError(f"bad subnet spec {text!r}: field {name} must look like {tag}<int>, got {part!r}")
            values[name] = int(match.group(1))
        return cls(**values)


def _parse_choices(key: str, text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"search space {key}: expected comma-separated integers, got {text!r}") from None


@dataclass(frozen=True)
class SearchSpace:
    """Allowed values of each elastic dimension; a subnet takes one value per dimension.

    ``str()`` gives ``layers=2,4,6;ffn=192,384,576;heads=1,2,4``. Choices are strictly increasing
    positive integers; the largest of each is the supernet's size.
    """

    layers: tuple[int, ...]
    ffn_dims: tuple[int, ...]
    heads: tuple[int, ...]

    def __post_init__(self) -> None:
        for key, f in zip(("layers", "ffn", "heads"), fields(self)):
            choices = tuple(getattr(self, f.name))
            object.__setattr__(self, f.name, choices)
            if not choices:
                raise ValueError(f"search space {key}: needs at least one choice")
            for v in choices:
                _check_positive_int(f"search space {key} choice", v)
            if any(a >= b for a, b in zip(choices, choices[1:])):
                raise ValueError(f"search space {key}: choices must be strictly increasing, got {choices}")

    def _choices(self) -> dict[str, tuple[int, ...]]:
        return {"num_layers": self.layers, "ffn_dim": self.ffn_dims, "num_heads": self.heads}

    def __str__(self) -> str:
        choices = self._choices()
        return ";".join(f"{key}=" + ",".join(map(str, choices[name])) for key, name in _SPACE_KEYS)

    @classmethod
    def parse(cls, text: str) -> "SearchSpace":
        """Inverse of ``str()``."""
        items = {}
        for item in text.strip().split(";"):
            key, sep, values = item.partition("=")
            key = key.strip()
            if not sep or key not in ("layers", "ffn", "heads"):
                raise ValueError(f"bad search space {text!r}: item {item!r} is not layers=..., ffn=... or heads=...")
            if key in items:
                raise ValueError(f"bad search space {text!r}: {key} given twice")
            items[key] = _parse_choices(key, values)
        missing = [k for k in ("layers", "ffn", "heads") if k not in items]
        if missing:
            raise ValueError(f"bad search space {text!r}: missing {', '.join(missing)}")
        return cls(layers=items["layers"], ffn_dims=items["ffn"], heads=items["heads"])

    @classmethod
    def single(cls, spec: SubnetSpec) -> "SearchSpace":
        """The search space holding exactly ``spec`` (an extracted or individually trained model)."""
        return cls(layers=(spec.num_layers,), ffn_dims=(spec.ffn_dim,), heads=(spec.num_heads,))

    def largest(self) -> SubnetSpec:
        return SubnetSpec(self.layers[-1], self.ffn_dims[-1], self.heads[-1])

    def smallest(self) -> SubnetSpec:
        return SubnetSpec(self.layers[0], self.ffn_dims[0], self.heads[0])

    def sample(self, rng: random.Random) -> SubnetSpec:
        """A random subnet, each dimension drawn uniformly from its choices."""
        return SubnetSpec(rng.choice(self.layers), rng.choice(self.ffn_dims), rng.choice(self.heads))

    def enumerate(self) -> list[SubnetSpec]:
        """Every subnet of the space, depth-major."""
        return [SubnetSpec(*c) for c in itertools.product(self.layers, self.ffn_dims, self.heads)]

    def validate(self, spec: SubnetSpec) -> None:
        """Raise ValueError naming the first field of ``spec`` that is not in this space."""
        for name, choices in self._choices().items():
            value = getattr(spec, name)
            if value not in choices:
                allowed = ",".join(map(str, choices))
                raise ValueError(f"subnet {spec}: {name}={value} is not in the search space (allowed: {allowed})")

    def deployable(self, count: int = 5) -> list[SubnetSpec]:
        """``count`` subnets from the smallest to the largest, spread evenly along the space.

        They are picked from a staircase path that grows one dimension by one step at a time,
        always the dimension that is proportionally furthest behind, so each pick grows depth
        and widths together. A space with fewer subnets than ``count`` returns all of its path.
        """
        if count < 2:
            raise ValueError(f"deployable: count must be >= 2, got {count}")
        choices = list(self._choices().values())
        index = [0] * len(choices)
        path = [self.smallest()]
        while any(i < len(c) - 1 for i, c in zip(index, choices)):
            behind = min(
                (d for d in range(len(choices)) if index[d] < len(choices[d]) - 1),
                key=lambda d: index[d] / (len(choices[d]) - 1),
            )
            index[behind] += 1
            path.append(SubnetSpec(*(c[i] for c, i in zip(choices, index))))
        if len(path) <= count:
            return path
        return [path[int(k * (len(path) - 1) / (count - 1) + 0.5)] for k in range(count)]


# ---- cost model ------------------------------------------------------------------------------

FRAMES_PER_SECOND = 100  # 10 ms fbank frames


def _subsampling_sizes(config: "TransducerConfig") -> tuple[int, int, int]:
    """Frequency bins after each of the three convolutions of Conv2dSubsampling."""
    f1 = config.feature_dim
    f2 = (f1 - 3) // 2 + 1
    f3 = (f2 - 3) // 2 + 1
    return f1, f2, f3


def _ssm_head_params(config: "TransducerConfig") -> int:
    """Parameters of one SSM head: log_dt, skip (per channel); log_a_real, a_imag, C (per mode)."""
    modes = config.state_dim // 2
    directions = 1 if config.causal else 2
    per_channel = 2 + 2 * modes + 2 * modes * directions
    return config.head_dim * per_channel


def count_parameters(config: "TransducerConfig", spec: SubnetSpec) -> int:
    """Parameters of the standalone model ``extract(spec)`` (all of it: encoder, decoder,
    joiner, the simple projections used by the pruned loss and the CTC head if any)."""
    config.search_space.validate(spec)
    c1, c2, c3 = config.subsampling_channels
    d, v, dd, j = config.encoder_dim, config.vocab_size, config.decoder_dim, config.joiner_dim
    f3 = _subsampling_sizes(config)[2]
    embed = (9 * c1 + c1) + (9 * c1 * c2 + c2) + (9 * c2 * c3 + c3) + (c3 * f3 * d + d)

    width = spec.num_heads * config.head_dim
    ffn = 2 * (d * spec.ffn_dim + spec.ffn_dim + spec.ffn_dim * d + d)
    ssm = (d * width + width) + spec.num_heads * _ssm_head_params(config) + (width * width + width) + (width * d + d)
    norms = 4 * 2 * d
    encoder = spec.num_layers * (ffn + ssm + norms)

    decoder = v * dd + (dd * 4 * config.context_size if config.context_size > 1 else 0)
    joiner = (d * j + j) + (dd * j + j) + (j * v + v)
    simple = (d * v + v) + (dd * v + v)
    ctc = d * v + v if config.use_ctc else 0
    return embed + encoder + decoder + joiner + simple + ctc


def count_macs_per_second(config: "TransducerConfig", spec: SubnetSpec) -> int:
    """Multiply-accumulates to recognise one second of audio with the subnet ``spec``.

    Counted: convolutions and linear layers of the encoder (at 100 input frames/s and
    25 encoder frames/s), the SSM sequence mixing at the cost of its recurrent form (per frame,
    channel and direction, N/2 complex modes: state update 6 + output 2 real MACs per mode, plus
    the skip term), and one joiner evaluation per encoder frame (encoder projection + output
    layer, as greedy search with at most one symbol per frame). Not counted: elementwise ops
    (norms, activations, gates), the decoder (it runs once per emitted token, not per frame).
    The recurrent cost is length-independent; the FFT/direct convolution forms used in
    PyTorch/ONNX cost more per frame on long inputs but compute the same function.
    """
    config.search_space.validate(spec)
    c1, c2, c3 = config.subsampling_channels
    f1, f2, f3 = _subsampling_sizes(config)
    d, v, j = config.encoder_dim, config.vocab_size, config.joiner_dim
    fps = FRAMES_PER_SECOND
    embed = fps * f1 * c1 * 9 + fps // 2 * f2 * c2 * c1 * 9 + fps // 4 * f3 * c3 * c2 * 9 + fps // 4 * c3 * f3 * d

    width = spec.num_heads * config.head_dim
    directions = 1 if config.causal else 2
    scan = width * (directions * 8 * (config.state_dim // 2) + 1)
    per_frame = 2 * 2 * d * spec.ffn_dim + d * width + width * width + width * d + scan
    encoder = fps // 4 * spec.num_layers * per_frame
    joiner = fps // 4 * (d * j + j * v)
    return embed + encoder + joiner
