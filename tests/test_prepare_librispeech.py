"""Tests of local/prepare_librispeech.py on a small LibriSpeech-shaped directory built here."""

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import load_manifest

from local.prepare_librispeech import main, resolve_parts

SR = 16000


def make_corpus(root: Path) -> Path:
    """LibriSpeech/dev-clean with two chapters: 3 good utterances and 3 bad ones."""
    corpus = root / "LibriSpeech"
    utts = {  # id -> (seconds of audio or None for no file, transcript)
        "1272-128104-0000": (0.5, "MISTER QUILTER IS THE APOSTLE"),
        "1272-128104-0001": (0.7, "NOR IS MISTER QUILTER'S MANNER"),
        "1272-128104-0002": ("corrupt", "HE HAS GRAVE DOUBTS"),
        "1272-128104-0003": (0.4, ""),  # empty transcript
        "2277-149896-0000": (0.6, "HE WAS IN A FEVERED STATE"),
        "2277-149896-0001": (None, "NO AUDIO FOR THIS ONE"),
    }
    rng = np.random.default_rng(0)
    for utt_id, (seconds, text) in utts.items():
        spk, chapter, _ = utt_id.split("-")
        chapter_dir = corpus / "dev-clean" / spk / chapter
        chapter_dir.mkdir(parents=True, exist_ok=True)
        flac = chapter_dir / f"{utt_id}.flac"
        if seconds == "corrupt":
            flac.write_bytes(b"fLaC" + rng.bytes(2000))
        elif seconds is not None:
            sf.write(flac, 0.1 * rng.standard_normal(int(seconds * SR)), SR, format="FLAC")
        with open(chapter_dir / f"{spk}-{chapter}.trans.txt", "a") as f:
            f.write(f"{utt_id} {text}\n")
    return corpus


def test_prepares_the_good_utterances_and_reports_the_bad(tmp_path, caplog):
    corpus = make_corpus(tmp_path)
    out = tmp_path / "manifests"
    with caplog.at_level(logging.WARNING):
        main(["--corpus-dir", str(corpus), "--output-dir", str(out), "--parts", "dev-clean"])
    sups = load_manifest(out / "librispeech_supervisions_dev-clean.jsonl.gz")
    recs = load_manifest(out / "librispeech_recordings_dev-clean.jsonl.gz")
    assert sorted(s.id for s in sups) == ["1272-128104-0000", "1272-128104-0001", "2277-149896-0000"]
    assert {s.id: s.text for s in sups}["1272-128104-0001"] == "NOR IS MISTER QUILTER'S MANNER"
    assert {s.speaker for s in sups} == {"1272", "2277"}
    assert recs["1272-128104-0001"].sampling_rate == SR
    assert abs(recs["1272-128104-0001"].duration - 0.7) < 1e-6
    for bad in ("1272-128104-0002", "1272-128104-0003", "2277-149896-0001"):
        assert bad in caplog.text
    assert "skipped 3 utterances" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        main(["--corpus-dir", str(corpus), "--output-dir", str(out), "--parts", "dev-clean"])
    assert "skipping" in caplog.text


def test_missing_dir_or_part_names_it(tmp_path):
    with pytest.raises(SystemExit, match=str(tmp_path / "nowhere")):
        main(["--corpus-dir", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "m")])
    corpus = make_corpus(tmp_path)
    with pytest.raises(SystemExit, match="part test-clean not found.*dev-clean"):
        main(["--corpus-dir", str(corpus), "--output-dir", str(tmp_path / "m"),
              "--parts", "dev-clean test-clean"])


def test_failed_download_names_the_url_and_the_way_out(tmp_path):
    with pytest.raises(SystemExit) as err:
        main(["--dl-dir", str(tmp_path), "--output-dir", str(tmp_path / "m"), "--parts", "dev-clean-2",
              "--base-url", "http://127.0.0.1:9/resources"])
    message = str(err.value)
    assert "http://127.0.0.1:9/resources/31/dev-clean-2.tar.gz" in message
    assert "--corpus-dir" in message


def test_part_aliases_and_unknown_part():
    assert resolve_parts("mini") == ["dev-clean-2", "train-clean-5"]
    assert resolve_parts("full")[:3] == ["train-clean-100", "train-clean-360", "train-other-500"]
    assert resolve_parts("dev-clean, dev-clean test-other") == ["dev-clean", "test-other"]
    with pytest.raises(ValueError, match="dev-cleen"):
        resolve_parts("dev-cleen")
