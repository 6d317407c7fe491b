"""Subnet specs and the elastic search space.

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

What a subnet costs (parameters, MACs per second) is computed in cost.py from the model's config.
"""

import argparse
import itertools
import random
import re
from dataclasses import dataclass, fields

from todm.utils import int_list

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
            try:
                items[key] = int_list(values)
            except argparse.ArgumentTypeError as e:
                raise ValueError(f"search space {key}: {e}") from None
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
