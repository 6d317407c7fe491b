"""Every script of the recipe rejects an unknown flag and a malformed value with a message naming it."""

import subprocess
import sys

import pytest

from conftest import ROOT

# each with its required flags, so that argparse gets as far as the unknown one
SCRIPTS = [
    ["local/prepare_builtin.py"], ["local/prepare_librispeech.py"], ["local/prepare_lhotse_recipe.py", "--recipe", "x"],
    ["local/compute_fbank.py"], ["local/train_bpe.py", "--lang-dir", "x", "--vocab-size", "9", "--cuts", "x"],
    ["-m", "todm.train"], ["-m", "todm.decode"], ["-m", "todm.export", "--tokens", "x"], ["-m", "todm.sherpa_decode"],
    ["-m", "todm.report"], ["-m", "todm.list_subnets", "--exp-dir", "x", "--epoch", "1"], ["-m", "todm.select_subnets"],
    ["-m", "todm.describe_model"],
    ["bench/bench_loss.py"], ["bench/bench_subnets.py"], ["bench/bench_train_step.py"],
    ["bench/bench_scaling.py"], ["bench/bench_decode.py"], ["bench/bench_convergence.py"], ["bench/bench_threads.py"],
    ["bench/bench_streaming.py"], ["bench/gpu_check.py"],
]


def _run(script: list[str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *script, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: next(a for a in s if a.endswith(".py") or "todm." in a))
def test_unknown_flag_is_named(script):
    r = _run(script, "--no-such-flag", "1")
    assert r.returncode == 2 and "unrecognized arguments: --no-such-flag" in r.stderr, r.stderr[-2000:]


@pytest.mark.parametrize("script, flag", [
    (["-m", "todm.train"], "--num-epochs"), (["-m", "todm.decode"], "--beam-size"),
    (["local/compute_fbank.py"], "--num-jobs"), (["local/prepare_builtin.py"], "--num-train"),
    (["bench/bench_train_step.py"], "--batch-size"), (["bench/gpu_check.py"], "--repeats"),
], ids=lambda v: v if isinstance(v, str) else v[-1])
def test_malformed_value_is_named(script, flag):
    r = _run(script, flag, "many")
    assert r.returncode == 2 and f"argument {flag}: invalid int value: 'many'" in r.stderr, r.stderr[-2000:]
