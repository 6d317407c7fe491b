#!/usr/bin/env python3
"""Exported ONNX encoder (onnxruntime, SSM by chunked scan) vs PyTorch (SSM by FFT): time and
peak memory as the audio grows, at the built-in and the LibriSpeech preset's dimensions.

    python bench/bench_onnx_encoder.py                                  # both presets, 5/20/60 s
    python bench/bench_onnx_encoder.py --presets builtin --seconds 5,60 --repeats 5

For each preset (``builtin``: the defaults of todm.model_config; ``librispeech``: the model flags of
conf/librispeech.sh) an untrained supernet (time and memory do not depend on the weights) gives
its smallest and largest subnet; each is exported as stage 6 does (``todm.export.export_onnx``,
fp32) and run on one utterance of random features per length, at 1 thread:

- ONNX: onnxruntime on the encoder file (with ``joiner.encoder_proj``, as sherpa-onnx runs it);
- PyTorch: ``forward_encoder`` (FFT path) + ``joiner.encoder_proj`` of the same subnet.

Every measurement runs in a fresh process. Time: CPU time of the process (on a shared machine
wall time also counts the waits for a core, which penalise long runs: a run longer than the
scheduler's time slice is always interrupted, a short one often not; a linear numpy workload
measured 1.5x more wall time per unit at 300 ms than at 2 ms beside two busy processes on 2
cores, 1.15x more CPU time), median (and minimum) of at least --repeats runs and 2 s of runs,
after a warm-up. Memory, resident (RSS) as a device sees it: the peak
while loading, what stays resident after loading (memory freed by then returned with
malloc_trim), and the peak during the first run (weights, runtime and activations). The targets
of issue 13, ONNX time(60 s) / time(5 s) <= 14 and run peak at 60 s <= 1.5x that at 5 s, use
the longest and shortest --seconds. Other processes inflate times: read the ratios.
"""

import argparse
import ctypes
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RUNTIMES = ("onnx", "pytorch")
TIME_TARGET, MEMORY_TARGET = 14.0, 1.5
MIN_TIMED_SECONDS = 2.0  # short inputs are timed over more runs: the median of a few ms is noisy


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="builtin,librispeech", help="builtin and/or a conf/<name>.sh")
    parser.add_argument("--seconds", default="5,20,60", help="audio lengths (100 feature frames per second)")
    parser.add_argument("--repeats", type=int, default=3,
                        help=f"timed runs per measurement at least (and {MIN_TIMED_SECONDS:g} s of them); median")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES), help="onnx and/or pytorch")
    parser.add_argument("--vocab-size", type=int, default=500, help="does not change the encoder")
    parser.add_argument("--worker", nargs=3, metavar=("RUNTIME", "MODEL", "SECONDS"), help=argparse.SUPPRESS)
    return parser


def preset_flags(preset: str) -> list[str]:
    """The model flags of a preset: none for builtin, else $model_args of conf/<preset>.sh."""
    if preset == "builtin":
        return []
    conf = ROOT / "conf" / f"{preset}.sh"
    if not conf.is_file():
        raise SystemExit(f"--presets: no {conf}")
    script = '. "$1" && printf %s "$model_args"'
    return shlex.split(subprocess.run(["bash", "-c", script, "bash", str(conf)], check=True, capture_output=True,
                                      text=True).stdout)


def prepare(preset: str, vocab_size: int, out_dir: Path) -> list[tuple[str, Path, Path]]:
    """Exports the smallest and largest subnet of an untrained supernet of ``preset``.

    Returns (spec, encoder .onnx, PyTorch checkpoint) for each.
    """
    import torch

    from todm.export import export_onnx
    from todm.model import build_model
    from todm.model_config import add_model_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    config = config_from_args(parser.parse_args(preset_flags(preset)), vocab_size=vocab_size)
    torch.manual_seed(0)
    supernet = build_model(config).eval()
    space = config.search_space
    models = []
    for spec in (space.smallest(), space.largest()):
        subnet = supernet.extract(spec)
        spec_dir = out_dir / f"{preset}-{spec}"
        spec_dir.mkdir(parents=True)
        encoder = export_onnx(subnet, spec_dir, "bench", int8=False)["encoder"]
        checkpoint = spec_dir / "pretrained.pt"
        torch.save({"model": subnet.state_dict(), "model_config": subnet.config.to_dict()}, checkpoint)
        models.append((str(spec), encoder, checkpoint))
    return models


def memory_mb() -> dict[str, float]:
    """This process's memory now (VmRSS) and at its peak (VmHWM), from /proc/self/status."""
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def onnx_runner(model: Path, x: np.ndarray):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    feeds = {"x": x, "x_lens": np.array([x.shape[1]], dtype=np.int64)}
    return lambda: session.run(None, feeds)


def pytorch_runner(model: Path, x: np.ndarray):
    import torch

    from todm.model import Transducer, TransducerConfig

    torch.set_num_threads(1)
    checkpoint = torch.load(model, map_location="cpu", weights_only=True)
    transducer = Transducer(TransducerConfig.from_dict(checkpoint["model_config"])).eval()
    transducer.load_state_dict(checkpoint["model"])
    feats, lens = torch.from_numpy(x), torch.tensor([x.shape[1]])

    def run():
        with torch.inference_mode():
            return transducer.joiner.encoder_proj(transducer.forward_encoder(feats, lens)[0])

    return run


def run_worker(runtime: str, model: Path, seconds: float, repeats: int) -> dict:
    """One measurement in this process: load, first run (memory), warm-up, timed runs."""
    x = np.random.default_rng(0).standard_normal((1, int(100 * seconds), 80)).astype(np.float32)
    run = (onnx_runner if runtime == "onnx" else pytorch_runner)(model, x)
    load_peak = memory_mb()["VmHWM"]
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # return what loading freed: RSS is then what stays
    resident = memory_mb()["VmRSS"]
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS: the next peak is the run's
    run()
    run_peak = memory_mb()["VmHWM"]
    times = []
    while len(times) < repeats or sum(times) < MIN_TIMED_SECONDS:
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return {"seconds": statistics.median(times), "min_seconds": min(times), "load_peak_mb": load_peak,
            "resident_mb": resident, "run_peak_mb": run_peak}


def measure(runtime: str, model: Path, seconds: float, repeats: int) -> dict:
    command = [sys.executable, __file__, "--repeats", str(repeats), "--worker", runtime, str(model), str(seconds)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{runtime} on {model} at {seconds} s failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_row(preset: str, spec: str, length: float, by_runtime: dict[str, dict]) -> None:
    cells = [f"{r['seconds']:.3f} ({r['min_seconds']:.3f}) | {r['run_peak_mb']:.0f}" for r in by_runtime.values()]
    ratio = by_runtime["onnx"]["seconds"] / by_runtime["pytorch"]["seconds"] if len(by_runtime) == 2 else float("nan")
    print(f"| {preset} | {spec} | {length:g} s | " + " | ".join(cells) + f" | {ratio:.2f} |", flush=True)


def print_loading(results: dict, runtimes: list[str]) -> None:
    """Memory of the loaded model: its peak while loading and what stays resident."""
    print("\nLoading (MB; ONNX: onnxruntime computes the SSM chunk matrices while loading)")
    print("| preset | subnet | " + " | ".join(f"{r} load peak | {r} resident" for r in runtimes) + " |")
    print("|" + "---|" * (2 + 2 * len(runtimes)))
    for (preset, spec), by_runtime in results.items():
        cells = []
        for runtime in runtimes:
            first = next(iter(by_runtime[runtime].values()))
            cells.append(f"{first['load_peak_mb']:.0f} | {first['resident_mb']:.0f}")
        print(f"| {preset} | {spec} | " + " | ".join(cells) + " |")


def print_scaling(results: dict, seconds: list[float], runtimes: list[str]) -> None:
    """Time and run peak memory at the longest length over the shortest, per model and runtime."""
    short, long = min(seconds), max(seconds)
    print(f"\nScaling {short:g} s -> {long:g} s (ONNX targets: time <= {TIME_TARGET:g}x, linear "
          f"{long / short:g}x; peak memory of the run <= {MEMORY_TARGET:g}x)")
    print("| preset | subnet | runtime | time | run peak memory | targets met |")
    print("|---|---|---|---|---|---|")
    for (preset, spec), by_runtime in results.items():
        for runtime in runtimes:
            a, b = by_runtime[runtime][short], by_runtime[runtime][long]
            t, m = b["seconds"] / a["seconds"], b["run_peak_mb"] / a["run_peak_mb"]
            met = ("yes" if t <= TIME_TARGET and m <= MEMORY_TARGET else "no") if runtime == "onnx" else "-"
            print(f"| {preset} | {spec} | {runtime} | {t:.1f}x | {m:.2f}x | {met} |")


def main() -> None:
    args = get_parser().parse_args()
    if args.worker:
        runtime, model, seconds = args.worker
        print(json.dumps(run_worker(runtime, Path(model), float(seconds), args.repeats)))
        return
    seconds = [float(s) for s in args.seconds.split(",")]
    runtimes = [r for r in args.runtimes.split(",") if r]
    if not set(runtimes) <= set(RUNTIMES) or min(seconds) < 0.1 or args.repeats < 1:
        raise SystemExit(f"--runtimes must be among {RUNTIMES}, --seconds >= 0.1, --repeats >= 1")
    print(f"untrained subnets, one utterance, 1 thread, at least {args.repeats} runs and {MIN_TIMED_SECONDS:g} s "
          f"after a warm-up; run peak = resident memory of the process at its peak during a run")
    print("| preset | subnet | audio | " + " | ".join(f"{r} CPU s: median (min) | {r} run peak (MB)"
                                                     for r in runtimes) + " | ONNX / PyTorch |")
    print("|" + "---|" * (4 + 2 * len(runtimes)))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets.split(","):
            for spec, encoder, checkpoint in prepare(preset, args.vocab_size, Path(tmp)):
                models = {"onnx": encoder, "pytorch": checkpoint}
                by_runtime = results[(preset, spec)] = {r: {} for r in runtimes}
                for length in seconds:
                    for runtime in runtimes:
                        by_runtime[runtime][length] = measure(runtime, models[runtime], length, args.repeats)
                    print_row(preset, spec, length, {r: by_runtime[r][length] for r in runtimes})
    print_loading(results, runtimes)
    print_scaling(results, seconds, runtimes)


if __name__ == "__main__":
    main()
