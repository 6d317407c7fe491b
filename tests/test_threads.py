"""Thread count and OpenMP wait policy of training on CPU (see bench/bench_threads.py)."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT
from todm.training_setup import cpu_threads


def test_requested_thread_count_is_used_as_given():
    assert cpu_threads(3, local_world_size=2) == (3, "--num-threads")


def test_auto_is_this_process_share_of_its_usable_cores():
    cores = len(os.sched_getaffinity(0))
    threads, why = cpu_threads(0, local_world_size=1)
    assert threads == cores and f"{cores} usable core(s)" in why
    assert cpu_threads(0, local_world_size=cores * 2)[0] == 1  # never 0 threads


def test_negative_thread_count_is_refused():
    with pytest.raises(ValueError, match="--num-threads must be >= 0"):
        cpu_threads(-1, local_world_size=1)


def _policy_after_import(env: dict[str, str]) -> str:
    code = "import os, todm; print(os.environ['OMP_WAIT_POLICY'])"
    env = {**env, "PYTHONPATH": str(ROOT / "egs" / "librispeech")}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_importing_todm_makes_idle_openmp_threads_sleep_unless_the_user_chose():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert _policy_after_import(env) == "PASSIVE"
    assert _policy_after_import({**env, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"
