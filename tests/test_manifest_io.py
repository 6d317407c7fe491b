"""Tests of local/manifest_io.py: naming scheme and interrupt-safe manifest writing."""

import pytest
from lhotse import SupervisionSegment, SupervisionSet, load_manifest

from local.manifest_io import manifest_path, save_manifest_atomically


def test_manifest_path_follows_lhotse_recipe_names(tmp_path):
    assert manifest_path(tmp_path, "librispeech", "recordings", "dev-clean") == (
        tmp_path / "librispeech_recordings_dev-clean.jsonl.gz"
    )


def test_atomic_save_round_trips_and_leaves_no_temp_files(tmp_path):
    sups = SupervisionSet.from_segments(
        [SupervisionSegment(id="a", recording_id="a", start=0.0, duration=1.0, text="HI")]
    )
    path = tmp_path / "x_supervisions_train.jsonl.gz"
    save_manifest_atomically(sups, path)
    assert load_manifest(path)[0].text == "HI"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_failed_save_keeps_the_old_file(tmp_path):
    class Exploding:
        def to_file(self, path):
            open(path, "w").write("half")
            raise KeyboardInterrupt

    path = tmp_path / "x_cuts_train.jsonl.gz"
    path.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        save_manifest_atomically(Exploding(), path)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == [path.name]
    with pytest.raises(ValueError, match="jsonl.gz"):
        save_manifest_atomically(Exploding(), tmp_path / "x.json")
