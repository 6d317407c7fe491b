"""A checkpoint never runs code: a crafted .pt file is refused, by name, at every entry point.

The payload is a pickle whose ``__reduce__`` calls ``os.system("touch <marker>")`` while it is
read. Each entry point that takes a checkpoint path (training resume in its three forms,
decoding with each way of choosing weights, export, subnet selection and listing, the decoding
benchmark) is pointed at it; the marker file must never appear, and the error must name the file.
"""

import importlib.util
import os
import pickle
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, tiny_config
from test_decode import make_bpe
from todm import decode, export, list_subnets, select_subnets, train
from todm.checkpoint import UnsafeCheckpointError, load_checkpoint_file

TINY_MODEL = ["--encoder-dim", "16", "--head-dim", "4", "--state-dim", "4", "--num-layers", "1,2",
              "--ffn-dim", "16,32", "--num-heads", "1,2", "--decoder-dim", "16", "--joiner-dim", "16",
              "--subsampling-channels", "4,8,8"]


class Payload:
    """Unpickling this runs a shell command (what an attacker's checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def write_crafted(path: Path, marker: Path) -> Path:
    """A file shaped like a real checkpoint, with the payload inside ``params``."""
    params = {"batch_idx_train": 8, "cur_epoch": 1, "model_config": tiny_config().to_dict(), "x": Payload(marker)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {}, "model_avg": {}, "params": params}, path)
    return path


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "payload-ran"


def assert_refused(call, path: Path, marker: Path) -> None:
    with pytest.raises(UnsafeCheckpointError) as info:
        call()
    assert not marker.exists(), "the payload ran"
    message = str(info.value)
    assert str(path) in message and "refusing to load" in message and "GLOBAL posix.system" in message, message


def test_payload_is_live_and_a_plain_load_refuses_it(tmp_path, marker):
    path = write_crafted(tmp_path / "epoch-1.pt", marker)
    assert_refused(lambda: load_checkpoint_file(path), path, marker)
    pickle.loads(pickle.dumps(Payload(marker)))  # a full unpickling (the removed fallback) runs it
    assert marker.exists()


def test_corrupt_file_is_named(tmp_path):
    path = tmp_path / "epoch-1.pt"
    path.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match=f"{path}: not a readable checkpoint"):
        load_checkpoint_file(path)


@pytest.fixture(scope="module")
def bpe(tmp_path_factory) -> Path:
    return make_bpe(tmp_path_factory.mktemp("lang"))


@pytest.mark.parametrize("flags, name", [
    (["--start-epoch", "2"], "epoch-1.pt"),
    (["--start-batch", "8"], "checkpoint-8.pt"),
    (["--auto-resume", "true"], "epoch-1.pt"),  # read to compare its batch index
    (["--auto-resume", "true"], "checkpoint-8.pt"),  # chosen by name, then loaded
])
def test_training_resume_refuses(tmp_path, marker, monkeypatch, bpe, flags, name):
    exp_dir = tmp_path / "exp"
    path = write_crafted(exp_dir / name, marker)
    argv = ["todm.train", "--exp-dir", str(exp_dir), "--bpe-model", str(bpe), "--num-threads", "1",
            "--tensorboard", "false", *TINY_MODEL, *flags]
    monkeypatch.setattr(sys, "argv", argv)
    assert_refused(train.main, path, marker)


@pytest.mark.parametrize("flags, names", [
    (["--epoch", "1", "--avg", "1", "--use-averaged-model", "false"], ["epoch-1.pt"]),
    (["--epoch", "2", "--avg", "1", "--use-averaged-model", "true"], ["epoch-1.pt", "epoch-2.pt"]),
    (["--iter", "8", "--avg", "1", "--use-averaged-model", "false"], ["checkpoint-8.pt"]),
])
@pytest.mark.parametrize("module", [decode, select_subnets])
def test_decoding_and_selection_refuse(tmp_path, marker, bpe, module, flags, names):
    exp_dir = tmp_path / "exp"
    paths = [write_crafted(exp_dir / name, marker) for name in names]
    call = lambda: module.main(["--exp-dir", str(exp_dir), "--bpe-model", str(bpe), *flags])  # noqa: E731
    assert_refused(call, paths[0], marker)


def test_export_refuses(tmp_path, marker, monkeypatch):
    exp_dir = tmp_path / "exp"
    path = write_crafted(exp_dir / "epoch-1.pt", marker)
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("<blk> 0\n")
    monkeypatch.setattr(sys, "argv", ["todm.export", "--exp-dir", str(exp_dir), "--epoch", "1", "--avg", "1",
                                      "--use-averaged-model", "false", "--tokens", str(tokens)])
    assert_refused(export.main, path, marker)


def test_list_subnets_refuses(tmp_path, marker):
    path = write_crafted(tmp_path / "exp" / "epoch-3.pt", marker)
    assert_refused(lambda: list_subnets.main(["--exp-dir", str(path.parent), "--epoch", "3"]), path, marker)


def test_decoding_benchmark_refuses(tmp_path, marker):
    spec = importlib.util.spec_from_file_location("bench_decode", ROOT / "bench" / "bench_decode.py")
    bench_decode = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_decode)
    path = write_crafted(tmp_path / "L1-F16-H1" / "pretrained.pt", marker)
    assert_refused(lambda: bench_decode.decoding_rtfs(path.parent, [], 16000), path, marker)
