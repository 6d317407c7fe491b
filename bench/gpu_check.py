#!/usr/bin/env python3
"""The CUDA path of the recipe checked in one run on one GPU (about 3-8 minutes), or on a CPU in a
reduced form (small shapes, the same code) that tests/test_gpu_check.py runs so this cannot rot.

    python bench/gpu_check.py --out exp/gpu_check.json           # on a GPU machine, after tools/setup.sh
    python bench/gpu_check.py --device cpu --reduced true         # the suite's form: seconds on a CPU

Five sections, each timed and caught on its own (one failing does not hide the others; the exit
status is 1 if any failed or missed its tolerance):

  cuda_tests  the suite's tests that need CUDA (pytest -k cuda on the test files that mention it).
  compare     device float32 against CPU float64 at LibriSpeech shapes (B=8 utterances of 15 s:
              T=375 encoder frames, S=60 tokens, V=500): the simple (smoothed) and pruned RNN-T
              losses of every loss backend and their gradients w.r.t. am/lm, the CTC loss, and one
              forward/backward of the preset's largest subnet (2 utterances of 8 s, dropout 0; the CPU
              run is given the device's prune ranges, so both evaluate the same lattice). TF32 is
              off here: the check is of our numerics, not of TF32's 10-bit mantissa.
  train_step  one TODM training step exactly as todm.train takes it (sandwich_step + ScaledAdam,
              with the preset's flags: bf16 autocast, K random subnets, KD) on a synthetic batch of
              --batch-duration seconds (the preset's --max-duration: 1000 s) of --utt-duration
              utterances (LibriSpeech 960 h: 12.3 s on average) with --tokens-per-second tokens, at
              the preset's model dimensions: median seconds over --repeats steps (a fresh sandwich
              each, the same ones for every backend), peak device memory, per --loss-backends entry
              (todm always; k2 and fast_rnnt when importable, else skipped with the reason).
  decode      greedy and modified beam search (beam 4) of 4 utterances on the device, tokens compared
              with the same search on the CPU (random weights: a check of the code, not of accuracy).
  estimate    GPU-hours of conf/librispeech.sh: steps per epoch = the speed-perturbed 960 h
              (960 x (1 + 1/0.9 + 1/1.1) = 2899 h) / (max_duration x GPUs), x num_epochs x the
              measured step, for 1, 4 and 8 GPUs. A lower bound: full batches, no data loading,
              validation or gradient all-reduce (DDP's cost is what 4/8 GPUs would add).

The reduced form uses run.sh --tiny's model dimensions and a few seconds of audio; its
"estimate" is printed but is no estimate. With --out the results are written as JSON (atomically).
"""

import argparse
import contextlib
import copy
import math
import random
import shlex
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from todm.adaptive_dropout import DropoutRule
from todm.beam_search import greedy_search_batch, modified_beam_search
from todm.cost import count_parameters
from todm.loss_backend import get_loss_backend
from todm.model import build_model
from todm.model_config import config_from_args
from todm.optimizer_setup import make_optimizer
from todm.sandwich import sample_sandwich, sandwich_step
from todm.train import get_parser as get_train_parser
from todm.training_setup import sandwich_config_from_args
from todm.transducer_loss import transducer_forward
from todm.utils import save_json, str2bool

ROOT = Path(__file__).resolve().parents[1]
LIBRISPEECH_HOURS = 960.0
SPEED_FACTORS = (1.0, 0.9, 1.1)  # stage 1's perturbation: a factor f makes the audio 1/f as long
TINY_MODEL_ARGS = ("--encoder-dim 32 --head-dim 8 --state-dim 8 --num-layers 1,2 --ffn-dim 32,64 --num-heads 1,2 "
                   "--decoder-dim 32 --joiner-dim 32")  # run.sh --tiny
TOLERANCES = {"loss": 1e-4, "grad": 1e-3}  # relative, float32 on the device vs float64 on the CPU
PRESET_VARIABLES = ("vocab_size", "perturb_speed", "num_epochs", "world_size", "max_duration", "model_args",
                    "train_args")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda, cuda:1, ... or cpu (with --reduced true)")
    parser.add_argument("--reduced", type=str2bool, default=False,
                        help="small shapes and run.sh --tiny's model (the test suite's CPU form)")
    parser.add_argument("--config", type=Path, default=ROOT / "conf/librispeech.sh", help="the preset estimated")
    parser.add_argument("--loss-backends", default="todm,k2,fast_rnnt",
                        help="timed in train_step; all but todm are skipped when they do not import")
    parser.add_argument("--batch-duration", type=float, default=None,
                        help="seconds of audio per step; default the preset's max_duration")
    parser.add_argument("--utt-duration", type=float, default=12.3, help="seconds per synthetic utterance")
    parser.add_argument("--tokens-per-second", type=float, default=4.0, help="BPE tokens per second of audio")
    parser.add_argument("--repeats", type=int, default=3, help="timed training steps per backend (median)")
    parser.add_argument("--cuda-tests", type=str2bool, default=True, help="run the suite's CUDA tests first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the results here as JSON")
    return parser


def read_preset(path: Path) -> dict[str, str]:
    """The preset's variables as run.sh sees them (bash sources it)."""
    script = '. "$1"; shift; for v in "$@"; do printf "%s\\0" "${!v}"; done'
    out = subprocess.run(["bash", "-c", script, "preset", str(path), *PRESET_VARIABLES], capture_output=True,
                         text=True, check=True).stdout
    return dict(zip(PRESET_VARIABLES, out.split("\0")))


def preset_train_args(preset: dict[str, str], reduced: bool, backend: str) -> argparse.Namespace:
    """todm.train's flags as run.sh passes them for the preset (--tiny's model when reduced)."""
    model_args = TINY_MODEL_ARGS if reduced else preset["model_args"]
    argv = shlex.split(model_args) + shlex.split(preset["train_args"]) + ["--loss-backend", backend]
    return get_train_parser().parse_args(argv)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def no_tf32():
    """float32 matmuls and convolutions in full float32 (cuDNN's default is TF32: 10-bit mantissa)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    """max |got - ref| / max |ref| (finite entries of ref; 0 when ref is all zero)."""
    got, ref = got.detach().double().cpu(), ref.detach().double().cpu()
    mask = torch.isfinite(ref)
    scale = ref[mask].abs().max().item() if mask.any() else 0.0
    return (got[mask] - ref[mask]).abs().max().item() / scale if scale > 0 else 0.0


# ---------------------------------------------------------------- sections


def cuda_tests(args: argparse.Namespace, _: dict) -> dict[str, Any]:
    """pytest -k cuda on the test files that mention CUDA (on a CPU they report skipped)."""
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                   if "torch.cuda.is_available()" in p.read_text())
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-k", "cuda", *files]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = proc.stdout.strip().splitlines()
    return {"files": files, "returncode": proc.returncode, "summary": lines[-1] if lines else proc.stderr[-500:],
            "ok": proc.returncode == 0}


def _loss_inputs(shape: dict[str, int], seed: int) -> dict[str, torch.Tensor]:
    B, T, S, V = shape["B"], shape["T"], shape["S"], shape["V"]
    gen = torch.Generator().manual_seed(seed)
    return {"am": torch.randn(B, T, V, generator=gen, dtype=torch.float64),
            "lm": torch.randn(B, S + 1, V, generator=gen, dtype=torch.float64),
            "symbols": torch.randint(3, V, (B, S), generator=gen),
            "boundary": torch.tensor([[0, 0, S - b, T - 7 * b] for b in range(B)], dtype=torch.int64)}


def _rnnt_losses(api, inputs: dict, device: torch.device, dtype: torch.dtype, ranges=None, prune_range: int = 5):
    """Simple (smoothed) and pruned loss of an additive joiner, with d/d(am, lm) of both."""
    am, lm = (inputs[k].to(device, dtype).requires_grad_() for k in ("am", "lm"))
    symbols, boundary = inputs["symbols"].to(device), inputs["boundary"].to(device)
    simple, (px_grad, py_grad) = api.rnnt_loss_smoothed(lm, am, symbols, 0, lm_only_scale=0.25, am_only_scale=0.0,
                                                        boundary=boundary, reduction="sum", return_grad=True)
    if ranges is None:
        ranges = api.get_rnnt_prune_ranges(px_grad, py_grad, boundary, prune_range)
    am_pruned, lm_pruned = api.do_rnnt_pruning(am, lm, ranges.to(device))
    pruned = api.rnnt_loss_pruned(am_pruned + lm_pruned, symbols, ranges.to(device), 0, boundary, reduction="sum")
    simple_grads = torch.autograd.grad(simple, (am, lm), retain_graph=True)
    pruned_grads = torch.autograd.grad(pruned, (am, lm))
    return {"simple": (simple, simple_grads), "pruned": (pruned, pruned_grads)}, ranges


def _ctc(inputs: dict, device: torch.device, dtype: torch.dtype):
    am = inputs["am"].to(device, dtype).requires_grad_()
    boundary, symbols = inputs["boundary"].to(device), inputs["symbols"].to(device)
    loss = F.ctc_loss(am.log_softmax(-1).transpose(0, 1), symbols, boundary[:, 3], boundary[:, 2], reduction="sum")
    return loss, torch.autograd.grad(loss, am)


def _check(name: str, got, ref, rows: list) -> None:
    (loss, grads), (ref_loss, ref_grads) = got, ref
    row = {"case": name, "loss": loss.item(), "loss_rel_err": relative_error(loss, ref_loss),
           "grad_rel_err": max(relative_error(g, r) for g, r in zip(grads, ref_grads))}
    row["ok"] = row["loss_rel_err"] <= TOLERANCES["loss"] and row["grad_rel_err"] <= TOLERANCES["grad"]
    rows.append(row)


def compare(args: argparse.Namespace, ctx: dict) -> dict[str, Any]:
    device, rows = ctx["device"], []
    shape = dict(B=2, T=30, S=6, V=20) if args.reduced else dict(B=8, T=375, S=60, V=500)
    inputs = _loss_inputs(shape, args.seed)
    ours = get_loss_backend("todm")
    with no_tf32():
        for name, api in ctx["backends"].items():
            got, ranges = _rnnt_losses(api, inputs, device, torch.float32)
            ref, _ = _rnnt_losses(ours, inputs, torch.device("cpu"), torch.float64, ranges.cpu())
            for loss in ("simple", "pruned"):
                _check(f"{name} {loss} loss", got[loss], ref[loss], rows)
        _check("ctc loss", _ctc(inputs, device, torch.float32), _ctc(inputs, torch.device("cpu"), torch.float64),
               rows)
        rows.append(_model_case(args, ctx))
    return {"shape": shape, "tolerances": TOLERANCES, "cases": rows, "ok": all(r["ok"] for r in rows)}


def _model_case(args: argparse.Namespace, ctx: dict) -> dict[str, Any]:
    """Forward/backward of the largest subnet: device float32 vs CPU float64, the same weights."""
    train_args = preset_train_args(ctx["preset"], args.reduced, "todm")
    torch.manual_seed(args.seed)
    model = build_model(config_from_args(train_args, vocab_size=ctx["vocab_size"])).train()
    reference = copy.deepcopy(model).double()
    model.to(ctx["device"])
    seconds = 2.0 if args.reduced else 8.0
    x, x_lens, y = synthetic_batch([seconds, seconds * 0.8], args.tokens_per_second, ctx["vocab_size"], args.seed)

    def run(m, dtype, device, ranges=None):
        out = transducer_forward(m, ctx["backends"]["todm"], x.to(device, dtype), x_lens.to(device), y, None,
                                 dropout=0.0, ranges=ranges)
        loss = 0.5 * out.simple_loss + out.pruned_loss
        loss.backward()
        return out.ranges, loss, [p.grad for p in m.parameters()]

    ranges, loss, grads = run(model, torch.float32, ctx["device"])
    _, ref_loss, ref_grads = run(reference, torch.float64, torch.device("cpu"), ranges.cpu())
    pairs = [(g, r) for g, r in zip(grads, ref_grads) if r is not None]
    flat = torch.cat([g.detach().double().cpu().flatten() for g, _ in pairs])
    ref_flat = torch.cat([r.flatten() for _, r in pairs])
    row = {"case": "model largest subnet", "loss": loss.item(), "loss_rel_err": relative_error(loss, ref_loss),
           "grad_rel_err": ((flat - ref_flat).norm() / ref_flat.norm()).item()}  # relative norm of all grads
    row["ok"] = row["loss_rel_err"] <= TOLERANCES["loss"] and row["grad_rel_err"] <= TOLERANCES["grad"]
    return row


def synthetic_batch(durations: list[float], tokens_per_second: float, vocab_size: int, seed: int):
    """Random fbank [B, T, 80] for utterances of these durations (10 ms frames), random tokens
    (not blank, <sos/eos> or <unk>) at tokens_per_second."""
    gen = torch.Generator().manual_seed(seed)
    frames = [int(d * 100) for d in durations]
    x = torch.randn(len(frames), max(frames), 80, generator=gen)
    rng = random.Random(seed)
    y = [[rng.randrange(3, vocab_size) for _ in range(max(1, int(d * tokens_per_second)))] for d in durations]
    return x, torch.tensor(frames), y


def utterance_durations(total: float, mean: float, seed: int) -> list[float]:
    """Utterances of mean +-10% seconds (one bucket of the sampler) filling ``total`` seconds."""
    rng, durations = random.Random(seed), []
    while True:
        d = mean * rng.uniform(0.9, 1.1)
        if sum(durations) + d > total:
            return durations or [total]
        durations.append(d)


def train_step(args: argparse.Namespace, ctx: dict) -> dict[str, Any]:
    device, results = ctx["device"], {}
    total = args.batch_duration or (8.0 if args.reduced else float(ctx["preset"]["max_duration"]))
    durations = utterance_durations(total, 2.0 if args.reduced else args.utt_duration, args.seed)
    x, x_lens, y = synthetic_batch(durations, args.tokens_per_second, ctx["vocab_size"], args.seed)
    batch = (x.to(device), x_lens.to(device), y)
    for name, api in ctx["backends"].items():
        try:
            results[name] = _time_steps(args, ctx, name, api, batch)
        except torch.cuda.OutOfMemoryError as e:
            results[name] = {"error": f"out of memory: {str(e).splitlines()[0]}"}
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return {"batch_seconds": round(sum(durations), 1), "utterances": len(durations), "backends": results,
            "ok": all("error" not in r for r in results.values())}


def _time_steps(args: argparse.Namespace, ctx: dict, name: str, api, batch) -> dict[str, Any]:
    """Median seconds and peak memory of todm.train's step (sandwich_step + optimizer step)."""
    device = ctx["device"]
    train_args = preset_train_args(ctx["preset"], args.reduced, name)
    config = config_from_args(train_args, vocab_size=ctx["vocab_size"])
    torch.manual_seed(args.seed)
    model = build_model(config).to(device).train()
    optimizer, _ = make_optimizer(model, train_args)
    cfg = sandwich_config_from_args(train_args)
    space = config.search_space
    num_params = {s: count_parameters(config, s) for s in space.enumerate()}
    rule = DropoutRule(config.dropout, train_args.dropout_gamma, train_args.adaptive_dropout)
    autocast = torch.bfloat16 if train_args.use_bf16 else None
    rng, times, subnet_seconds = random.Random(args.seed), [], {}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(1 + args.repeats):  # the first step warms up (allocator, cuFFT plans, kernels)
        subnets = sample_sandwich(space, rng, cfg.num_random_subnets)
        synchronize(device)
        start = time.perf_counter()
        res = sandwich_step(model, api, batch, subnets, cfg, rule, num_params, 10_000, None, autocast)
        if not res.finite:
            raise RuntimeError(f"non-finite loss in {res.bad_subnet}")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        if i > 0:
            times.append(time.perf_counter() - start)
            for kind, seconds in res.seconds.items():
                subnet_seconds.setdefault(kind, []).append(seconds)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"step_seconds": statistics.median(times), "min_seconds": min(times), "peak_gib": peak,
            "seconds_per_kind": {k: statistics.median(v) for k, v in subnet_seconds.items()},
            "bf16": autocast is not None, "num_random_subnets": cfg.num_random_subnets,
            "largest_params": num_params[space.largest()]}


def decode(args: argparse.Namespace, ctx: dict) -> dict[str, Any]:
    """Greedy and modified beam search on the device and on the CPU, same weights and features."""
    device = ctx["device"]
    train_args = preset_train_args(ctx["preset"], args.reduced, "todm")
    torch.manual_seed(args.seed)
    model = build_model(config_from_args(train_args, vocab_size=ctx["vocab_size"])).eval()
    durations = [1.0, 2.0] if args.reduced else [4.0, 6.0, 8.0, 10.0]
    x, x_lens, _ = synthetic_batch(durations, args.tokens_per_second, ctx["vocab_size"], args.seed)
    searches = {"greedy_search": greedy_search_batch, "modified_beam_search": modified_beam_search}
    hyps, seconds = {}, {}
    for where in (torch.device("cpu"), device):  # without TF32: near-ties of random logits stay put
        model.to(where)
        with no_tf32(), torch.no_grad():
            enc, enc_lens = model.forward_encoder(x.to(where), x_lens.to(where))
            for method, search in searches.items():
                synchronize(where)
                start = time.perf_counter()
                hyps[where.type, method] = search(model, enc, enc_lens)
                seconds[where.type, method] = time.perf_counter() - start
    rows = [{"method": m, "rtf": seconds[device.type, m] / sum(durations),
             "same_as_cpu": sum(a == b for a, b in zip(hyps[device.type, m], hyps["cpu", m])),
             "utterances": len(durations), "tokens": sum(map(len, hyps[device.type, m]))} for m in searches]
    return {"methods": rows, "ok": all(r["same_as_cpu"] == r["utterances"] for r in rows)}


def estimate(args: argparse.Namespace, ctx: dict) -> dict[str, Any]:
    """GPU-hours of the preset from the measured step (see the module docstring)."""
    preset = ctx["preset"]
    perturbed = preset["perturb_speed"] == "true"
    hours = LIBRISPEECH_HOURS * (sum(1 / f for f in SPEED_FACTORS) if perturbed else 1.0)
    max_duration, epochs = float(preset["max_duration"]), int(preset["num_epochs"])
    rows = []
    for name, r in ctx["results"].get("train_step", {}).get("backends", {}).items():
        if "step_seconds" not in r:
            continue
        for gpus in (1, 4, 8):
            steps = math.ceil(hours * 3600 / (max_duration * gpus)) * epochs
            wall = steps * r["step_seconds"] / 3600
            rows.append({"backend": name, "gpus": gpus, "steps": steps, "wall_hours": wall, "gpu_hours": wall * gpus})
    return {"train_hours": hours, "epochs": epochs, "max_duration": max_duration, "rows": rows,
            "reduced": args.reduced, "ok": bool(rows)}


SECTIONS: dict[str, Callable[[argparse.Namespace, dict], dict]] = {
    "cuda_tests": cuda_tests, "compare": compare, "train_step": train_step, "decode": decode, "estimate": estimate}


# ---------------------------------------------------------------- report


def print_section(name: str, r: dict) -> None:
    status = "ok" if r.get("ok") else "FAILED"
    print(f"\n## {name}: {status} ({r['seconds']:.1f} s)")
    if "error" in r:
        print(r["error"])
    elif name == "cuda_tests":
        print(f"{' '.join(r['files'])}: {r['summary']}")
    elif name == "compare":
        print(f"shapes {r['shape']}; relative tolerances {r['tolerances']}")
        print("| case | loss | loss rel. err | grad rel. err | ok |\n|---|---|---|---|---|")
        for c in r["cases"]:
            print(f"| {c['case']} | {c['loss']:.4f} | {c['loss_rel_err']:.2e} | {c['grad_rel_err']:.2e} | "
                  f"{'yes' if c['ok'] else '**no**'} |")
    elif name == "train_step":
        print(f"batch: {r['utterances']} utterances, {r['batch_seconds']} s of audio")
        print("| loss backend | step s (median) | min s | peak GiB | s per subnet kind |\n|---|---|---|---|---|")
        for backend, b in r["backends"].items():
            if "error" in b:
                print(f"| {backend} | {b['error']} | | | |")
                continue
            peak = f"{b['peak_gib']:.2f}" if b["peak_gib"] is not None else "n/a (cpu)"
            kinds = ", ".join(f"{k} {v:.3f}" for k, v in b["seconds_per_kind"].items())
            print(f"| {backend} | {b['step_seconds']:.3f} | {b['min_seconds']:.3f} | {peak} | {kinds} |")
    elif name == "decode":
        print("| method | RTF on the device | same tokens as the CPU | tokens |\n|---|---|---|---|")
        for m in r["methods"]:
            print(f"| {m['method']} | {m['rtf']:.4f} | {m['same_as_cpu']}/{m['utterances']} | {m['tokens']} |")
    elif name == "estimate":
        note = " (REDUCED shapes: not an estimate)" if r["reduced"] else ""
        print(f"{r['train_hours']:.0f} h per epoch x {r['epochs']} epochs, {r['max_duration']:g} s per batch "
              f"and GPU; lower bound (no data loading, validation or all-reduce){note}")
        print("| loss backend | GPUs | steps | wall hours | GPU-hours |\n|---|---|---|---|---|")
        for row in r["rows"]:
            print(f"| {row['backend']} | {row['gpus']} | {row['steps']} | {row['wall_hours']:.1f} | "
                  f"{row['gpu_hours']:.1f} |")


def loss_backends(names: str) -> tuple[dict, dict]:
    """({name: module} that import, {name: why not} for the others; todm always imports)."""
    usable, skipped = {}, {}
    for name in [n for n in names.split(",") if n]:
        try:
            usable[name] = get_loss_backend(name)
        except (ImportError, ValueError) as e:
            skipped[name] = str(e)
    if "todm" not in usable:
        usable = {"todm": get_loss_backend("todm"), **usable}
    return usable, skipped


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: --device cuda but torch sees no GPU (torch.cuda.is_available() is False); "
                         "on a CPU run --device cpu --reduced true")
    if device.type == "cpu" and not args.reduced:
        raise SystemExit("gpu_check: LibriSpeech shapes on a CPU take far too long; use --reduced true")
    if args.repeats < 1:
        raise SystemExit(f"gpu_check: --repeats must be >= 1, got {args.repeats}")
    preset = read_preset(args.config)
    backends, skipped = loss_backends(args.loss_backends)
    ctx = {"device": device, "preset": preset, "backends": backends, "results": {},
           "vocab_size": 64 if args.reduced else int(preset["vocab_size"])}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"# gpu_check: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"{'reduced' if args.reduced else 'LibriSpeech'} shapes, preset {args.config}")
    for backend, why in skipped.items():
        print(f"[skip] loss backend {backend}: {why}")
    started = time.perf_counter()
    for section, run in SECTIONS.items():
        if section == "cuda_tests" and not args.cuda_tests:
            continue
        start = time.perf_counter()
        try:
            result = run(args, ctx)
        except Exception as e:  # one broken section must not hide the others' results
            result = {"ok": False, "error": "".join(traceback.format_exception(e))[-3000:]}
        result["seconds"] = time.perf_counter() - start
        ctx["results"][section] = result
        print_section(section, result)
    total = time.perf_counter() - started
    ok = all(r["ok"] for r in ctx["results"].values())
    print(f"\n{'all sections ok' if ok else 'SOME SECTIONS FAILED'} in {total:.0f} s")
    if args.out:
        save_json({"device": name, "torch": torch.__version__, "cuda": torch.version.cuda, "reduced": args.reduced,
                   "skipped_backends": skipped, "seconds": total, "ok": ok, "sections": ctx["results"]}, args.out)
        print(f"wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
