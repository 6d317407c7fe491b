#!/usr/bin/env python3
"""How supernet training time grows with the corpus: one epoch on growing subsets.

Takes the training cuts of stage 1 (``<manifest-dir>/<corpus>_cuts_<train-part>.jsonl.gz``),
writes the first ``f`` of them for every fraction in ``--fractions`` to a scratch manifest dir
(the features are shared, not copied) and runs one epoch of ``todm.train`` on each, as stage 3
would (sandwich rule with ``--num-random-subnets``, default model flags), with checkpoints and
validation in a scratch exp dir. Printed per size: hours of audio, training wall seconds
(from the run's ``train_cost.json``), seconds per hour of audio, and the ratio of each to the
smallest size. Linear scaling shows as a constant seconds-per-hour.

    python bench/bench_scaling.py --fractions 0.25,0.5,1 --bpe-model data/lang_bpe_64/bpe.model
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from lhotse import CutSet

from todm.utils import DEFAULT_BPE_MODEL, load_json


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest-dir", type=Path, default=Path("data/fbank"))
    parser.add_argument("--corpus", type=str, default="builtin")
    parser.add_argument("--train-part", type=str, default="train")
    parser.add_argument("--valid-part", type=str, default="dev")
    parser.add_argument("--bpe-model", type=Path, default=DEFAULT_BPE_MODEL)
    parser.add_argument("--fractions", type=str, default="0.25,0.5,1", help="comma-separated corpus fractions")
    parser.add_argument("--max-duration", type=float, default=100.0)
    parser.add_argument("--num-random-subnets", type=int, default=2)
    parser.add_argument("--train-args", type=str, default="", help="extra flags for todm.train")
    return parser


def train_one_epoch(args: argparse.Namespace, manifest_dir: Path, exp_dir: Path) -> float:
    command = [sys.executable, "-m", "todm.train", "--manifest-dir", str(manifest_dir), "--corpus", args.corpus,
               "--train-part", args.train_part, "--valid-part", args.valid_part, "--bpe-model", str(args.bpe_model),
               "--num-epochs", "1", "--max-duration", str(args.max_duration), "--exp-dir", str(exp_dir),
               "--num-random-subnets", str(args.num_random_subnets), "--tensorboard", "false",
               *args.train_args.split()]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"todm.train failed on {manifest_dir}:\n{done.stderr[-3000:]}")
    return load_json(exp_dir / "train_cost.json")["wall_seconds"]


def main() -> None:
    args = get_parser().parse_args()
    try:
        fractions = sorted(float(f) for f in args.fractions.split(","))
    except ValueError:
        raise SystemExit(f"--fractions: expected comma-separated numbers, got {args.fractions!r}") from None
    if not fractions or not all(0 < f <= 1 for f in fractions):
        raise SystemExit(f"--fractions must be in (0, 1], got {args.fractions!r}")
    source = args.manifest_dir / f"{args.corpus}_cuts_{args.train_part}.jsonl.gz"
    valid = args.manifest_dir / f"{args.corpus}_cuts_{args.valid_part}.jsonl.gz"
    for path in (source, valid, args.bpe_model):
        if not path.is_file():
            raise SystemExit(f"{path} not found: run ./run.sh --stage 0 --stop-stage 2 first")
    cuts = CutSet.from_file(source).to_eager()

    print(f"one epoch of todm.train per size ({args.num_random_subnets} random subnets, max duration "
          f"{args.max_duration:g} s); corpus {args.corpus} {args.train_part}: {len(cuts)} cuts")
    header = "| fraction | cuts | hours | wall s | s per hour | hours vs smallest | time vs smallest |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    reference = None
    with tempfile.TemporaryDirectory(prefix="bench_scaling_") as tmp:
        for fraction in fractions:
            subset = cuts.subset(first=max(1, round(fraction * len(cuts))))
            manifest_dir = Path(tmp) / f"data-{fraction:g}"
            manifest_dir.mkdir()
            subset.to_file(manifest_dir / source.name)
            (manifest_dir / valid.name).symlink_to(valid.resolve())
            hours = sum(c.duration for c in subset) / 3600
            wall = train_one_epoch(args, manifest_dir, Path(tmp) / f"exp-{fraction:g}")
            reference = reference or (hours, wall)
            print(f"| {fraction:g} | {len(subset)} | {hours:.3f} | {wall:.1f} | {wall / hours:.0f} "
                  f"| {hours / reference[0]:.2f}x | {wall / reference[1]:.2f}x |")


if __name__ == "__main__":
    main()
