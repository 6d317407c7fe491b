"""local/train_token_lm.py: the token LM of a lang dir from supervision manifests or a text file."""

import pytest
import sentencepiece as spm
from lhotse import SupervisionSegment, SupervisionSet

from local.train_bpe import train_sentencepiece
from local.train_token_lm import main
from todm.token_lm import TokenNgramLm, lm_pieces, read_arpa

TEXTS = ["THE CAT SAT ON THE MAT", "A DOG RAN IN THE PARK", "SHE SELLS SEA SHELLS", "GOOD MORNING TO YOU"]


@pytest.fixture(scope="module")
def lang_dir(tmp_path_factory):
    lang = tmp_path_factory.mktemp("lang")
    (lang / "text").write_text("\n".join(TEXTS * 3) + "\n")
    train_sentencepiece(lang / "text", lang / "bpe.model", 30, "bpe")
    return lang


def test_from_supervisions_then_skipped(lang_dir, tmp_path):
    sups = SupervisionSet.from_segments(
        SupervisionSegment(id=f"u{i}", recording_id=f"u{i}", start=0, duration=1, text=t)
        for i, t in enumerate(TEXTS + ["<noise>"]))
    manifest = tmp_path / "sups.jsonl.gz"
    sups.to_file(manifest)
    out = main(["--lang-dir", str(lang_dir), "--order", "3", "--supervisions", str(manifest)])
    assert out == lang_dir / "token_lm_3gram.arpa"
    sp = spm.SentencePieceProcessor(model_file=str(lang_dir / "bpe.model"))
    table = read_arpa(out)
    assert max(map(len, table)) == 3
    assert ("<unk>",) not in table and ("<blk>",) not in table  # special symbols are never predicted
    lm = TokenNgramLm(table, lm_pieces(sp))
    ids = sp.encode("THE CAT")
    assert float(lm.log_probs(ids[:-1])[ids[-1]]) > -1.0  # seen in training: likely
    mtime = out.stat().st_mtime_ns
    main(["--lang-dir", str(lang_dir), "--order", "3", "--supervisions", str(manifest)])
    assert out.stat().st_mtime_ns == mtime


def test_from_text(lang_dir, tmp_path):
    text = tmp_path / "lm.txt"
    text.write_text("\n".join(TEXTS) + "\n\n")
    assert main(["--lang-dir", str(lang_dir), "--order", "2", "--text", str(text)]).is_file()


@pytest.mark.parametrize("case, message", [
    ("no_bpe", "bpe.model not found"),
    ("missing_text", "nothing.txt not found"),
    ("empty_text", "no sentences"),
    ("bad_order", "--order must be >= 1"),
])
def test_bad_input(lang_dir, tmp_path, case, message):
    text = tmp_path / "lm.txt"
    text.write_text("" if case == "empty_text" else "HELLO\n")
    lang = tmp_path / "empty_lang" if case == "no_bpe" else lang_dir
    argv = ["--lang-dir", str(lang), "--order", "0" if case == "bad_order" else "5",
            "--text", str(tmp_path / "nothing.txt" if case == "missing_text" else text)]
    with pytest.raises(SystemExit, match=message):
        main(argv)
