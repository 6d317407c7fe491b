"""Choose who computes the (pruned) RNN-T loss: k2, fast_rnnt, or this recipe's own code.

All three expose the same functions with the same signatures (k2's API):
``mutual_information_recursion``, ``rnnt_loss_simple``, ``rnnt_loss_smoothed``,
``get_rnnt_prune_ranges``, ``do_rnnt_pruning``, ``rnnt_loss_pruned``, ``rnnt_loss``, so the
training code calls ``backend.rnnt_loss_pruned(...)`` whatever was picked:

    parser.add_argument("--loss-backend", choices=LOSS_BACKENDS, default="auto")
    k2_api = get_loss_backend(args.loss_backend)

"auto" prefers the native implementations (k2, then fast_rnnt: faster on GPU) and falls
back to ``todm.rnnt_loss`` (pure PyTorch, always available). fast_rnnt is an optional
extra: ``tools/install_extras.sh fast_rnnt``.
"""
import importlib
import logging
from types import ModuleType

LOSS_BACKENDS = ("auto", "todm", "k2", "fast_rnnt")
REQUIRED_FUNCTIONS = (
    "mutual_information_recursion",
    "rnnt_loss_simple",
    "rnnt_loss_smoothed",
    "get_rnnt_prune_ranges",
    "do_rnnt_pruning",
    "rnnt_loss_pruned",
    "rnnt_loss",
)
_MODULES = {"todm": "todm.rnnt_loss", "k2": "k2", "fast_rnnt": "fast_rnnt"}
_INSTALL_HINTS = {
    "k2": "k2 needs a wheel matching your torch/CUDA/Python (https://k2-fsa.github.io/k2/)",
    "fast_rnnt": "build it with tools/install_extras.sh fast_rnnt",
}


def _import_backend(name: str) -> ModuleType:
    """Imports a backend and checks it has the whole API (old k2 releases lack some)."""
    module = importlib.import_module(_MODULES[name])
    missing = [f for f in REQUIRED_FUNCTIONS if not hasattr(module, f)]
    if missing:
        where = getattr(module, "__file__", None) or name
        raise ImportError(f"loss backend {name!r} ({where}) lacks {missing}")
    return module


def get_loss_backend(name: str = "auto") -> ModuleType:
    """Returns the module that computes the RNN-T losses for --loss-backend `name`.

    "auto": k2 if it imports, else fast_rnnt, else ours. A backend named explicitly must
    import, otherwise ImportError says why and how to get it.
    """
    if name not in LOSS_BACKENDS:
        raise ValueError(f"--loss-backend must be one of {LOSS_BACKENDS}, got {name!r}")
    if name != "auto":
        try:
            return _import_backend(name)
        except (ImportError, OSError) as e:
            hint = _INSTALL_HINTS.get(name, "")
            raise ImportError(
                f"--loss-backend {name}: cannot use it ({e}). {hint}; "
                f"or pass --loss-backend todm (pure PyTorch, always available)"
            ) from e
    for candidate in ("k2", "fast_rnnt"):
        try:
            module = _import_backend(candidate)
        except (ImportError, OSError) as e:  # OSError: a native library that fails to load
            logging.debug(f"loss backend {candidate} unavailable: {e}")
            continue
        logging.info(f"--loss-backend auto: using {candidate}")
        return module
    logging.info("--loss-backend auto: using todm (pure PyTorch)")
    return _import_backend("todm")
