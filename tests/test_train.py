"""End-to-end training through run.sh stage 3 on the tiny built-in corpus."""

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import run_recipe
from todm.checkpoint import load_checkpoint_file

TRAIN_ARGS = "--save-every-n 4 --num-threads 1 --log-interval 1"


@pytest.fixture(scope="module")
def recipe(tiny_recipe, tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("train") / "recipe"
    shutil.copytree(tiny_recipe, dst, symlinks=True)
    return dst


def _stage3(recipe: Path, exp: str, *extra: str) -> list[str]:
    return ["--stage", "3", "--stop-stage", "3", "--tiny", "true", "--exp-dir", exp, *extra]


@pytest.fixture(scope="module")
def uninterrupted(recipe) -> Path:
    r = run_recipe(recipe, *_stage3(recipe, "exp_a", "--train-args", TRAIN_ARGS))
    assert r.returncode == 0, r.stderr[-3000:]
    return recipe / "exp_a" / "supernet"


def test_checkpoints_tensorboard_cost_and_decreasing_loss(uninterrupted):
    exp = uninterrupted
    assert (exp / "epoch-1.pt").is_file() and (exp / "epoch-2.pt").is_file()
    assert list(exp.glob("checkpoint-*.pt")) and list((exp / "log").glob("log-train-*"))
    events = EventAccumulator(str(exp / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    for tag in ("train/learning_rate", "train/largest_pruned_loss", "train/smallest_kd_loss",
                "train/random_dropout", "train/grad_norm", "train/valid_largest_loss"):
        assert tag in tags, tag
    valid = [e.value for e in events.Scalars("train/valid_largest_loss")]
    assert len(valid) == 2 and valid[1] < valid[0]
    cost = (exp / "train_cost.json").read_text()
    assert '"wall_seconds"' in cost and '"process_seconds"' in cost


def _kill_9_then_rerun(recipe: Path, exp: str, *flags: str) -> Path:
    """Trains into ``exp``, kill -9 of the whole run after its first checkpoint, then the same command again."""
    cmd = ["bash", "run.sh", *_stage3(recipe, exp, *flags)]
    proc = subprocess.Popen(cmd, cwd=recipe, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    exp_dir = recipe / exp / "supernet"
    deadline = time.time() + 300
    while not (exp_dir / "checkpoint-4.pt").exists():
        assert proc.poll() is None and time.time() < deadline, "training ended before the first checkpoint"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (exp_dir / "epoch-2.pt").exists()
    r = run_recipe(recipe, *_stage3(recipe, exp, *flags))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed from" in r.stderr + r.stdout
    return exp_dir


def _assert_same_weights(a_dir: Path, b_dir: Path) -> None:
    a, b = load_checkpoint_file(a_dir / "epoch-2.pt"), load_checkpoint_file(b_dir / "epoch-2.pt")
    for key in ("model", "model_avg"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after resume"


def test_kill_9_then_rerun_resumes_to_the_same_weights(recipe, uninterrupted):
    _assert_same_weights(uninterrupted, _kill_9_then_rerun(recipe, "exp_b", "--train-args", TRAIN_ARGS))


def test_two_processes_resume_to_the_same_weights_after_kill_9(recipe):
    """The built-in presets train in two processes: their resume must be as exact as one process's."""
    flags = ("--world-size", "2", "--master-port", "29619", "--train-args", TRAIN_ARGS)
    r = run_recipe(recipe, *_stage3(recipe, "exp_ddp_a", *flags))
    assert r.returncode == 0, r.stderr[-3000:]
    _assert_same_weights(recipe / "exp_ddp_a" / "supernet", _kill_9_then_rerun(recipe, "exp_ddp_b", *flags))


def test_two_processes_stay_in_sync(recipe):
    r = run_recipe(recipe, *_stage3(recipe, "exp_ddp", "--world-size", "2", "--master-port", "29617",
                                    "--train-args", "--max-batches 3 --num-threads 1"))
    assert r.returncode == 0, r.stderr[-3000:]
    digests = []
    for log in sorted((recipe / "exp_ddp" / "supernet" / "log").glob("log-train-*")):
        found = re.findall(r"parameter sha1 (\w+)", log.read_text())
        digests += found
    assert len(digests) == 2 and digests[0] == digests[1]
