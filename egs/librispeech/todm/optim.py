"""ScaledAdam optimizer and Eden learning-rate schedule (Zipformer; Yao et al., ICLR 2024).

ScaledAdam is Adam whose step for a tensor is measured *relative to the tensor's size*: the
Adam direction g/sqrt(v) is multiplied by the tensor's RMS, so a step changes every weight
matrix by about ``lr`` of its own magnitude.  The size itself is learned separately, as if
``theta = theta_unit * exp(log_scale)``: d loss / d log_scale = sum(theta * grad) gets its own
Adam-style step every ``size_update_period`` steps.  One-element tensors ("scalars") get plain
Adam at ``lr * scalar_lr_scale``, clamped to +-``scalar_max``.  First, a group's gradient is
clipped to ``clipping_scale`` x the median of its recent norms, where the norm is
"RMS-normalised" (each gradient times its tensor's RMS, i.e. the size of the *relative* change
it asks for).  No weight decay.  Eden then scales each group's base learning rate:

    lr = base_lr * ((b^2 + B^2) / B^2)^-0.25 * ((e^2 + E^2) / E^2)^-0.25 * warmup(b)

Our own implementation of icefall's ``egs/librispeech/ASR/zipformer/optim.py`` (same defaults
and update rule, one tensor at a time instead of stacked by shape), with deliberate
differences that leave training unchanged when every parameter gets a finite gradient:
- a parameter whose ``.grad`` is None is skipped (no momentum step, no state change): a
  supernet step leaves the unsampled weights without gradient and they must stay as they are
  (icefall treats a missing gradient as zero, so momentum keeps moving it);
- a non-finite gradient skips the group's step with a warning naming the parameters, and
  ``MAX_CONSECUTIVE_NONFINITE`` such steps in a row raise (icefall zeroes the gradient once a
  clipping threshold exists, and writes NaN into the weights before that);
- gradient norms are recorded from the first step (icefall from the second);
- scalars are clamped after their update (icefall before, so one step may overshoot);
- Eden sets the learning rates when constructed (icefall at the first step call).

Supernet caveats: a tensor's RMS and learned scale are those of the *whole* tensor even when
a step trains only a prefix slice of it, and clipping sees the whole (sandwich) gradient.
"""

from __future__ import annotations

import abc
import copy
import logging
import math
from collections.abc import Iterable
from typing import Any, Callable

import torch
from torch import Tensor

# Raise after this many consecutive steps of a group skipped for non-finite gradients:
# a one-off overflow is survivable, a run that produces only NaN/inf gradients is broken.
MAX_CONSECUTIVE_NONFINITE = 20

# Clipping re-estimates its threshold at these early steps too (with the threshold doubled),
# because gradient norms change quickly at the start of training (icefall's choice).
EARLY_CLIPPING_ESTIMATES = (10, 20, 40)

# Largest change of log(scale) one size update may make, for stability (current icefall
# zipformer; its 2023 version had no such limit).
MAX_SCALE_STEP = 0.1


def _as_param_groups(params_or_named_groups: Any) -> list[dict[str, Any]]:
    """Normalise the optimizer's first argument to a list of torch param-group dicts.

    Accepts: an iterable of tensors; an iterable of ``(name, tensor)`` tuples (e.g.
    ``model.named_parameters()``); a list of dicts with ``"params"`` (tensors or named
    tuples); or a list of dicts with ``"named_params"`` instead of ``"params"``.  Named
    tuples become torch's own ``"param_names"`` group entry, which we use in log messages.
    """
    items = list(params_or_named_groups)
    if not items:
        raise ValueError("ScaledAdam got an empty parameter list")
    if not isinstance(items[0], dict):
        return [{"params": items}]
    groups = []
    for index, group in enumerate(items):
        if not isinstance(group, dict):
            raise TypeError(f"param group {index} is a {type(group).__name__}, expected a dict")
        group = dict(group)
        if "named_params" in group:
            if "params" in group:
                raise ValueError(f"param group {index} has both 'params' and 'named_params'")
            group["params"] = list(group.pop("named_params"))
        groups.append(group)
    return groups


def _plain_adam(p: Tensor, group: dict[str, Any]) -> bool:
    """Whether ``p`` gets the scalar treatment: one element, or a group with rms_scaled=False."""
    return p.numel() == 1 or not group.get("rms_scaled", True)


def _rms(x: Tensor) -> Tensor:
    """Root mean square of all elements, as a 0-dim tensor."""
    return x.detach().pow(2).mean().sqrt()


class ScaledAdam(torch.optim.Optimizer):
    """Adam with updates proportional to each tensor's RMS, a learned tensor scale, and
    gradient clipping relative to the median recent gradient norm.

    Args (defaults and where they come from):
      params_or_named_groups: tensors, ``(name, tensor)`` tuples, or param groups (dicts with
        ``"params"`` or ``"named_params"``); see :func:`_as_param_groups`.
      lr: 0.045, the icefall zipformer recipe's ``--base-lr`` (icefall's class default is
        0.03; TODM trains with Eden on top, which scales it).
      clipping_scale: 2.0, what every icefall recipe passes; clip the gradient when its
        normalised norm exceeds ``clipping_scale`` x the median of the last
        ``clipping_update_period`` norms.  None disables clipping.
      betas: (0.9, 0.98): momentum on the update, and decay of the squared-gradient average.
      scalar_lr_scale: 0.1: learning-rate factor for scalars and for the log-scale update;
        also weights scalar gradients in the clipping norm.
      eps: 1e-8: added to sqrt of the squared-gradient averages.
      param_min_rms: 1e-5: the update uses max(RMS, this), and a tensor smaller than this
        is not shrunk further.  (A zero-initialised tensor therefore grows slowly.)
      param_max_rms: 3.0: the learned-scale step never takes a tensor's RMS above this.
      scalar_max: 10.0: scalars are clamped to [-scalar_max, scalar_max].
      size_update_period: 4: steps between RMS refreshes / log-scale updates.
      clipping_update_period: 100: steps between re-estimates of the clipping threshold;
        also the length of the gradient-norm history.
      rms_scaled: True.  A param group with ``rms_scaled=False`` gives every tensor the
        scalar treatment (plain Adam at ``lr * scalar_lr_scale``, clamped to +-``scalar_max``,
        no learned scale).  For parameters that are not weights but physical quantities, such
        as an SSM's log time steps and frequencies: steps relative to the tensor's RMS and
        the ``param_max_rms`` limit would rescale all of them together (our addition).
    (All defaults except ``lr`` and ``clipping_scale`` are icefall ``ScaledAdam``'s.)

    Queryable state: ``clipping_info(group_index)`` returns the clipping threshold, the last
    clipping factor, how many steps were clipped, and how many were skipped as non-finite.
    """

    def __init__(
        self,
        params_or_named_groups: Iterable[Any],
        lr: float = 0.045,
        clipping_scale: float | None = 2.0,
        betas: tuple[float, float] = (0.9, 0.98),
        scalar_lr_scale: float = 0.1,
        eps: float = 1e-8,
        param_min_rms: float = 1e-5,
        param_max_rms: float = 3.0,
        scalar_max: float = 10.0,
        size_update_period: int = 4,
        clipping_update_period: int = 100,
        rms_scaled: bool = True,
    ) -> None:
        checks = {
            "lr >= 0": lr >= 0.0,
            "clipping_scale > 0 or None": clipping_scale is None or clipping_scale > 0.0,
            "0 <= betas[0] < 1 and 0 < betas[1] < 1": 0 <= betas[0] < 1 and 0 < betas[1] < 1,
            "0 < param_min_rms < param_max_rms": 0.0 < param_min_rms < param_max_rms,
            "size_update_period >= 1": size_update_period >= 1,
            "clipping_update_period >= 1": clipping_update_period >= 1,
        }
        for rule, ok in checks.items():
            if not ok:
                raise ValueError(f"ScaledAdam needs {rule}; got lr={lr}, "
                                 f"clipping_scale={clipping_scale}, betas={betas}, "
                                 f"param_min_rms={param_min_rms}, param_max_rms={param_max_rms}, "
                                 f"size_update_period={size_update_period}, "
                                 f"clipping_update_period={clipping_update_period}")
        defaults = dict(
            lr=lr, clipping_scale=clipping_scale, betas=tuple(betas),
            scalar_lr_scale=scalar_lr_scale, eps=eps, param_min_rms=param_min_rms,
            param_max_rms=param_max_rms, scalar_max=scalar_max,
            size_update_period=size_update_period, clipping_update_period=clipping_update_period,
            rms_scaled=rms_scaled,
        )
        super().__init__(_as_param_groups(params_or_named_groups), defaults)
        # One plain-Python record per param group (saved in state_dict for exact resume).
        self._clipping: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ public helpers

    def clipping_info(self, group_index: int = 0) -> dict[str, Any]:
        """Clipping record of a param group: ``threshold`` (None until first estimated),
        ``last_factor`` (1.0 = not clipped), ``num_clipped`` (since the last estimate),
        ``step`` (finite steps seen), ``num_nonfinite`` (steps skipped, total)."""
        record = self._clip_record(group_index)
        return {k: v for k, v in record.items() if k != "recent_norms"}

    def state_dict(self) -> dict[str, Any]:
        state_dict = super().state_dict()
        state_dict["clipping"] = copy.deepcopy(self._clipping)
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        if "clipping" not in state_dict:
            raise ValueError("not a ScaledAdam state dict: it has no 'clipping' entry")
        clipping = state_dict.pop("clipping")
        if len(clipping) > len(self.param_groups):
            raise ValueError(
                f"state dict has clipping records for {len(clipping)} param groups, "
                f"the optimizer has {len(self.param_groups)}"
            )
        super().load_state_dict(state_dict)
        self._clipping = copy.deepcopy(clipping)

    # ------------------------------------------------------------------ the step

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """One update of every parameter that has a gradient; returns closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group_index, group in enumerate(self.param_groups):
            self._step_group(group_index, group)
        return loss

    def _param_name(self, group: dict[str, Any], group_index: int, i: int) -> str:
        names = group.get("param_names")
        if names is not None:
            return names[i]
        shape = tuple(group["params"][i].shape)
        return f"param {i} of group {group_index} (shape {shape})"

    def _clip_record(self, group_index: int) -> dict[str, Any]:
        while len(self._clipping) <= group_index:
            self._clipping.append(
                dict(step=0, recent_norms=[], threshold=None, last_factor=1.0,
                     num_clipped=0, num_nonfinite=0, nonfinite_in_a_row=0)
            )
        return self._clipping[group_index]

    def _init_state(self, p: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        state["step"] = 0
        state["delta"] = torch.zeros_like(p)  # momentum of the update itself
        state["exp_avg_sq"] = torch.zeros_like(p)
        if not _plain_adam(p, group):
            state["param_rms"] = _rms(p)
            state["scale_exp_avg_sq"] = torch.zeros_like(state["param_rms"])
            state["scale_grads"] = p.new_zeros(group["size_update_period"])

    def _step_group(self, group_index: int, group: dict[str, Any]) -> None:
        active = [(i, p) for i, p in enumerate(group["params"]) if p.grad is not None]
        if not active:
            return
        for i, p in active:
            if p.grad.is_sparse:
                raise RuntimeError(
                    f"ScaledAdam does not support sparse gradients "
                    f"({self._param_name(group, group_index, i)})"
                )
            if not self.state[p]:
                self._init_state(p, self.state[p], group)

        # Squared contribution of each tensor to the RMS-normalised gradient norm.
        device = active[0][1].device
        contributions = torch.stack([
            (p.grad.float().pow(2).sum() * group["scalar_lr_scale"] ** 2 if _plain_adam(p, group)
             else (p.grad.float() * self.state[p]["param_rms"]).pow(2).sum()).to(device)
            for _, p in active
        ])
        norm = contributions.sum().sqrt().item()
        record = self._clip_record(group_index)
        if not math.isfinite(norm):
            self._skip_nonfinite(group, group_index, active, record)
            return
        record["nonfinite_in_a_row"] = 0
        factor = self._clipping_factor(group, group_index, record, norm, contributions, active)

        for _, p in active:
            grad = p.grad if factor == 1.0 else p.grad * factor
            if _plain_adam(p, group):
                self._scalar_step(group, p, grad, self.state[p])
            else:
                self._tensor_step(group, p, grad, self.state[p])

    def _skip_nonfinite(self, group, group_index, active, record) -> None:
        record["num_nonfinite"] += 1
        record["nonfinite_in_a_row"] += 1
        bad = [self._param_name(group, group_index, i) for i, p in active
               if not torch.isfinite(p.grad).all()]
        message = (
            f"non-finite gradient in param group {group_index} for: {', '.join(bad)}; "
            f"step skipped ({record['nonfinite_in_a_row']} in a row)"
        )
        if record["nonfinite_in_a_row"] >= MAX_CONSECUTIVE_NONFINITE:
            raise RuntimeError(message + f"; giving up after {MAX_CONSECUTIVE_NONFINITE}")
        logging.warning(message)

    def _clipping_factor(self, group, group_index, record, norm, contributions, active) -> float:
        """Record ``norm``; re-estimate the threshold when due; return the gradient scale."""
        step = record["step"]
        record["step"] = step + 1
        clipping_scale = group["clipping_scale"]
        if clipping_scale is None:
            return 1.0
        period = group["clipping_update_period"]
        norms = record["recent_norms"]
        if len(norms) < period:
            norms.append(norm)
        else:
            norms[step % period] = norm

        early = step in EARLY_CLIPPING_ESTIMATES and step < period
        if step > 0 and (step % period == 0 or early):
            ranked = sorted(norms)
            n = len(ranked)
            quartiles = [ranked[min(n - 1, n * k // 4)] for k in range(5)]
            threshold = clipping_scale * quartiles[2] * (2.0 if early else 1.0)
            logging.info(
                f"Clipping (group {group_index}, step {step}): grad-norm quartiles "
                + " ".join(f"{q:.3e}" for q in quartiles)
                + f", threshold={threshold:.3e}, clipped {record['num_clipped']} steps "
                "since the last estimate"
            )
            record["threshold"] = threshold
            record["num_clipped"] = 0

        threshold = record["threshold"]
        factor = 1.0 if threshold is None else min(1.0, threshold / (norm + 1e-20))
        record["last_factor"] = factor
        if factor < 1.0:
            record["num_clipped"] += 1
        if factor < 0.1:
            dominant = active[int(contributions.argmax())][0]
            logging.warning(
                f"Scaling gradients of group {group_index} by {factor:.3e} "
                f"(norm={norm:.3e}, threshold={threshold:.3e}); largest contribution from "
                f"{self._param_name(group, group_index, dominant)}"
            )
        return factor

    def _scalar_step(self, group, p: Tensor, grad: Tensor, state: dict[str, Any]) -> None:
        """Plain Adam (no first-moment bias correction) at lr * scalar_lr_scale, clamped."""
        beta1, beta2 = group["betas"]
        step = state["step"]
        exp_avg_sq = state["exp_avg_sq"]
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (exp_avg_sq / (1 - beta2 ** (step + 1))).sqrt() + group["eps"]
        delta = state["delta"]
        lr = group["lr"] * group["scalar_lr_scale"]
        delta.mul_(beta1).add_(grad / denom, alpha=-lr * (1 - beta1))
        p.add_(delta).clamp_(min=-group["scalar_max"], max=group["scalar_max"])
        state["step"] = step + 1

    def _tensor_step(self, group, p: Tensor, grad: Tensor, state: dict[str, Any]) -> None:
        """Adam direction times the tensor's RMS, plus (every period) the log-scale step."""
        beta1, beta2 = group["betas"]
        step = state["step"]
        period = group["size_update_period"]
        delta = state["delta"]
        delta.mul_(beta1)

        state["scale_grads"][step % period] = (p * grad).sum()  # d loss / d log(scale)
        if step % period == period - 1:
            state["param_rms"].copy_(_rms(p))
            if step > 0:
                self._scale_step(group, p, state)

        exp_avg_sq = state["exp_avg_sq"]
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias_correction2 = 1 - beta2 ** (step + 1)
        if bias_correction2 < 0.99:  # later it is ~1: skip the division (as icefall)
            exp_avg_sq = exp_avg_sq / bias_correction2
        direction = grad / (exp_avg_sq.sqrt() + group["eps"])
        rms = state["param_rms"].clamp(min=group["param_min_rms"])
        delta.addcmul_(direction, rms, value=-group["lr"] * (1 - beta1))
        p.add_(delta)
        state["step"] = step + 1

    def _scale_step(self, group, p: Tensor, state: dict[str, Any]) -> None:
        """Adam step on log(scale) from the last ``size_update_period`` scale gradients,
        applied through the momentum buffer as a multiple of the parameter itself."""
        beta1, beta2 = group["betas"]
        period = group["size_update_period"]
        scale_grads = state["scale_grads"]
        param_rms = state["param_rms"]
        beta2_period = beta2**period  # one average update per period: decay faster
        scale_exp_avg_sq = state["scale_exp_avg_sq"]
        scale_exp_avg_sq.mul_(beta2_period).add_(scale_grads.pow(2).mean(), alpha=1 - beta2_period)
        num_updates = (state["step"] + 1) // period
        bias_correction2 = 1 - beta2_period**num_updates
        scale_step = (
            -group["lr"] * group["scalar_lr_scale"] * bias_correction2**0.5
            * scale_grads.sum() / (scale_exp_avg_sq.sqrt() + group["eps"])
        )
        scale_step = torch.where(param_rms < group["param_min_rms"], 0.0, scale_step)
        scale_step = scale_step.clamp(min=-MAX_SCALE_STEP, max=MAX_SCALE_STEP)
        # Never let this step take the RMS above param_max_rms (rms * (1 + step) <= max).
        scale_step = torch.minimum(scale_step, (group["param_max_rms"] - param_rms) / param_rms)
        state["delta"].add_(p * scale_step, alpha=1 - beta1)


class LRScheduler(abc.ABC):
    """Minimal base for schedules that depend on both the batch index and the epoch.

    Stores ``base_lr`` in each param group (kept if already present, so per-group learning
    rates set by the caller are respected) and writes ``group["lr"]`` whenever the batch or
    epoch changes.  Subclasses implement :meth:`get_lr`.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not a torch.optim.Optimizer")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])
        self.base_lrs = [group["base_lr"] for group in optimizer.param_groups]
        self.batch = 0.0
        self.epoch = 0.0
        self._set_lrs()

    @abc.abstractmethod
    def get_lr(self) -> list[float]:
        """The learning rates for the current batch and epoch, one per param group."""

    def get_last_lr(self) -> list[float]:
        """The learning rates last written into the param groups."""
        return list(self._last_lr)

    def step_batch(self, batch: float | None = None) -> None:
        """Set the batch index (global count of optimizer steps) or advance it by one."""
        self.batch = self.batch + 1 if batch is None else batch
        self._set_lrs()

    def step_epoch(self, epoch: float | None = None) -> None:
        """Set the number of *completed* epochs (icefall calls ``step_epoch(epoch - 1)`` at
        the start of 1-based epoch ``epoch``) or advance it by one."""
        self.epoch = self.epoch + 1 if epoch is None else epoch
        self._set_lrs()

    def state_dict(self) -> dict[str, Any]:
        return {"base_lrs": list(self.base_lrs), "batch": self.batch, "epoch": self.epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if len(state_dict["base_lrs"]) != len(self.optimizer.param_groups):
            raise ValueError(
                f"scheduler state has {len(state_dict['base_lrs'])} base lrs, the optimizer "
                f"has {len(self.optimizer.param_groups)} param groups"
            )
        self.base_lrs = list(state_dict["base_lrs"])
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["base_lr"] = base_lr
        self.batch = state_dict["batch"]
        self.epoch = state_dict["epoch"]
        self._set_lrs()

    def _set_lrs(self) -> None:
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


class Eden(LRScheduler):
    """lr = base_lr * ((b^2 + B^2) / B^2)^-0.25 * ((e^2 + E^2) / E^2)^-0.25 * warmup(b).

    b = batch index, e = completed epochs (both may be fractional).  The batch term starts
    at 1 and falls like (B/b)^0.5 once b >> B; the epoch term likewise with E.  warmup(b)
    rises linearly from ``warmup_start`` at b = 0 to 1 at b = ``warmup_batches`` and stays 1.

    Args:
      optimizer: its groups' ``lr`` (or an existing ``base_lr``) are the base rates.
      lr_batches: B. No default here; the icefall zipformer recipe uses 7500
        (pruned_transducer_stateless7: 5000).
      lr_epochs: E. No default here; icefall recipes use 3.5.
      warmup_batches: 500.0, icefall's ``Eden`` default.
      warmup_start: 0.5, icefall's ``Eden`` default and what the recipes of 2022 to
        mid-2023 used (pruned_transducer_stateless7, zipformer at f18b539f), i.e. what
        existed when TODM was written.  Today's icefall zipformer ``train.py`` passes 0.1 (a
        gentler start for the first 500 batches); pass that if training diverges early.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        lr_batches: float,
        lr_epochs: float,
        warmup_batches: float = 500.0,
        warmup_start: float = 0.5,
    ) -> None:
        if lr_batches <= 0 or lr_epochs <= 0:
            raise ValueError(f"lr_batches and lr_epochs must be > 0: {lr_batches}, {lr_epochs}")
        if warmup_batches < 0:
            raise ValueError(f"warmup_batches must be >= 0, got {warmup_batches}")
        if not 0.0 <= warmup_start <= 1.0:
            raise ValueError(f"warmup_start must be in [0, 1], got {warmup_start}")
        self.lr_batches = lr_batches
        self.lr_epochs = lr_epochs
        self.warmup_batches = warmup_batches
        self.warmup_start = warmup_start
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        batch_factor = ((self.batch**2 + self.lr_batches**2) / self.lr_batches**2) ** -0.25
        epoch_factor = ((self.epoch**2 + self.lr_epochs**2) / self.lr_epochs**2) ** -0.25
        warmup = 1.0
        if self.batch < self.warmup_batches:
            warmup = self.warmup_start + (1 - self.warmup_start) * self.batch / self.warmup_batches
        return [base_lr * batch_factor * epoch_factor * warmup for base_lr in self.base_lrs]
