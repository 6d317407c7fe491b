#!/usr/bin/env bash
# Optional extras for the recipe. Nothing here is required: the recipe's own pure-PyTorch
# pruned RNN-T loss (egs/librispeech/todm/rnnt_loss.py) is always available. An extra only
# adds an alternative `--loss-backend` and lets the tests compare against it.
#
#   tools/install_extras.sh             # = tools/install_extras.sh fast_rnnt
#   tools/install_extras.sh fast_rnnt   # k2's pruned RNN-T loss as a standalone package
#
# The extras go into the environment that path.sh activates (tools/venv, or the python3 on
# PATH with TODM_NO_VENV=1). Idempotent: an extra that already imports is skipped.
#
# fast_rnnt==1.3: the registry has only an sdist, whose CMake
# fetches pybind11 from GitHub. We build it offline (reference: environment.md section 2,
# recipe A): FetchContent is pointed at the pybind11 sdist unpacked in tools/sdist/, CUDA is
# off (an nvcc that does not match torch's CUDA breaks the build), C++17 (torch needs it), and
# pip runs with --no-build-isolation --no-deps so it never re-resolves torch.
# Measured on a 2-core machine busy with other work: fetching the pybind11 sdist 1.6 min (pip
# prepares its metadata), building fast_rnnt 2.6 min on one core (1.7 min of CPU).
# k2 is deliberately not offered: the registry has no build of it for this torch/Python.
set -euo pipefail

tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
recipe_root=$(dirname "$tools_dir")
# shellcheck disable=SC1091
. "$recipe_root/path.sh"
python=$(command -v python3)
sdist_dir=$tools_dir/sdist
fast_rnnt_version=1.3
pybind11_version=3.1.0

log() { echo "[install_extras] $*"; }
pip() { "$python" -m pip --disable-pip-version-check "$@"; }

install_fast_rnnt() {
  if "$python" -c "import fast_rnnt" 2>/dev/null; then
    log "fast_rnnt already importable in $python: skipped"
    return
  fi
  "$python" -c "import torch" 2>/dev/null || {
    echo "[install_extras] ERROR: no torch in $python; run tools/setup.sh first" >&2
    exit 1
  }
  local torch_version
  torch_version=$("$python" -c 'import torch; print(torch.__version__)')

  local pybind11_src=$sdist_dir/pybind11-$pybind11_version
  if [ ! -f "$pybind11_src/CMakeLists.txt" ]; then
    log "fetching the pybind11==$pybind11_version sdist into $sdist_dir"
    mkdir -p "$sdist_dir"
    pip download -q --no-deps --no-binary :all: "pybind11==$pybind11_version" -d "$sdist_dir"
    tar xzf "$sdist_dir/pybind11-$pybind11_version.tar.gz" -C "$sdist_dir"
  fi

  # PYBIND11_FINDPYTHON=OFF: pybind11 3.x would otherwise use FindPython mode and
  # fast_rnnt's own C++ library would not get Python's include dir (Python.h not found).
  export FT_CMAKE_ARGS="-DCMAKE_BUILD_TYPE=Release -DFT_BUILD_TESTS=OFF -DFT_WITH_CUDA=OFF \
-DCMAKE_CXX_STANDARD=17 -DFETCHCONTENT_FULLY_DISCONNECTED=ON \
-DFETCHCONTENT_SOURCE_DIR_PYBIND11=$pybind11_src -DPYBIND11_FINDPYTHON=OFF"
  # every core: nproc alone obeys OMP_NUM_THREADS, which path.sh sets to 1
  export FT_MAKE_ARGS="-j$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"
  log "building fast_rnnt==$fast_rnnt_version (CPU only) against torch $torch_version"
  pip install -q --no-build-isolation --no-deps --no-binary fast_rnnt "fast_rnnt==$fast_rnnt_version"
  "$python" -c "import fast_rnnt, torch; print('[install_extras] ok: fast_rnnt imports,' \
' with_cuda =', fast_rnnt.with_cuda(), ', torch', torch.__version__)"
}

extras=("$@")
[ "${#extras[@]}" -gt 0 ] || extras=(fast_rnnt)
for extra in "${extras[@]}"; do
  case "$extra" in
    fast_rnnt) install_fast_rnnt ;;
    *) echo "[install_extras] ERROR: unknown extra '$extra' (known: fast_rnnt)" >&2; exit 1 ;;
  esac
done
