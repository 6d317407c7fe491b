#!/usr/bin/env python3
"""Cost of each deployable subnet of the default search space, measured in one run.

For every spec of ``SearchSpace.deployable()``: parameters and MACs per second of audio (from
the cost model in todm/cost.py), and the CPU time of ``forward_encoder`` on one utterance of
``--duration`` seconds with the extracted (standalone) model, single-threaded, eval mode,
median of ``--repeats`` runs after one warm-up. Both SSM convolution paths are timed: FFT (the
PyTorch default) and scan (todm.ssm_scan, the form exported to ONNX). Weights are random: the
time does not depend on their values.

    python bench/bench_subnets.py --duration 10 --repeats 7
"""

import argparse
import statistics
import time

import torch

from todm.cost import count_macs_per_second, count_parameters
from todm.model import build_model
from todm.model_config import add_model_arguments, config_from_args


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab-size", type=int, default=500, help="BPE vocabulary size incl. <blk>")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of audio per forward")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per subnet (median reported)")
    parser.add_argument("--num-threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--num-specs", type=int, default=5, help="how many deployable specs to measure")
    parser.add_argument("--seed", type=int, default=0)
    add_model_arguments(parser)
    return parser


def median_seconds(run, repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    args = get_parser().parse_args()
    if args.duration < 0.1 or args.repeats < 1:
        raise SystemExit("--duration must be >= 0.1 and --repeats >= 1")
    torch.set_num_threads(args.num_threads)
    torch.manual_seed(args.seed)
    config = config_from_args(args, vocab_size=args.vocab_size)
    supernet = build_model(config).eval()
    frames = int(args.duration * 100)
    x = torch.randn(1, frames, config.feature_dim)
    x_lens = torch.tensor([frames])

    print(f"search space: {config.search_space}; vocab {config.vocab_size}; causal {config.causal}")
    print(f"forward_encoder on {args.duration:g} s ({frames} frames), {args.num_threads} thread(s), "
          f"median of {args.repeats}, torch {torch.__version__}")
    header = "| subnet | params (M) | MMACs / s audio | fwd FFT (ms) | RTF FFT | fwd scan (ms) | RTF scan |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for spec in config.search_space.deployable(args.num_specs):
        model = supernet.extract(spec)
        timings = []
        for fft in (True, False):
            with torch.inference_mode():
                timings.append(median_seconds(lambda: model.forward_encoder(x, x_lens, fft=fft), args.repeats))
        params = count_parameters(config, spec) / 1e6
        macs = count_macs_per_second(config, spec) / 1e6
        t_fft, t_scan = timings
        print(f"| {spec} | {params:.2f} | {macs:.1f} | {1e3 * t_fft:.1f} | {t_fft / args.duration:.4f} "
              f"| {1e3 * t_scan:.1f} | {t_scan / args.duration:.4f} |")


if __name__ == "__main__":
    main()
