# Sourced by run.sh (and by you, to run the Python scripts by hand): activates the Python
# environment made by tools/setup.sh, puts the `todm` package on PYTHONPATH, sets threads.
recipe_root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ "${TODM_NO_VENV:-0}" != 1 ]; then
  todm_venv=${TODM_VENV:-$recipe_root/tools/venv}
  if [ -f "$todm_venv/bin/activate" ]; then
    # shellcheck disable=SC1091
    . "$todm_venv/bin/activate"
  fi
fi
export PYTHONPATH=$recipe_root/egs/librispeech:$recipe_root:${PYTHONPATH:-}
export PYTHONUNBUFFERED=1
export PYTHONIOENCODING=UTF-8
# protobuf's C++ backend can segfault with tensorboard (icefall issue #674)
export PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python
# Each process uses its own torch thread count (set by the scripts); avoid oversubscription.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# Idle OpenMP threads sleep instead of spinning: on a machine where another process holds a core,
# spinning threads slowed a 2-thread training step 30-40x (bench/bench_threads.py).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
