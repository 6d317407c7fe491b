#!/usr/bin/env bash
# Set up everything the recipe needs: Debian packages for the built-in corpus and a Python
# environment (tools/venv) with the pinned requirements. Idempotent: a second run checks a
# marker and returns in about a second.
#
#   tools/setup.sh                 # venv in tools/venv (default)
#   TODM_VENV=/path/env tools/setup.sh
#   TODM_NO_VENV=1 tools/setup.sh  # install into the python3 on PATH (conda users, CI images)
#   TODM_SKIP_APT=1 tools/setup.sh # you installed espeak-ng, flite, sox, wordnet-base yourself
#
# torch: an importable torch (for example your CUDA build) is kept. Only when none is found is
# torch==2.13.0 installed. pip never re-resolves torch: it is pinned to the installed version.
set -euo pipefail

tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv=${TODM_VENV:-$tools_dir/venv}
default_torch=${TODM_TORCH_VERSION:-2.13.0}
marker_key=$(cat "$tools_dir/requirements.txt" "$tools_dir/apt-packages.txt" "$tools_dir/setup.sh" | sha1sum | cut -c1-16)

log() { echo "[setup] $*"; }

if [ "${TODM_NO_VENV:-0}" = 1 ]; then
  python=$(command -v python3)
  marker=$tools_dir/.setup-system.done
else
  python=$venv/bin/python
  marker=$venv/.setup.done
fi

if [ -f "$marker" ] && [ "$(cat "$marker")" = "$marker_key" ]; then
  log "already done ($marker); delete it to redo"
  exit 0
fi

# --- Debian packages (built-in corpus) ---------------------------------------------------
apt_missing=()
while read -r pkg; do
  case "$pkg" in ''|'#'*) continue ;; esac
  dpkg -s "$pkg" >/dev/null 2>&1 || apt_missing+=("$pkg")
done < "$tools_dir/apt-packages.txt"
if [ "${#apt_missing[@]}" -gt 0 ] && [ "${TODM_SKIP_APT:-0}" != 1 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ -n "$sudo" ] && ! command -v sudo >/dev/null; then
    echo "[setup] ERROR: missing Debian packages ${apt_missing[*]} and not root (no sudo)." >&2
    echo "[setup] Install them, or set TODM_SKIP_APT=1 if you only use --corpus librispeech." >&2
    exit 1
  fi
  log "apt-get install ${apt_missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi

# --- Python environment -------------------------------------------------------------------
if [ "${TODM_NO_VENV:-0}" != 1 ] && [ ! -x "$python" ]; then
  log "creating venv $venv (with system site-packages, so an installed torch is reused)"
  python3 -m venv --system-site-packages "$venv"
fi
pip() { "$python" -m pip --disable-pip-version-check -q "$@"; }

if "$python" -c "import torch" 2>/dev/null; then
  log "keeping the installed torch $("$python" -c 'import torch; print(torch.__version__)')"
else
  log "no torch found: installing torch==$default_torch"
  pip install "torch==$default_torch"
fi
torch_version=$("$python" -c 'import torch; print(torch.__version__.split("+")[0])')
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
echo "torch==$torch_version" > "$constraints"

log "pip install -r tools/requirements.txt (torch pinned to $torch_version)"
pip install -r "$tools_dir/requirements.txt" -c "$constraints"

"$python" - <<'EOF'
import importlib
mods = ["torch", "lhotse", "lilcom", "sentencepiece", "kaldialign", "onnx", "onnxruntime",
        "sherpa_onnx", "torch.utils.tensorboard", "tqdm", "matplotlib", "soundfile"]
for m in mods:
    importlib.import_module(m)
import torch
print(f"[setup] ok: torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")
EOF
echo "$marker_key" > "$marker"
log "done"
