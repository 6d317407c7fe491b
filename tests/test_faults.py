"""Faults a user meets, through run.sh: bad utterances in a corpus, a full disk during training."""

import shutil
import subprocess
from pathlib import Path

import pytest
import soundfile as sf
import torch
from lhotse import load_manifest

from conftest import run_recipe

BAD_IDS = {"1001-1-0000": "corrupt audio", "1001-1-0001": "empty transcript"}


def librispeech_copy_of(recipe: Path, root: Path) -> tuple[Path, dict[str, set[str]]]:
    """The tiny built-in corpus in LibriSpeech's layout (flac + trans.txt), plus two bad utterances
    in each part: a corrupt flac and an empty transcript."""
    corpus = root / "LibriSpeech"
    good: dict[str, set[str]] = {}
    for part, target in (("train", "train-clean-100"), ("dev", "dev-clean")):
        sups = load_manifest(recipe / "data" / "manifests" / f"builtin_supervisions_{part}.jsonl.gz")
        recs = load_manifest(recipe / "data" / "manifests" / f"builtin_recordings_{part}.jsonl.gz")
        chapter = corpus / target / "1001" / "1"
        chapter.mkdir(parents=True)
        lines = []

        def audio(sup):  # the built-in manifests hold paths relative to the recipe root
            return sf.read(recipe / recs[sup.recording_id].sources[0].source)[0]

        for i, sup in enumerate(sups, start=2):
            utt = f"1001-1-{i:04d}"
            sf.write(chapter / f"{utt}.flac", audio(sup), 16000, format="FLAC")
            lines.append(f"{utt} {sup.text}")
            good.setdefault(target, set()).add(utt)
        (chapter / "1001-1-0000.flac").write_bytes(b"fLaC" + bytes(range(256)) * 8)
        sf.write(chapter / "1001-1-0001.flac", audio(sups[0]), 16000, format="FLAC")
        lines += ["1001-1-0000 A FILE THAT IS NOT AUDIO", "1001-1-0001"]
        (chapter / "1001-1.trans.txt").write_text("\n".join(lines) + "\n")
    return corpus, good


def test_bad_utterances_are_skipped_and_named_and_training_runs(tiny_recipe, tmp_path):
    recipe = tmp_path / "recipe"
    shutil.copytree(tiny_recipe, recipe, symlinks=True)
    corpus, good = librispeech_copy_of(tiny_recipe, tmp_path)
    r = run_recipe(recipe, "--corpus", "librispeech", "--corpus-dir", str(corpus), "--tiny", "true",
                   "--train-parts", "train-clean-100", "--dev-parts", "dev-clean", "--test-parts", "dev-clean",
                   "--stage", "0", "--stop-stage", "3", "--exp-dir", "exp_ls")
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    for utt, reason in BAD_IDS.items():
        assert utt in log, f"the {reason} utterance {utt} is not reported"
    for part in ("train-clean-100", "dev-clean"):
        sups = load_manifest(recipe / "data" / "manifests" / f"librispeech_supervisions_{part}.jsonl.gz")
        assert {s.id for s in sups} == good[part]
    assert (recipe / "exp_ls" / "supernet" / "epoch-2.pt").is_file()


@pytest.fixture()
def small_disk(tmp_path):
    """A 6 MB tmpfs (needs root, as CI and the dev machines run); skipped where mounting is not allowed."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_stops_training_with_a_clear_error_and_keeps_checkpoints(tiny_recipe, tmp_path, small_disk):
    recipe = tmp_path / "recipe"
    shutil.copytree(tiny_recipe, recipe, symlinks=True)
    exp = small_disk / "exp"
    args = ("--stage", "3", "--stop-stage", "3", "--tiny", "true", "--exp-dir", str(exp),
            "--train-args", "--save-every-n 0 --tensorboard false --num-threads 1")
    r = run_recipe(recipe, *args, "--num-epochs", "1")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    epoch1 = exp / "supernet" / "epoch-1.pt"
    before = epoch1.read_bytes()
    free = shutil.disk_usage(small_disk).free
    (small_disk / "filler").write_bytes(b"\0" * (free - len(before) // 4))  # room for a quarter checkpoint

    r = run_recipe(recipe, *args, "--num-epochs", "2")
    log = r.stdout + r.stderr
    assert r.returncode != 0
    assert f"could not write {exp / 'supernet' / 'epoch-2.pt'}: No space left on device" in log, log[-3000:]
    assert "Traceback" not in log
    assert epoch1.read_bytes() == before and torch.load(epoch1, weights_only=True)["params"]["cur_epoch"] == 1
    assert sorted(p.name for p in (exp / "supernet").iterdir()) == ["epoch-1.pt", "log", "train_cost.json"]

    (small_disk / "filler").unlink()  # room again: the rerun resumes and finishes
    r = run_recipe(recipe, *args, "--num-epochs", "2")
    assert r.returncode == 0 and (exp / "supernet" / "epoch-2.pt").is_file(), (r.stdout + r.stderr)[-3000:]
    assert "resumed from" in r.stdout + r.stderr
