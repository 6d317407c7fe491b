#!/usr/bin/env python3
"""Synthesise the built-in offline English corpus ("builtin") and write its lhotse manifests.

Text: the quoted usage examples in the glosses of WordNet 3.0 (Debian ``wordnet-base``,
``/usr/share/wordnet/data.*``, permissive licence), e.g. "the bolt slipped into place".
Sentences are normalised LibriSpeech-style by :mod:`local.text_normalize` (sentences with
digits, abbreviations or acronyms are dropped, because the synthesiser would not say what the
transcript says) and restricted to make a small model's task clearly learnable in minutes:

- 4 to 10 words (``--min-words``, ``--max-words``): short utterances, ~1.9 s on average;
- every word among the ``--top-words`` (2000) most frequent words of the candidate pool:
  a closed vocabulary of about 1,800 words, so a typical word is heard several times in
  training;
- dev and test sentences use only words that occur in the training sentences (no OOV words;
  ``--closed-vocabulary``), so their WER measures acoustic modelling, not guessing the spelling
  of unseen words.

Speech: 24 voices (speakers) from Debian main only, :data:`local.tts_voices.VOICES`: espeak-ng
accents, espeak-ng variants and prosody settings, and flite voices; each output is resampled
by sox to 16 kHz mono 16-bit. Splits have disjoint sentences. Train and dev use the 20
training voices; half of the test utterances use the 4 held-out voices, never heard in
training (marked ``custom["held_out_voice"]`` in the supervisions), the other half training
voices.

Defaults (2400 / 200 / 300 utterances) give about 1.3 h of training audio (enough for a small
model to learn the task, small enough to train it on 2 CPU cores within the recipe's ~30 min
budget), synthesised in ~25 s on 2 idle cores (53 s of CPU); ``--tiny true`` gives 36
utterances in a second or two (for tests). Before synthesis every voice is probed (a voice the
engine does not know would silently become its default voice).
Everything is deterministic from ``--seed``. Utterance ids are ``<voice id>_<hash of voice and
sentence>``, so an existing good wav is reused on a rerun and never confused with another one.

Outputs in --output-dir: ``builtin_{recordings,supervisions}_{train,dev,test}.jsonl.gz``
(speaker = voice id); audio in ``--audio-dir/<split>/<utterance id>.wav``.

``--num-extra-train N`` adds N training sentences from a wider pool (up to ``--extra-max-words``
words among the ``--extra-top-words`` most frequent) after the dev and test sentences are
drawn, so a bigger training set keeps the default corpus's dev and test sets.

Usage:
  python local/prepare_builtin.py                    # default corpus, all cores
  python local/prepare_builtin.py --num-extra-train 2600 --output-dir data/long/manifests
  python local/prepare_builtin.py --tiny true --output-dir /tmp/m --audio-dir /tmp/wav
"""

import argparse
import hashlib
import logging
import os
import random
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse import validate_recordings_and_supervisions

from local.manifest_io import manifest_path, save_manifest_atomically
from local.text_normalize import normalize_sentence
from local.tts_voices import ESPEAK_VARIANTS, VOICES, Voice, probe_voices, synthesize_many, vary_voice
from todm.utils import console_logging, str2bool

SPLITS = ("train", "dev", "test")
TINY_SIZES = {"train": 20, "dev": 6, "test": 10}
DEFAULT_SIZES = {"train": 2400, "dev": 200, "test": 300}


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
    return [(by_text[text], text) for text in sorted(by_text) if set(text.split()) <= vocabulary]


def plan_corpus(
    pool: list[tuple[str, str]],
    sizes: dict[str, int],
    seed: int,
    closed_vocabulary: bool = True,
    voices: tuple[Voice, ...] = VOICES,
    extra_pool: list[tuple[str, str]] = (),
    num_extra_train: int = 0,
    vary_train_voices: bool = False,
) -> dict[str, list[Utterance]]:
    """Draw disjoint sentences for train/dev/test and give each utterance a voice.

    Train and dev cycle through the training voices; test alternates between a held-out voice
    (even positions) and a training voice (odd positions). With ``closed_vocabulary``, dev and
    test sentences contain only words seen in the first ``sizes["train"]`` training sentences.
    Then ``num_extra_train`` more training sentences come from ``extra_pool`` (any sentence not
    drawn yet): a bigger training set whose dev and test sets are exactly those of the core corpus.
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
    if num_extra_train:
        drawn = {text for sentences in chosen.values() for _, text in sentences}
        extra = [s for s in extra_pool if s[1] not in drawn]
        if len(extra) < num_extra_train:
            raise ValueError(
                f"{num_extra_train} extra training sentences were asked for, but the extra pool has only "
                f"{len(extra)} sentences not drawn yet: raise --extra-max-words / --extra-top-words"
            )
        random.Random(seed).shuffle(extra)
        chosen["train"] = train + extra[:num_extra_train]

    held_out_names = {(v.engine, v.name) for v in unseen}
    speakers = random.Random(f"{seed}-speakers")

    def voice_for(split: str, i: int) -> Voice:
        if split == "train" and vary_train_voices:
            voice = vary_voice(seen[i % len(seen)], speakers)
            while (voice.engine, voice.name) in held_out_names:
                voice = vary_voice(seen[i % len(seen)], speakers)
            return voice
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
    for kind, manifest in (("supervisions", supervision_set), ("recordings", recording_set)):
        save_manifest_atomically(manifest, manifest_path(output_dir, "builtin", kind, split))
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
    parser.add_argument("--num-extra-train", type=int, default=0,
                        help="more training sentences beyond --num-train, from the pool of --min-words.."
                        "--extra-max-words words among the --extra-top-words most frequent; dev and test "
                        "stay those of the core corpus (the long preset uses this)")
    parser.add_argument("--extra-max-words", type=int, default=12)
    parser.add_argument("--extra-top-words", type=int, default=4000)
    parser.add_argument("--vary-train-voices", type=str2bool, default=False,
                        help="give every training utterance its own speaker: a random espeak-ng variant, "
                        "pitch and speaking rate around its training voice (dev and test keep the fixed voices)")
    parser.add_argument("--closed-vocabulary", type=str2bool, default=None,
                        help="dev/test sentences only use words of the train sentences "
                        "(default true; false with --tiny, whose train set is too small)")
    parser.add_argument("--num-jobs", type=int, default=len(os.sched_getaffinity(0)),
                        help="parallel synthesis processes (default: all cores)")
    return parser


def main(argv: list[str] | None = None) -> None:
    console_logging()
    args = get_parser().parse_args(argv)
    preset = TINY_SIZES if args.tiny else DEFAULT_SIZES
    sizes = {s: getattr(args, f"num_{s}") or preset[s] for s in SPLITS}
    closed_vocabulary = not args.tiny if args.closed_vocabulary is None else args.closed_vocabulary
    engines = {v.engine for v in VOICES} | {"sox"}
    missing = sorted(e for e in engines if shutil.which(e) is None)
    if missing:
        raise SystemExit(f"missing programs {missing}: run tools/setup.sh (Debian: apt-get install "
                         "espeak-ng flite sox libsox-fmt-all)")

    examples = read_wordnet_examples(args.wordnet_dir)
    pool = build_sentence_pool(examples, args.min_words, args.max_words, args.top_words)
    logging.info(f"{len(pool)} candidate sentences ({args.min_words}-{args.max_words} words, "
                 f"top {args.top_words} words); sizes {sizes}, seed {args.seed}")
    extra_pool = []
    if args.num_extra_train:
        extra_pool = build_sentence_pool(examples, args.min_words, args.extra_max_words, args.extra_top_words)
        logging.info(f"{len(extra_pool)} candidate sentences for {args.num_extra_train} extra training ones "
                     f"({args.min_words}-{args.extra_max_words} words, top {args.extra_top_words} words)")
    try:
        plan = plan_corpus(pool, sizes, args.seed, closed_vocabulary, extra_pool=extra_pool,
                           num_extra_train=args.num_extra_train, vary_train_voices=args.vary_train_voices)
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    held_out = [v.id for v in VOICES if v.held_out]
    logging.info(f"{len(VOICES)} voices; held out from train/dev (test only): {held_out}")

    probe = VOICES
    if args.vary_train_voices:  # every variant once, so that one the engine ignores is caught
        probe += tuple(Voice("espeak-ng", f"en-us+{variant}") for variant in ESPEAK_VARIANTS)
    probe_voices(probe, args.num_jobs)
    start = time.time()
    all_utts = [u for split in SPLITS for u in plan[split]]
    jobs = {u.id: (u.voice, u.spoken, args.audio_dir / u.split / f"{u.id}.wav") for u in all_utts}
    failed = synthesize_many(jobs, args.num_jobs)
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
