"""The optimizer todm.train builds from its flags: ScaledAdam (TODM's third technique, optim.py)
with the MH-SSM's dynamics in their own group, or Adam for the ablation; both with Eden."""

import argparse
import math

import torch
from torch import nn

from todm.mh_ssm import is_dynamics_parameter
from todm.optim import Eden, ScaledAdam


def make_optimizer(model: nn.Module, args: argparse.Namespace) -> tuple[torch.optim.Optimizer, Eden]:
    """ScaledAdam or Adam (``--optimizer``) with Eden (``--base-lr``, ``--lr-batches``, ``--lr-epochs``,
    ``--warmup-batches``).

    With ScaledAdam the SSM time scales and frequencies (``is_dynamics_parameter``) take plain Adam
    steps (ScaledAdam's scalar treatment, ``rms_scaled=False``), not clamped.
    """
    if args.optimizer == "scaled_adam":
        lr = args.base_lr if args.base_lr is not None else 0.045
        named = list(model.named_parameters())
        groups = [{"named_params": [(n, p) for n, p in named if not is_dynamics_parameter(n)], "lr": lr}]
        dynamics = [(n, p) for n, p in named if is_dynamics_parameter(n)]
        if dynamics:
            groups.append({"named_params": dynamics, "lr": lr, "rms_scaled": False, "scalar_max": math.inf})
        optimizer = ScaledAdam(groups, lr=lr, clipping_scale=2.0)
    else:
        lr = args.base_lr if args.base_lr is not None else 1e-3
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = Eden(optimizer, args.lr_batches, args.lr_epochs, warmup_batches=args.warmup_batches)
    return optimizer, scheduler
