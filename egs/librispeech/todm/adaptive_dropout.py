"""Adaptive dropout: each sampled subnet trains with a dropout rate set by its size.

TODM's first technique. A large subnet has the capacity to over-fit and needs the
regularisation an individually tuned large model would get; a small subnet under-fits and is
hurt by it. BigNAS/AlphaNet regularise only the largest network; TODM makes the rate a
function of the subnet. The exact function is not public (the paper body is not available
offline), so this is our documented, configurable rule::

    p(spec) = p_max * (params(spec) / params(largest)) ** gamma

with ``p_max`` the rate of the largest subnet and ``gamma`` the curvature (1 = linear in
parameters; larger gamma drops small subnets' dropout faster). With adaptive dropout turned
off every subnet uses ``p_max`` (a plain supernet with one dropout rate).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class DropoutRule:
    p_max: float = 0.1
    gamma: float = 1.0
    adaptive: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.p_max < 1.0:
            raise ValueError(f"--dropout (p_max) must be in [0, 1), got {self.p_max}")
        if self.gamma < 0:
            raise ValueError(f"--dropout-gamma must be >= 0, got {self.gamma}")

    def rate(self, num_params: int, max_params: int) -> float:
        """The dropout rate of a subnet with ``num_params`` out of the largest's ``max_params``."""
        if not 0 < num_params <= max_params:
            raise ValueError(f"subnet has {num_params} parameters; expected 1..{max_params}")
        if not self.adaptive:
            return self.p_max
        return self.p_max * (num_params / max_params) ** self.gamma
