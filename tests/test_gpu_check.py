"""bench/gpu_check.py, the one-command GPU check, in its reduced CPU form: every section runs the
code a GPU run runs (small shapes, run.sh --tiny's model), so the check cannot rot unnoticed."""

import json
import math
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import gpu_check  # noqa: E402


def test_reduced_run_on_cpu_passes_every_section_and_writes_json(tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--device", "cpu", "--reduced", "true", "--repeats", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["ok"] and set(result["sections"]) == set(gpu_check.SECTIONS)
    sections = result["sections"]
    assert "tests/test_mutual_information.py" in sections["cuda_tests"]["files"]
    assert {c["case"] for c in sections["compare"]["cases"]} >= {"todm pruned loss", "ctc loss",
                                                                 "model largest subnet"}
    step = sections["train_step"]["backends"]["todm"]
    assert step["bf16"] and step["num_random_subnets"] == 2  # the preset's flags reached the step
    assert set(step["seconds_per_kind"]) == {"largest", "random", "smallest", "front_end"}
    assert [r["gpus"] for r in sections["estimate"]["rows"]] == [1, 4, 8]
    assert "| loss backend | GPUs | steps | wall hours | GPU-hours |" in printed and "not an estimate" in printed


def test_estimate_is_speed_perturbed_hours_over_batch_times_epochs_times_step():
    ctx = {"preset": {"perturb_speed": "true", "max_duration": "1000", "num_epochs": "30"},
           "results": {"train_step": {"backends": {"todm": {"step_seconds": 2.0}}}}}
    rows = gpu_check.estimate(gpu_check.get_parser().parse_args([]), ctx)["rows"]
    hours = 960 * (1 + 1 / 0.9 + 1 / 1.1)
    steps_1 = math.ceil(hours * 3600 / 1000) * 30
    assert rows[0]["steps"] == steps_1 and rows[0]["gpu_hours"] == pytest.approx(steps_1 * 2.0 / 3600)
    assert rows[2]["wall_hours"] == pytest.approx(rows[2]["gpu_hours"] / 8)


def test_synthetic_batch_fills_the_batch_duration_with_one_bucket_of_utterances():
    durations = gpu_check.utterance_durations(1000.0, 12.3, seed=0)
    assert 1000 - 13.6 < sum(durations) <= 1000 and all(11.0 < d < 13.6 for d in durations)
    x, x_lens, y = gpu_check.synthetic_batch(durations[:3], 4.0, 500, seed=0)
    assert x.shape == (3, int(max(d * 100 for d in durations[:3])), 80) and x_lens.max() == x.shape[1]
    assert all(len(u) == int(d * 4.0) and min(u) >= 3 for u, d in zip(y, durations))


def test_librispeech_shapes_on_a_cpu_are_refused():
    with pytest.raises(SystemExit, match="--reduced true"):
        gpu_check.main(["--device", "cpu"])
