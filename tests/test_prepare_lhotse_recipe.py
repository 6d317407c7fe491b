"""Tests of local/prepare_lhotse_recipe.py with lhotse's yesno recipe on a corpus built here."""

import itertools
import logging

import numpy as np
import pytest
import soundfile as sf
from lhotse import load_manifest

from local.prepare_lhotse_recipe import get_recipe_function, main


def make_yesno(root):
    """60 short 8 kHz wavs named like waves_yesno (8 digits, 1 = yes, 0 = no)."""
    corpus = root / "waves_yesno"
    corpus.mkdir()
    names = list(itertools.product("01", repeat=8))[:60]
    for digits in names:
        sf.write(corpus / f"{'_'.join(digits)}.wav", np.zeros(800, dtype=np.int16), 8000)
    return corpus


def test_prepares_yesno_and_skips_when_done(tmp_path, caplog):
    corpus = make_yesno(tmp_path)
    out = tmp_path / "manifests"
    with caplog.at_level(logging.INFO):
        main(["--recipe", "yesno", "--corpus-dir", str(corpus), "--output-dir", str(out)])
    sups = load_manifest(out / "yesno_supervisions_train.jsonl.gz")
    assert len(sups) == 30 and sups[0].text == "NO NO NO NO NO NO NO NO"
    assert len(load_manifest(out / "yesno_recordings_test.jsonl.gz")) == 30
    assert "prefix 'yesno'" in caplog.text and "['test', 'train']" in caplog.text
    assert not list(out.glob(".yesno.tmp-*"))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        main(["--recipe", "yesno", "--corpus-dir", str(corpus), "--output-dir", str(out)])
    assert "already prepared" in caplog.text


def test_unknown_recipe_lists_close_matches():
    with pytest.raises(ValueError, match="librispeech"):
        get_recipe_function("prepare", "librispeeh")
    with pytest.raises(SystemExit, match="no recipe 'librispeeh'"):
        main(["--recipe", "librispeeh", "--corpus-dir", "."])


def test_bad_corpus_dir_is_named(tmp_path):
    with pytest.raises(SystemExit, match="nowhere.*does not exist"):
        main(["--recipe", "yesno", "--corpus-dir", str(tmp_path / "nowhere"),
              "--output-dir", str(tmp_path / "m")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="prepare_yesno failed on .*empty"):
        main(["--recipe", "yesno", "--corpus-dir", str(tmp_path / "empty"),
              "--output-dir", str(tmp_path / "m")])
    assert not (tmp_path / "m" / ".yesno.done").exists()
