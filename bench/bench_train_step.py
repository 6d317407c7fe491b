#!/usr/bin/env python3
"""Training throughput of one TODM step: largest subnet alone vs the sandwich rule.

One optimizer step (forward + backward of every sampled subnet + ScaledAdam) on a synthetic
batch of ``--batch-size`` utterances of ``--duration`` seconds (random fbank, random tokens at
``--tokens-per-second``), timed as the median of ``--repeats`` steps after ``--warmup`` steps.
The reference, measured in the same run, is a step of the largest subnet alone (what training
one model costs); each sandwich variant (``--num-random`` random subnets between the largest
and the smallest, with in-place KD) is printed as seconds of audio per second and as its cost
ratio to that reference. The same sequence of sampled subnets is used for every repeat. With
``--baselines true`` (default) each deployable subnet is also timed alone (the individually
trained baselines of stage 5), and TODM's step is compared with their sum: the "train once"
cost ratio that the report measures on whole runs.

    python bench/bench_train_step.py --batch-size 20 --duration 5 --num-random 0,1,2,3
"""

import argparse
import random
import statistics
import time

import torch

from todm.adaptive_dropout import DropoutRule
from todm.cost import count_parameters
from todm.loss_backend import LOSS_BACKENDS, get_loss_backend
from todm.model import build_model
from todm.model_config import add_model_arguments, config_from_args
from todm.optimizer_setup import make_optimizer
from todm.sandwich import SandwichConfig, sample_sandwich, sandwich_step
from todm.subnet import SearchSpace
from todm.utils import int_list, str2bool


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab-size", type=int, default=256, help="BPE vocabulary size incl. <blk>")
    parser.add_argument("--batch-size", type=int, default=20, help="utterances per batch")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of audio per utterance")
    parser.add_argument("--tokens-per-second", type=float, default=4.0, help="target tokens per second of audio")
    parser.add_argument("--num-random", type=int_list, default=(0, 2),
                        help="comma-separated numbers of random subnets per sandwich step to measure")
    parser.add_argument("--baselines", type=str2bool, default=True,
                        help="also time each deployable subnet trained alone, and TODM's cost against their sum")
    parser.add_argument("--num-deployable", type=int, default=5, help="deployable subnets (as todm.list_subnets)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per variant first")
    parser.add_argument("--num-threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--loss-backend", choices=LOSS_BACKENDS, default="auto")
    parser.add_argument("--seed", type=int, default=0)
    add_model_arguments(parser)
    return parser


def synthetic_batch(args: argparse.Namespace, feature_dim: int, device: torch.device):
    frames = int(args.duration * 100)
    num_tokens = max(1, int(args.duration * args.tokens_per_second))
    x = torch.randn(args.batch_size, frames, feature_dim, device=device)
    x_lens = torch.full((args.batch_size,), frames, dtype=torch.int64, device=device)
    y = [[random.randrange(1, args.vocab_size) for _ in range(num_tokens)] for _ in range(args.batch_size)]
    return x, x_lens, y


def median_step_seconds(model, optimizer, loss_api, batch, space: SearchSpace, cfg: SandwichConfig,
                        num_params, args: argparse.Namespace, device: torch.device) -> float:
    """Median wall seconds of a full training step (the same sampled subnets every time)."""
    subnets = sample_sandwich(space, random.Random(args.seed), cfg.num_random_subnets)
    dropout_rule = DropoutRule()
    times = []
    for i in range(args.warmup + args.repeats):
        start = time.perf_counter()
        result = sandwich_step(model, loss_api, batch, subnets, cfg, dropout_rule, num_params,
                               batch_idx_train=10_000)
        if not result.finite:
            raise RuntimeError(f"non-finite loss in {result.bad_subnet}")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    args = get_parser().parse_args()
    num_random = args.num_random
    if args.duration < 0.5 or args.batch_size < 1 or args.repeats < 1 or min(num_random) < 0:
        raise SystemExit("need --duration >= 0.5, --batch-size >= 1, --repeats >= 1, --num-random >= 0")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(args.num_threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    config = config_from_args(args, vocab_size=args.vocab_size)
    space = config.search_space
    num_params = {spec: count_parameters(config, spec) for spec in space.enumerate()}
    loss_api = get_loss_backend(args.loss_backend)
    batch = synthetic_batch(args, config.feature_dim, device)
    optimizer_args = argparse.Namespace(optimizer="scaled_adam", base_lr=None, lr_batches=7500, lr_epochs=3.5,
                                        warmup_batches=0)
    audio = args.batch_size * args.duration

    print(f"search space {space}; batch {args.batch_size} x {args.duration:g} s = {audio:g} s of audio; "
          f"device {device}, {args.num_threads} thread(s); median of {args.repeats} steps; torch {torch.__version__}")
    header = "| step | subnets per step | seconds | audio s / s | cost vs largest alone |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    variants = [("largest alone", SearchSpace.single(space.largest()), SandwichConfig())]
    variants += [(f"sandwich, {k} random", space, SandwichConfig(num_random_subnets=k)) for k in num_random]
    deployable = space.deployable(args.num_deployable) if args.baselines else []
    variants += [(f"baseline {spec}", SearchSpace.single(spec), SandwichConfig()) for spec in deployable]
    seconds = {}
    for name, variant_space, cfg in variants:
        torch.manual_seed(args.seed)  # every variant starts from the same weights
        model = build_model(config)
        if variant_space.largest() == variant_space.smallest():  # one architecture, as todm.train --subnet
            model = model.extract(variant_space.largest())
        model = model.to(device).train()
        optimizer, _ = make_optimizer(model, optimizer_args)
        seconds[name] = median_step_seconds(model, optimizer, loss_api, batch, variant_space, cfg, num_params,
                                            args, device)
        per_step = len(sample_sandwich(variant_space, random.Random(0), cfg.num_random_subnets))
        ratio = seconds[name] / seconds["largest alone"]
        print(f"| {name} | {per_step} | {seconds[name]:.3f} | {audio / seconds[name]:.1f} | {ratio:.2f}x |")
    if deployable:
        total = sum(seconds[f"baseline {spec}"] for spec in deployable)
        print(f"\nsum of the {len(deployable)} baselines (one model per deployable subnet, same steps): "
              f"{total:.3f} s per step = {total / seconds['largest alone']:.2f}x the largest alone")
        for k in num_random:
            name = f"sandwich, {k} random"
            print(f"TODM ({name}) / baselines' sum = {seconds[name] / total:.2f}")


if __name__ == "__main__":
    main()
