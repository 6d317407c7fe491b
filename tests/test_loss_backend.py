"""todm.loss_backend: which module computes the RNN-T loss for each --loss-backend."""
import argparse
import sys
import types

import pytest
import torch

from todm import rnnt_loss
from todm.loss_backend import LOSS_BACKENDS, REQUIRED_FUNCTIONS, get_loss_backend


def _hide(monkeypatch, *names):
    """Makes `import name` fail (sys.modules[name] = None raises ImportError)."""
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)


def _fake_backend(name):
    module = types.ModuleType(name)
    for f in REQUIRED_FUNCTIONS:
        setattr(module, f, getattr(rnnt_loss, f))
    return module


def test_todm_backend_is_ours_and_complete():
    backend = get_loss_backend("todm")
    assert backend is rnnt_loss
    for name in REQUIRED_FUNCTIONS:
        assert callable(getattr(backend, name))


def test_auto_prefers_k2_then_fast_rnnt_then_ours(monkeypatch):
    fake_k2, fake_fast = _fake_backend("k2"), _fake_backend("fast_rnnt")
    monkeypatch.setitem(sys.modules, "k2", fake_k2)
    monkeypatch.setitem(sys.modules, "fast_rnnt", fake_fast)
    assert get_loss_backend() is fake_k2
    _hide(monkeypatch, "k2")
    assert get_loss_backend("auto") is fake_fast
    _hide(monkeypatch, "fast_rnnt")
    assert get_loss_backend("auto") is rnnt_loss


def test_incomplete_backend_is_skipped_by_auto_and_rejected_by_name(monkeypatch):
    old_k2 = types.ModuleType("k2")  # e.g. a k2 release without the pruned loss
    monkeypatch.setitem(sys.modules, "k2", old_k2)
    _hide(monkeypatch, "fast_rnnt")
    assert get_loss_backend("auto") is rnnt_loss
    with pytest.raises(ImportError, match="lacks"):
        get_loss_backend("k2")


def test_missing_named_backend_and_unknown_name_fail_clearly(monkeypatch):
    _hide(monkeypatch, "k2", "fast_rnnt")
    with pytest.raises(ImportError, match="--loss-backend fast_rnnt.*install_extras.sh"):
        get_loss_backend("fast_rnnt")
    with pytest.raises(ImportError, match="--loss-backend k2.*--loss-backend todm"):
        get_loss_backend("k2")
    with pytest.raises(ValueError, match="must be one of"):
        get_loss_backend("warp")


def test_choices_for_argparse():
    assert LOSS_BACKENDS[0] == "auto" and set(LOSS_BACKENDS) == {"auto", "todm", "k2", "fast_rnnt"}
    parser = argparse.ArgumentParser()
    parser.add_argument("--loss-backend", choices=LOSS_BACKENDS, default="auto")
    assert parser.parse_args(["--loss-backend", "todm"]).loss_backend == "todm"


def test_installed_fast_rnnt_is_usable_as_backend(monkeypatch):
    pytest.importorskip("fast_rnnt")
    _hide(monkeypatch, "k2")
    backend = get_loss_backend("auto")
    assert backend.__name__ == "fast_rnnt"
    am, lm = torch.randn(1, 4, 3), torch.randn(1, 3, 3)
    symbols, boundary = torch.tensor([[1, 2]]), torch.tensor([[0, 0, 2, 4]])
    torch.testing.assert_close(
        backend.rnnt_loss_simple(lm, am, symbols, 0, boundary),
        rnnt_loss.rnnt_loss_simple(lm, am, symbols, 0, boundary),
    )
