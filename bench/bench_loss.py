#!/usr/bin/env python3
"""Time and peak memory of the pruned RNN-T loss vs the full-lattice loss (forward+backward).

    bench/bench_loss.py                                  # B=8 T=500 S=100 V=500, CPU
    bench/bench_loss.py --device cuda --repeats 10
    bench/bench_loss.py --backends todm --num-frames 200

Cases, each on the same random inputs (am [B, T, V], lm [B, S+1, V] leaf tensors standing
in for the model's projections):
  pruned: what icefall's model.py computes: rnnt_loss_smoothed(lm_only_scale=0.25,
          am_only_scale=0, return_grad=True) -> get_rnnt_prune_ranges -> do_rnnt_pruning ->
          additive joiner on [B, T, prune_range, V] -> rnnt_loss_pruned;
          loss = 0.5 * simple + pruned.
  full:   additive joiner on the whole [B, T, S+1, V] lattice -> rnnt_loss.
for each backend (todm = ours; fast_rnnt and k2 when installed, see
tools/install_extras.sh; missing ones are skipped with a note).

Every case runs in a fresh subprocess, so one case's memory cannot hide in another's.
Peak memory = the rise above the memory held before the measured run:
  cuda: torch.cuda.max_memory_allocated (after reset_peak_memory_stats);
  cpu:  the process's peak RSS (VmHWM in /proc/self/status, reset through
        /proc/self/clear_refs). For that one run, after the timed ones, glibc is told
        (mallopt) to mmap every block >= 64 KiB and to trim its heap, so freed tensors
        leave RSS and cached free memory cannot hide an allocation. Counts everything the
        process touches, which tracemalloc (Python objects only) would not see.
Time = median (and min) over --repeats runs after one warm-up run, with the default
allocator settings; ratios use the medians and come from this run only. On a shared
machine, other processes inflate both: compare ratios, not absolute times.
"""
import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time

BACKENDS = ("todm", "fast_rnnt", "k2")
LOSSES = ("pruned", "full")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-frames", type=int, default=500, help="T (encoder frames)")
    parser.add_argument("--num-symbols", type=int, default=100, help="S (tokens per utterance)")
    parser.add_argument("--vocab-size", type=int, default=500)
    parser.add_argument("--prune-range", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="todm,fast_rnnt,k2")
    parser.add_argument("--losses", default=",".join(LOSSES), help="comma list of pruned,full")
    parser.add_argument("--num-threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)  # "backend:loss"
    return parser


def _cpu_memory_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _make_rss_track_live_memory() -> None:
    """glibc: serve blocks >= 64 KiB by mmap (returned to the OS on free) and give cached
    free heap memory back now, so RSS follows the live allocations."""
    libc = ctypes.CDLL("libc.so.6")
    m_mmap_threshold = -3
    libc.mallopt(m_mmap_threshold, 64 * 1024)
    libc.malloc_trim(0)


def run_worker(args: argparse.Namespace) -> dict:
    """Runs one case in this process and returns its measurements."""
    import torch

    from todm.loss_backend import get_loss_backend

    backend_name, loss_name = args.worker.split(":")
    k2_api = get_loss_backend(backend_name)
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    device = torch.device(args.device)
    B, T, S, V = args.batch_size, args.num_frames, args.num_symbols, args.vocab_size
    gen = torch.Generator().manual_seed(args.seed)
    am = torch.randn(B, T, V, generator=gen).to(device).requires_grad_(True)
    lm = torch.randn(B, S + 1, V, generator=gen).to(device).requires_grad_(True)
    symbols = torch.randint(1, V, (B, S), generator=gen).to(device)
    boundary = torch.tensor([[0, 0, S, T]] * B, dtype=torch.int64, device=device)

    def step() -> float:
        am.grad = lm.grad = None
        if loss_name == "pruned":
            simple, (px_grad, py_grad) = k2_api.rnnt_loss_smoothed(
                lm, am, symbols, 0, lm_only_scale=0.25, am_only_scale=0.0,
                boundary=boundary, reduction="sum", return_grad=True,
            )
            ranges = k2_api.get_rnnt_prune_ranges(px_grad, py_grad, boundary, args.prune_range)
            am_pruned, lm_pruned = k2_api.do_rnnt_pruning(am, lm, ranges)
            logits = am_pruned + lm_pruned  # additive joiner, [B, T, prune_range, V]
            pruned = k2_api.rnnt_loss_pruned(logits, symbols, ranges, 0, boundary, reduction="sum")
            loss = 0.5 * simple + pruned
        else:
            logits = am[:, :, None, :] + lm[:, None, :, :]
            loss = k2_api.rnnt_loss(logits, symbols, 0, boundary, reduction="sum")
        loss.backward()
        return loss.item()  # .item() also waits for the GPU

    loss_value = step()  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        am.grad = lm.grad = None
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        peak_mib = (torch.cuda.max_memory_allocated(device) - before) / 2**20
    else:
        am.grad = lm.grad = None
        _make_rss_track_live_memory()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (peak RSS) to the current RSS
        before = _cpu_memory_kib("VmRSS")
        step()
        peak_mib = (_cpu_memory_kib("VmHWM") - before) / 1024
    return {
        "case": args.worker, "loss": loss_value, "peak_mib": peak_mib,
        "seconds": statistics.median(times), "min_seconds": min(times),
        "threads": torch.get_num_threads(),
    }


def run_case(argv: list, case: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), *argv, "--worker", case]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _unavailable_reason(name: str) -> str:
    """'' if the backend imports, else why not (with the install hint)."""
    from todm.loss_backend import get_loss_backend

    try:
        get_loss_backend(name)
        return ""
    except ImportError as e:
        return str(e)


def main() -> None:
    args = get_parser().parse_args()
    if args.worker:
        print(json.dumps(run_worker(args)))
        return
    backends = [b for b in args.backends.split(",") if b]
    losses = [x for x in args.losses.split(",") if x]
    bad = [b for b in backends if b not in BACKENDS] + [x for x in losses if x not in LOSSES]
    if bad:
        raise SystemExit(f"unknown --backends/--losses entries {bad}; known: {BACKENDS}, {LOSSES}")
    for name in [b for b in backends if b != "todm"]:
        reason = _unavailable_reason(name)
        if reason:
            print(f"[skip] {reason}")
            backends.remove(name)
    argv = sys.argv[1:]
    print(
        f"B={args.batch_size} T={args.num_frames} S={args.num_symbols} V={args.vocab_size} "
        f"prune_range={args.prune_range} device={args.device} repeats={args.repeats}"
    )
    results = {}
    print(f"{'case':<18} {'loss':>14} {'median s':>9} {'min s':>9} {'peak MiB':>10}")
    for backend in backends:
        for loss in losses:
            r = run_case(argv, f"{backend}:{loss}")
            results[(backend, loss)] = r
            print(
                f"{r['case']:<18} {r['loss']:>14.4f} {r['seconds']:>9.4f} {r['min_seconds']:>9.4f} "
                f"{r['peak_mib']:>10.1f}",
                flush=True,
            )
    print(f"(torch threads per case: {r['threads']})")

    def ratio(a, b):
        if a in results and b in results:
            ra, rb = results[a], results[b]
            mem = ra["peak_mib"] / rb["peak_mib"] if rb["peak_mib"] > 0 else float("nan")
            speed = ra["seconds"] / rb["seconds"]
            print(f"{a[0]}:{a[1]} / {b[0]}:{b[1]}: time x{speed:.2f}, peak memory x{mem:.2f}")

    print("ratios (same run):")
    for backend in backends:
        ratio((backend, "full"), (backend, "pruned"))
    for other in backends[1:] if backends[:1] == ["todm"] else []:
        for loss in losses:
            ratio(("todm", loss), (other, loss))


if __name__ == "__main__":
    main()
