#!/usr/bin/env python3
"""Train the token n-gram LM of a lang dir for shallow fusion (stage 2 of run.sh, after the BPE).

The training transcripts, split into the lang dir's BPE pieces, make an interpolated Kneser-Ney
n-gram (:mod:`todm.token_lm`) written as ``<lang-dir>/token_lm_<order>gram.arpa``; stage 4
decodes with it by ``--decoding-method modified_beam_search_lm_shallow_fusion --lm <file>``.
The text comes from lhotse supervision manifests (stage 0's, one entry per utterance, so speed
perturbation does not count a sentence three times) or from a text file, one sentence per line
(an LM corpus of your own; it must not contain the dev and test sentences). Skipped when the
ARPA file exists.

Usage:
  python local/train_token_lm.py --lang-dir data/lang_bpe_64 --order 8 \\
      --supervisions data/manifests/builtin_supervisions_train.jsonl.gz
  python local/train_token_lm.py --lang-dir data/lang_bpe_500 --order 4 --text lm_corpus.txt
"""

import argparse
import logging
from pathlib import Path

import sentencepiece as spm
from lhotse import load_manifest_lazy

from local.text_normalize import is_speech_text
from todm.token_lm import kneser_ney, lm_pieces, write_arpa
from todm.utils import console_logging


def read_texts(supervisions: list[Path] | None, text: Path | None) -> list[str]:
    """Sentences with letters, from supervision manifests or a text file (one per line)."""
    for path in supervisions or [text]:
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found" + (" (run stage 0 first)" if supervisions else ""))
    if text is not None:
        lines = text.read_text(encoding="utf-8").splitlines()
    else:
        lines = [s.text for path in supervisions for s in load_manifest_lazy(path)]
    return [line.strip() for line in lines if line and is_speech_text(line)]


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lang-dir", type=Path, required=True, help="holds bpe.model (stage 2)")
    parser.add_argument("--order", type=int, default=8, help="n-gram order over BPE pieces")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--supervisions", type=Path, nargs="+", help="lhotse supervision manifest(s)")
    source.add_argument("--text", type=Path, help="text file, one sentence per line")
    return parser


def main(argv: list[str] | None = None) -> Path:
    console_logging()
    args = get_parser().parse_args(argv)
    out = args.lang_dir / f"token_lm_{args.order}gram.arpa"
    if out.is_file():
        logging.info(f"{out} exists, skipping")
        return out
    try:
        if args.order < 1:
            raise ValueError(f"--order must be >= 1, got {args.order}")
        bpe_model = args.lang_dir / "bpe.model"
        if not bpe_model.is_file():
            raise FileNotFoundError(f"{bpe_model} not found: train the BPE model first (run.sh stage 2)")
        sp = spm.SentencePieceProcessor(model_file=str(bpe_model))
        texts = read_texts(args.supervisions, args.text)
        if not texts:
            raise ValueError(f"no sentences in {' '.join(map(str, args.supervisions or [args.text]))}")
        sentences = [sp.encode(t, out_type=str) for t in texts]
        logging.info(f"training a {args.order}-gram token LM on {len(texts)} sentences "
                     f"({sum(map(len, sentences))} pieces)")
        write_arpa(kneser_ney(sentences, args.order, lm_pieces(sp)), out)
    except (ValueError, OSError) as e:
        raise SystemExit(f"error: {e}")
    logging.info(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
