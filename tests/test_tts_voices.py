"""Tests of local/tts_voices.py: the voice table, voice probing, failed and reused synthesis.

Needs espeak-ng, flite and sox (tools/setup.sh installs them); skipped without.
"""

import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from local.tts_voices import (ESPEAK_VARIANTS, FLITE_MEAN_F0, PROBE_TEXT, VOICES, Voice, probe_voices, synthesize,
                              synthesize_many, vary_voice)

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


PROBE_SYLLABLES = 8  # "The heavy rain fell on the town."


@pytest.fixture(scope="module")
def spoken(tmp_path_factory) -> dict[str, tuple[np.ndarray, tuple[int, int, str]]]:
    """{voice id: (samples, (sample rate, channels, subtype))} of PROBE_TEXT spoken by every voice."""
    tmp = tmp_path_factory.mktemp("voices")
    jobs = {v.id: (v, PROBE_TEXT, tmp / f"{v.id}.wav") for v in VOICES}
    assert synthesize_many(jobs, num_jobs=2) == {}
    formats = {key: sf.info(path) for key, (_, _, path) in jobs.items()}
    return {key: (sf.read(path, dtype="float32")[0], (formats[key].samplerate, formats[key].channels,
                                                      formats[key].subtype)) for key, (_, _, path) in jobs.items()}


def speech_seconds(x: np.ndarray, rate: int = 16000) -> float:
    """From the first to the last sample above 5% of the peak: the speech without the pauses
    the engines add around it."""
    loud = np.flatnonzero(np.abs(x) > 0.05 * np.abs(x).max())
    return (loud[-1] - loud[0]) / rate


def median_f0(x: np.ndarray, rate: int = 16000) -> float:
    """Median pitch in Hz of the voiced 40 ms frames: the autocorrelation peak at a lag of
    70-400 Hz, counted when it holds over half the frame's energy (periodic, so voiced)."""
    n, found = int(0.04 * rate), []
    for start in range(0, len(x) - n, n // 2):
        frame = x[start:start + n] - x[start:start + n].mean()
        if np.sqrt(np.mean(frame ** 2)) < 0.1 * np.abs(x).max():
            continue
        ac = np.correlate(frame, frame, "full")[n - 1:]
        lo, hi = rate // 400, rate // 70
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.5 * ac[0]:
            found.append(rate / lag)
    return float(np.median(found))


def test_every_voice_speaks_the_text_as_16khz_speech(spoken):
    for voice in VOICES:
        x, audio_format = spoken[voice.id]
        assert audio_format == (16000, 1, "PCM_16"), voice.id
        assert np.abs(x).max() > 0.1 and np.sqrt(np.mean(x ** 2)) > 0.02, voice.id  # speech, not near-silence
        # 3-7 syllables per second at the engine's default rate (people: about 4-6)
        syllables_per_second = PROBE_SYLLABLES / (speech_seconds(x) * voice.speed)
        assert 3 < syllables_per_second < 7, (voice.id, syllables_per_second)


@pytest.mark.parametrize("slow", [v for v in VOICES if v.speed != 1.0 and Voice(v.engine, v.name) in VOICES],
                         ids=lambda v: v.id)
def test_speed_stretches_the_speech(spoken, slow):
    ratio = speech_seconds(spoken[slow.id][0]) / speech_seconds(spoken[Voice(slow.engine, slow.name).id][0])
    assert ratio == pytest.approx(1 / slow.speed, rel=0.1)


def test_pitch_settings_and_variants_change_the_pitch(spoken):
    f0 = {key: median_f0(x) for key, (x, _) in spoken.items()}
    assert f0["flite-slt-r0.85-p200"] == pytest.approx(200, rel=0.1)  # flite's pitch: a target in Hz (default 174)
    assert f0["espeak-en-us-r0.8-p30"] < 0.92 * f0["espeak-en-us"]  # espeak-ng's 30 is below its default 50
    assert f0["espeak-en+f2"] > 1.5 * f0["espeak-en"]  # a female variant of the same voice
    for name, mean_f0 in FLITE_MEAN_F0.items():  # the centres of vary_voice's pitch draws
        assert f0[f"flite-{name}"] == pytest.approx(mean_f0, rel=0.1), name


def test_every_espeak_variant_is_a_speaker_of_its_own():
    probe_voices(tuple(Voice("espeak-ng", f"en-us+{v}") for v in ESPEAK_VARIANTS) + (Voice("espeak-ng", "en-us"),),
                 num_jobs=2)


def test_varied_voices_keep_accent_or_flite_voice_and_draw_rate_and_pitch_in_range():
    rng = random.Random(0)
    for base in (Voice("espeak-ng", "en-gb-x-rp+m3"), Voice("espeak-ng", "en-us"), Voice("flite", "slt")):
        drawn = [vary_voice(base, rng) for _ in range(200)]
        assert all(0.8 <= v.speed <= 1.25 and v.engine == base.engine for v in drawn)
        assert len({v.id for v in drawn}) > 190  # a new speaker nearly every time
        if base.engine == "espeak-ng":
            assert {v.name.split("+")[0] for v in drawn} == {base.name.split("+")[0]}
            assert {v.name.split("+")[1] for v in drawn} <= set(ESPEAK_VARIANTS)
            assert all(20 <= v.pitch <= 80 for v in drawn)
        else:
            assert {v.name for v in drawn} == {"slt"}
            assert all(0.8 * 170 - 1 <= v.pitch <= 1.25 * 170 + 1 for v in drawn)


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
