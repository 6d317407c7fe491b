"""Tests of local/train_bpe.py: icefall's special ids, tokens.txt, sources, skip and errors."""

import logging
import random

import pytest
import sentencepiece as spm
from lhotse import CutSet
from lhotse.testing.dummies import dummy_cut, dummy_supervision

from local.train_bpe import main

WORDS = "THE A RAIN FELL ON TOWN HE SHE DIDN'T KNOW BOLT SLIPPED INTO PLACE HEAVY LIGHT".split()


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(n)]


def test_special_ids_tokens_txt_and_skip(tmp_path, caplog):
    text = tmp_path / "text.txt"
    text.write_text("\n".join(sentences(300)) + "\n\n")
    lang = tmp_path / "lang_bpe_40"
    main(["--lang-dir", str(lang), "--vocab-size", "40", "--transcript", str(text)])
    lines = (lang / "tokens.txt").read_text().splitlines()
    assert lines[:3] == ["<blk> 0", "<sos/eos> 1", "<unk> 2"]
    assert len(lines) == 40 and [int(l.split()[1]) for l in lines] == list(range(40))
    sp = spm.SentencePieceProcessor(model_file=str(lang / "bpe.model"))
    assert [sp.id_to_piece(i) for i in range(3)] == ["<blk>", "<sos/eos>", "<unk>"]
    for line in sentences(20, seed=1):
        ids = sp.encode(line)
        assert min(ids) > 2 and sp.decode(ids) == line
    assert sp.encode("Ω")[-1] == 2  # unseen character -> <unk>
    assert (lang / "transcript_words.txt").read_text().splitlines() == sentences(300)
    mtime = (lang / "bpe.model").stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        main(["--lang-dir", str(lang), "--vocab-size", "40", "--transcript", str(text)])
    assert "skipping" in caplog.text and (lang / "bpe.model").stat().st_mtime_ns == mtime


def test_from_cuts_with_bpe_model_type(tmp_path):
    texts = sentences(200, seed=2)
    cuts = CutSet.from_cuts(dummy_cut(i, supervisions=[dummy_supervision(i, text=t)])
                            for i, t in enumerate(texts + [""]))
    cuts.to_file(tmp_path / "cuts.jsonl.gz")
    lang = tmp_path / "lang"
    main(["--lang-dir", str(lang), "--vocab-size", "50", "--model-type", "bpe",
          "--cuts", str(tmp_path / "cuts.jsonl.gz")])
    assert (lang / "transcript_words.txt").read_text().splitlines() == texts
    assert (lang / "tokens.txt").read_text().splitlines()[2] == "<unk> 2"


def test_clear_errors(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("\n".join(sentences(5)))
    with pytest.raises(SystemExit, match="--vocab-size 5000"):
        main(["--lang-dir", str(tmp_path / "l"), "--vocab-size", "5000", "--transcript", str(text)])
    assert not (tmp_path / "l" / "bpe.model").exists()
    with pytest.raises(SystemExit, match="nope.jsonl.gz not found"):
        main(["--lang-dir", str(tmp_path / "l"), "--vocab-size", "50",
              "--cuts", str(tmp_path / "nope.jsonl.gz")])
