#!/usr/bin/env python3
"""Any lhotse recipe by name -> lhotse manifests (the generic stage-0 path of run.sh).

``--recipe NAME`` runs ``lhotse.recipes.prepare_NAME(corpus_dir, output_dir=...)`` and, with
``--download true``, ``lhotse.recipes.download_NAME(target_dir)`` first. An unknown name is
answered with the closest recipe names. Recipe-specific options go in ``--prepare-kwargs`` as
JSON, e.g. ``'{"dataset_parts": ["dev"]}'``.

The recipe writes into a temporary directory; its files are then moved into ``--output-dir``
and a ``.<recipe>.done`` marker is written last, so an interrupted run is redone cleanly and a
finished one is skipped. The log lists the manifest prefix and parts that were written, which
are what ``local/compute_fbank.py --corpus PREFIX --train-parts ...`` needs.

Usage:
  python local/prepare_lhotse_recipe.py --recipe yesno --download true --dl-dir download
  python local/prepare_lhotse_recipe.py --recipe timit --corpus-dir /data/TIMIT
"""

import argparse
import difflib
import inspect
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import lhotse.recipes

from todm.utils import console_logging, str2bool

MANIFEST_NAME = re.compile(r"^(?P<prefix>.+?)_(recordings|supervisions|cuts)_(?P<part>.+)\.jsonl\.gz$")


def recipe_names() -> list[str]:
    """Names of all recipes in this lhotse version (``prepare_<name>`` functions)."""
    return sorted(n[len("prepare_"):] for n in dir(lhotse.recipes) if n.startswith("prepare_"))


def get_recipe_function(kind: str, name: str) -> Callable:
    """``lhotse.recipes.<kind>_<name>``; unknown names raise ValueError with close matches."""
    function = getattr(lhotse.recipes, f"{kind}_{name}", None)
    if function is not None:
        return function
    if kind == "prepare":
        close = difflib.get_close_matches(name, recipe_names(), n=5, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "see `lhotse prepare --help`"
        raise ValueError(f"lhotse {lhotse.__version__} has no recipe {name!r}: {hint}")
    raise ValueError(f"lhotse's recipe {name!r} has no download_{name}: download it yourself "
                     "and pass --corpus-dir")


def prepare_kwargs(prepare: Callable, output_dir: Path, num_jobs: int, extra: dict) -> dict:
    """Keyword arguments for a prepare_* function, whatever its parameter names.

    The corpus directory is its first (positional) parameter; the output directory is called
    ``output_dir`` (or ``manifest_dir``), the parallelism ``num_jobs`` (or ``nj``).
    """
    params = inspect.signature(prepare).parameters
    kwargs = dict(extra)
    out_name = next((n for n in ("output_dir", "manifest_dir") if n in params), None)
    if out_name is None:
        raise ValueError(f"{prepare.__name__} takes no output directory; use lhotse directly")
    kwargs[out_name] = output_dir
    for jobs_name in ("num_jobs", "nj"):
        if jobs_name in params and jobs_name not in kwargs:
            kwargs[jobs_name] = num_jobs
    first = next(iter(params))
    required = [n for n, p in params.items() if p.default is inspect.Parameter.empty
                and n != first and n not in kwargs]
    if required:
        raise ValueError(f"{prepare.__name__} also needs {required}: pass them in --prepare-kwargs")
    return kwargs


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", type=str, required=True, help="lhotse recipe name, e.g. yesno")
    parser.add_argument("--corpus-dir", type=Path, default=None,
                        help="existing corpus directory (else what --download produced)")
    parser.add_argument("--dl-dir", type=Path, default=Path("download"),
                        help="downloads go to <dl-dir>/<recipe>")
    parser.add_argument("--download", type=str2bool, default=None,
                        help="run download_<recipe> first (default: true without --corpus-dir)")
    parser.add_argument("--output-dir", type=Path, default=Path("data/manifests"))
    parser.add_argument("--prepare-kwargs", type=json.loads, default={},
                        help="extra keyword arguments for prepare_<recipe>, as JSON")
    parser.add_argument("--num-jobs", type=int, default=len(os.sched_getaffinity(0)))
    return parser


def main(argv: list[str] | None = None) -> None:
    console_logging()
    args = get_parser().parse_args(argv)
    name = args.recipe.strip().lower().replace("-", "_")
    marker = args.output_dir / f".{name}.done"
    if marker.is_file():
        logging.info(f"{name}: already prepared ({marker} exists; delete it to redo)")
        return
    try:
        prepare = get_recipe_function("prepare", name)
        download = args.corpus_dir is None if args.download is None else args.download
        corpus_dir = args.corpus_dir
        if download:
            target = args.corpus_dir or args.dl_dir / name
            download_fn = get_recipe_function("download", name)
            logging.info(f"download_{name} into {target}")
            try:
                if "target_dir" in inspect.signature(download_fn).parameters:
                    result = download_fn(target_dir=target)
                else:
                    result = download_fn(target)
            except Exception as e:
                params = inspect.signature(download_fn).parameters.items()
                urls = " ".join(p.default for n, p in params
                                if "url" in n and isinstance(p.default, str)) or "its default URL"
                raise RuntimeError(f"download_{name} into {target} failed: {e} (from {urls}). "
                                   "Without network access, download the corpus elsewhere and "
                                   "pass --corpus-dir") from e
            corpus_dir = Path(result) if isinstance(result, (str, Path)) else target
        if corpus_dir is None:
            raise ValueError("pass --corpus-dir DIR (an existing corpus) or --download true")
        if not corpus_dir.exists():
            raise FileNotFoundError(f"corpus directory {corpus_dir} does not exist (--corpus-dir)")
        args.output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=args.output_dir, prefix=f".{name}.tmp-") as tmp:
            kwargs = prepare_kwargs(prepare, Path(tmp), args.num_jobs, args.prepare_kwargs)
            logging.info(f"prepare_{name}({corpus_dir})")
            try:
                prepare(corpus_dir, **kwargs)
            except Exception as e:  # recipes signal bad input with asserts and assorted errors
                raise RuntimeError(f"prepare_{name} failed on {corpus_dir}: "
                                   f"{type(e).__name__}: {e}") from e
            written = sorted(p.name for p in Path(tmp).iterdir() if p.is_file())
            if not written:
                raise RuntimeError(f"prepare_{name} wrote no manifest for {corpus_dir}")
            for file_name in written:
                shutil.move(Path(tmp) / file_name, args.output_dir / file_name)
    except (ValueError, OSError, RuntimeError) as e:
        raise SystemExit(f"error: {e}")
    marker.write_text("\n".join(written) + "\n")
    found: dict[str, set[str]] = {}
    for file_name in written:
        if m := MANIFEST_NAME.match(file_name):
            found.setdefault(m["prefix"], set()).add(m["part"])
    for prefix, parts in sorted(found.items()):
        logging.info(f"wrote manifests with prefix {prefix!r}, parts {sorted(parts)} to "
                     f"{args.output_dir}: use --corpus {prefix} and parts among these")
        if prefix != name:
            logging.warning(f"the manifest prefix {prefix!r} differs from the recipe name {name!r}")


if __name__ == "__main__":
    main()
