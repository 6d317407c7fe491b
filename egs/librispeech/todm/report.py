#!/usr/bin/env python3
"""The TODM report (end of stage 6): one table of every subnet, a WER-vs-size plot, JSON.

Reads what the other stages wrote (each piece optional; a missing one is shown as "-" with a
note naming the stage that produces it):

- ``<exp-dir>/supernet/<method>/results-<spec>_<suffix>.json``: PyTorch decode of the supernet's
  subnets (stage 4, ``todm.decode``): spec, params, macs_per_second, wer {set: %}, rtf;
- ``<exp-dir>/baseline-<spec>/<method>/results-*.json``: the same for the individually trained
  baselines (stage 5, then ``todm.decode`` on them);
- ``<exp-dir>/deploy/<spec>/onnx_results.json``: sherpa-onnx WER, RTF and file sizes (stage 6,
  ``todm.sherpa_decode``);
- ``<exp-dir>/deploy/<spec>/streaming/onnx_results.json``: the same for the online model of a
  causal run (``todm.sherpa_decode --streaming true``), shown as the "stream" columns, with how
  many utterances it decoded to exactly the offline model's tokens;
- ``--bidirectional-dir``: the supernet dir of a bidirectional run with the same flags, for a
  causal run: its WER beside the causal one and the relative difference;
- ``<exp-dir>/supernet/train_cost.json`` and ``<exp-dir>/baseline-*/train_cost.json``: training
  cost of the one TODM job and of every baseline job (``todm.train``).

    python -m todm.report --exp-dir exp [--decoding-method greedy_search] [--readme README.md]
    python -m todm.report --exp-dir exp/long --readme README.md --readme-block results-long
    python -m todm.report --exp-dir exp --decoding-method modified_beam_search_lm_shallow_fusion \
        --onnx-method greedy_search   # WERs with the token LM; the deployment columns greedy

Writes ``<out-dir>/report.md``, ``report.json`` and ``wer_vs_params.png`` (default out-dir
``<exp-dir>/report``). The relative difference is (WER_TODM - WER_baseline) / WER_baseline:
negative means the subnet cut from the supernet beats the model trained alone.

The report also checks TODM's claims as targets (thresholds are flags) and says by how much
each is met or missed: the largest subnet's WER and every subnet's WER on the last test set,
TODM's training wall time over the baselines' total, the median and the worst relative WER
difference, that WER does not grow with size (TODM's subnets and the baselines), the int8 files' size over the fp32 files', sherpa-onnx's RTF over PyTorch's, and where measured the
largest subnet's streaming RTF and the median relative WER difference of the causal run over the
bidirectional one.
``--readme`` replaces the text between ``<!-- results:begin -->`` and ``<!-- results:end -->``
of a README with the report, so published numbers are generated, not typed; ``--readme-block
NAME`` fills ``<!-- NAME:begin -->`` ... ``<!-- NAME:end -->`` instead (one block per run).
"""

import argparse
import logging
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from todm.baseline_cost import training_cost  # noqa: E402
from todm.streaming import STREAMING_DIR  # noqa: E402
from todm.utils import atomic_write, console_logging, load_json, save_json  # noqa: E402

ONNX_PYTORCH_TOLERANCE = 0.5  # absolute WER points allowed between sherpa-onnx fp32 and PyTorch
MISSING = "-"
README_BLOCK = "results"


def readme_markers(block: str = README_BLOCK) -> tuple[str, str]:
    return f"<!-- {block}:begin -->", f"<!-- {block}:end -->"


@dataclass(frozen=True)
class Targets:
    """Thresholds of the TODM claims checked by the report (<= each)."""

    wer_largest: float = 10.0  # WER % of the largest subnet, last test set
    wer_every: float = 20.0  # WER % of every subnet, last test set
    cost_ratio: float = 0.5  # TODM wall time / sum of the baselines' wall times
    median_relative_difference: float = 0.0  # median over subnets and sets, %
    int8_size_ratio: float = 0.3  # int8 / fp32 ONNX bytes, the largest ratio over subnets
    streaming_rtf: float = 0.05  # streaming RTF (fp32, sherpa-onnx) of the largest subnet
    causal_vs_bidirectional: float = 15.0  # median relative WER difference causal vs bidirectional, %
    onnx_rtf_ratio: float = 1.2  # sherpa-onnx RTF (fp32 and int8) / PyTorch RTF, the largest ratio over subnets
    worst_relative_difference: float = 5.0  # no subnet worse than its baseline by more, on any set, %
    wer_rise_with_size: float = 0.0  # WER points a subnet may lose to the next smaller one, on any set


def load_decode_results(method_dir: Path, suffix: str = "") -> dict[str, dict[str, Any]]:
    """{spec: results} from ``<method_dir>/results-*.json``; for a spec decoded from several
    checkpoints, the file whose name contains ``suffix`` (default: the newest file)."""
    chosen: dict[str, tuple[float, dict[str, Any]]] = {}
    for path in method_dir.glob("results-*.json"):
        if suffix and suffix not in path.name:
            continue
        res = load_json(path)
        if "spec" not in res or "wer" not in res:
            raise ValueError(f"{path}: expected a todm.decode results file with 'spec' and 'wer'")
        mtime = path.stat().st_mtime
        if res["spec"] not in chosen or mtime > chosen[res["spec"]][0]:
            chosen[res["spec"]] = (mtime, res)
    return {spec: res for spec, (_, res) in chosen.items()}


def load_baselines(exp_dir: Path, method: str, suffix: str = "") -> dict[str, dict[str, Any]]:
    """{spec: results} of every ``<exp_dir>/baseline-<spec>/<method>/`` decode."""
    out = {}
    for base_dir in sorted(exp_dir.glob("baseline-*")):
        for spec, res in load_decode_results(base_dir / method, suffix).items():
            out[spec] = res
    return out


def load_onnx_results(deploy_dir: Path, streaming: bool = False) -> dict[str, dict[str, Any]]:
    """{spec: onnx_results.json} of each deployed subnet (``streaming``: of its online model)."""
    pattern = f"*/{STREAMING_DIR}/onnx_results.json" if streaming else "*/onnx_results.json"
    return {p.parents[1 if streaming else 0].name: load_json(p) for p in sorted(deploy_dir.glob(pattern))}


def relative_difference(todm: float | None, baseline: float | None) -> float | None:
    """(todm - baseline) / baseline in percent; None when either is missing or baseline is 0."""
    if todm is None or baseline is None or baseline == 0:
        return None
    return 100.0 * (todm - baseline) / baseline


def _spec_key(spec: str) -> tuple:
    return tuple(int(part[1:]) if part[1:].isdigit() else 0 for part in spec.split("-"))


def build_rows(supernet: dict, baselines: dict, onnx: dict, method: str,
               supernet_onnx_method: dict | None = None) -> tuple[list[dict], list[str], list[str]]:
    """One row per spec seen anywhere; returns (rows, PyTorch sets, ONNX sets). ``method`` names the
    ONNX results to show; ``supernet_onnx_method`` (default ``supernet``): the PyTorch decode with
    that same method, whose RTF and WER the ONNX ones are compared with."""
    device = supernet if supernet_onnx_method is None else supernet_onnx_method
    sets: list[str] = []
    for res in list(supernet.values()) + list(baselines.values()):
        sets += [s for s in res["wer"] if s not in sets]
    onnx_sets: list[str] = []
    for res in onnx.values():
        for per_method in res.get("wer", {}).values():
            onnx_sets += [s for s in per_method.get(method, {}) if s not in onnx_sets]
    rows = []
    for spec in set(supernet) | set(baselines) | set(onnx):
        todm, base, deployed = supernet.get(spec, {}), baselines.get(spec, {}), onnx.get(spec, {})
        params = todm.get("params") or base.get("params") or deployed.get("params")
        pytorch = device.get(spec, {})
        row: dict[str, Any] = {
            "spec": spec, "params": params,
            "macs_per_second": todm.get("macs_per_second") or base.get("macs_per_second"),
            "wer": {s: todm.get("wer", {}).get(s) for s in sets},
            "baseline_wer": {s: base.get("wer", {}).get(s) for s in sets},
            "rtf_pytorch": pytorch.get("rtf"),
            "onnx_wer": {p: {s: deployed.get("wer", {}).get(p, {}).get(method, {}).get(s) for s in onnx_sets}
                         for p in ("fp32", "int8")},
            "onnx_rtf": {p: deployed.get("rtf", {}).get(p, {}).get(method) for p in ("fp32", "int8")},
            "onnx_bytes": {p: deployed.get("file_bytes", {}).get(p, {}).get("total") for p in ("fp32", "int8")},
        }
        row["relative_difference"] = {s: relative_difference(row["wer"][s], row["baseline_wer"][s]) for s in sets}
        pytorch_wer = pytorch.get("wer", {})
        row["onnx_minus_pytorch"] = {s: (row["onnx_wer"]["fp32"][s] - pytorch_wer[s])
                                     if row["onnx_wer"]["fp32"][s] is not None and pytorch_wer.get(s) is not None
                                     else None for s in onnx_sets}
        rows.append(row)
    rows.sort(key=lambda r: (r["params"] if r["params"] is not None else float("inf"), _spec_key(r["spec"])))
    return rows, sets, onnx_sets


def add_streaming(rows: list[dict], streaming: dict[str, dict], method: str) -> list[str]:
    """Give each row its online model's fp32 WER per set, its RTF (fp32, int8) and how many
    utterances it decoded as the offline model; returns the streaming sets."""
    sets: list[str] = []
    for res in streaming.values():
        sets += [s for s in res.get("wer", {}).get("fp32", {}).get(method, {}) if s not in sets]
    for row in rows:
        res = streaming.get(row["spec"], {})
        row["stream_wer"] = {s: res.get("wer", {}).get("fp32", {}).get(method, {}).get(s) for s in sets}
        row["stream_rtf"] = {p: res.get("rtf", {}).get(p, {}).get(method) for p in ("fp32", "int8")}
        row["stream_equals_offline"] = res.get("streaming_equals_offline")
    return sets


def add_bidirectional(rows: list[dict], bidirectional: dict[str, dict], sets: list[str]) -> None:
    """Give each row (of a causal run) the bidirectional run's WER and the relative difference."""
    for row in rows:
        wer = bidirectional.get(row["spec"], {}).get("wer", {})
        row["bidirectional_wer"] = {s: wer.get(s) for s in sets}
        row["causal_vs_bidirectional"] = {s: relative_difference(row["wer"][s], wer.get(s)) for s in sets}


def _fmt(value: Any, spec: str = "{:.2f}", suffix: str = "") -> str:
    return MISSING if value is None else spec.format(value) + suffix


def _si(value: float | None) -> str:
    """1234567 -> 1.23M (k, M, G)."""
    if value is None:
        return MISSING
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:g}"


def _hours(seconds: float | None) -> str:
    return MISSING if seconds is None else f"{seconds / 3600:.2f} h ({seconds:.0f} s)"


def largest_wer_rise(rows: list[dict], key: str, sets: list[str]) -> float | None:
    """The largest WER rise (points) from a model to the next bigger one that has a WER in ``row[key]``,
    over ``sets``: <= 0 when WER never grows with size. ``rows`` are sorted by size."""
    rises = []
    for s in sets:
        wers = [r[key][s] for r in rows if r[key].get(s) is not None]
        rises += [bigger - smaller for smaller, bigger in zip(wers, wers[1:])]
    return max(rises) if rises else None


def check_targets(rows: list[dict], sets: list[str], cost: dict, targets: Targets) -> list[dict[str, Any]]:
    """One entry per claim: name, measured value, threshold, met (None when not measurable)."""
    test_set = sets[-1] if sets else None
    wers = [r["wer"][test_set] for r in rows if test_set and r["wer"][test_set] is not None]
    diffs = [d for r in rows for d in r["relative_difference"].values() if d is not None]
    largest = rows[-1]["wer"][test_set] if rows and test_set else None  # rows are sorted by size
    measured = [
        (f"largest subnet WER on {test_set} (%)", largest, targets.wer_largest),
        (f"worst subnet WER on {test_set} (%)", max(wers) if wers else None, targets.wer_every),
        ("TODM wall time / baselines' total", cost["todm_over_baselines_wall"], targets.cost_ratio),
        ("median relative WER difference TODM vs baseline (%)", statistics.median(diffs) if diffs else None,
         targets.median_relative_difference),
        ("worst relative WER difference TODM vs baseline (%)", max(diffs) if diffs else None,
         targets.worst_relative_difference),
        ("largest WER rise to the next bigger TODM subnet (points)", largest_wer_rise(rows, "wer", sets),
         targets.wer_rise_with_size),
        ("largest WER rise to the next bigger baseline (points)", largest_wer_rise(rows, "baseline_wer", sets),
         targets.wer_rise_with_size),
    ]
    speeds = [r["onnx_rtf"][p] / r["rtf_pytorch"] for r in rows for p in ("fp32", "int8")
              if r["onnx_rtf"][p] is not None and r["rtf_pytorch"]]
    measured.append(("sherpa-onnx RTF / PyTorch RTF, largest over subnets", max(speeds) if speeds else None,
                     targets.onnx_rtf_ratio))
    sizes = [r["onnx_bytes"]["int8"] / r["onnx_bytes"]["fp32"] for r in rows
             if r["onnx_bytes"]["int8"] and r["onnx_bytes"]["fp32"]]
    measured.append(("int8 / fp32 ONNX size, largest over subnets", max(sizes) if sizes else None,
                     targets.int8_size_ratio))
    if rows and "stream_rtf" in rows[-1]:
        measured.append(("streaming RTF of the largest subnet (fp32)", rows[-1]["stream_rtf"]["fp32"],
                         targets.streaming_rtf))
    if rows and "causal_vs_bidirectional" in rows[0]:
        diffs = [d for r in rows for d in r["causal_vs_bidirectional"].values() if d is not None]
        measured.append(("median relative WER difference causal vs bidirectional (%)",
                         statistics.median(diffs) if diffs else None, targets.causal_vs_bidirectional))
    return [{"name": name, "value": value, "threshold": threshold,
             "met": None if value is None else value <= threshold} for name, value, threshold in measured]


def render_markdown(rows: list[dict], sets: list[str], onnx_sets: list[str], cost: dict, method: str,
                    notes: list[str], targets: list[dict[str, Any]] | None = None,
                    stream_sets: list[str] | None = None, onnx_method: str | None = None) -> str:
    stream_sets = stream_sets or []
    bidirectional = bool(rows) and "bidirectional_wer" in rows[0]
    header = ["spec", "params", "MACs/s"]
    for s in sets:
        header += [f"WER {s} TODM", f"WER {s} baseline", f"rel. diff {s}"]
        header += [f"WER {s} bidir.", f"causal vs bidir. {s}"] if bidirectional else []
    for s in onnx_sets:
        header += [f"ONNX WER {s} fp32", f"ONNX WER {s} int8"]
    header += [f"stream WER {s}" for s in stream_sets]
    header += ["RTF PyTorch", "RTF ONNX fp32", "RTF ONNX int8"]
    header += ["RTF stream fp32", "RTF stream int8"] if stream_sets else []
    header += ["size fp32", "size int8"]
    title = method if onnx_method in (None, method) else f"{method}; ONNX and RTF columns: {onnx_method}"
    lines = [f"# TODM report ({title})", "",
             "WER in %; rel. diff = (TODM - baseline) / baseline (negative: TODM better); RTF at 1 thread "
             "(ONNX: sherpa-onnx); size = encoder + decoder + joiner ONNX files."
             + (" stream: the online model in sherpa-onnx's OnlineRecognizer, chunk by chunk (fp32 WER)."
                if stream_sets else "")
             + (" bidir.: the bidirectional run with the same flags; causal vs bidir. = (causal - bidir.) / bidir."
                if bidirectional else ""), "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["spec"], _fmt(r["params"], "{:,}"), _si(r["macs_per_second"])]
        for s in sets:
            cells += [_fmt(r["wer"][s]), _fmt(r["baseline_wer"][s]), _fmt(r["relative_difference"][s], "{:+.1f}", "%")]
            if bidirectional:
                cells += [_fmt(r["bidirectional_wer"][s]), _fmt(r["causal_vs_bidirectional"][s], "{:+.1f}", "%")]
        for s in onnx_sets:
            cells += [_fmt(r["onnx_wer"]["fp32"][s]), _fmt(r["onnx_wer"]["int8"][s])]
        cells += [_fmt(r["stream_wer"][s]) for s in stream_sets]
        cells += [_fmt(r["rtf_pytorch"], "{:.4f}"), _fmt(r["onnx_rtf"]["fp32"], "{:.4f}"),
                  _fmt(r["onnx_rtf"]["int8"], "{:.4f}")]
        if stream_sets:
            cells += [_fmt(r["stream_rtf"]["fp32"], "{:.4f}"), _fmt(r["stream_rtf"]["int8"], "{:.4f}")]
        cells += [_fmt(b and b / 1e6, "{:.2f} MB") for b in (r["onnx_bytes"]["fp32"], r["onnx_bytes"]["int8"])]
        lines.append("| " + " | ".join(cells) + " |")
    total = cost["baselines_total"]
    lines += ["", "## Training cost", "", "| job | wall | process (CPU) | device |", "|---|---|---|---|"]
    todm = cost["todm"] or {}
    lines.append(f"| TODM supernet (one job) | {_hours(todm.get('wall_seconds'))} | "
                 f"{_hours(todm.get('process_seconds'))} | {_hours(todm.get('device_seconds'))} |")
    n, estimated = len(cost["baselines"]), cost.get("estimated") or {}
    label = f"sum of {n + len(estimated)} baselines"
    if estimated:
        label += f" ({n} trained, {len(estimated)} estimated: {', '.join(sorted(estimated, key=_spec_key))})"
    lines.append(f"| {label} | {_hours(total and total['wall_seconds'])} | "
                 f"{_hours(total and total['process_seconds'])} | {_hours(total and total['device_seconds'])} |")
    if cost["todm_over_baselines_wall"] is not None:
        lines += ["", f"TODM wall time = {cost['todm_over_baselines_wall']:.2f} x the baselines' total."]
    if targets:
        lines += ["", "## Targets", "", "| claim | measured | target | met | by |", "|---|---|---|---|---|"]
        for t in targets:
            met = MISSING if t["met"] is None else "yes" if t["met"] else "**no**"
            digits = 3 if 0 < abs(t["threshold"]) < 1 else 2  # ratios and RTFs: 0.284, not 0.28
            by = MISSING if t["value"] is None else f"{t['value'] - t['threshold']:+.{digits}f}"
            lines.append(f"| {t['name']} | {_fmt(t['value'], f'{{:.{digits}f}}')} | <= {t['threshold']:g} | {met} "
                         f"| {by} |")
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, markdown: str, block: str = README_BLOCK) -> None:
    """Put ``markdown`` (headings demoted by two levels) between the README's markers of ``block``."""
    text = readme.read_text()
    begin_marker, end_marker = readme_markers(block)
    begin, end = text.find(begin_marker), text.find(end_marker)
    if begin < 0 or end < begin:
        raise ValueError(f"{readme}: no '{begin_marker}' ... '{end_marker}' block to fill")
    body = "\n".join("##" + line if line.startswith("#") else line for line in markdown.splitlines())
    new = text[: begin + len(begin_marker)] + "\n" + body + "\n" + text[end:]
    atomic_write(readme, lambda tmp: tmp.write_text(new))


def collect_notes(rows: list[dict], sets: list[str], onnx_sets: list[str], cost: dict, paths: dict[str, Path]) -> list[str]:
    """Which stage produces each missing piece, and ONNX-vs-PyTorch WER gaps over the tolerance."""
    notes = []
    if not any(any(v is not None for v in r["wer"].values()) for r in rows):
        notes.append(f"TODM WER: no results in {paths['supernet']} (run stage 4: python -m todm.decode)")
    if not any(any(v is not None for v in r["baseline_wer"].values()) for r in rows):
        notes.append(f"baseline WER: no {paths['exp']}/baseline-<spec>/<method>/results-*.json (run stage 5 with "
                     "--baselines true, then decode the baselines)")
    else:
        absent = [r["spec"] for r in rows if all(v is None for v in r["baseline_wer"].values())]
        if absent:
            notes.append(f"no baseline decoded for {', '.join(absent)} (stage 5)")
    if not onnx_sets:
        notes.append(f"ONNX WER/RTF/size: no {paths['deploy']}/<spec>/onnx_results.json "
                     "(run stage 6: python -m todm.export, then python -m todm.sherpa_decode)")
    if cost["todm"] is None:
        notes.append(f"TODM training cost: no {paths['supernet']}/train_cost.json (stage 3)")
    if not cost["baselines"]:
        notes.append("baseline training cost: no baseline-*/train_cost.json (stage 5)")
    if cost.get("estimated"):
        notes.append(f"baselines not trained ({', '.join(sorted(cost['estimated'], key=_spec_key))}): their training "
                     "cost is estimated on the line through the trained baselines' (MACs/s, seconds)")
    gaps = []
    for r in rows:
        for s, gap in r["onnx_minus_pytorch"].items():
            if gap is None:
                continue
            gaps.append(abs(gap))
            if abs(gap) > ONNX_PYTORCH_TOLERANCE:
                notes.append(f"{r['spec']}: sherpa-onnx fp32 WER on {s} differs from PyTorch by {gap:+.2f} "
                             f"(> {ONNX_PYTORCH_TOLERANCE} absolute): check the export and the front end")
    if gaps:
        notes.append(f"sherpa-onnx fp32 vs PyTorch WER: largest gap {max(gaps):.2f} absolute over {len(gaps)} "
                     f"subnet/set pairs (tolerance {ONNX_PYTORCH_TOLERANCE})")
    return notes + streaming_notes(rows)


def streaming_notes(rows: list[dict]) -> list[str]:
    """How many utterances each online model decoded to exactly its offline model's tokens."""
    checks = {r["spec"]: r["stream_equals_offline"] for r in rows if r.get("stream_equals_offline")}
    differing = [f"{spec} on {c['utterances'] - c['identical']} of {c['utterances']} utterances (e.g. "
                 f"{', '.join(c['differing'][:3])})" for spec, c in checks.items() if c["identical"] < c["utterances"]]
    if differing:
        return [f"streaming greedy tokens differ from the offline model's on the same audio: {'; '.join(differing)}"]
    if checks:
        return [f"streaming greedy tokens = the offline model's on the same audio: every utterance of "
                f"{len(checks)} subnets ({sum(c['utterances'] for c in checks.values())} decodes)"]
    return []


def plot_wer_vs_params(rows: list[dict], sets: list[str], path: Path) -> None:
    """WER vs parameters, one colour per set: TODM subnets (circles, line) vs baselines (squares)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for i, s in enumerate(sets):
        color = f"C{i}"
        for key, marker, style, label in (("wer", "o", "-", "TODM subnet"), ("baseline_wer", "s", "--", "baseline")):
            points = [(r["params"], r[key][s]) for r in rows if r["params"] is not None and r[key][s] is not None]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker=marker, linestyle=style, color=color, label=f"{label}, {s}")
    if not ax.lines:
        ax.text(0.5, 0.5, "no WER results yet (run stage 4)", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend(fontsize="small")
    ax.set_xlabel("parameters")
    ax.set_ylabel("WER (%)")
    ax.set_title("TODM: one supernet vs individually trained models")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def make_report(exp_dir: Path, out_dir: Path, method: str = "greedy_search", supernet_dir: Path | None = None,
                deploy_dir: Path | None = None, suffix: str = "", targets: Targets = Targets(),
                bidirectional_dir: Path | None = None, onnx_method: str | None = None) -> dict[str, Any]:
    """Read every stage's outputs, write report.md/json and the plot; returns the report dict.
    ``method``: the decoding whose WERs are tabulated and checked; ``onnx_method`` (default: the
    same): the one whose sherpa-onnx results, and PyTorch RTF, fill the deployment columns."""
    onnx_method = onnx_method or method
    supernet_dir = supernet_dir or exp_dir / "supernet"
    deploy_dir = deploy_dir or exp_dir / "deploy"
    supernet = load_decode_results(supernet_dir / method, suffix)
    baselines = load_baselines(exp_dir, method, suffix)
    onnx = load_onnx_results(deploy_dir)
    device = supernet if onnx_method == method else load_decode_results(supernet_dir / onnx_method, suffix)
    rows, sets, onnx_sets = build_rows(supernet, baselines, onnx, onnx_method, device)
    streaming = load_onnx_results(deploy_dir, streaming=True)
    stream_sets = add_streaming(rows, streaming, onnx_method) if streaming else []
    if bidirectional_dir is not None:
        add_bidirectional(rows, load_decode_results(bidirectional_dir / method), sets)
    cost = training_cost(exp_dir, supernet_dir, rows)
    notes = collect_notes(rows, sets, onnx_sets, cost, {"exp": exp_dir, "supernet": supernet_dir,
                                                         "deploy": deploy_dir})
    checks = check_targets(rows, sets, cost, targets)
    report = {"decoding_method": method, "onnx_method": onnx_method, "sets": sets, "onnx_sets": onnx_sets, "stream_sets": stream_sets,
              "rows": rows, "training_cost": cost, "targets": checks, "notes": notes}
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(rows, sets, onnx_sets, cost, method, notes, checks, stream_sets, onnx_method)
    atomic_write(out_dir / "report.md", lambda tmp: tmp.write_text(markdown))
    save_json(report, out_dir / "report.json")
    plot_wer_vs_params(rows, sets, out_dir / "wer_vs_params.png")
    return report


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp-dir", type=Path, default=Path("exp"), help="holds supernet/, baseline-*/, deploy/")
    parser.add_argument("--supernet-dir", type=Path, default=None, help="default <exp-dir>/supernet")
    parser.add_argument("--deploy-dir", type=Path, default=None, help="default <exp-dir>/deploy")
    parser.add_argument("--out-dir", type=Path, default=None, help="default <exp-dir>/report")
    parser.add_argument("--decoding-method", type=str, default="greedy_search",
                        help="whose WERs to tabulate and check against the targets")
    parser.add_argument("--onnx-method", type=str, default=None,
                        help="whose sherpa-onnx results (and PyTorch RTF) fill the deployment columns; default: "
                             "--decoding-method (the LM method has no ONNX counterpart: give greedy_search)")
    parser.add_argument("--suffix", type=str, default="",
                        help="pick results files whose name contains this (e.g. epoch-12_avg-4); default newest")
    parser.add_argument("--bidirectional-dir", type=Path, default=None,
                        help="a causal run's report: the supernet dir of the bidirectional run to compare with")
    parser.add_argument("--readme", type=Path, default=None,
                        help="also write the report into this file between {} and {}".format(*readme_markers()))
    parser.add_argument("--readme-block", type=str, default=README_BLOCK,
                        help="which block of --readme: between <!-- NAME:begin --> and <!-- NAME:end -->")
    d = Targets()
    parser.add_argument("--target-wer-largest", type=float, default=d.wer_largest)
    parser.add_argument("--target-wer-every", type=float, default=d.wer_every)
    parser.add_argument("--target-cost-ratio", type=float, default=d.cost_ratio)
    parser.add_argument("--target-median-relative-difference", type=float, default=d.median_relative_difference)
    parser.add_argument("--target-int8-size-ratio", type=float, default=d.int8_size_ratio)
    parser.add_argument("--target-streaming-rtf", type=float, default=d.streaming_rtf)
    parser.add_argument("--target-causal-vs-bidirectional", type=float, default=d.causal_vs_bidirectional)
    parser.add_argument("--target-onnx-rtf-ratio", type=float, default=d.onnx_rtf_ratio,
                        help="sherpa-onnx RTF / PyTorch RTF of every deployed subnet (fp32 and int8)")
    parser.add_argument("--target-worst-relative-difference", type=float, default=d.worst_relative_difference,
                        help="percent by which any subnet may be worse than its baseline, on any set")
    parser.add_argument("--target-wer-rise-with-size", type=float, default=d.wer_rise_with_size,
                        help="WER points a bigger model may lose to the next smaller one (TODM and baselines)")
    return parser


def main() -> None:
    args = get_parser().parse_args()
    console_logging()
    out_dir = args.out_dir or args.exp_dir / "report"
    targets = Targets(args.target_wer_largest, args.target_wer_every, args.target_cost_ratio,
                      args.target_median_relative_difference, args.target_int8_size_ratio,
                      args.target_streaming_rtf, args.target_causal_vs_bidirectional, args.target_onnx_rtf_ratio,
                      args.target_worst_relative_difference, args.target_wer_rise_with_size)
    report = make_report(args.exp_dir, out_dir, args.decoding_method, args.supernet_dir, args.deploy_dir, args.suffix,
                         targets, args.bidirectional_dir, args.onnx_method)
    for note in report["notes"]:
        logging.warning(note)
    for t in report["targets"]:
        if t["met"] is False:
            logging.warning(f"target missed: {t['name']} = {t['value']:.2f} > {t['threshold']:g}")
    if args.readme is not None:
        update_readme(args.readme, (out_dir / "report.md").read_text(), args.readme_block)
        print(f"Updated the {args.readme_block} block of {args.readme}")
    print(f"Report: {out_dir / 'report.md'} (table), {out_dir / 'wer_vs_params.png'} (plot), "
          f"{out_dir / 'report.json'}")


if __name__ == "__main__":
    main()
