"""The smoke test: ./run.sh stages 0-6 on the tiny built-in corpus, as a user runs it."""

import json
import shutil
from pathlib import Path

import pytest

from conftest import run_recipe


@pytest.fixture(scope="module")
def finished(tiny_recipe, tmp_path_factory):
    recipe = tmp_path_factory.mktemp("smoke") / "recipe"
    shutil.copytree(tiny_recipe, recipe, symlinks=True)
    r = run_recipe(recipe, "--stage", "0", "--stop-stage", "6", "--tiny", "true")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return recipe, r.stdout + r.stderr


def test_every_stage_leaves_its_outputs(finished):
    recipe, log = finished
    exp = recipe / "exp"
    assert (exp / "supernet" / "epoch-2.pt").is_file() and (exp / "supernet" / "train_cost.json").is_file()
    summaries = list((exp / "supernet" / "greedy_search").glob("summary_*.json"))
    assert summaries and list((exp / "supernet" / "modified_beam_search").glob("results-*.json"))
    specs = [r["spec"] for r in json.loads(summaries[0].read_text())]
    assert len(specs) >= 4
    for spec in specs:
        base = exp / f"baseline-{spec}"
        assert (base / "epoch-2.pt").is_file() and list((base / "greedy_search").glob("results-*.json"))
        deploy = exp / "deploy" / spec
        assert (deploy / "pretrained.pt").is_file() and (deploy / "onnx_results.json").is_file()
        assert len(list(deploy.glob("*.int8.onnx"))) == 3 and len(list(deploy.glob("*.onnx"))) == 6
    report = (exp / "report" / "report.md").read_text()
    assert all(spec in report for spec in specs)
    assert (exp / "report" / "wer_vs_params.png").stat().st_size > 1000
    assert "exp/report/report.md" in log


def test_rerun_skips_finished_work(finished):
    recipe, _ = finished
    before = (recipe / "exp" / "supernet" / "epoch-2.pt").stat().st_mtime
    r = run_recipe(recipe, "--stage", "1", "--stop-stage", "3", "--tiny", "true")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "nothing to do" in r.stdout + r.stderr
    assert (recipe / "exp" / "supernet" / "epoch-2.pt").stat().st_mtime == before


@pytest.mark.parametrize("args, message", [
    (["--max-durration", "3"], "invalid option --max-durration"),
    (["--tiny", "yes"], "true or false"),
    (["--stage", "0", "--stop-stage", "0", "--corpus", "nosuchcorpus"], "nosuchcorpus"),
])
def test_bad_flags_are_named(tiny_recipe, args, message):
    r = run_recipe(tiny_recipe, *args)
    assert r.returncode != 0 and message in r.stdout + r.stderr
