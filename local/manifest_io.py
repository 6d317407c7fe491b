"""Interrupt-safe writing of lhotse manifests, shared by the data-preparation scripts.

Every stage decides "already done" by the presence of its output manifests, so a manifest
must never exist half-written. Lhotse picks the format from the file name (``.jsonl`` and
``.gz`` suffixes), so the temporary file keeps those suffixes and is renamed over the final
name only once it is complete (``os.replace`` is atomic on one file system).
"""

import os
from pathlib import Path

MANIFEST_SUFFIX = ".jsonl.gz"


def manifest_path(directory: Path | str, prefix: str, kind: str, part: str) -> Path:
    """The lhotse recipe naming scheme: ``<dir>/<prefix>_<kind>_<part>.jsonl.gz``.

    ``kind`` is ``recordings``, ``supervisions`` or ``cuts``, e.g.
    ``data/manifests/librispeech_recordings_dev-clean.jsonl.gz``.
    """
    return Path(directory) / f"{prefix}_{kind}_{part}{MANIFEST_SUFFIX}"


def save_manifest_atomically(manifest, path: Path | str) -> None:
    """Write a lhotse manifest (RecordingSet, SupervisionSet, CutSet ...) to ``path`` safely.

    The data go to a hidden ``.<name>.<pid>.tmp.jsonl.gz`` beside ``path`` first; an
    interruption leaves at most that temporary file, never a truncated ``path``.
    """
    path = Path(path)
    if not path.name.endswith(MANIFEST_SUFFIX):
        raise ValueError(f"manifest file names must end in {MANIFEST_SUFFIX}: {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.name[: -len(MANIFEST_SUFFIX)]
    tmp = path.with_name(f".{stem}.{os.getpid()}.tmp{MANIFEST_SUFFIX}")
    try:
        manifest.to_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
