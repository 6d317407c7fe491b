"""todm.loss_backend: which module computes the RNN-T loss for each --loss-backend."""
import sys
import types

import pytest
import torch

from conftest import import_reference, tiny_config
from todm import rnnt_loss, train
from todm.loss_backend import REQUIRED_FUNCTIONS, get_loss_backend
from todm.model import build_model
from todm.transducer_loss import transducer_forward


def _hide(monkeypatch, *names):
    """Makes `import name` fail (sys.modules[name] = None raises ImportError)."""
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)


def _fake_backend(name):
    module = types.ModuleType(name)
    for f in REQUIRED_FUNCTIONS:
        setattr(module, f, getattr(rnnt_loss, f))
    return module


class Recorder:
    """A backend that forwards to ``module`` and records the names the caller uses."""

    def __init__(self, module):
        self.module, self.used = module, set()

    def __getattr__(self, name):
        self.used.add(name)
        return getattr(self.module, name)


def test_training_uses_only_the_functions_a_backend_is_checked_for():
    # REQUIRED_FUNCTIONS is what "auto" checks before accepting k2 or fast_rnnt: a function the
    # training calls but the list lacks would let an incomplete backend fail mid-training.
    backend = get_loss_backend("todm")
    assert backend is rnnt_loss
    torch.manual_seed(0)
    model = build_model(tiny_config())
    x, x_lens, y = torch.randn(2, 60, 80), torch.tensor([60, 45]), [[3, 4, 5], [6]]
    recorder = Recorder(backend)
    out = transducer_forward(model, recorder, x, x_lens, y, spec=None, dropout=0.0)
    assert recorder.used and recorder.used <= set(REQUIRED_FUNCTIONS), recorder.used - set(REQUIRED_FUNCTIONS)
    assert torch.isfinite(out.simple_loss) and torch.isfinite(out.pruned_loss)


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


def test_train_flag_offers_every_backend_and_defaults_to_auto(capsys):
    parser = train.get_parser()
    assert parser.parse_args([]).loss_backend == "auto"
    for name in ("todm", "k2", "fast_rnnt"):
        assert parser.parse_args(["--loss-backend", name]).loss_backend == name
    with pytest.raises(SystemExit):
        parser.parse_args(["--loss-backend", "warp"])
    assert "--loss-backend: invalid choice: 'warp'" in capsys.readouterr().err


def test_installed_fast_rnnt_is_usable_as_backend(monkeypatch):
    import_reference("fast_rnnt")
    _hide(monkeypatch, "k2")
    backend = get_loss_backend("auto")
    assert backend.__name__ == "fast_rnnt"
    am, lm = torch.randn(1, 4, 3), torch.randn(1, 3, 3)
    symbols, boundary = torch.tensor([[1, 2]]), torch.tensor([[0, 0, 2, 4]])
    torch.testing.assert_close(
        backend.rnnt_loss_simple(lm, am, symbols, 0, boundary),
        rnnt_loss.rnnt_loss_simple(lm, am, symbols, 0, boundary),
    )
