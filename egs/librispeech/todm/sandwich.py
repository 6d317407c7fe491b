"""One TODM training step with the sandwich rule (US-Nets/BigNAS/AlphaNet), on one batch.

    largest subnet   ground-truth pruned RNN-T loss, dropout p(largest)  -> teacher (detached)
    K random subnets [ground-truth loss] + KD to the teacher, dropout p(subnet)
    smallest subnet  [ground-truth loss] + KD to the teacher, dropout p(smallest)

Each subnet's loss is back-propagated at once (gradients accumulate, graphs are freed); the
caller then takes one optimizer step. The conv front end is shared by all subnets (it is not
elastic and has no dropout): it runs once per batch, each subnet's backward stops at its
output, and the summed gradient goes through it once at the end. Students are evaluated on
the teacher's prune ranges, so that teacher and student logits refer to the same lattice nodes
(the KD target) and the student's own pruned loss lives on the teacher's lattice (our choice;
TODM's is not public). ``kd_warmup_batches`` lets the students learn from the ground truth alone
while the teacher is still untrained, then hands them over to it gradually.
With a search space of a single spec this is plain training of that architecture: the
individually trained baseline.

The step reads the device once, at its end: every subnet's losses, whether they (and its
encoder/decoder outputs) were finite, and the frame count come back in one copy. On a GPU the
host queues the next subnet while the device still computes this one; a read per loss
(``.item()``) or a ``torch.cuda.synchronize()`` per subnet would drain that queue every time.
The seconds per subnet are CUDA events on a GPU (read after that copy), wall time on a CPU.
"""

import random
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from todm.adaptive_dropout import DropoutRule
from todm.alpha_divergence import lattice_kd_loss
from todm.subnet import SearchSpace, SubnetSpec
from todm.transducer_loss import NonFiniteError, TransducerOutput, loss_scales, transducer_forward


@dataclass(frozen=True)
class SandwichConfig:
    num_random_subnets: int = 2
    random_subnets: str = "space"  # draw them from the whole space or the deployable specs (random_subnet_pool)
    kd: bool = True  # in-place alpha-divergence distillation from the largest subnet
    kd_weight: float = 1.0
    kd_warmup_batches: int = 0  # the KD weight ramps linearly from 0 over these first batches
    student_gt_loss: bool = True  # students also get the ground-truth RNN-T loss
    alpha_min: float = -1.0
    alpha_max: float = 1.0
    iw_clip: float = 5.0
    prune_range: int = 5
    lm_scale: float = 0.25
    am_scale: float = 0.0
    simple_loss_scale: float = 0.5
    warm_step: int = 2000
    ctc_loss_scale: float = 0.2  # weight of the auxiliary CTC loss (models built with use_ctc)


RANDOM_SUBNET_SOURCES = ("space", "deployable")


def random_subnet_pool(space: SearchSpace, source: str) -> list[SubnetSpec] | None:
    """What the sandwich's random subnets are drawn from: None for the whole search space.

    ``"deployable"``: the deployable specs between the smallest and the largest (those two are
    trained at every step anyway), the ones ``run.sh`` decodes and exports. In a space of 80
    subnets each of them is otherwise drawn once in 80 random picks and learns only through
    its neighbours' shared weights; the price is that the subnets in between get fewer updates.
    """
    if source not in RANDOM_SUBNET_SOURCES:
        raise ValueError(f"random subnets: unknown source {source!r} (choose from {', '.join(RANDOM_SUBNET_SOURCES)})")
    if source == "space":
        return None
    ends = {space.smallest(), space.largest()}
    middle = [spec for spec in space.deployable() if spec not in ends]
    return middle or None


def sample_sandwich(space: SearchSpace, rng: random.Random, num_random: int,
                    pool: list[SubnetSpec] | None = None) -> list[tuple[str, SubnetSpec]]:
    """[("largest", L), ("random", r1), ..., ("smallest", S)]; just the largest if the space has one spec.

    The random subnets are drawn uniformly from ``pool`` when given, else from the whole space.
    """
    largest, smallest = space.largest(), space.smallest()
    if largest == smallest:
        return [("largest", largest)]
    randoms = [rng.choice(pool) if pool else space.sample(rng) for _ in range(num_random)]
    return [("largest", largest)] + [("random", r) for r in randoms] + [("smallest", smallest)]


class _Clock:
    """Time marks that do not wait for the device: CUDA events on a GPU, perf_counter on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def mark(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def seconds(self, start: Any, end: Any) -> float:
        """Between two marks; on a GPU only once the device has passed ``end``."""
        return start.elapsed_time(end) / 1000.0 if self.cuda else end - start


@dataclass
class StepResult:
    finite: bool
    num_frames: int = 0
    # per subnet kind: summed losses and seconds spent (forward + backward); "front_end" in
    # seconds is the shared conv front end
    losses: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    dropout: dict[str, float] = field(default_factory=dict)
    bad_subnet: str = ""


def sandwich_step(
    model: Any,
    loss_api: Any,
    batch: tuple[torch.Tensor, torch.Tensor, list[list[int]]],
    subnets: list[tuple[str, SubnetSpec]],
    cfg: SandwichConfig,
    dropout_rule: DropoutRule,
    num_params: dict[SubnetSpec, int],
    batch_idx_train: int,
    scaler: torch.amp.GradScaler | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> StepResult:
    """Forward and backward every subnet of the sandwich; gradients accumulate in ``model``.

    A non-finite loss (or encoder/decoder output) makes ``finite=False`` with no losses: the
    caller zeroes the gradients and skips the batch, so the model is untouched. It is seen at
    the step's one read of the device, after every subnet ran; only the todm loss backend, which
    checks its lattices itself, stops the step at the subnet that produced it.
    """
    x, x_lens, y = batch
    simple_scale, pruned_scale = loss_scales(batch_idx_train, cfg.warm_step, cfg.simple_loss_scale)
    kd_scale = cfg.kd_weight * (min(1.0, batch_idx_train / cfg.kd_warmup_batches) if cfg.kd_warmup_batches else 1.0)
    max_params = num_params[subnets[0][1]]
    teacher: TransducerOutput | None = None
    result = StepResult(finite=True)
    autocast = dict(device_type=x.device.type, dtype=autocast_dtype or torch.float32,
                    enabled=autocast_dtype is not None)
    clock = _Clock(x.device)
    marks = [clock.mark()]
    with torch.autocast(**autocast):
        embedded, embedded_lens = model.encoder_embed(x, x_lens)
    shared = embedded.detach().requires_grad_()
    marks.append(clock.mark())
    # per subnet: (kind, spec, {name: 0-d loss tensor}, finite flag), read once at the end
    pending: list[tuple[str, SubnetSpec, dict[str, torch.Tensor], torch.Tensor]] = []
    for kind, spec in subnets:
        is_teacher = kind == "largest"
        p = dropout_rule.rate(num_params[spec], max_params)
        use_kd = cfg.kd and teacher is not None
        try:
            with torch.autocast(**autocast):
                out = transducer_forward(
                    model, loss_api, x, x_lens, y, spec, dropout=p,
                    ranges=teacher.ranges if use_kd else None,
                    compute_loss=is_teacher or cfg.student_gt_loss or not cfg.kd,
                    prune_range=cfg.prune_range, am_scale=cfg.am_scale, lm_scale=cfg.lm_scale,
                    embedded=(shared, embedded_lens))
        except NonFiniteError:
            result.finite, result.bad_subnet = False, f"{kind} {spec}"
            return result
        loss = torch.zeros((), device=x.device)
        stats: dict[str, torch.Tensor] = {}
        if out.simple_loss is not None:
            loss = simple_scale * out.simple_loss + pruned_scale * out.pruned_loss
            stats.update(simple_loss=out.simple_loss, pruned_loss=out.pruned_loss)
        if out.ctc_loss is not None:
            loss = loss + cfg.ctc_loss_scale * out.ctc_loss
            stats["ctc_loss"] = out.ctc_loss
        if use_kd:
            kd = lattice_kd_loss(out.logits, teacher.logits, teacher.ranges, teacher.boundary,
                                 cfg.alpha_min, cfg.alpha_max, cfg.iw_clip)
            loss = loss + kd_scale * kd
            stats["kd_loss"] = kd
        stats["loss"] = loss
        pending.append((kind, spec, {k: v.detach().float() for k, v in stats.items()},
                        out.finite & torch.isfinite(loss)))
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if is_teacher:
            out.logits = out.logits.detach()
            teacher = out
        marks.append(clock.mark())
        result.dropout[kind] = p
    if shared.grad is not None:
        embedded.backward(shared.grad)
    marks.append(clock.mark())

    # The step's one host read: losses, finite flags and frames together.
    flat = [v for _, _, stats, _ in pending for v in stats.values()]
    flags = torch.stack([finite for *_, finite in pending]).float()
    values = torch.cat([torch.stack(flat), flags, teacher.boundary[:, 3].sum().float().view(1)]).tolist()
    losses, flags, frames = values[:len(flat)], values[len(flat):-1], values[-1]
    bad = [f"{kind} {spec}" for (kind, spec, _, _), ok in zip(pending, flags) if not ok]
    if bad:
        return StepResult(finite=False, bad_subnet=bad[0])
    result.num_frames = int(frames)
    values_iter = iter(losses)
    for i, (kind, _, stats, _) in enumerate(pending):
        for name in stats:
            result.losses.setdefault(kind, {}).setdefault(name, 0.0)
            result.losses[kind][name] += next(values_iter)
        result.seconds[kind] = result.seconds.get(kind, 0.0) + clock.seconds(marks[i + 1], marks[i + 2])
    result.seconds["front_end"] = clock.seconds(marks[0], marks[1]) + clock.seconds(marks[-2], marks[-1])
    return result
