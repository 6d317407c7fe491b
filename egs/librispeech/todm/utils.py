"""Small helpers shared by the scripts: flags, logging, seeding, atomic writes."""

import argparse
import json
import logging
import os
import random
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch


def str2bool(value: str) -> bool:
    """argparse type for icefall-style booleans: true/false, yes/no, 1/0."""
    if isinstance(value, bool):
        return value
    v = value.lower()
    if v in ("true", "t", "yes", "y", "1"):
        return True
    if v in ("false", "f", "no", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def int_list(text: str) -> tuple[int, ...]:
    """argparse type for comma-separated integers (``"2,4,6"`` -> ``(2, 4, 6)``); also parses
    the choices of a search space string (``todm.subnet.SearchSpace.parse``)."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


LOG_FORMAT = "%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] %(message)s"


def console_logging() -> None:
    """Timestamped INFO logging to the console, the format every recipe script uses."""
    logging.basicConfig(format=LOG_FORMAT, level=logging.INFO)


def setup_logger(log_prefix: Path | str, rank: int = 0, world_size: int = 1) -> Path:
    """Log to the console and to ``<log_prefix>-<date>[-<rank>]`` (icefall's layout)."""
    date = datetime.now().strftime("%Y-%m-%d-%H-%M-%S")
    suffix = f"-{rank}" if world_size > 1 else ""
    log_file = Path(f"{log_prefix}-{date}{suffix}")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    fmt = f"%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] ({rank}/{world_size}) %(message)s"
    handlers: list[logging.Handler] = [logging.FileHandler(log_file)]
    if rank == 0:
        handlers.append(logging.StreamHandler())
    logging.basicConfig(level=logging.INFO, format=fmt, handlers=handlers, force=True)
    return log_file


def fix_random_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class WriteError(OSError):
    """An output could not be written (full disk, no permission); the message names the file."""


def atomic_write(path: Path | str, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    A crash (or a full disk) in the middle leaves the previous ``path`` intact, never a
    half-written file that a later stage would mistake for a finished one.
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(name)
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the mode a plain open() would
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        cause = _os_error_in_chain(e)
        if cause is None:
            raise
        kept = "the previous file is unchanged" if path.exists() else "nothing was written"
        raise WriteError(f"could not write {path}: {cause.strerror or cause} ({kept})") from e


def _os_error_in_chain(e: BaseException | None) -> OSError | None:
    """The OSError behind ``e``: torch.save wraps a full disk's ENOSPC in a RuntimeError."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, OSError):
            return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


# The BPE model of the built-in preset (conf/builtin.sh), the scripts' --bpe-model default.
DEFAULT_BPE_MODEL = Path("data/lang_bpe_64/bpe.model")


def save_json(obj: Any, path: Path | str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n"))


def load_json(path: Path | str) -> Any:
    """The JSON object in ``path``; a missing or malformed file raises ValueError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON file ({e})") from e


def torch_save(obj: Any, path: Path | str) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a Python file, so that a failed write surfaces as an OSError
            torch.save(obj, f)

    atomic_write(path, write)


def read_tokens(tokens_file: Path | str) -> dict[str, int]:
    """Read icefall's tokens.txt (``symbol id`` per line)."""
    table = {}
    for line_no, line in enumerate(Path(tokens_file).read_text().splitlines(), 1):
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"{tokens_file}:{line_no}: expected 'symbol id', got {line!r}")
        table[fields[0]] = int(fields[1])
    return table
