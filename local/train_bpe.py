#!/usr/bin/env python3
"""Train the sentencepiece model of a lang dir (stage 2 of run.sh), icefall style.

Writes to ``--lang-dir``:

- ``transcript_words.txt``: the training transcripts, one per line (from ``--transcript`` or
  from the supervisions of ``--cuts``);
- ``bpe.model``: sentencepiece model (``--model-type``, default unigram) with
  ``character_coverage=1.0`` and icefall's special ids: ``<blk>``=0 and ``<sos/eos>``=1 as
  user-defined symbols, ``<unk>``=2, no separate bos/eos ids. Blank must be 0 for the RNN-T
  loss and for sherpa-onnx;
- ``tokens.txt``: ``<piece> <id>`` per line for every id, as read by decoding and export.

Skips everything when ``bpe.model`` and ``tokens.txt`` exist (tokens.txt is written last,
both atomically).

Usage:
  python local/train_bpe.py --lang-dir data/lang_bpe_500 --vocab-size 500 \\
      --cuts data/fbank/librispeech_cuts_train.jsonl.gz
  python local/train_bpe.py --lang-dir data/lang_bpe_256 --vocab-size 256 --transcript text.txt
"""

import argparse
import logging
import os
import tempfile
from pathlib import Path

import sentencepiece as spm
from lhotse import load_manifest_lazy

from local.text_normalize import is_speech_text
from todm.utils import atomic_write, console_logging

SPECIAL_IDS = {"<blk>": 0, "<sos/eos>": 1, "<unk>": 2}


def transcripts_from_cuts(paths: list[Path]) -> list[str]:
    """The supervision texts of the cuts in ``paths`` (lines without letters are dropped)."""
    texts = []
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"cuts manifest {path} not found (--cuts); run stage 1 first")
        texts += [s.text.strip() for cut in load_manifest_lazy(path) for s in cut.supervisions
                  if is_speech_text(s.text)]
    return texts


def train_sentencepiece(transcript: Path, model_path: Path, vocab_size: int, model_type: str) -> None:
    """Train on ``transcript`` and move the model to ``model_path`` (atomically)."""
    with tempfile.TemporaryDirectory(dir=model_path.parent, prefix=".spm-") as tmp:
        prefix = Path(tmp) / f"{model_type}_{vocab_size}"
        try:
            spm.SentencePieceTrainer.train(
                input=str(transcript),
                vocab_size=vocab_size,
                model_type=model_type,
                model_prefix=str(prefix),
                input_sentence_size=100_000_000,
                character_coverage=1.0,
                user_defined_symbols=["<blk>", "<sos/eos>"],
                unk_id=SPECIAL_IDS["<unk>"],
                bos_id=-1,
                eos_id=-1,
                minloglevel=1,
            )
        except RuntimeError as e:  # e.g. "Vocabulary size too high (500). ... a value <= 123."
            raise ValueError(
                f"sentencepiece cannot train --vocab-size {vocab_size} on {transcript}: {e}"
            ) from e
        os.replace(prefix.with_suffix(".model"), model_path)


def write_tokens(model_path: Path, tokens_path: Path) -> int:
    """Write icefall's tokens.txt for the model; check the special ids. Returns the vocab size."""
    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    for piece, expected in SPECIAL_IDS.items():
        if sp.piece_to_id(piece) != expected:
            got = sp.piece_to_id(piece)
            raise RuntimeError(f"{model_path}: {piece} has id {got}, expected {expected}")
    lines = "".join(f"{sp.id_to_piece(i)} {i}\n" for i in range(sp.get_piece_size()))
    atomic_write(tokens_path, lambda tmp: tmp.write_text(lines, encoding="utf-8"))
    return sp.get_piece_size()


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lang-dir", type=Path, required=True, help="e.g. data/lang_bpe_500")
    parser.add_argument("--vocab-size", type=int, required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--transcript", type=Path, help="text file, one transcript per line")
    source.add_argument("--cuts", type=Path, nargs="+", help="lhotse cuts manifest(s) with text")
    parser.add_argument("--model-type", type=str, default="unigram",
                        choices=["unigram", "bpe", "char", "word"])
    return parser


def main(argv: list[str] | None = None) -> None:
    console_logging()
    args = get_parser().parse_args(argv)
    model_path, tokens_path = args.lang_dir / "bpe.model", args.lang_dir / "tokens.txt"
    if model_path.is_file() and tokens_path.is_file():
        logging.info(f"{model_path} and {tokens_path} exist, skipping")
        return
    args.lang_dir.mkdir(parents=True, exist_ok=True)
    try:
        if args.cuts:
            texts = transcripts_from_cuts(args.cuts)
        elif args.transcript.is_file():
            texts = [line.strip() for line in args.transcript.read_text(encoding="utf-8").splitlines()
                     if is_speech_text(line)]
        else:
            raise FileNotFoundError(f"transcript file {args.transcript} not found (--transcript)")
        if not texts:
            raise ValueError(f"no transcript text in {args.cuts or args.transcript}")
        transcript = args.lang_dir / "transcript_words.txt"
        atomic_write(transcript, lambda tmp: tmp.write_text("\n".join(texts) + "\n", encoding="utf-8"))
        logging.info(f"training a {args.model_type} model of {args.vocab_size} pieces on "
                     f"{len(texts)} transcripts")
        train_sentencepiece(transcript, model_path, args.vocab_size, args.model_type)
        size = write_tokens(model_path, tokens_path)
    except (ValueError, OSError, RuntimeError) as e:
        raise SystemExit(f"error: {e}")
    logging.info(f"wrote {model_path} and {tokens_path} ({size} tokens)")


if __name__ == "__main__":
    main()
