"""Training cost of TODM's one supernet job against training every deployed spec alone.

Reads the ``train_cost.json`` that ``todm.train`` writes in each exp dir (wall, process and
device seconds). A run may train baselines of only some deployed specs (``run.sh
--baseline-subnets ends``: the smallest and the largest); the others' cost is then estimated from
the trained ones (:func:`estimate_costs`), so that the train-once ratio in the report still
compares TODM against training every deployed spec, and the report names the estimated ones.
"""

import statistics
from pathlib import Path
from typing import Any

from todm.utils import load_json

COST_KEYS = ("wall_seconds", "process_seconds", "device_seconds")


def training_cost(exp_dir: Path, supernet_dir: Path, rows: list[dict] | None = None) -> dict[str, Any]:
    """TODM's one job vs the sum of the baseline jobs (None where a file is missing); a spec of
    ``rows`` without a baseline job is estimated (see the module doc) and added to the total."""
    todm_path = supernet_dir / "train_cost.json"
    todm = load_json(todm_path) if todm_path.is_file() else None
    baselines = {p.parent.name[len("baseline-"):]: load_json(p)
                 for p in sorted(exp_dir.glob("baseline-*/train_cost.json"))}
    macs = {r["spec"]: r["macs_per_second"] for r in rows or [] if r.get("macs_per_second")}
    estimated = estimate_costs(baselines, macs)
    jobs = list(baselines.values()) + list(estimated.values())
    total = {k: sum(b.get(k, 0.0) for b in jobs) for k in COST_KEYS} if jobs else None
    ratio = None
    if todm and total and total["wall_seconds"] > 0:
        ratio = todm["wall_seconds"] / total["wall_seconds"]
    return {"todm": todm, "baselines": baselines, "estimated": estimated, "baselines_total": total,
            "todm_over_baselines_wall": ratio}


def estimate_costs(trained: dict[str, dict], macs: dict[str, float]) -> dict[str, dict[str, float]]:
    """Training cost of every spec of ``macs`` without a trained baseline, from the trained ones.

    Every baseline trains on the same batches for the same epochs, so its seconds are a fixed
    part (front end, data, decoder and joiner, loss) plus a part that grows with the encoder's
    MACs: a line through the trained baselines' (MACs, seconds) (the least-squares line for
    more than two; through the origin for one). Specs below the smallest or above the largest
    trained one are extrapolated along the same line.
    """
    known = [(macs[s], job) for s, job in trained.items() if s in macs]
    missing = [s for s in macs if s not in trained]
    if not known or not missing:
        return {}
    estimated: dict[str, dict[str, float]] = {s: {} for s in missing}
    xs = [x for x, _ in known]
    for key in COST_KEYS:
        ys = [job.get(key, 0.0) for _, job in known]
        if len(set(xs)) < 2:
            slope, intercept = sum(ys) / sum(xs), 0.0
        else:
            mx, my = statistics.fmean(xs), statistics.fmean(ys)
            slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
            intercept = my - slope * mx
        for s in missing:
            estimated[s][key] = max(0.0, intercept + slope * macs[s])
    return estimated
