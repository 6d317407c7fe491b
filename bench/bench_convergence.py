#!/usr/bin/env python3
"""Learning curves: test WER per training step, several architectures side by side.

Every change to the model or the recipe is judged here by what it buys in WER per step, not by
the loss alone. Each spec of ``--specs`` is trained alone (``todm.train --subnet SPEC``, an
individually trained model, as stage 5 does) or, with ``--supernet true``, the whole supernet
once, on the default run's data and batches: the built-in preset of ``conf/builtin.sh``
(``--max-duration`` per process, ``world_size`` data-parallel processes, its training flags)
after stages 0-2. After every epoch the model is
decoded with greedy search on ``--test-sets``, both the raw weights of that epoch and, from the
second epoch on, the weights averaged over that epoch (``--avg 1 --use-averaged-model true``, as
run.sh decodes). Printed: one row per (spec, epoch) with the steps taken so far, the validation
loss the trainer logged (per frame, 0.5 simple + pruned, dev set), and the WER of each set.

    python bench/bench_convergence.py --specs L2-F144-H1,L4-F432-H2,L6-F576-H4 --num-epochs 3
    python bench/bench_convergence.py --specs L6-F576-H4 --train-args "--base-lr 0.03" --tag lr0.03
    python bench/bench_convergence.py --supernet true --specs L6-F576-H4,L2-F144-H1   # decode these subnets

Runs are resumable (``--auto-resume``): re-running the same command reuses finished epochs and
decodes. ``--world-size 1 --max-duration 40 --jobs 2 --num-threads 1`` trains two specs at once, one
process and thread each, with the preset's 40-s steps (2 x 20 s) in one process.
"""

import argparse
import json
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PRESET_VARIABLES = ("train_parts", "dev_parts", "test_parts", "vocab_size", "num_epochs", "max_duration", "avg",
                    "perturb_speed", "data_dir", "world_size", "train_args")
BUILTIN_PRESET = Path(__file__).resolve().parents[1] / "conf" / "builtin.sh"


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--specs", type=str, default="L2-F144-H1,L4-F432-H2,L6-F576-H4",
                        help="comma-separated subnet specs (trained alone, or decoded from the supernet)")
    parser.add_argument("--supernet", type=str, choices=("true", "false"), default="false",
                        help="train the supernet once (sandwich) and decode --specs from it")
    parser.add_argument("--num-epochs", type=int, default=3, help="epochs to train (one decode per epoch)")
    parser.add_argument("--preset", type=Path, default=BUILTIN_PRESET,
                        help="run.sh preset to read (a --config file such as conf/builtin_long.sh, or conf/builtin.sh)")
    parser.add_argument("--train-args", type=str, default="", help="extra todm.train flags, after the preset's")
    parser.add_argument("--tag", type=str, default="default", help="name of this variant (its own exp dirs)")
    parser.add_argument("--out-dir", type=Path, default=Path("exp/bench-convergence"))
    parser.add_argument("--manifest-dir", type=Path, default=None, help="default: the preset's data_dir/fbank")
    parser.add_argument("--corpus", type=str, default="builtin")
    parser.add_argument("--test-sets", type=str, default="dev test")
    parser.add_argument("--averaged", type=str, choices=("both", "raw", "avg"), default="both",
                        help="decode the raw weights, the epoch's averaged weights, or both")
    parser.add_argument("--jobs", type=int, default=1, help="specs trained at the same time")
    parser.add_argument("--num-threads", type=int, default=None,
                        help="torch threads per training process (default: the usable cores / processes)")
    parser.add_argument("--world-size", type=int, default=None,
                        help="data-parallel training processes (torchrun, gloo); default: the preset's")
    parser.add_argument("--max-duration", type=float, default=None,
                        help="seconds of audio per batch and process; default: the preset's")
    parser.add_argument("--seed", type=int, default=42)
    return parser


def read_preset(path: Path) -> dict[str, str]:
    """The variables and ``preset_train_args`` a run.sh preset sets: sourced by bash as run.sh does for
    the built-in corpus, the file (a --config file) first, then conf/builtin.sh for what it leaves unset."""
    for preset in (path, BUILTIN_PRESET):
        if not preset.is_file():
            raise SystemExit(f"preset {preset} not found (run from the repository root)")
    script = " ".join(f"{v}=;" for v in PRESET_VARIABLES) + f" . {shlex.quote(str(path))}; . {BUILTIN_PRESET};"
    script += ' : "${data_dir:=data}";'
    script += " ".join(f'printf "%s\\0" "${{{v}}}";' for v in (*PRESET_VARIABLES, "preset_train_args"))
    values = subprocess.run(["bash", "-c", script], check=True, capture_output=True, text=True).stdout.split("\0")
    return dict(zip((*PRESET_VARIABLES, "preset_train_args"), values))


def bpe_model(preset: dict[str, str]) -> str:
    return f"{preset['data_dir']}/lang_bpe_{preset['vocab_size']}/bpe.model"


def run(command: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write("# " + shlex.join(command) + "\n")
        f.flush()
        done = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {shlex.join(command)}; see {log}")


def train_command(args: argparse.Namespace, preset: dict[str, str], exp_dir: Path, spec: str | None,
                  port: int) -> list[str]:
    """``todm.train`` as run.sh launches it for this preset: one process, or torchrun (``port``: its own)."""
    world_size = args.world_size or int(preset["world_size"] or 1)
    launcher = [sys.executable, "-m"]
    if world_size > 1:
        launcher = ["torchrun", "--nproc-per-node", str(world_size), "--master-port", str(port), "-m"]
    command = [*launcher, "todm.train", "--manifest-dir", str(args.manifest_dir), "--corpus", args.corpus,
               "--bpe-model", bpe_model(preset), "--num-epochs", str(args.num_epochs),
               "--max-duration", str(args.max_duration or preset["max_duration"]),
               "--seed", str(args.seed), "--auto-resume", "true", "--exp-dir", str(exp_dir), "--tensorboard", "false",
               *(["--num-threads", str(args.num_threads)] if args.num_threads else []),
               *(["--subnet", spec] if spec else []),
               *preset["preset_train_args"].split(), *shlex.split(preset["train_args"]),
               *shlex.split(args.train_args)]
    return command


def decode(args: argparse.Namespace, preset: dict[str, str], exp_dir: Path, specs: list[str], epoch: int,
           averaged: bool) -> dict[str, dict[str, float]]:
    """{spec: {set: WER}} of ``epoch`` (raw or epoch-averaged weights), decoded once and cached."""
    suffix = f"epoch-{epoch}_avg-1" + ("_use-averaged-model" if averaged else "")
    results = {s: exp_dir / "greedy_search" / f"results-{s}_{suffix}.json" for s in specs}
    todo = [s for s, p in results.items() if not p.is_file()]
    if todo:
        command = [sys.executable, "-m", "todm.decode", "--exp-dir", str(exp_dir), "--epoch", str(epoch),
                   "--avg", "1", "--use-averaged-model", str(averaged).lower(), "--manifest-dir",
                   str(args.manifest_dir), "--corpus", args.corpus, "--test-sets", args.test_sets,
                   "--bpe-model", bpe_model(preset),
                   "--decoding-method", "greedy_search", "--subnets", " ".join(todo)]
        run(command, exp_dir / "bench-decode.log")
    return {s: json.loads(p.read_text())["wer"] for s, p in results.items()}


def valid_losses(exp_dir: Path) -> dict[int, dict[str, float]]:
    """{epoch: {"largest"/"smallest": valid loss}}: the validation logged right after each epoch."""
    losses, finished = {}, None
    for log in sorted((exp_dir / "log").glob("log-train*")):
        for line in log.read_text().splitlines():
            done = re.search(r"epoch (\d+) done", line)
            valid = re.search(r"validation: (.*)$", line)
            if done:
                finished = int(done.group(1))
            elif valid and finished is not None:
                losses[finished] = {k: float(v) for k, v in (item.split() for item in valid.group(1).split(", "))}
                finished = None
    return losses


def epoch_steps(exp_dir: Path, epoch: int) -> int:
    """Training steps taken by the end of ``epoch`` (stored in its checkpoint's params)."""
    import torch

    ckpt = torch.load(exp_dir / f"epoch-{epoch}.pt", map_location="cpu", weights_only=True)
    return int(ckpt["params"]["batch_idx_train"])


def rows_for(args: argparse.Namespace, preset: dict[str, str], exp_dir: Path, specs: list[str]) -> list[dict]:
    valid = valid_losses(exp_dir)
    rows = []
    for epoch in range(1, args.num_epochs + 1):
        kinds = {"raw": False, "avg": True} if args.averaged == "both" else {args.averaged: args.averaged == "avg"}
        wers = {kind: decode(args, preset, exp_dir, specs, epoch, averaged)
                for kind, averaged in kinds.items() if not (averaged and epoch == 1)}
        steps = epoch_steps(exp_dir, epoch)
        for spec in specs:
            rows.append({"spec": spec, "epoch": epoch, "steps": steps,
                         "valid_loss": valid.get(epoch, {}).get("largest"),
                         "wer": {kind: w[spec] for kind, w in wers.items()}})
    return rows


def main() -> None:
    args = get_parser().parse_args()
    preset = read_preset(args.preset)
    args.manifest_dir = args.manifest_dir or Path(preset["data_dir"]) / "fbank"
    specs = [s.strip() for s in args.specs.split(",") if s.strip()]
    if not specs:
        raise SystemExit("--specs is empty")
    base = args.out_dir / args.tag
    if args.supernet == "true":
        jobs = [(base / "supernet", None, specs)]
    else:
        jobs = [(base / spec, spec, [spec]) for spec in specs]
    jobs = [(i, *job) for i, job in enumerate(jobs)]

    def one(job) -> list[dict]:
        index, exp_dir, spec, decode_specs = job
        run(train_command(args, preset, exp_dir, spec, port=29710 + index), exp_dir / "bench-train.log")
        return rows_for(args, preset, exp_dir, decode_specs)

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = [row for result in pool.map(one, jobs) for row in result]
    sets = args.test_sets.split()
    kinds = ("raw", "avg") if args.averaged == "both" else (args.averaged,)
    header = ["spec", "epoch", "steps", "valid loss"] + [f"{s} {k}" for k in kinds for s in sets]
    print(f"\nlearning curves ({args.tag}; {'supernet' if args.supernet == 'true' else 'trained alone'}; greedy WER %)")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for r in sorted(rows, key=lambda r: (r["epoch"], r["spec"])):
        loss = f"{r['valid_loss']:.3f}" if r["valid_loss"] is not None else "-"
        cells = [r["spec"], str(r["epoch"]), str(r["steps"]), loss]
        cells += [f"{r['wer'][k][s]:.1f}" if k in r["wer"] else "-" for k in kinds for s in sets]
        print("| " + " | ".join(cells) + " |")
    (base / "curves.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
