"""Shared fixtures: a tiny supernet config, and a tiny recipe dir prepared by run.sh stages 0-2."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from todm.model_config import TransducerConfig
from todm.subnet import SearchSpace

ROOT = Path(__file__).resolve().parents[1]


# Why a reference implementation may be missing, for the skip message of the tests comparing with it.
REFERENCE_HINTS = {
    "fast_rnnt": "tools/install_extras.sh fast_rnnt builds it (about 4 min); CI does not (README: k2, "
                 "icefall, fast_rnnt)",
    "k2": "the package registry has no k2 build for this torch/Python (https://k2-fsa.github.io/k2/)",
}


def import_reference(name: str):
    """The module ``name`` (k2 or fast_rnnt), or skip the test saying how to get it."""
    return pytest.importorskip(name, reason=f"{name} is not installed: {REFERENCE_HINTS[name]}")


def tiny_config(vocab_size: int = 20, **kw) -> TransducerConfig:
    space = kw.pop("search_space", SearchSpace(layers=(1, 2), ffn_dims=(16, 32), heads=(1, 2)))
    return TransducerConfig(vocab_size=vocab_size, subsampling_channels=(4, 8, 8), encoder_dim=16, head_dim=4,
                            state_dim=4, decoder_dim=16, joiner_dim=16, search_space=space, **kw)


def make_recipe_dir(dst: Path) -> Path:
    """A copy of the recipe's code (not its data/exp) in ``dst``, with the repo's venv linked."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("run.sh", "path.sh", "shared", "local", "egs", "conf"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst / name)
    (dst / "tools").mkdir(exist_ok=True)
    for f in (ROOT / "tools").iterdir():
        if f.is_file():
            shutil.copy2(f, dst / "tools" / f.name)
    if (ROOT / "tools" / "venv").exists():
        (dst / "tools" / "venv").symlink_to(ROOT / "tools" / "venv")
    return dst


def run_recipe(recipe: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "TODM_NO_VENV": os.environ.get("TODM_NO_VENV", "0")}
    return subprocess.run(["bash", "run.sh", *args], cwd=recipe, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="session")
def tiny_recipe(tmp_path_factory) -> Path:
    """Stages 0-2 of the tiny built-in corpus (about 10 s); tests copy it, never modify it."""
    recipe = make_recipe_dir(tmp_path_factory.mktemp("tiny_recipe"))
    r = run_recipe(recipe, "--stage", "0", "--stop-stage", "2", "--tiny", "true")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return recipe
