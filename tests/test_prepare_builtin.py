"""Tests of local/prepare_builtin.py: splits, held-out voices, 16 kHz, validation, determinism.

Needs espeak-ng, flite, sox and wordnet-base (tools/setup.sh installs them); skipped without.
"""

import re
import shutil
from pathlib import Path

import pytest
import soundfile as sf
from lhotse import load_manifest, validate_recordings_and_supervisions

from local.prepare_builtin import build_sentence_pool, main, plan_corpus, read_wordnet_examples
from local.tts_voices import VOICES

WORDNET = Path("/usr/share/wordnet")
pytestmark = pytest.mark.skipif(
    not all(shutil.which(p) for p in ("espeak-ng", "flite", "sox")) or not WORDNET.is_dir(),
    reason="needs espeak-ng, flite, sox and wordnet-base (tools/setup.sh)",
)
SPLITS = ("train", "dev", "test")


def run_tiny(out: Path, seed: int = 7) -> None:
    main(["--tiny", "true", "--seed", str(seed), "--num-jobs", "2",
          "--output-dir", str(out / "manifests"), "--audio-dir", str(out / "wav")])


def load_split(out: Path, split: str):
    recs = load_manifest(out / "manifests" / f"builtin_recordings_{split}.jsonl.gz")
    sups = load_manifest(out / "manifests" / f"builtin_supervisions_{split}.jsonl.gz")
    return recs, sups


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    run_tiny(out)
    return out


@pytest.fixture(scope="module")
def pool() -> list[tuple[str, str]]:
    return build_sentence_pool(read_wordnet_examples(WORDNET), 4, 10, 2000)


def test_tiny_corpus_splits_voices_and_format(tiny):
    texts, speakers, held_out = {}, {}, {}
    for split in SPLITS:
        recs, sups = load_split(tiny, split)
        validate_recordings_and_supervisions(recs, sups)
        assert len(sups) > 0
        for rec in recs:
            assert rec.sampling_rate == 16000 and rec.num_channels == 1
            assert sf.info(rec.sources[0].source).samplerate == 16000
        for sup in sups:
            assert re.fullmatch(r"[A-Z']+( [A-Z']+)*", sup.text), sup.text
            assert 4 <= len(sup.text.split()) <= 10
        texts[split] = {s.text for s in sups}
        speakers[split] = {s.speaker for s in sups}
        held_out[split] = {s.speaker for s in sups if s.custom["held_out_voice"]}
    assert not texts["train"] & texts["dev"] and not texts["train"] & texts["test"]
    assert not texts["dev"] & texts["test"]
    voice_ids = {v.id for v in VOICES}
    assert set().union(*speakers.values()) <= voice_ids
    unseen = {v.id for v in VOICES if v.held_out}
    assert held_out["train"] == held_out["dev"] == set()
    assert speakers["dev"] <= voice_ids - unseen
    assert held_out["test"] and held_out["test"] <= unseen and not held_out["test"] & speakers["train"]
    assert speakers["test"] - unseen, "test also has training voices"


def test_same_seed_same_corpus_and_rerun_reuses_wavs(tiny, tmp_path):
    run_tiny(tmp_path)  # same seed, other directory
    for split in SPLITS:
        (recs_a, sups_a), (recs_b, sups_b) = load_split(tiny, split), load_split(tmp_path, split)
        assert [(s.id, s.text, s.speaker, s.duration) for s in sups_a] == [
            (s.id, s.text, s.speaker, s.duration) for s in sups_b
        ]
        for a, b in zip(recs_a, recs_b):
            assert Path(a.sources[0].source).read_bytes() == Path(b.sources[0].source).read_bytes()
    wavs = sorted((tmp_path / "wav").rglob("*.wav"))
    mtimes = [w.stat().st_mtime_ns for w in wavs]
    run_tiny(tmp_path)
    assert [w.stat().st_mtime_ns for w in wavs] == mtimes


def test_seed_changes_the_draw(pool):
    sizes = {"train": 20, "dev": 5, "test": 5}
    a = plan_corpus(pool, sizes, seed=1, closed_vocabulary=False)
    b = plan_corpus(pool, sizes, seed=2, closed_vocabulary=False)
    assert [u.text for u in a["train"]] != [u.text for u in b["train"]]
    assert [u.id for u in a["train"]] == [u.id for u in plan_corpus(pool, sizes, 1, False)["train"]]


def test_closed_vocabulary_and_too_small_pool(pool):
    plan = plan_corpus(pool, {"train": 400, "dev": 30, "test": 30}, seed=0)
    train_words = {w for u in plan["train"] for w in u.text.split()}
    assert {w for s in ("dev", "test") for u in plan[s] for w in u.text.split()} <= train_words
    with pytest.raises(ValueError, match="too small"):
        plan_corpus(pool, {"train": len(pool), "dev": 1, "test": 1}, seed=0)


def test_extra_training_sentences_keep_dev_and_test(pool):
    sizes = {"train": 400, "dev": 30, "test": 30}
    wider = build_sentence_pool(read_wordnet_examples(WORDNET), 4, 12, 4000)
    core = plan_corpus(pool, sizes, seed=3)
    more = plan_corpus(pool, sizes, seed=3, extra_pool=wider, num_extra_train=500)
    for split in ("dev", "test"):
        assert [(u.id, u.text) for u in more[split]] == [(u.id, u.text) for u in core[split]]
    assert [u.text for u in more["train"][:400]] == [u.text for u in core["train"]]
    extra = {u.text for u in more["train"][400:]}
    assert len(extra) == 500 and not extra & {u.text for s in SPLITS for u in core[s]}
    assert max(len(t.split()) for t in extra) > 10  # from the wider pool
    with pytest.raises(ValueError, match="extra pool has only"):
        plan_corpus(pool, sizes, seed=3, extra_pool=wider, num_extra_train=len(wider))


def test_varied_training_voices_keep_the_sentences_dev_and_test_and_never_a_held_out_voice(pool):
    sizes = {"train": 400, "dev": 30, "test": 30}
    fixed = plan_corpus(pool, sizes, seed=3)
    varied = plan_corpus(pool, sizes, seed=3, vary_train_voices=True)
    for split in ("dev", "test"):
        assert [(u.id, u.text) for u in varied[split]] == [(u.id, u.text) for u in fixed[split]]
    assert [u.text for u in varied["train"]] == [u.text for u in fixed["train"]]
    assert len({u.voice.id for u in varied["train"]}) > 390  # ~one speaker per utterance
    held_out = {(v.engine, v.name) for v in VOICES if v.held_out}
    assert not {(u.voice.engine, u.voice.name) for u in varied["train"]} & held_out
    accents = {(v.engine, v.name.split("+")[0]) for v in VOICES if not v.held_out}
    assert {(u.voice.engine, u.voice.name.split("+")[0]) for u in varied["train"]} == accents
    assert [u.id for u in plan_corpus(pool, sizes, seed=3, vary_train_voices=True)["train"]] == \
        [u.id for u in varied["train"]]  # deterministic
