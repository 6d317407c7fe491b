#!/usr/bin/env python3
"""LibriSpeech (or Mini LibriSpeech) -> lhotse manifests, through lhotse's recipe.

Writes ``librispeech_{recordings,supervisions}_<part>.jsonl.gz`` to ``--output-dir`` for each
part in ``--parts``; a part whose two manifests exist is skipped. The audio is taken from
``--corpus-dir`` (a ``LibriSpeech/`` directory holding ``dev-clean/``, ``train-clean-100/`` ...).
Without ``--corpus-dir``, missing parts are downloaded from OpenSLR into
``<--dl-dir>/LibriSpeech`` (lhotse's ``download_librispeech``); when that fails, the error
names the URL and tells how to use a copy downloaded elsewhere.

Each ``<spk>/<chapter>/<spk>-<chapter>.trans.txt`` line is parsed by lhotse's
``parse_utterance``; an utterance with a missing or unreadable audio file, or an empty or
letter-free transcript, is skipped and reported by id (lhotse itself would stop at the first
one, or skip a missing file without counting it).

Usage:
  python local/prepare_librispeech.py --corpus-dir /data/LibriSpeech
  python local/prepare_librispeech.py --parts mini           # dev-clean-2 train-clean-5
  python local/prepare_librispeech.py --parts "dev-clean test-clean" --dl-dir download
"""

import argparse
import logging
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lhotse import RecordingSet, SupervisionSet, fix_manifests, validate_recordings_and_supervisions
from lhotse.recipes.librispeech import (
    LIBRISPEECH,
    MINI_LIBRISPEECH,
    download_librispeech,
    parse_utterance,
)
from tqdm import tqdm

from local.manifest_io import manifest_path, save_manifest_atomically
from local.text_normalize import is_speech_text
from todm.utils import console_logging, str2bool

# The usual icefall order: training parts first.
FULL_PARTS = ("train-clean-100", "train-clean-360", "train-other-500",
              "dev-clean", "dev-other", "test-clean", "test-other")
PART_ALIASES = {"full": FULL_PARTS, "mini": MINI_LIBRISPEECH}
OPENSLR_ID = {**{p: 12 for p in LIBRISPEECH}, **{p: 31 for p in MINI_LIBRISPEECH}}


def resolve_parts(spec: str) -> list[str]:
    """Parse ``--parts``: part names and the aliases ``full``/``mini``, space or comma separated."""
    parts: list[str] = []
    for name in spec.replace(",", " ").split():
        for part in PART_ALIASES.get(name, (name,)):
            if part not in OPENSLR_ID:
                raise ValueError(
                    f"unknown LibriSpeech part {part!r} in --parts; known: "
                    f"{' '.join(LIBRISPEECH + MINI_LIBRISPEECH)} (or the aliases full, mini)"
                )
            if part not in parts:
                parts.append(part)
    if not parts:
        raise ValueError("--parts is empty")
    return parts


def download_parts(parts: list[str], dl_dir: Path, base_url: str) -> None:
    """Download and unpack ``parts`` into ``dl_dir/LibriSpeech``; a failure names the URL."""
    for part in parts:
        url = f"{base_url}/{OPENSLR_ID[part]}/{part}.tar.gz"
        logging.info(f"downloading {url} into {dl_dir}")
        try:
            download_librispeech(dl_dir, dataset_parts=[part], base_url=base_url)
        except Exception as e:  # urllib/socket/tarfile errors: all mean "no usable download"
            empty_tar = dl_dir / f"{part}.tar.gz"
            if empty_tar.is_file() and empty_tar.stat().st_size == 0:
                empty_tar.unlink()
            raise RuntimeError(
                f"could not download LibriSpeech part {part} from {url}: {e}.\n"
                "Without network access, fetch the archives elsewhere, unpack them and pass "
                "--corpus-dir /path/to/LibriSpeech (the directory that holds dev-clean/, "
                "train-clean-100/, ...)."
            ) from e


def check_part_dir(corpus_dir: Path, part: str) -> list[Path]:
    """The part's ``*.trans.txt`` files; a clear error when the part is missing or unreadable."""
    part_dir = corpus_dir / part
    if not part_dir.is_dir():
        present = sorted(p.name for p in corpus_dir.iterdir() if p.name in OPENSLR_ID)
        raise FileNotFoundError(
            f"LibriSpeech part {part} not found: no directory {part_dir} "
            f"(parts present in {corpus_dir}: {present or 'none'})"
        )
    if not os.access(part_dir, os.R_OK | os.X_OK):
        raise PermissionError(f"LibriSpeech part directory {part_dir} is not readable")
    transcripts = sorted(part_dir.rglob("*.trans.txt"))
    if not transcripts:
        raise FileNotFoundError(
            f"no <speaker>/<chapter>/*.trans.txt transcripts under {part_dir}: "
            "is it an unpacked LibriSpeech part?"
        )
    return transcripts


def prepare_part(corpus_dir: Path, part: str, num_jobs: int) -> tuple[RecordingSet, SupervisionSet]:
    """Recordings and supervisions of one part; bad utterances are skipped and logged by id."""
    lines, skipped = [], {}
    for trans in check_part_dir(corpus_dir, part):
        try:
            text = trans.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise RuntimeError(f"cannot read transcript file {trans}: {e}") from e
        for line in text.splitlines():
            fields = line.split(maxsplit=1)
            if not fields:
                continue
            if len(fields) < 2 or not is_speech_text(fields[1]):
                skipped[fields[0]] = f"empty or non-text transcript in {trans}"
            else:
                lines.append(line)

    def parse(line: str):
        try:
            return parse_utterance(corpus_dir / part, line, alignments={})
        except Exception as e:  # unreadable or corrupt audio file
            skipped[line.split()[0]] = f"unreadable audio: {str(e).splitlines()[0]}"
            return None

    recordings, supervisions = [], []
    with ThreadPoolExecutor(num_jobs) as pool:
        results = pool.map(parse, lines)
        for line, result in tqdm(zip(lines, results), total=len(lines), desc=part, unit="utt"):
            if result is None:
                skipped.setdefault(line.split()[0], "audio file missing")
            else:
                recordings.append(result[0])
                supervisions.append(result[1])
    for utt_id, reason in sorted(skipped.items()):
        logging.warning(f"{part}: skipped {utt_id}: {reason}")
    if skipped:
        logging.warning(f"{part}: skipped {len(skipped)} utterances (listed above)")
    if not recordings:
        raise RuntimeError(f"LibriSpeech part {part} in {corpus_dir} has no usable utterance")
    recording_set, supervision_set = fix_manifests(
        RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions)
    )
    validate_recordings_and_supervisions(recording_set, supervision_set)
    return recording_set, supervision_set


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus-dir", type=Path, default=None,
                        help="existing LibriSpeech directory (default <dl-dir>/LibriSpeech)")
    parser.add_argument("--dl-dir", type=Path, default=Path("download"))
    parser.add_argument("--output-dir", type=Path, default=Path("data/manifests"))
    parser.add_argument("--parts", type=str, default="full",
                        help="parts to prepare, or 'full' (the 7 usual parts) / 'mini' "
                        "(dev-clean-2 train-clean-5)")
    parser.add_argument("--download", type=str2bool, default=True,
                        help="download missing parts (only when --corpus-dir is not given)")
    parser.add_argument("--base-url", type=str, default="http://www.openslr.org/resources",
                        help="OpenSLR mirror (parts live under <base-url>/12 and /31)")
    parser.add_argument("--num-jobs", type=int, default=len(os.sched_getaffinity(0)))
    return parser


def main(argv: list[str] | None = None) -> None:
    console_logging()
    args = get_parser().parse_args(argv)
    try:
        parts = resolve_parts(args.parts)
        corpus_dir = args.corpus_dir or args.dl_dir / "LibriSpeech"
        todo = []
        for part in parts:
            kinds = ("recordings", "supervisions")
            if all(manifest_path(args.output_dir, "librispeech", k, part).is_file() for k in kinds):
                logging.info(f"{part}: manifests exist in {args.output_dir}, skipping")
            else:
                todo.append(part)
        missing = [p for p in todo if not (corpus_dir / p).is_dir()]
        if missing and args.corpus_dir is None and args.download:
            socket.setdefaulttimeout(60)  # fail instead of hanging on a dead connection
            download_parts(missing, args.dl_dir, args.base_url)
        elif missing and not corpus_dir.is_dir():
            raise FileNotFoundError(
                f"LibriSpeech directory {corpus_dir} does not exist: pass --corpus-dir "
                "/path/to/LibriSpeech (holding dev-clean/, train-clean-100/, ...)"
            )
        for part in todo:
            recordings, supervisions = prepare_part(corpus_dir, part, args.num_jobs)
            for kind, manifest in (("supervisions", supervisions), ("recordings", recordings)):
                save_manifest_atomically(
                    manifest, manifest_path(args.output_dir, "librispeech", kind, part)
                )
            hours = sum(r.duration for r in recordings) / 3600
            logging.info(f"{part}: {len(recordings)} utterances, {hours:.2f} h")
    except (ValueError, OSError, RuntimeError) as e:
        raise SystemExit(f"error: {e}")


if __name__ == "__main__":
    main()
