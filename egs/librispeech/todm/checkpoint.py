"""Checkpoints in icefall's layout: ``epoch-N.pt``, ``checkpoint-B.pt``, ``model_avg`` averaging.

A checkpoint is a dict with ``model`` (state dict), ``model_avg`` (running average, float64),
``optimizer``, ``scheduler``, ``sampler``, ``grad_scaler``, ``rng`` (all random states, so a
resumed run continues bit for bit) and ``params`` (hyper-parameters, ``model_config``,
``batch_idx_train``, ``cur_epoch`` ...). Writes are atomic (temp file + rename).

Loading never runs code: a ``.pt`` file is a pickle, and a pickle can call any function while
it is read, so ``load_checkpoint_file`` uses ``torch.load(weights_only=True)``, which only
rebuilds tensors and plain containers, and refuses any other file with ``UnsafeCheckpointError``.
``save_checkpoint`` checks that what it writes is of that kind (``check_plain``), so every
checkpoint the recipe writes loads that way.
"""

import argparse
import pickle
import random
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from todm.model_config import encoder_version_problem
from todm.utils import str2bool, torch_save


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model


def get_rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: Path | str,
    model: nn.Module,
    params: dict[str, Any],
    model_avg: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    sampler: Any = None,
    scaler: Any = None,
) -> None:
    checkpoint = {
        "model": unwrap(model).state_dict(),
        "model_avg": model_avg.state_dict() if model_avg is not None else None,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "sampler": sampler.state_dict() if sampler is not None else None,
        "grad_scaler": scaler.state_dict() if scaler is not None else None,
        "rng": get_rng_state(),
        "params": dict(params),
    }
    check_plain(checkpoint, str(path))
    torch_save(checkpoint, path)


_PLAIN_LEAVES = (str, int, float, bool, type(None))
_PLAIN_CONTAINERS = (dict, OrderedDict, list, tuple, torch.Size)


def check_plain(obj: Any, where: str) -> None:
    """Raise TypeError naming the first item of ``obj`` that ``weights_only`` would refuse.

    Plain means tensors, str/int/float/bool/None, and dicts, lists and tuples of them, by exact
    type: a ``Path``, a numpy scalar (a float subclass) or a namedtuple is pickled as a call of
    its class, which a weights_only load refuses. Convert such values (``str(path)``,
    ``float(x)``) before saving.
    """
    if isinstance(obj, torch.Tensor) or type(obj) in _PLAIN_LEAVES:
        return
    if type(obj) not in _PLAIN_CONTAINERS:
        raise TypeError(f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}: a checkpoint may hold "
                        f"only tensors, numbers, strings, None and dicts/lists/tuples of them (weights_only load)")
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for key, value in items:
        if type(key) not in _PLAIN_LEAVES:
            raise TypeError(f"{where} has a key of type {type(key).__qualname__}: use str or int keys")
        check_plain(value, f"{where}[{key!r}]")


class UnsafeCheckpointError(ValueError):
    """A checkpoint file that does not load with ``weights_only=True`` (it was not read)."""


class IncompatibleCheckpointError(ValueError):
    """A checkpoint of a model architecture this version of the recipe does not build."""


def load_checkpoint_file(path: Path | str) -> dict[str, Any]:
    """Load a checkpoint dict on CPU with ``weights_only=True``; no code in the file can run.

    A file that holds anything but tensors and plain containers (what ``save_checkpoint``
    writes) raises UnsafeCheckpointError naming it: it is never unpickled in full.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"{path}: refusing to load: it is not a plain-tensor checkpoint (weights_only load failed: "
            f"{_unpickling_reason(e)}); checkpoints from untrusted sources can run code") from None
    except (RuntimeError, EOFError) as e:
        raise ValueError(f"{path}: not a readable checkpoint (truncated or corrupt?): {e}") from None
    config = _model_config(checkpoint)
    problem = encoder_version_problem(config) if config is not None else None
    if problem:
        raise IncompatibleCheckpointError(f"{path}: {problem}")
    return checkpoint


def _model_config(checkpoint: Any) -> dict[str, Any] | None:
    """The model config dict of a training checkpoint (under params) or of pretrained.pt."""
    if not isinstance(checkpoint, dict):
        return None
    params = checkpoint.get("params")
    config = params.get("model_config") if isinstance(params, dict) else checkpoint.get("model_config")
    return config if isinstance(config, dict) else None


def _unpickling_reason(error: Exception) -> str:
    """The specific part of torch's weights_only error, e.g. "Trying to load unsupported GLOBAL
    posix.system ..."; torch wraps it in general advice, including to retry with
    weights_only=False, which is exactly what must not be done with such a file."""
    paragraphs = [p.strip() for p in str(error).split("\n\n") if p.strip()]
    specific = paragraphs[1:-1] if len(paragraphs) > 2 else paragraphs
    return " ".join(specific)


def load_checkpoint(
    path: Path | str,
    model: nn.Module,
    model_avg: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    restore_rng: bool = False,
) -> dict[str, Any]:
    """Restore what is given from ``path``; returns the whole checkpoint dict."""
    ckpt = load_checkpoint_file(path)
    unwrap(model).load_state_dict(ckpt["model"])
    for obj, key in ((model_avg, "model_avg"), (optimizer, "optimizer"), (scheduler, "scheduler"),
                     (scaler, "grad_scaler")):
        if obj is not None and ckpt.get(key) is not None:
            obj.load_state_dict(ckpt[key])
    if restore_rng:
        set_rng_state(ckpt["rng"])
    return ckpt


def _batch_idx(path: Path) -> int:
    return int(load_checkpoint_file(path)["params"]["batch_idx_train"])


def find_resume_checkpoint(exp_dir: Path | str) -> Path | None:
    """The most advanced ``epoch-N.pt`` / ``checkpoint-B.pt`` in ``exp_dir`` (None if none).

    ``checkpoint-B.pt`` is named by its batch index; an epoch file is compared by the batch
    index stored inside it. Incomplete temp files are never considered.
    """
    exp_dir = Path(exp_dir)
    candidates = []
    epochs = sorted(exp_dir.glob("epoch-*.pt"), key=lambda p: int(re.findall(r"\d+", p.stem)[0]))
    if epochs:
        candidates.append((_batch_idx(epochs[-1]), 1, epochs[-1]))
    for p in exp_dir.glob("checkpoint-*.pt"):
        candidates.append((int(p.stem.split("-")[1]), 0, p))
    if not candidates:
        return None
    return max(candidates)[2]


def remove_checkpoints(exp_dir: Path | str, keep_last_k: int) -> None:
    """Keep the newest ``keep_last_k`` ``checkpoint-B.pt`` files (epoch files are never removed)."""
    if keep_last_k <= 0:
        return
    ckpts = sorted(Path(exp_dir).glob("checkpoint-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    for p in ckpts[:-keep_last_k]:
        p.unlink()


@torch.no_grad()
def update_averaged_model(model_avg: nn.Module, model: nn.Module, average_period: int,
                          batch_idx_train: int) -> None:
    """model_avg <- running mean of the weights since the start (icefall's ``model_avg``).

    Called every ``average_period`` batches; the current weights get weight period/batch_idx.
    """
    weight_cur = average_period / batch_idx_train
    cur = unwrap(model).state_dict()
    for name, avg in model_avg.state_dict().items():
        if avg.is_floating_point():
            avg.mul_(1 - weight_cur).add_(cur[name].to(avg.device, avg.dtype), alpha=weight_cur)
        else:
            avg.copy_(cur[name])


def average_checkpoints(paths: list[Path]) -> dict[str, torch.Tensor]:
    """Plain mean of the ``model`` entries of several checkpoints."""
    avg = None
    for p in paths:
        sd = load_checkpoint_file(p)["model"]
        if avg is None:
            avg = {k: v.clone().double() if v.is_floating_point() else v.clone() for k, v in sd.items()}
        else:
            for k, v in sd.items():
                if v.is_floating_point():
                    avg[k] += v.double()
    assert avg is not None, "no checkpoints to average"
    ref = load_checkpoint_file(paths[0])["model"]
    return {k: (v / len(paths)).to(ref[k].dtype) if v.is_floating_point() else v for k, v in avg.items()}


def average_with_model_avg(start: Path, end: Path) -> dict[str, torch.Tensor]:
    """Average of the weights between two checkpoints, from their running ``model_avg``.

    With a_s, a_e the running averages at batches b_s < b_e, the mean over (b_s, b_e] is
    (a_e*b_e - a_s*b_s) / (b_e - b_s).
    """
    cs, ce = load_checkpoint_file(start), load_checkpoint_file(end)
    bs, be = cs["params"]["batch_idx_train"], ce["params"]["batch_idx_train"]
    if not be > bs:
        raise ValueError(f"{end} (batch {be}) must be later than {start} (batch {bs})")
    if cs["model_avg"] is None or ce["model_avg"] is None:
        raise ValueError(f"{start} or {end} has no model_avg; use --use-averaged-model false")
    ws, we = bs / (be - bs), be / (be - bs)
    out = {}
    for k, ve in ce["model_avg"].items():
        if ve.is_floating_point():
            out[k] = (ve.double() * we - cs["model_avg"][k].double() * ws).to(ce["model"][k].dtype)
        else:
            out[k] = ve
    return out


def load_model_state(exp_dir: Path | str, epoch: int, avg: int, use_averaged_model: bool,
                     iteration: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """The weights to decode/export, icefall's ``--epoch/--iter/--avg/--use-averaged-model``.

    Returns (state_dict, params of the last checkpoint, a suffix such as ``epoch-12_avg-4``).
    """
    exp_dir = Path(exp_dir)
    if iteration > 0:
        ckpts = sorted((p for p in exp_dir.glob("checkpoint-*.pt") if int(p.stem.split("-")[1]) <= iteration),
                       key=lambda p: -int(p.stem.split("-")[1]))
        if len(ckpts) < avg + (1 if use_averaged_model else 0):
            raise FileNotFoundError(f"not enough checkpoint-*.pt at or before {iteration} in {exp_dir} for --avg {avg}")
        last, suffix = ckpts[0], f"iter-{iteration}_avg-{avg}"
        state = (average_with_model_avg(ckpts[avg], last) if use_averaged_model
                 else average_checkpoints(ckpts[:avg]))
    else:
        last, suffix = exp_dir / f"epoch-{epoch}.pt", f"epoch-{epoch}_avg-{avg}"
        if not last.is_file():
            raise FileNotFoundError(f"{last} does not exist: train first (run.sh stage 3) or check --epoch")
        if use_averaged_model:
            start = epoch - avg
            if start < 1:
                raise ValueError(f"--use-averaged-model needs --epoch > --avg (got epoch {epoch}, avg {avg})")
            state = average_with_model_avg(exp_dir / f"epoch-{start}.pt", last)
        else:
            paths = [exp_dir / f"epoch-{e}.pt" for e in range(epoch - avg + 1, epoch + 1)]
            missing = [str(p) for p in paths if not p.is_file()]
            if missing:
                raise FileNotFoundError(f"missing checkpoints for --avg {avg}: {', '.join(missing)}")
            state = average_checkpoints(paths)
    if use_averaged_model:
        suffix += "_use-averaged-model"
    return state, load_checkpoint_file(last)["params"], suffix


def add_weight_arguments(parser: argparse.ArgumentParser, default_avg: int = 4) -> None:
    """icefall's flags that choose the weights to decode/export (see ``load_model_state``)."""
    g = parser.add_argument_group("checkpoint")
    g.add_argument("--exp-dir", type=Path, default=Path("exp/supernet"), help="training dir with epoch-N.pt")
    g.add_argument("--epoch", type=int, default=12, help="use epoch-<epoch>.pt (with --avg)")
    g.add_argument("--iter", type=int, default=0, help="if > 0, use checkpoint-<iter>.pt instead of --epoch")
    g.add_argument("--avg", type=int, default=default_avg,
                   help="number of checkpoints to average, ending at --epoch/--iter")
    g.add_argument("--use-averaged-model", type=str2bool, default=True,
                   help="average over (epoch-avg, epoch] from the running model_avg (needs epoch > avg)")
