#!/usr/bin/env python3
"""Pick the subnet to deploy for each budget, from WERs and latencies measured on dev (OFA-style).

    python -m todm.select_subnets --exp-dir exp/supernet --epoch 12 --avg 4 \\
        --bpe-model data/lang_bpe_64/bpe.model --manifest-dir data/fbank --corpus builtin \\
        --budgets "params:1.5e6 params:3e5 latency:0.05" [--num-samples 20]

Once-for-all selects a subnet per device by searching the trained supernet under a constraint;
here the candidates are every spec of the checkpoint's search space (or ``--num-samples``
random ones, plus the smallest and the largest), each extracted and decoded on ``--dev-set``
with greedy search. A budget is

- ``params:N``: at most N parameters (the whole standalone model, ``count_parameters``);
- ``latency:S``: at most S seconds of encoder + greedy search per second of audio, measured
  here with ``--num-threads`` threads on ``--device`` (default CPU, 1 thread: on-device-like).
  Measured numbers depend on the machine and its load; rerun on the target machine.

For each budget the answer is the candidate with the lowest dev WER among those within it (ties:
the cheaper one). Written to ``<exp-dir>/selection_<suffix>.json``: every candidate (spec, params,
macs_per_second, wer, latency), the Pareto fronts (WER vs params, WER vs latency) and the
choice per budget; a table is printed. A parameter budget below the smallest subnet is refused
before any decoding; a latency budget that no candidate meets is reported with the fastest one.
"""

import argparse
import logging
import random
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from todm.asr_datamodule import AsrDataModule
from todm.cost import count_macs_per_second, count_parameters
from todm.decode import add_checkpoint_arguments, decode_dataset, load_trained_model, pick_device, warm_up
from todm.model_config import TransducerConfig
from todm.subnet import SubnetSpec
from todm.utils import save_json, setup_logger
from todm.wer import compute_error_stats

BUDGET_KINDS = ("params", "latency")


@dataclass(frozen=True)
class Budget:
    kind: str  # "params" or "latency"
    value: float

    def __str__(self) -> str:
        return f"{self.kind}:{self.value:g}"


def parse_budgets(text: str) -> list[Budget]:
    """``"params:1.5e6 latency:0.05"`` -> budgets; errors name the bad item."""
    budgets = []
    for item in text.split():
        kind, sep, value = item.partition(":")
        if not sep or kind not in BUDGET_KINDS:
            raise ValueError(f"--budgets: {item!r} must look like params:<count> or latency:<seconds per second>")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"--budgets: {item!r}: {value!r} is not a number") from None
        if not number > 0:
            raise ValueError(f"--budgets: {item!r}: the budget must be positive")
        budgets.append(Budget(kind, number))
    return budgets


def candidate_specs(config: TransducerConfig, num_samples: int, seed: int) -> list[SubnetSpec]:
    """Every spec of the search space, or ``num_samples`` distinct random ones with both extremes."""
    space = config.search_space
    every = space.enumerate()
    if num_samples <= 0 or num_samples >= len(every):
        return every
    chosen = {space.smallest(), space.largest()}
    rest = [s for s in every if s not in chosen]
    chosen.update(random.Random(seed).sample(rest, max(num_samples - 2, 0)))
    return [s for s in every if s in chosen]


def check_params_budgets(budgets: list[Budget], config: TransducerConfig) -> None:
    smallest = min(config.search_space.enumerate(), key=lambda s: count_parameters(config, s))
    minimum = count_parameters(config, smallest)
    for b in budgets:
        if b.kind == "params" and b.value < minimum:
            raise ValueError(f"budget {b} is impossible: the smallest subnet of the search space, {smallest}, "
                             f"has {minimum:,} parameters")


def pareto_front(candidates: list[dict[str, Any]], cost: str) -> list[str]:
    """Specs no other candidate beats on both ``cost`` and WER, cheapest first."""
    front, best_wer = [], float("inf")
    for c in sorted(candidates, key=lambda c: (c[cost], c["wer"])):
        if c["wer"] < best_wer:
            front.append(c["spec"])
            best_wer = c["wer"]
    return front


def choose(candidates: list[dict[str, Any]], budget: Budget) -> dict[str, Any]:
    """The best candidate within ``budget``, or a message saying why there is none."""
    within = [c for c in candidates if c[budget.kind] <= budget.value]
    entry: dict[str, Any] = {"budget": str(budget), "kind": budget.kind, "value": budget.value}
    if not within:
        cheapest = min(candidates, key=lambda c: c[budget.kind])
        entry.update(spec=None, message=f"no evaluated subnet meets {budget}: the cheapest is {cheapest['spec']} "
                                        f"with {budget.kind} {cheapest[budget.kind]:.4g}")
        return entry
    best = min(within, key=lambda c: (c["wer"], c[budget.kind]))
    entry.update(spec=best["spec"], wer=best["wer"], params=best["params"], latency=best["latency"], message=None)
    return entry


def format_tables(candidates: list[dict[str, Any]], fronts: dict[str, list[str]], choices: list[dict]) -> str:
    lines = [f"{'spec':<14}{'params':>12}{'MACs/s':>14}{'latency s/s':>13}{'dev WER %':>11}  pareto"]
    for c in sorted(candidates, key=lambda c: c["params"]):
        marks = ",".join(k for k, front in fronts.items() if c["spec"] in front)
        lines.append(f"{c['spec']:<14}{c['params']:>12,}{c['macs_per_second']:>14,}{c['latency']:>13.4f}"
                     f"{c['wer']:>11.2f}  {marks}")
    if choices:
        lines += ["", f"{'budget':<18}{'spec':<14}{'params':>12}{'latency s/s':>13}{'dev WER %':>11}"]
        for e in choices:
            if e["spec"] is None:
                lines.append(f"{e['budget']:<18}{e['message']}")
            else:
                lines.append(f"{e['budget']:<18}{e['spec']:<14}{e['params']:>12,}{e['latency']:>13.4f}"
                             f"{e['wer']:>11.2f}")
    return "\n".join(lines)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_checkpoint_arguments(parser)
    parser.set_defaults(device="cpu")
    g = parser.add_argument_group("selection")
    g.add_argument("--budgets", type=str, default="",
                   help='space-separated kind:value, e.g. "params:1.5e6 latency:0.05" (latency: seconds per '
                        "second of audio); empty: only the Pareto fronts")
    g.add_argument("--num-samples", type=int, default=0,
                   help="evaluate this many random specs (plus smallest and largest); 0: every spec")
    g.add_argument("--seed", type=int, default=42, help="for --num-samples")
    g.add_argument("--dev-set", type=str, default="dev", help="cut part used for selection")
    AsrDataModule.add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = get_parser().parse_args(argv)
    budgets = parse_budgets(args.budgets)
    torch.set_num_threads(args.num_threads)
    device = pick_device(args.device)
    loaded = load_trained_model(args)
    config = loaded.config
    check_params_budgets(budgets, config)
    data = AsrDataModule(args)
    cuts = data.cuts(args.dev_set)
    specs = candidate_specs(config, args.num_samples, args.seed)
    setup_logger(args.exp_dir / "log" / f"log-select-subnets-{loaded.suffix}")
    logging.info(f"evaluating {len(specs)} subnets of {config.search_space} on {args.dev_set}, "
                 f"device {device}, {args.num_threads} thread(s)")

    candidates = []
    for spec in specs:
        model = loaded.model.extract(spec).eval().to(device)
        warm_up(model, device, "greedy_search", 1)
        out = decode_dataset(model, data.eval_dataloader(cuts), loaded.sp, device, "greedy_search",
                             desc=str(spec))
        if not out.results:
            raise ValueError(f"--dev-set {args.dev_set}: no cuts to decode")
        stats = compute_error_stats(out.results)
        if stats.ref_words == 0:
            raise ValueError(f"--dev-set {args.dev_set}: the references have no words")
        candidates.append({"spec": str(spec), "params": count_parameters(config, spec),
                           "macs_per_second": count_macs_per_second(config, spec), "wer": stats.wer,
                           "latency": out.decode_seconds / out.audio_seconds})
        logging.info(f"{spec}: WER {stats.wer:.2f}%, latency {candidates[-1]['latency']:.4f} s/s")

    fronts = {cost: pareto_front(candidates, cost) for cost in BUDGET_KINDS}
    choices = [choose(candidates, b) for b in budgets]
    for entry in choices:
        if entry["spec"] is None:
            logging.warning(f"budget {entry['budget']}: {entry['message']}")
    selection = {
        "exp_dir": str(args.exp_dir), "suffix": loaded.suffix, "dev_set": args.dev_set, "method": "greedy_search",
        "device": str(device), "num_threads": args.num_threads, "search_space": str(config.search_space),
        "candidates": candidates, "pareto": fronts, "budgets": choices,
    }
    path = args.exp_dir / f"selection_{loaded.suffix}.json"
    save_json(selection, path)
    print(format_tables(candidates, fronts, choices))
    picked = [e["spec"] for e in choices if e["spec"] is not None]
    if picked:
        print("selected subnets: " + " ".join(dict.fromkeys(picked)))
    logging.info(f"wrote {path}")
    return selection


if __name__ == "__main__":
    main()
