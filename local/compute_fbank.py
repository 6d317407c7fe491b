#!/usr/bin/env python3
"""80-dim fbank features for a corpus's lhotse manifests (stage 1 of run.sh).

Reads ``<manifest-dir>/<corpus>_{recordings,supervisions}_<part>.jsonl.gz`` and writes to
``--output-dir``:

- ``<corpus>_cuts_train.jsonl.gz``: all ``--train-parts`` together, with speed-perturbed copies
  (factors 0.9 and 1.1, ids suffixed ``_sp0.9``/``_sp1.1``) when ``--perturb-speed true``;
- ``<corpus>_cuts_dev.jsonl.gz``: all ``--dev-parts`` together;
- ``<corpus>_cuts_<part>.jsonl.gz`` for each of ``--test-parts`` (a test part named like an
  output that already exists, e.g. builtin's "dev", is that output);
- the features themselves in ``<corpus>_feats_<name>/`` (lilcom, LilcomChunkyWriter).

Cuts are trimmed to their supervisions (one cut per utterance). Before extraction:
supervisions with an empty or letter-free transcript are dropped, recordings at another
sample rate are resampled to ``--sample-rate`` (or rejected with ``--resample false``);
cuts whose audio cannot be read (missing, corrupt, truncated) are dropped by lhotse during
extraction. Every such cut is counted and logged by id.

A cuts manifest is written (atomically) only after its features are complete, so an existing
one means "done" and is skipped; an interrupted set is recomputed from scratch.

Usage:
  python local/compute_fbank.py --corpus builtin --train-parts train --dev-parts dev --test-parts test
  python local/compute_fbank.py --corpus librispeech --perturb-speed true \\
      --train-parts "train-clean-100 train-clean-360 train-other-500" \\
      --dev-parts "dev-clean dev-other" --test-parts "test-clean test-other"
"""

import argparse
import logging
import os
import shutil
import time
from pathlib import Path

import torch
from lhotse import (
    CutSet,
    Fbank,
    FbankConfig,
    LilcomChunkyWriter,
    fix_manifests,
    load_manifest,
)
from lhotse.features.base import FeatureExtractor
from lhotse.utils import is_module_available

from local.manifest_io import manifest_path, save_manifest_atomically
from local.text_normalize import is_speech_text
from todm.utils import console_logging, str2bool

NUM_MEL_BINS = 80
# A worker process costs seconds to start (torch + lhotse imports) and extracts ~1000 s of audio
# per second, so it only pays off with about an hour of audio to do.
MIN_AUDIO_SECONDS_PER_JOB = 3600.0


def log_ids(message: str, ids: list[str]) -> None:
    """Warn ``message`` with the count and every id (nothing is dropped silently)."""
    if ids:
        logging.warning(f"{message}: {len(ids)} ({', '.join(sorted(ids))})")


def make_extractor(name: str) -> FeatureExtractor:
    """lhotse's torch Fbank, or kaldifeat's when asked for and installed; 80 mel bins both.

    Both use lhotse's defaults (no dither, snip_edges=False, high_freq=-400), which is what
    sherpa-onnx's front end computes at deployment time.
    """
    if name == "fbank":
        return Fbank(FbankConfig(num_mel_bins=NUM_MEL_BINS))
    if name == "kaldifeat":
        if not is_module_available("kaldifeat"):
            raise RuntimeError("--extractor kaldifeat: kaldifeat is not installed (an optional "
                               "extra, see tools/); --extractor fbank gives the same features")
        from lhotse import KaldifeatFbank, KaldifeatFbankConfig, KaldifeatMelOptions

        return KaldifeatFbank(KaldifeatFbankConfig(mel_opts=KaldifeatMelOptions(num_bins=NUM_MEL_BINS)))
    raise ValueError(f"unknown --extractor {name!r}: use fbank or kaldifeat")


def check_manifests_exist(manifest_dir: Path, corpus: str, parts: list[str]) -> None:
    """Fail before any work when a part's manifest is missing, naming it and what exists."""
    for part in parts:
        for kind in ("recordings", "supervisions"):
            path = manifest_path(manifest_dir, corpus, kind, part)
            if not path.is_file():
                found = sorted(p.name for p in manifest_dir.glob(f"{corpus}_recordings_*.jsonl.gz"))
                raise FileNotFoundError(f"manifest {path} not found (part {part!r} of corpus "
                                        f"{corpus!r}; recordings manifests present: {found or 'none'})")


def load_cuts(manifest_dir: Path, corpus: str, parts: list[str], sample_rate: int,
              resample: bool) -> CutSet:
    """Cleaned, supervision-trimmed cuts of ``parts`` (see the module docstring)."""
    cuts = []
    for part in parts:
        recordings = load_manifest(manifest_path(manifest_dir, corpus, "recordings", part))
        supervisions = load_manifest(manifest_path(manifest_dir, corpus, "supervisions", part))
        bad_text = [s for s in supervisions if not is_speech_text(s.text)]
        log_ids(f"{part}: supervisions with an empty or non-text transcript, skipped",
                [s.id for s in bad_text])
        supervisions = supervisions.filter(lambda s: is_speech_text(s.text)).to_eager()
        # their recordings go too (already reported), unless another supervision uses them
        unused = {s.recording_id for s in bad_text} - {s.recording_id for s in supervisions}
        recordings = recordings.filter(lambda r: r.id not in unused).to_eager()
        if len(supervisions) == 0:
            raise ValueError(f"{part}: no supervision of corpus {corpus!r} has a usable transcript")
        try:
            fixed_recordings, fixed_supervisions = fix_manifests(recordings, supervisions)
        except AssertionError as e:  # lhotse asserts when nothing is left
            raise ValueError(f"{part}: recordings and supervisions do not match: {e}") from e
        log_ids(f"{part}: recordings without a supervision, skipped",
                sorted(set(recordings.ids) - set(fixed_recordings.ids)))
        log_ids(f"{part}: supervisions without a recording, skipped",
                sorted(set(supervisions.ids) - set(fixed_supervisions.ids)))
        recordings, supervisions = fixed_recordings, fixed_supervisions
        part_cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
        part_cuts = part_cuts.trim_to_supervisions(keep_overlapping=False)
        wrong_rate = [c.id for c in part_cuts if c.sampling_rate != sample_rate]
        if wrong_rate and not resample:
            raise ValueError(f"{part}: {len(wrong_rate)} cuts are not at {sample_rate} Hz "
                             f"(e.g. {wrong_rate[:5]}); use --resample true")
        log_ids(f"{part}: cuts not at {sample_rate} Hz, resampled", wrong_rate)
        cuts += [c if c.sampling_rate == sample_rate else c.resample(sample_rate) for c in part_cuts]
    return CutSet.from_cuts(cuts)


def compute_features(cuts: CutSet, extractor: FeatureExtractor, storage_dir: Path,
                     num_jobs: int) -> CutSet:
    """Extract and store features; returns the cuts that got them (unreadable audio: dropped).

    Logs the extraction speed in seconds of audio per second of wall time.
    """
    shutil.rmtree(storage_dir, ignore_errors=True)  # leftovers of an interrupted run
    storage_dir.mkdir(parents=True)
    jobs = max(1, min(num_jobs, int(sum(c.duration for c in cuts) // MIN_AUDIO_SECONDS_PER_JOB)))
    start = time.time()
    with_feats = cuts.compute_and_store_features(
        extractor=extractor,
        # one job writes one archive; several jobs write feats-<i>.lca inside the directory
        storage_path=storage_dir / "feats" if jobs == 1 else storage_dir,
        num_jobs=jobs,
        storage_type=LilcomChunkyWriter,
    ).to_eager()
    elapsed = time.time() - start
    log_ids("cuts whose audio could not be read, skipped", sorted(set(cuts.ids) - set(with_feats.ids)))
    seconds = sum(c.duration for c in with_feats)
    logging.info(f"{len(with_feats)} cuts, {seconds / 3600:.3f} h of audio in {elapsed:.1f} s with "
                 f"{jobs} jobs: {seconds / max(elapsed, 1e-9):.0f} s of audio per second")
    return with_feats


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=str, default="builtin", help="manifest prefix")
    parser.add_argument("--manifest-dir", type=Path, default=Path("data/manifests"))
    parser.add_argument("--output-dir", type=Path, default=Path("data/fbank"))
    parser.add_argument("--train-parts", type=str, default="train", help="space separated")
    parser.add_argument("--dev-parts", type=str, default="dev", help="space separated")
    parser.add_argument("--test-parts", type=str, default="test", help="space separated")
    parser.add_argument("--perturb-speed", type=str2bool, default=False,
                        help="add 0.9x and 1.1x speed copies of the training cuts (3x data)")
    parser.add_argument("--extractor", type=str, default="fbank", choices=["fbank", "kaldifeat"])
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--resample", type=str2bool, default=True,
                        help="resample audio at another rate (false: stop with an error)")
    parser.add_argument("--num-jobs", type=int, default=len(os.sched_getaffinity(0)),
                        help="worker processes (default: all cores; at most one per hour of audio)")
    return parser


def main(argv: list[str] | None = None) -> None:
    console_logging()
    args = get_parser().parse_args(argv)
    # Parallelism comes from worker processes; torch threads inside them would oversubscribe.
    torch.set_num_threads(1)
    outputs: dict[str, tuple[list[str], bool]] = {}  # output name -> (parts, speed perturbation)
    if args.train_parts.split():
        outputs["train"] = (args.train_parts.split(), args.perturb_speed)
    if args.dev_parts.split():
        outputs["dev"] = (args.dev_parts.split(), False)
    for part in args.test_parts.split():
        if part in outputs and outputs[part] != ([part], False):
            raise SystemExit(f"error: test part {part!r} would overwrite the combined {part} set "
                             f"made from {outputs[part][0]}")
        outputs[part] = ([part], False)
    try:
        all_parts = [part for parts, _ in outputs.values() for part in parts]
        check_manifests_exist(args.manifest_dir, args.corpus, all_parts)
        extractor = make_extractor(args.extractor)
        for name, (parts, perturb) in outputs.items():
            out = manifest_path(args.output_dir, args.corpus, "cuts", name)
            if out.is_file():
                logging.info(f"{out} exists, skipping (delete it to recompute)")
                continue
            logging.info(f"{name}: parts {parts}" + (", speed perturbation 0.9/1.1" if perturb else ""))
            cuts = load_cuts(args.manifest_dir, args.corpus, parts, args.sample_rate, args.resample)
            if perturb:
                cuts = cuts + cuts.perturb_speed(0.9) + cuts.perturb_speed(1.1)
            if len(cuts) == 0:
                raise ValueError(f"no usable cuts left for {name} (parts {parts})")
            storage_dir = args.output_dir / f"{args.corpus}_feats_{name}"
            with_feats = compute_features(cuts, extractor, storage_dir, args.num_jobs)
            if len(with_feats) == 0:
                raise ValueError(f"no cut of {name} (parts {parts}) has readable audio")
            save_manifest_atomically(with_feats, out)
            logging.info(f"wrote {out}")
    except (ValueError, OSError, RuntimeError) as e:
        raise SystemExit(f"error: {e}")


if __name__ == "__main__":
    main()
