"""todm.report on synthetic stage outputs: table rows, relative difference, plot, missing pieces,
the streaming and causal-vs-bidirectional columns of a causal run."""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from todm.baseline_cost import estimate_costs, training_cost
from todm.report import Targets, make_report, relative_difference

METHOD = "greedy_search"


def _write(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _decode_result(spec: str, params: int, dev: float, test: float) -> dict:
    return {"spec": spec, "params": params, "macs_per_second": params * 25, "wer": {"dev": dev, "test": test},
            "rtf": 0.05}


def _table(markdown: str) -> dict[str, dict[str, str]]:
    """{spec: {column: cell}} of the first Markdown table."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != len(header):
            break  # the next table
        rows[cells[0]] = dict(zip(header, cells))
    return rows


def _full_experiment(exp: Path) -> None:
    sup = exp / "supernet" / METHOD
    _write(sup / "results-L2-F8-H1_epoch-1_avg-1.json", _decode_result("L2-F8-H1", 1000, 50.0, 60.0))
    os.utime(sup / "results-L2-F8-H1_epoch-1_avg-1.json", (1, 1))  # older decode: must be ignored
    _write(sup / "results-L2-F8-H1_epoch-2_avg-1.json", _decode_result("L2-F8-H1", 1000, 10.0, 12.0))
    _write(sup / "results-L4-F16-H2_epoch-2_avg-1.json", _decode_result("L4-F16-H2", 3000, 8.0, 9.0))
    _write(exp / "baseline-L2-F8-H1" / METHOD / "results-L2-F8-H1_epoch-2_avg-1.json",
           _decode_result("L2-F8-H1", 1000, 11.0, 12.0))
    _write(exp / "deploy" / "L2-F8-H1" / "onnx_results.json", {
        "spec": "L2-F8-H1", "params": 1000,
        "wer": {"fp32": {METHOD: {"test": 12.25}}, "int8": {METHOD: {"test": 13.0}}},
        "rtf": {"fp32": {METHOD: 0.0123}, "int8": {METHOD: 0.0101}},
        "file_bytes": {"fp32": {"total": 4_000_000}, "int8": {"total": 1_500_000}},
    })
    _write(exp / "supernet" / "train_cost.json", {"wall_seconds": 7200.0, "process_seconds": 14000.0,
                                                   "device_seconds": 7200.0})
    _write(exp / "baseline-L2-F8-H1" / "train_cost.json", {"wall_seconds": 3600.0, "process_seconds": 7000.0,
                                                          "device_seconds": 3600.0})
    _write(exp / "baseline-L4-F16-H2" / "train_cost.json", {"wall_seconds": 5400.0, "process_seconds": 9000.0,
                                                           "device_seconds": 5400.0})


def test_relative_difference():
    assert relative_difference(10.0, 11.0) == 100.0 * (10.0 - 11.0) / 11.0
    assert relative_difference(12.0, 12.0) == 0.0
    assert relative_difference(None, 3.0) is None and relative_difference(3.0, None) is None
    assert relative_difference(1.0, 0.0) is None


def test_untrained_baselines_are_estimated_on_the_line_through_the_trained_ones(tmp_path):
    trained = {"L2-F8-H1": {"wall_seconds": 100.0, "process_seconds": 150.0, "device_seconds": 100.0},
               "L6-F8-H4": {"wall_seconds": 300.0, "process_seconds": 450.0, "device_seconds": 300.0}}
    macs = {"L2-F8-H1": 10e6, "L4-F8-H2": 20e6, "L5-F8-H3": 25e6, "L6-F8-H4": 30e6}
    estimated = estimate_costs(trained, macs)
    assert sorted(estimated) == ["L4-F8-H2", "L5-F8-H3"]
    assert estimated["L4-F8-H2"]["wall_seconds"] == pytest.approx(200.0)
    assert estimated["L5-F8-H3"]["process_seconds"] == pytest.approx(375.0)
    assert estimate_costs({"L2-F8-H1": trained["L2-F8-H1"]}, {"L2-F8-H1": 10e6, "L4-F8-H2": 30e6}) == {
        "L4-F8-H2": pytest.approx({"wall_seconds": 300.0, "process_seconds": 450.0, "device_seconds": 300.0})}
    assert estimate_costs(trained, {"L2-F8-H1": 10e6}) == {} and estimate_costs({}, macs) == {}

    exp = tmp_path / "exp"
    _write(exp / "supernet" / "train_cost.json", {"wall_seconds": 400.0, "process_seconds": 0.0,
                                                  "device_seconds": 0.0})
    for spec, job in trained.items():
        _write(exp / f"baseline-{spec}" / "train_cost.json", job)
    cost = training_cost(exp, exp / "supernet", [{"spec": s, "macs_per_second": m} for s, m in macs.items()])
    assert cost["baselines_total"]["wall_seconds"] == pytest.approx(100 + 200 + 250 + 300)
    assert cost["todm_over_baselines_wall"] == pytest.approx(400 / 850)


def test_report_rows_and_files(tmp_path):
    exp = tmp_path / "exp"
    _full_experiment(exp)
    report = make_report(exp, exp / "report", METHOD)
    markdown = (exp / "report" / "report.md").read_text()
    rows = _table(markdown)
    assert list(rows) == ["L2-F8-H1", "L4-F16-H2"]  # sorted by parameters
    small, large = rows["L2-F8-H1"], rows["L4-F16-H2"]
    assert small["WER dev TODM"] == "10.00" and small["WER dev baseline"] == "11.00"  # newest decode used
    assert small["rel. diff dev"] == "-9.1%" and small["rel. diff test"] == "+0.0%"
    assert small["ONNX WER test fp32"] == "12.25" and small["ONNX WER test int8"] == "13.00"
    assert small["RTF ONNX fp32"] == "0.0123" and small["size int8"] == "1.50 MB"
    assert small["params"] == "1,000"
    assert large["WER test TODM"] == "9.00" and large["WER test baseline"] == "-" and large["rel. diff test"] == "-"
    assert large["ONNX WER test fp32"] == "-"
    assert "sum of 2 baselines | 2.50 h" in markdown and "0.80 x the baselines' total" in markdown
    assert any("no baseline decoded for L4-F16-H2" in n for n in report["notes"])
    assert (exp / "report" / "wer_vs_params.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((exp / "report" / "report.json").read_text())
    assert saved["rows"][0]["onnx_minus_pytorch"]["test"] == 0.25
    assert abs(saved["rows"][0]["relative_difference"]["dev"] - (-100 / 11)) < 1e-9


def test_onnx_gap_over_tolerance_is_flagged(tmp_path):
    exp = tmp_path / "exp"
    _full_experiment(exp)
    path = exp / "deploy" / "L2-F8-H1" / "onnx_results.json"
    onnx = json.loads(path.read_text())
    onnx["wer"]["fp32"][METHOD]["test"] = 13.0
    path.write_text(json.dumps(onnx))
    report = make_report(exp, tmp_path / "out", METHOD)
    assert any("differs from PyTorch by +1.00" in n for n in report["notes"])


def test_wers_of_one_method_beside_the_deployment_columns_of_another(tmp_path):
    """The LM decode has no ONNX counterpart: its WERs are tabulated and checked, while the ONNX
    columns, RTF and the sherpa-onnx-vs-PyTorch gap come from the greedy decode."""
    exp = tmp_path / "exp"
    _full_experiment(exp)
    lm_method = "modified_beam_search_lm_shallow_fusion"
    for spec, params, test in (("L2-F8-H1", 1000, 7.0), ("L4-F16-H2", 3000, 6.0)):
        result = {**_decode_result(spec, params, 5.0, test), "rtf": 0.5}
        _write(exp / "supernet" / lm_method / f"results-{spec}_epoch-2_avg-1.json", result)
    _write(exp / "baseline-L2-F8-H1" / lm_method / "results-L2-F8-H1_epoch-2_avg-1.json",
           _decode_result("L2-F8-H1", 1000, 6.0, 8.0))
    report = make_report(exp, exp / "report", lm_method, onnx_method=METHOD,
                         targets=Targets(wer_largest=6.5))
    markdown = (exp / "report" / "report.md").read_text()
    assert markdown.startswith(f"# TODM report ({lm_method}; ONNX and RTF columns: {METHOD})")
    small = _table(markdown)["L2-F8-H1"]
    assert small["WER test TODM"] == "7.00" and small["WER test baseline"] == "8.00"
    assert small["ONNX WER test fp32"] == "12.25" and small["RTF PyTorch"] == "0.0500"
    assert report["rows"][0]["onnx_minus_pytorch"]["test"] == 0.25  # against greedy's 12.0, not 7.0
    assert report["onnx_method"] == METHOD and report["targets"][0]["value"] == 6.0
    assert report["targets"][0]["met"] is True


def test_nothing_yet_gives_dashes_and_stage_notes(tmp_path):
    exp = tmp_path / "exp"
    _write(exp / "supernet" / METHOD / "results-L2-F8-H1_epoch-1_avg-1.json",
           _decode_result("L2-F8-H1", 1000, 10.0, 12.0))
    out = subprocess.run([sys.executable, "-m", "todm.report", "--exp-dir", str(exp)], capture_output=True,
                         text=True, check=True)
    assert str(exp / "report" / "report.md") in out.stdout
    markdown = (exp / "report" / "report.md").read_text()
    row = _table(markdown)["L2-F8-H1"]
    assert row["WER dev baseline"] == "-" and row["rel. diff dev"] == "-" and row["RTF ONNX fp32"] == "-"
    for stage in ("stage 5", "stage 6", "stage 3"):
        assert stage in markdown
    empty = make_report(tmp_path / "none", tmp_path / "none-report", METHOD)
    assert empty["rows"] == [] and any("stage 4" in n for n in empty["notes"])
    assert (tmp_path / "none-report" / "wer_vs_params.png").is_file()


def test_targets_say_by_how_much(tmp_path):
    from todm.report import Targets

    exp = tmp_path / "exp"
    _full_experiment(exp)
    report = make_report(exp, exp / "report", METHOD, targets=Targets(wer_largest=8.0, wer_every=12.0))
    checks = {t["name"]: t for t in report["targets"]}
    largest = checks["largest subnet WER on test (%)"]
    assert largest["value"] == 9.0 and largest["met"] is False  # L4-F16-H2, the largest, 9.00 > 8
    worst = checks["worst subnet WER on test (%)"]
    assert worst["value"] == 12.0 and worst["met"] is True
    assert checks["TODM wall time / baselines' total"]["value"] == 0.8
    median = checks["median relative WER difference TODM vs baseline (%)"]
    assert abs(median["value"] - (-100 / 11 + 0.0) / 2) < 1e-9 and median["met"] is True
    worst = checks["worst relative WER difference TODM vs baseline (%)"]
    assert worst["value"] == 0.0 and worst["threshold"] == 5.0 and worst["met"] is True  # L2 test: 12 vs 12
    assert checks["largest WER rise to the next bigger TODM subnet (points)"]["value"] == -2.0  # dev 10 -> 8
    assert checks["largest WER rise to the next bigger baseline (points)"]["met"] is None  # one baseline only
    markdown = (exp / "report" / "report.md").read_text()
    assert "| largest subnet WER on test (%) | 9.00 | <= 8 | **no** | +1.00 |" in markdown


def test_wer_that_grows_with_size_and_a_subnet_far_behind_its_baseline_are_missed_targets(tmp_path):
    exp = tmp_path / "exp"
    _full_experiment(exp)  # TODM L2 10 / 12, L4 8 / 9; baseline L2 11 / 12
    _write(exp / "supernet" / METHOD / "results-L3-F8-H2_epoch-2_avg-1.json",
           _decode_result("L3-F8-H2", 2000, 7.5, 11.0))
    _write(exp / "baseline-L3-F8-H2" / METHOD / "results-L3-F8-H2_epoch-2_avg-1.json",
           _decode_result("L3-F8-H2", 2000, 7.0, 13.0))
    _write(exp / "baseline-L4-F16-H2" / METHOD / "results-L4-F16-H2_epoch-2_avg-1.json",
           _decode_result("L4-F16-H2", 3000, 7.8, 10.0))
    checks = {t["name"]: t for t in make_report(exp, exp / "report", METHOD)["targets"]}
    worst = checks["worst relative WER difference TODM vs baseline (%)"]
    assert worst["value"] == pytest.approx(100 * 0.5 / 7.0) and worst["met"] is False  # L3 dev 7.5 vs 7.0
    todm_rise = checks["largest WER rise to the next bigger TODM subnet (points)"]
    assert todm_rise["value"] == 0.5 and todm_rise["met"] is False  # dev: L3 7.5 -> L4 8.0
    base_rise = checks["largest WER rise to the next bigger baseline (points)"]
    assert base_rise["value"] == 1.0 and base_rise["met"] is False  # test: L2 12.0 -> L3 13.0 (dev: L3 7.0 -> L4 7.8)


def test_onnx_rtf_over_pytorch_is_the_largest_ratio_over_subnets_and_precisions(tmp_path):
    exp = tmp_path / "exp"
    _full_experiment(exp)  # L2-F8-H1: PyTorch 0.05, sherpa-onnx 0.0123 (fp32) and 0.0101 (int8)
    _write(exp / "deploy" / "L4-F16-H2" / "onnx_results.json", {
        "spec": "L4-F16-H2", "params": 3000, "wer": {"fp32": {METHOD: {"test": 9.0}}},
        "rtf": {"fp32": {METHOD: 0.055}, "int8": {METHOD: 0.07}}})  # int8 the slowest: 1.4x PyTorch's 0.05
    report = make_report(exp, exp / "report", METHOD)
    check = {t["name"]: t for t in report["targets"]}["sherpa-onnx RTF / PyTorch RTF, largest over subnets"]
    assert check["value"] == pytest.approx(1.4) and check["threshold"] == 1.2 and check["met"] is False
    markdown = (exp / "report" / "report.md").read_text()
    assert "| sherpa-onnx RTF / PyTorch RTF, largest over subnets | 1.40 | <= 1.2 | **no** | +0.20 |" in markdown
    out = tmp_path / "cli"
    subprocess.run([sys.executable, "-m", "todm.report", "--exp-dir", str(exp), "--out-dir", str(out),
                    "--target-onnx-rtf-ratio", "1.5"], check=True, capture_output=True)
    saved = {t["name"]: t for t in json.loads((out / "report.json").read_text())["targets"]}
    assert saved["sherpa-onnx RTF / PyTorch RTF, largest over subnets"]["met"] is True
    nothing = make_report(tmp_path / "none", tmp_path / "none-report", METHOD)  # no RTF yet: not measurable
    assert {t["name"]: t for t in nothing["targets"]}["sherpa-onnx RTF / PyTorch RTF, largest over subnets"][
        "met"] is None


def test_readme_block_is_replaced_and_missing_markers_are_named(tmp_path):
    import pytest

    from todm.report import readme_markers, update_readme

    README_BEGIN, README_END = readme_markers()
    LONG_BEGIN, LONG_END = readme_markers("results-long")
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n## Results\n{README_BEGIN}\nold numbers\n{README_END}\n\n## After\n"
                      f"{LONG_BEGIN}\nlong numbers\n{LONG_END}\n")
    update_readme(readme, "# TODM report\n\n| a |\n|---|\n")
    text = readme.read_text()
    assert "old numbers" not in text and "### TODM report" in text and "| a |" in text
    assert text.startswith("# Title") and text.endswith(f"{LONG_END}\n") and "long numbers" in text
    update_readme(readme, "# again\n")  # idempotent: the markers stay
    assert readme.read_text().count(README_BEGIN) == 1 and "### again" in readme.read_text()
    update_readme(readme, "# the long run\n", "results-long")
    text = readme.read_text()
    assert "long numbers" not in text and "### again" in text and "### the long run" in text
    assert text.index("### the long run") > text.index(LONG_BEGIN)
    (tmp_path / "bare.md").write_text("# no markers\n")
    with pytest.raises(ValueError, match="bare.md: no"):
        update_readme(tmp_path / "bare.md", "x")


def _streaming_experiment(exp: Path) -> None:
    """A causal run: _full_experiment plus the online model of L2-F8-H1 and a bidirectional run."""
    _full_experiment(exp)
    _write(exp / "deploy" / "L2-F8-H1" / "streaming" / "onnx_results.json", {
        "spec": "L2-F8-H1", "streaming": True,
        "wer": {"fp32": {METHOD: {"test": 12.5}}, "int8": {METHOD: {"test": 13.5}}},
        "rtf": {"fp32": {METHOD: 0.0311}, "int8": {METHOD: 0.0288}},
        "streaming_equals_offline": {"utterances": 40, "identical": 39, "differing": ["utt7"]},
    })
    bidir = exp.parent / "bidir" / "supernet" / METHOD
    _write(bidir / "results-L2-F8-H1_epoch-2_avg-1.json", _decode_result("L2-F8-H1", 1200, 9.0, 10.0))
    _write(bidir / "results-L4-F16-H2_epoch-2_avg-1.json", _decode_result("L4-F16-H2", 3600, 8.0, 9.0))


def test_streaming_columns_targets_and_notes(tmp_path):
    exp = tmp_path / "exp"
    _streaming_experiment(exp)
    report = make_report(exp, exp / "report", METHOD, bidirectional_dir=tmp_path / "bidir" / "supernet")
    markdown = (exp / "report" / "report.md").read_text()
    rows = _table(markdown)
    small, large = rows["L2-F8-H1"], rows["L4-F16-H2"]
    assert small["stream WER test"] == "12.50" and small["RTF stream fp32"] == "0.0311"
    assert small["RTF stream int8"] == "0.0288" and large["stream WER test"] == "-"
    assert small["WER test bidir."] == "10.00" and small["causal vs bidir. test"] == "+20.0%"
    assert large["causal vs bidir. dev"] == "+0.0%"
    checks = {t["name"]: t for t in report["targets"]}
    assert checks["int8 / fp32 ONNX size, largest over subnets"]["value"] == 1.5 / 4
    assert checks["streaming RTF of the largest subnet (fp32)"]["value"] is None  # L4 has no online model
    causal = checks["median relative WER difference causal vs bidirectional (%)"]
    assert causal["value"] == pytest.approx(statistics.median([100 / 9, 20.0, 0.0, 0.0])) and causal["met"] is True
    assert any("differ from the offline model's" in n and "L2-F8-H1 on 1 of 40" in n for n in report["notes"])
    assert "| int8 / fp32 ONNX size, largest over subnets | 0.375 | <= 0.3 | **no** | +0.075 |" in markdown


def test_an_offline_run_shows_no_streaming_columns(tmp_path):
    exp = tmp_path / "exp"
    _full_experiment(exp)
    report = make_report(exp, exp / "report", METHOD)
    header = _table((exp / "report" / "report.md").read_text())["L2-F8-H1"]
    assert not any("stream" in column or "bidir" in column for column in header)
    assert [t["name"] for t in report["targets"]][-1] == "int8 / fp32 ONNX size, largest over subnets"
