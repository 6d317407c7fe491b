"""Flags of todm.train, and what they set for the run: torch threads and the sandwich step.

The model's flags are in model_config.py, the data's in asr_datamodule.py; the optimizer they
describe is built by optimizer_setup.py."""

import argparse
import os
from pathlib import Path

from todm.sandwich import RANDOM_SUBNET_SOURCES, SandwichConfig
from todm.utils import DEFAULT_BPE_MODEL, str2bool


def add_training_arguments(parser: argparse.ArgumentParser, loss_backends: tuple[str, ...]) -> None:
    g = parser.add_argument_group("training")
    g.add_argument("--exp-dir", type=Path, default=Path("exp/supernet"))
    g.add_argument("--bpe-model", type=Path, default=DEFAULT_BPE_MODEL)
    g.add_argument("--num-epochs", type=int, default=12)
    g.add_argument("--start-epoch", type=int, default=1, help="resume from epoch-(N-1).pt")
    g.add_argument("--start-batch", type=int, default=0, help="resume from checkpoint-B.pt (mid-epoch)")
    g.add_argument("--auto-resume", type=str2bool, default=False,
                   help="resume from the newest checkpoint in --exp-dir, if any")
    g.add_argument("--max-batches", type=int, default=0, help="stop after this many batches (smoke tests)")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--device", choices=("auto", "cpu"), default="auto")
    g.add_argument("--num-threads", type=int, default=0,
                   help="torch threads per process on CPU; 0: the cores this process may use / processes per node")
    g.add_argument("--use-fp16", type=str2bool, default=False, help="float16 autocast + grad scaler (CUDA)")
    g.add_argument("--use-bf16", type=str2bool, default=False, help="bfloat16 autocast (CPU or CUDA)")
    g.add_argument("--tensorboard", type=str2bool, default=True)
    g.add_argument("--log-interval", type=int, default=50)
    g.add_argument("--valid-interval", type=int, default=0, help="validate every N batches (0: per epoch)")
    g.add_argument("--save-every-n", type=int, default=200, help="checkpoint-B.pt every N batches")
    g.add_argument("--keep-last-k", type=int, default=5)
    g.add_argument("--average-period", type=int, default=10, help="update model_avg every N batches")

    g = parser.add_argument_group("optimizer")
    g.add_argument("--optimizer", choices=("scaled_adam", "adam"), default="scaled_adam")
    g.add_argument("--base-lr", type=float, default=None, help="default 0.045 (ScaledAdam) or 1e-3 (Adam)")
    g.add_argument("--lr-batches", type=float, default=7500)
    g.add_argument("--lr-epochs", type=float, default=3.5)
    g.add_argument("--warmup-batches", type=float, default=500)

    g = parser.add_argument_group("loss")
    g.add_argument("--loss-backend", choices=loss_backends, default="auto")
    g.add_argument("--prune-range", type=int, default=5)
    g.add_argument("--lm-scale", type=float, default=0.25)
    g.add_argument("--am-scale", type=float, default=0.0)
    g.add_argument("--simple-loss-scale", type=float, default=0.5)
    g.add_argument("--warm-step", type=int, default=2000, help="batches of simple->pruned loss warm-up")
    g.add_argument("--ctc-loss-scale", type=float, default=0.2, help="weight of the CTC loss (with --use-ctc true)")

    g = parser.add_argument_group("TODM")
    g.add_argument("--subnet", type=str, default="",
                   help="train only this architecture (e.g. L4-F288-H2): an individually trained baseline")
    g.add_argument("--num-random-subnets", type=int, default=2, help="random subnets per step (sandwich)")
    g.add_argument("--random-subnets", choices=RANDOM_SUBNET_SOURCES, default="space",
                   help="draw the random subnets from the whole search space, or from the deployable specs "
                        "between the smallest and the largest (those run.sh decodes and exports)")
    g.add_argument("--kd", type=str2bool, default=True, help="in-place alpha-divergence KD")
    g.add_argument("--kd-weight", type=float, default=1.0)
    g.add_argument("--kd-warmup-batches", type=int, default=0,
                   help="ramp the KD weight linearly from 0 over this many batches (0: full weight from step 1)")
    g.add_argument("--student-gt-loss", type=str2bool, default=True,
                   help="students also get the ground-truth RNN-T loss (AlphaNet: false)")
    g.add_argument("--alpha-min", type=float, default=-1.0)
    g.add_argument("--alpha-max", type=float, default=1.0)
    g.add_argument("--iw-clip", type=float, default=5.0, help="importance-ratio clip of the alpha loss")
    g.add_argument("--adaptive-dropout", type=str2bool, default=True)
    g.add_argument("--dropout-gamma", type=float, default=1.0,
                   help="adaptive dropout p = p_max * (params/max_params)^gamma, p_max = --dropout")


def cpu_threads(requested: int, local_world_size: int) -> tuple[int, str]:
    """(torch threads per process, why): ``requested`` if > 0, else this process's share of the
    cores it may run on (``os.sched_getaffinity``: what taskset/cgroups allow, not the machine)."""
    if requested < 0:
        raise ValueError(f"--num-threads must be >= 0, got {requested}")
    if requested > 0:
        return requested, "--num-threads"
    cores = len(os.sched_getaffinity(0))
    return max(1, cores // max(1, local_world_size)), f"{cores} usable core(s) / {local_world_size} process(es)"


def sandwich_config_from_args(args: argparse.Namespace) -> SandwichConfig:
    if args.num_random_subnets < 0:
        raise ValueError(f"--num-random-subnets must be >= 0, got {args.num_random_subnets}")
    return SandwichConfig(
        num_random_subnets=args.num_random_subnets, random_subnets=args.random_subnets,
        kd=args.kd, kd_weight=args.kd_weight, kd_warmup_batches=args.kd_warmup_batches,
        student_gt_loss=args.student_gt_loss, alpha_min=args.alpha_min, alpha_max=args.alpha_max,
        iw_clip=args.iw_clip, prune_range=args.prune_range, lm_scale=args.lm_scale, am_scale=args.am_scale,
        simple_loss_scale=args.simple_loss_scale, warm_step=args.warm_step, ctc_loss_scale=args.ctc_loss_scale)
