#!/usr/bin/env python3
"""Synthesise the built-in offline English corpus ("builtin") and write its lhotse manifests.

Text: the quoted usage examples in the glosses of WordNet 3.0 (Debian ``wordnet-base``,
``/usr/share/wordnet/data.*``, permissive licence), e.g. "the bolt slipped into place".
Sentences are normalised LibriSpeech-style by :mod:`local.text_normalize` (sentences with
digits, abbreviations or acronyms are dropped, because the synthesiser would not say what the
transcript says) and restricted to make a small model's task clearly learnable in minutes:

- 4 to 10 words (``--min-words``, ``--max-words``): short utterances, ~1.9 s on average;
- every word among the ``--top-words`` (2000) most frequent words of the candidate pool:
  a closed vocabulary of about 1,750 words, so a typical word is heard several times in
  training;
- dev and test sentences use only words that occur in the training sentences (no OOV words;
  ``--closed-vocabulary``), so their WER measures acoustic modelling, not guessing the spelling
  of unseen words.

Speech: 24 voices (speakers) from Debian main only: espeak-ng accents, espeak-ng variants and
prosody settings, and flite voices (:data:`VOICES`); each output is resampled by sox to 16 kHz
mono 16-bit. Splits have disjoint sentences. Train and dev use the 20 training voices; half of
the test utterances use the 4 held-out voices, never heard in training (marked
``custom["held_out_voice"]`` in the supervisions), the other half training voices.

Defaults (2400 / 200 / 300 utterances) give about 1.3 h of training audio (enough for a small
model to learn the task, small enough to train it on 2 CPU cores within the recipe's ~30 min
budget), synthesised in about 30 s on 2 cores; ``--tiny true`` gives 36 utterances in a few seconds (for tests).
Everything is deterministic from ``--seed``. Utterance ids are ``<voice id>_<hash of voice and
sentence>``, so an existing good wav is reused on a rerun and never confused with another one.

Outputs in --output-dir: ``builtin_{recordings,supervisions}_{train,dev,test}.jsonl.gz``
(speaker = voice id); audio in ``--audio-dir/<split>/<utterance id>.wav``.

Usage:
  python local/prepare_builtin.py                    # default corpus, all cores
  python local/prepare_builtin.py --tiny true --output-dir /tmp/m --audio-dir /tmp/wav
"""

import argparse
import hashlib
import logging
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse import validate_recordings_and_supervisions
from tqdm import tqdm

from local.manifest_io import manifest_path, save_manifest_atomically
from local.text_normalize import normalize_sentence
from todm.utils import str2bool

SAMPLE_RATE = 16000
MIN_SAMPLES = SAMPLE_RATE // 10  # shorter than 0.1 s counts as empty
SILENCE_PEAK = 1e-3  # peak |amplitude| (full scale 1.0) below which audio counts as silent
SPLITS = ("train", "dev", "test")
TINY_SIZES = {"train": 20, "dev": 6, "test": 10}
DEFAULT_SIZES = {"train": 2400, "dev": 200, "test": 300}


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: a TTS engine, its voice name and prosody settings.

    ``speed`` is the speaking rate relative to the engine's default (espeak-ng: 175 words per
    minute times speed; flite: duration_stretch = 1/speed). ``pitch`` is espeak-ng's pitch
    (0-99, default 50) or flite's target mean F0 in Hz; None keeps the engine default.
    """

    engine: str  # "espeak-ng" or "flite"
    name: str  # espeak-ng "voice[+variant]" or flite voice name
    speed: float = 1.0
    pitch: int | None = None
    held_out: bool = False  # only in the test split

    @property
    def id(self) -> str:
        engine = "espeak" if self.engine == "espeak-ng" else self.engine
        tag = f"{engine}-{self.name}"
        if self.speed != 1.0:
            tag += f"-r{self.speed:g}"
        if self.pitch is not None:
            tag += f"-p{self.pitch}"
        return tag

    def command(self, text: str, wav: Path) -> list[str]:
        """The command line that speaks ``text`` into ``wav`` (engine's own sample rate)."""
        if self.engine == "espeak-ng":
            cmd = ["espeak-ng", "-v", self.name, "-s", str(round(175 * self.speed)), "-w", str(wav)]
            if self.pitch is not None:
                cmd += ["-p", str(self.pitch)]
            return cmd + [text]
        if self.engine == "flite":
            cmd = ["flite", "-voice", self.name, "--setf", f"duration_stretch={1 / self.speed:.3g}"]
            if self.pitch is not None:
                cmd += ["--setf", f"int_f0_target_mean={self.pitch}"]
            return cmd + ["-t", text, "-o", str(wav)]
        raise ValueError(f"unknown TTS engine {self.engine!r} for voice {self.name!r}")


# Note: espeak-ng silently ignores a variant on "en-gb" ("en-gb+f2" == "en-gb"), so variants are
# put on "en", "en-us" and the other accents. mbrola and festival voices are left out (non-free,
# respectively 20x slower); flite's "kal" is 8 kHz and "awb_time" a talking clock.
VOICES: tuple[Voice, ...] = (
    # espeak-ng accents
    Voice("espeak-ng", "en-us"),
    Voice("espeak-ng", "en"),  # British (gmw/en)
    Voice("espeak-ng", "en-gb-scotland"),
    Voice("espeak-ng", "en-gb-x-rp"),
    Voice("espeak-ng", "en-gb-x-gbclan"),
    Voice("espeak-ng", "en-029"),
    Voice("espeak-ng", "en-us-nyc"),
    # espeak-ng variants (female f*, male m*, klatt synthesiser)
    Voice("espeak-ng", "en+f2"),
    Voice("espeak-ng", "en-us+f3"),
    Voice("espeak-ng", "en-gb-x-rp+m3"),
    Voice("espeak-ng", "en-029+f1"),
    Voice("espeak-ng", "en+m7"),
    Voice("espeak-ng", "en-us+klatt2"),
    Voice("espeak-ng", "en-gb-x-gbclan+m4"),
    # espeak-ng prosody settings
    Voice("espeak-ng", "en-us", speed=0.8, pitch=30),
    Voice("espeak-ng", "en+f4", speed=1.15, pitch=70),
    # flite
    Voice("flite", "kal16"),
    Voice("flite", "rms"),
    Voice("flite", "slt"),
    Voice("flite", "slt", speed=0.85, pitch=200),
    # held out from training: an unseen accent, an unseen accent+variant, an unseen prosody
    # setting of a variant, and an unseen flite voice (Scottish clustergen).
    Voice("espeak-ng", "en-gb-x-gbcwmd", held_out=True),
    Voice("espeak-ng", "en-gb-scotland+f4", held_out=True),
    Voice("espeak-ng", "en-us-nyc+m2", speed=0.9, pitch=60, held_out=True),
    Voice("flite", "awb", held_out=True),
)


@dataclass(frozen=True)
class Utterance:
    """One planned utterance: ``spoken`` is fed to the synthesiser, ``text`` is the transcript."""

    id: str
    split: str
    voice: Voice
    spoken: str
    text: str


def read_wordnet_examples(wordnet_dir: Path) -> list[str]:
    """The quoted usage examples in the glosses of WordNet's ``data.*`` files, in file order.

    A synset line ends with ``| gloss; "example one"; "example two"``; the licence header
    lines start with two spaces.
    """
    files = sorted(Path(wordnet_dir).glob("data.*"))
    if not files:
        raise FileNotFoundError(
            f"no WordNet data.* files in {wordnet_dir}: install the Debian package "
            "wordnet-base (tools/setup.sh does) or pass --wordnet-dir"
        )
    examples = []
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or " | " not in line:
                    continue
                examples += re.findall(r'"([^"]+)"', line.split(" | ", 1)[1])
    return examples


def build_sentence_pool(
    examples: list[str], min_words: int, max_words: int, top_words: int
) -> list[tuple[str, str]]:
    """Candidate ``(spoken, transcript)`` pairs, sorted by transcript (so seeds are portable).

    Keeps sentences that normalise cleanly, have ``min_words..max_words`` words and whose
    words are all among the ``top_words`` most frequent words of those sentences (ties broken
    alphabetically). Transcripts are unique: one sentence is never spoken twice.
    """
    by_text: dict[str, str] = {}
    for sentence in examples:
        text = normalize_sentence(sentence)
        if text and min_words <= len(text.split()) <= max_words:
            by_text.setdefault(text, sentence.strip())
    counts = Counter(word for text in by_text for word in text.split())
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    vocabulary = set(ranked[:top_words])
    return sorted(
        (spoken, text) for text, spoken in by_text.items() if set(text.split()) <= vocabulary
    )


def plan_corpus(
    pool: list[tuple[str, str]],
    sizes: dict[str, int],
    seed: int,
    closed_vocabulary: bool = True,
    voices: tuple[Voice, ...] = VOICES,
) -> dict[str, list[Utterance]]:
    """Draw disjoint sentences for train/dev/test and give each utterance a voice.

    Train and dev cycle through the training voices; test alternates between a held-out voice
    (even positions) and a training voice (odd positions). With ``closed_vocabulary``, dev and
    test sentences contain only words seen in the training sentences.
    """
    seen = [v for v in voices if not v.held_out]
    unseen = [v for v in voices if v.held_out]
    if not seen or not unseen:
        raise ValueError("the voice table needs both training and held-out voices")
    order = list(pool)
    random.Random(seed).shuffle(order)
    train = order[: sizes["train"]]
    train_words = {w for _, text in train for w in text.split()}
    rest = [
        s for s in order[sizes["train"] :] if not closed_vocabulary or set(s[1].split()) <= train_words
    ]
    if len(train) < sizes["train"] or len(rest) < sizes["dev"] + sizes["test"]:
        raise ValueError(
            f"the sentence pool is too small: {len(pool)} sentences, {len(rest)} of them usable "
            f"for dev/test after taking {sizes['train']} for train, but {sizes} were asked for. "
            "Ask for fewer utterances, raise --top-words / --max-words, or set "
            "--closed-vocabulary false."
        )
    chosen = {"train": train, "dev": rest[: sizes["dev"]]}
    chosen["test"] = rest[sizes["dev"] : sizes["dev"] + sizes["test"]]

    def voice_for(split: str, i: int) -> Voice:
        if split == "test":
            return unseen[i // 2 % len(unseen)] if i % 2 == 0 else seen[i // 2 % len(seen)]
        return seen[i % len(seen)]

    plan = {}
    for split, sentences in chosen.items():
        plan[split] = []
        for i, (spoken, text) in enumerate(sentences):
            voice = voice_for(split, i)
            digest = hashlib.sha1(f"{voice.id}|{spoken}".encode()).hexdigest()[:10]
            plan[split].append(Utterance(f"{voice.id}_{digest}", split, voice, spoken, text))
    return plan


def check_wav(path: Path) -> str | None:
    """None when ``path`` is a usable 16 kHz mono 16-bit, non-empty, non-silent wav; else why not."""
    try:
        info = sf.info(str(path))
        if (info.samplerate, info.channels, info.subtype) != (SAMPLE_RATE, 1, "PCM_16"):
            return f"wrong format ({info.samplerate} Hz, {info.channels} ch, {info.subtype})"
        if info.frames < MIN_SAMPLES:
            return f"empty audio ({info.frames} samples)"
        peak = float(np.abs(sf.read(str(path), dtype="float32")[0]).max())
    except (RuntimeError, OSError) as e:  # soundfile.LibsndfileError is a RuntimeError
        return f"unreadable audio ({e})"
    return f"silent audio (peak {peak:.1e})" if peak < SILENCE_PEAK else None


def synthesize(utt: Utterance, wav_path: Path) -> str | None:
    """Make ``wav_path`` for ``utt`` unless a good one exists. Returns None or why it failed.

    Synthesis and resampling happen in a temporary directory beside the target; only a
    checked result is renamed into place, so an interruption never leaves a bad wav behind.
    """
    if wav_path.is_file() and check_wav(wav_path) is None:
        return None
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=wav_path.parent, prefix=".tmp-") as tmp:
        raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
        resample = ["sox", "-R", "-D", "-V1", str(raw), "-r", str(SAMPLE_RATE), "-c", "1"]
        for cmd in (utt.voice.command(utt.spoken, raw), resample + ["-b", "16", str(out)]):
            try:
                subprocess.run(cmd, check=True, capture_output=True, timeout=120)
            except subprocess.CalledProcessError as e:
                return f"{cmd[0]} failed ({e.returncode}): {e.stderr.decode(errors='replace').strip()}"
            except subprocess.TimeoutExpired:
                return f"{cmd[0]} timed out"
            except OSError as e:  # program missing or not executable
                return f"{cmd[0]} could not run: {e}"
        problem = check_wav(out)
        if problem is None:
            os.replace(out, wav_path)
        return problem


def synthesize_all(
    utts: list[Utterance], audio_dir: Path, num_jobs: int, desc: str = "Synthesising"
) -> dict[str, str]:
    """Synthesise all utterances, ``num_jobs`` at a time. Returns {failed utterance id: reason}.

    Threads suffice: the work happens in the espeak-ng/flite/sox child processes.
    """
    for stale in audio_dir.glob("*/.tmp-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    failed = {}
    pool = ThreadPoolExecutor(max_workers=num_jobs)
    try:
        futures = {pool.submit(synthesize, u, audio_dir / u.split / f"{u.id}.wav"): u for u in utts}
        for future in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="utt"):
            problem = future.result()
            if problem is not None:
                failed[futures[future].id] = problem
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return failed


def probe_voices(voices: tuple[Voice, ...], num_jobs: int) -> None:
    """Fail early when a voice is unusable or silently replaced by another voice.

    For a voice name they do not know, espeak-ng and flite fall back to their default voice
    and still exit with status 0 (and espeak-ng ignores a variant on "en-gb"). Speaking one
    phrase with every voice and comparing the audio reveals both problems in about a second.
    """
    with tempfile.TemporaryDirectory() as tmp:
        utts = [Utterance(f"{i}", "probe", v, "The heavy rain fell on the town.", "")
                for i, v in enumerate(voices)]
        failed = synthesize_all(utts, Path(tmp), num_jobs, desc="Checking voices")
        if failed:
            raise RuntimeError(f"voices that cannot speak: { {voices[int(i)].id: r for i, r in failed.items()} }")
        first_with: dict[str, Voice] = {}
        for u in utts:
            digest = hashlib.sha1(sf.read(Path(tmp) / "probe" / f"{u.id}.wav")[0].tobytes()).hexdigest()
            if digest in first_with:
                raise RuntimeError(
                    f"voices {first_with[digest].id} and {u.voice.id} produce identical audio: the "
                    "engine does not know one of them (or ignores its variant); fix VOICES"
                )
            first_with[digest] = u.voice


def write_split(split: str, utts: list[Utterance], audio_dir: Path, output_dir: Path) -> dict:
    """Write the validated recordings and supervisions of one split; returns its statistics."""
    recordings, supervisions = [], []
    for u in utts:
        rec = Recording.from_file(audio_dir / split / f"{u.id}.wav", recording_id=u.id)
        recordings.append(rec)
        supervisions.append(
            SupervisionSegment(
                id=u.id,
                recording_id=u.id,
                start=0.0,
                duration=rec.duration,
                channel=0,
                text=u.text,
                speaker=u.voice.id,
                language="English",
                custom={"held_out_voice": u.voice.held_out},
            )
        )
    recording_set = RecordingSet.from_recordings(recordings)
    supervision_set = SupervisionSet.from_segments(supervisions)
    validate_recordings_and_supervisions(recording_set, supervision_set)
    save_manifest_atomically(supervision_set, manifest_path(output_dir, "builtin", "supervisions", split))
    save_manifest_atomically(recording_set, manifest_path(output_dir, "builtin", "recordings", split))
    return {
        "utterances": len(utts),
        "hours": sum(r.duration for r in recordings) / 3600,
        "voices": len({u.voice.id for u in utts}),
        "held_out_voice_utterances": sum(u.voice.held_out for u in utts),
        "words": len({w for u in utts for w in u.text.split()}),
    }


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output-dir", type=Path, default=Path("data/manifests"))
    parser.add_argument("--audio-dir", type=Path, default=Path("download/builtin/wav"))
    parser.add_argument("--wordnet-dir", type=Path, default=Path("/usr/share/wordnet"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--tiny", type=str2bool, default=False,
                        help="preset for tests: 20/6/10 utterances (seconds to synthesise)")
    for split in SPLITS:
        parser.add_argument(f"--num-{split}", type=int, default=None,
                            help=f"{split} utterances (default {DEFAULT_SIZES[split]}, "
                            f"tiny {TINY_SIZES[split]})")
    parser.add_argument("--min-words", type=int, default=4)
    parser.add_argument("--max-words", type=int, default=10)
    parser.add_argument("--top-words", type=int, default=2000,
                        help="keep sentences whose words are all among this many most frequent")
    parser.add_argument("--closed-vocabulary", type=str2bool, default=None,
                        help="dev/test sentences only use words of the train sentences "
                        "(default true; false with --tiny, whose train set is too small)")
    parser.add_argument("--num-jobs", type=int, default=len(os.sched_getaffinity(0)),
                        help="parallel synthesis processes (default: all cores)")
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        format="%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] %(message)s", level=logging.INFO
    )
    args = get_parser().parse_args(argv)
    preset = TINY_SIZES if args.tiny else DEFAULT_SIZES
    sizes = {s: getattr(args, f"num_{s}") or preset[s] for s in SPLITS}
    closed_vocabulary = not args.tiny if args.closed_vocabulary is None else args.closed_vocabulary
    engines = {v.engine for v in VOICES} | {"sox"}
    missing = sorted(e for e in engines if shutil.which(e) is None)
    if missing:
        raise SystemExit(f"missing programs {missing}: run tools/setup.sh (Debian: apt-get install "
                         "espeak-ng flite sox libsox-fmt-all)")

    pool = build_sentence_pool(
        read_wordnet_examples(args.wordnet_dir), args.min_words, args.max_words, args.top_words
    )
    logging.info(f"{len(pool)} candidate sentences ({args.min_words}-{args.max_words} words, "
                 f"top {args.top_words} words); sizes {sizes}, seed {args.seed}")
    try:
        plan = plan_corpus(pool, sizes, args.seed, closed_vocabulary)
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    held_out = [v.id for v in VOICES if v.held_out]
    logging.info(f"{len(VOICES)} voices; held out from train/dev (test only): {held_out}")

    probe_voices(VOICES, args.num_jobs)
    start = time.time()
    all_utts = [u for split in SPLITS for u in plan[split]]
    failed = synthesize_all(all_utts, args.audio_dir, args.num_jobs)
    logging.info(f"synthesis of {len(all_utts)} utterances took {time.time() - start:.1f} s "
                 f"with {args.num_jobs} jobs")
    for utt_id, reason in sorted(failed.items()):
        logging.warning(f"skipped {utt_id}: {reason}")
    if failed:
        logging.warning(f"skipped {len(failed)} of {len(all_utts)} utterances (listed above)")

    for split in SPLITS:
        good = [u for u in plan[split] if u.id not in failed]
        if not good:
            raise SystemExit(f"error: every {split} utterance failed to synthesise (see above)")
        stats = write_split(split, good, args.audio_dir, args.output_dir)
        logging.info(f"{split}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                               for k, v in stats.items()))
    vocabulary = {w for u in all_utts if u.id not in failed for w in u.text.split()}
    logging.info(f"vocabulary {len(vocabulary)} words; manifests in {args.output_dir}")


if __name__ == "__main__":
    main()
