"""Tests of local/compute_fbank.py on hand-made manifests with bad utterances.

Features are checked against kaldi-native-fbank (sherpa-onnx's front end, an independent
implementation) run on the raw audio.
"""

import logging
from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np
import pytest
import soundfile as sf
from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet, load_manifest
from lhotse.utils import is_module_available

from local.compute_fbank import main

SR = 16000


def knf_fbank(samples: np.ndarray) -> np.ndarray:
    """[T, 80] log-mel fbank of 16 kHz float samples with lhotse's settings, via knf."""
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0
    opts.frame_opts.snip_edges = False
    opts.mel_opts.num_bins = 80
    opts.mel_opts.high_freq = -400
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(SR, samples.tolist())
    fbank.input_finished()
    return np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])


def write_part(root: Path, part: str, utts: dict) -> None:
    """utts: id -> (sample rate, seconds, transcript, corrupt?). Writes wavs and manifests."""
    rng = np.random.default_rng(len(part))
    recordings, supervisions = [], []
    for utt_id, (rate, seconds, text, corrupt) in utts.items():
        wav = root / "wav" / f"{utt_id}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        sf.write(wav, 0.1 * rng.standard_normal(int(rate * seconds)), rate, subtype="PCM_16")
        rec = Recording.from_file(wav)
        if corrupt:
            wav.write_bytes(b"RIFF" + rng.bytes(500))
        recordings.append(rec)
        supervisions.append(SupervisionSegment(utt_id, utt_id, 0.0, rec.duration, text=text))
    manifests = root / "manifests"
    manifests.mkdir(exist_ok=True)
    RecordingSet.from_recordings(recordings).to_file(manifests / f"toy_recordings_{part}.jsonl.gz")
    SupervisionSet.from_segments(supervisions).to_file(manifests / f"toy_supervisions_{part}.jsonl.gz")


@pytest.fixture
def toy(tmp_path) -> Path:
    write_part(tmp_path, "train", {
        "good1": (SR, 1.0, "HELLO WORLD", False),
        "good2": (SR, 0.5, "HI", False),
        "narrow": (8000, 1.0, "EIGHT KILOHERTZ", False),
        "corrupt": (SR, 1.0, "BROKEN FILE", True),
        "empty": (SR, 1.0, "", False),
        "dots": (SR, 1.0, "...", False),
    })
    write_part(tmp_path, "dev", {"dev1": (SR, 0.6, "DEV ONE", False)})
    write_part(tmp_path, "test", {"test1": (SR, 0.7, "TEST ONE", False)})
    return tmp_path


def run(root: Path, *extra: str) -> None:
    main(["--corpus", "toy", "--manifest-dir", str(root / "manifests"), "--output-dir",
          str(root / "fbank"), "--num-jobs", "1", *extra])


def test_bad_utterances_are_skipped_or_resampled_and_counted(toy, caplog):
    with caplog.at_level(logging.INFO):
        run(toy, "--test-parts", "dev test")
    cuts = load_manifest(toy / "fbank" / "toy_cuts_train.jsonl.gz")
    assert sorted(cuts.ids) == ["good1", "good2", "narrow"]
    assert "non-text transcript, skipped: 2 (dots, empty)" in caplog.text
    assert "resampled: 1 (narrow)" in caplog.text
    assert "could not be read, skipped: 1 (corrupt)" in caplog.text
    assert "s of audio per second" in caplog.text
    for cut in cuts:
        feats = cut.load_features()
        assert feats.shape == (round(cut.duration * 100), 80) and cut.sampling_rate == SR
    good1 = cuts["good1"]
    reference = knf_fbank(good1.load_audio()[0])
    assert np.abs(good1.load_features() - reference).max() < 0.1  # lilcom quantisation
    assert [c.id for c in load_manifest(toy / "fbank" / "toy_cuts_dev.jsonl.gz")] == ["dev1"]
    assert [c.id for c in load_manifest(toy / "fbank" / "toy_cuts_test.jsonl.gz")] == ["test1"]


def test_rerun_skips_finished_sets(toy, caplog):
    run(toy)
    outputs = sorted((toy / "fbank").glob("*.jsonl.gz"))
    assert [p.name for p in outputs] == ["toy_cuts_dev.jsonl.gz", "toy_cuts_test.jsonl.gz",
                                         "toy_cuts_train.jsonl.gz"]
    mtimes = [p.stat().st_mtime_ns for p in outputs]
    with caplog.at_level(logging.INFO):
        run(toy)
    assert caplog.text.count("skipping") == 3
    assert [p.stat().st_mtime_ns for p in outputs] == mtimes


def test_speed_perturbation_triples_train(toy):
    run(toy, "--perturb-speed", "true", "--dev-parts", "", "--test-parts", "")
    cuts = load_manifest(toy / "fbank" / "toy_cuts_train.jsonl.gz")
    assert sorted(cuts.ids) == sorted(f"{u}{s}" for u in ("good1", "good2", "narrow")
                                      for s in ("", "_sp0.9", "_sp1.1"))
    assert abs(cuts["good1_sp0.9"].duration - 1.0 / 0.9) < 0.01
    assert not (toy / "fbank" / "toy_cuts_dev.jsonl.gz").exists()


def test_clear_errors(toy):
    with pytest.raises(SystemExit, match="toy_recordings_nope.jsonl.gz not found.*toy_recordings_dev"):
        run(toy, "--test-parts", "nope")
    with pytest.raises(SystemExit, match="not at 16000 Hz.*narrow.*--resample true"):
        run(toy, "--resample", "false")
    if not is_module_available("kaldifeat"):
        with pytest.raises(SystemExit, match="kaldifeat is not installed"):
            run(toy, "--extractor", "kaldifeat")
