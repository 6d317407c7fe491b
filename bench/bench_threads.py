#!/usr/bin/env python3
"""Training step time under a competing load: torch thread count x OpenMP wait policy.

A user's machine is rarely idle. With OpenMP's default (active) wait policy, torch's worker
threads spin at every barrier; when another process holds one of the cores, a parallel region
waits for a thread that is not running, and every step pays that wait many times over (seen:
a 2-thread step 30-40x slower beside one busy process). ``path.sh`` and ``todm/__init__.py``
therefore set ``OMP_WAIT_POLICY=PASSIVE`` unless the user set it.

Each configuration runs in a fresh process (the wait policy is read when OpenMP starts), times
``--repeats`` training steps of the largest subnet (forward + backward of the encoder on a
synthetic ``--batch-size`` x ``--duration`` s batch) after one warm-up step, once on an idle
machine and once beside ``--competitors`` single-threaded busy-loop processes. Printed: the
median step time and its ratio to the idle 1-thread step measured in the same run.

    python bench/bench_threads.py --threads 1,2 --competitors 1
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

STEP = """
import statistics, sys, time, torch
from todm.model import build_model
from todm.model_config import TransducerConfig
threads, repeats, batch, frames = map(int, sys.argv[1:5])
torch.set_num_threads(threads)
torch.manual_seed(0)
model = build_model(TransducerConfig(vocab_size=256))
x, x_lens = torch.randn(batch, frames, 80), torch.full((batch,), frames)
times = []
for i in range(repeats + 1):
    start = time.perf_counter()
    out, _ = model.forward_encoder(x, x_lens)
    out.square().mean().backward()
    times.append(time.perf_counter() - start)
print(statistics.median(times[1:]))
"""


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=str, default="1,2", help="comma-separated torch thread counts")
    parser.add_argument("--policies", type=str, default="ACTIVE,PASSIVE", help="OMP_WAIT_POLICY values")
    parser.add_argument("--competitors", type=int, default=1, help="busy single-threaded processes for the load")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per utterance")
    return parser


def step_seconds(args: argparse.Namespace, threads: int, policy: str) -> float:
    env = {**os.environ, "OMP_WAIT_POLICY": policy}
    command = [sys.executable, "-c", STEP, str(threads), str(args.repeats), str(args.batch_size),
               str(int(args.duration * 100))]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


def busy_loops(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def main() -> None:
    args = get_parser().parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    policies = args.policies.split(",")
    rows = []
    for load in (0, args.competitors):
        competitors = busy_loops(load)
        try:
            time.sleep(0.5)
            for policy in policies:
                for n in threads:
                    rows.append((load, policy, n, step_seconds(args, n, policy)))
        finally:
            for p in competitors:
                p.kill()
    reference = statistics.median(s for load, policy, n, s in rows if load == 0 and n == min(threads))
    print(f"\nstep time of the largest subnet ({args.batch_size} x {args.duration:g} s), median of {args.repeats}; "
          f"reference: idle machine, {min(threads)} thread(s)")
    print("| busy processes | OMP_WAIT_POLICY | threads | step s | x reference |\n|---|---|---|---|---|")
    for load, policy, n, seconds in rows:
        print(f"| {load} | {policy} | {n} | {seconds:.3f} | {seconds / reference:.2f} |")


if __name__ == "__main__":
    main()
