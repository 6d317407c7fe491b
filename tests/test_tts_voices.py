"""Tests of local/tts_voices.py: the voice table, voice probing, failed and reused synthesis.

Needs espeak-ng, flite and sox (tools/setup.sh installs them); skipped without.
"""

import shutil
from pathlib import Path

import pytest
import soundfile as sf

from local.tts_voices import VOICES, Voice, probe_voices, synthesize, synthesize_many

pytestmark = pytest.mark.skipif(
    not all(shutil.which(p) for p in ("espeak-ng", "flite", "sox")),
    reason="needs espeak-ng, flite and sox (tools/setup.sh)",
)


class BrokenVoice(Voice):
    def command(self, text: str, wav: Path) -> list[str]:
        return ["sh", "-c", "echo boom >&2; exit 3"]


def test_voice_table_has_16_distinct_debian_main_voices():
    ids = [v.id for v in VOICES]
    assert len(set(ids)) == len(ids) >= 16
    assert {v.engine for v in VOICES} == {"espeak-ng", "flite"}
    assert not any(v.name.startswith(("mb-", "en-gb+")) for v in VOICES)  # non-free / ignored variant
    assert any(v.held_out for v in VOICES) and sum(not v.held_out for v in VOICES) >= 16


def test_every_voice_speaks_and_sounds_different():
    probe_voices(VOICES, num_jobs=2)


def test_probe_catches_a_voice_the_engine_ignores_or_a_failing_one():
    """espeak-ng ignores a variant on en-gb: en-gb+f2 sounds exactly like en-gb."""
    with pytest.raises(RuntimeError, match="identical audio"):
        probe_voices((Voice("espeak-ng", "en-gb"), Voice("espeak-ng", "en-gb+f2")), num_jobs=2)
    with pytest.raises(RuntimeError, match="cannot speak.*boom"):
        probe_voices((Voice("espeak-ng", "en"), BrokenVoice("espeak-ng", "en-us")), num_jobs=2)


def test_output_format_failures_and_reuse(tmp_path):
    good, empty, broken = (tmp_path / f"{n}.wav" for n in ("good", "empty", "broken"))
    failed = synthesize_many({
        "good": (Voice("flite", "slt"), "The bolt slipped into place.", good),
        "empty": (VOICES[0], "", empty),
        "broken": (BrokenVoice("espeak-ng", "en"), "Hello there friend.", broken),
    }, num_jobs=2)
    assert set(failed) == {"empty", "broken"}
    assert "boom" in failed["broken"] and "empty" in failed["empty"]
    info = sf.info(good)
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert not empty.exists() and not broken.exists() and not list(tmp_path.glob(".tmp-*"))
    mtime = good.stat().st_mtime_ns
    assert synthesize(VOICES[0], "Something else entirely.", good) is None  # reused as it is
    assert good.stat().st_mtime_ns == mtime
