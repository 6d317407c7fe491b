import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler
from lhotse.testing.dummies import dummy_cut
from torch import nn

from todm.checkpoint import (average_checkpoints, average_with_model_avg, find_resume_checkpoint, get_rng_state,
                             load_checkpoint, load_checkpoint_file, load_model_state, remove_checkpoints,
                             save_checkpoint, set_rng_state, update_averaged_model)
from todm.optim import Eden, ScaledAdam
from todm.utils import atomic_write


def _save(path, value: float, batch: int, avg: float | None = None):
    m = nn.Linear(2, 1)
    nn.init.constant_(m.weight, value)
    nn.init.constant_(m.bias, value)
    m_avg = None
    if avg is not None:
        m_avg = nn.Linear(2, 1).double()
        nn.init.constant_(m_avg.weight, avg)
        nn.init.constant_(m_avg.bias, avg)
    save_checkpoint(path, m, {"batch_idx_train": batch}, model_avg=m_avg)


def test_roundtrip_and_resume_choice(tmp_path):
    _save(tmp_path / "epoch-1.pt", 1.0, 10)
    _save(tmp_path / "checkpoint-15.pt", 2.0, 15)
    _save(tmp_path / "epoch-2.pt", 3.0, 20)
    assert find_resume_checkpoint(tmp_path).name == "epoch-2.pt"
    _save(tmp_path / "checkpoint-25.pt", 4.0, 25)
    assert find_resume_checkpoint(tmp_path).name == "checkpoint-25.pt"
    m = nn.Linear(2, 1)
    ckpt = load_checkpoint(tmp_path / "checkpoint-25.pt", m)
    assert ckpt["params"]["batch_idx_train"] == 25 and torch.all(m.weight == 4.0)
    assert find_resume_checkpoint(tmp_path / "nothing-here") is None


def test_failed_write_keeps_previous_file(tmp_path):
    _save(tmp_path / "epoch-1.pt", 1.0, 10)

    def broken(tmp):
        tmp.write_bytes(b"partial")
        raise OSError("No space left on device")

    with pytest.raises(OSError):
        atomic_write(tmp_path / "epoch-1.pt", broken)
    m = nn.Linear(2, 1)
    load_checkpoint(tmp_path / "epoch-1.pt", m)
    assert torch.all(m.weight == 1.0)
    assert [p.name for p in tmp_path.iterdir()] == ["epoch-1.pt"]


def test_remove_keeps_newest_and_epochs(tmp_path):
    for b in (5, 10, 15):
        _save(tmp_path / f"checkpoint-{b}.pt", 0.0, b)
    _save(tmp_path / "epoch-1.pt", 0.0, 12)
    remove_checkpoints(tmp_path, keep_last_k=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-15.pt", "epoch-1.pt"]


def test_running_average_matches_mean_of_weights():
    torch.manual_seed(0)
    model, period = nn.Linear(3, 2), 2
    avg = nn.Linear(3, 2).double()
    avg.load_state_dict(model.state_dict())
    history = []
    for b in range(1, 9):
        with torch.no_grad():
            model.weight.add_(torch.randn_like(model.weight))
        history.append(model.weight.detach().clone().double())
        if b % period == 0:
            update_averaged_model(avg, model, period, b)
    # icefall's running average weights each snapshot by the period: mean of snapshots at 2,4,6,8
    expected = torch.stack(history[1::2]).mean(0)
    torch.testing.assert_close(avg.weight, expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_running_average_on_the_cpu_of_a_cuda_model():
    # todm.train keeps model_avg on the CPU in float64 while the model trains on the GPU
    model, avg = nn.Linear(3, 2).cuda(), nn.Linear(3, 2).double()
    avg.load_state_dict(model.state_dict())
    with torch.no_grad():
        model.weight.add_(1.0)
    update_averaged_model(avg, model, 1, 2)
    torch.testing.assert_close(avg.weight, model.weight.detach().cpu().double() - 0.5)


def test_average_between_two_checkpoints(tmp_path):
    _save(tmp_path / "epoch-1.pt", 0.0, 10, avg=1.0)  # mean of batches 1..10 is 1
    _save(tmp_path / "epoch-2.pt", 0.0, 20, avg=2.0)  # mean of 1..20 is 2 -> mean of 11..20 is 3
    state = average_with_model_avg(tmp_path / "epoch-1.pt", tmp_path / "epoch-2.pt")
    assert torch.allclose(state["weight"], torch.tensor(3.0))
    _save(tmp_path / "epoch-3.pt", 5.0, 30)
    plain = average_checkpoints([tmp_path / "epoch-2.pt", tmp_path / "epoch-3.pt"])
    assert torch.allclose(plain["bias"], torch.tensor(2.5))
    state, params, suffix = load_model_state(tmp_path, epoch=3, avg=2, use_averaged_model=False)
    assert suffix == "epoch-3_avg-2" and params["batch_idx_train"] == 30


def test_missing_checkpoint_names_the_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match="stage 3"):
        load_model_state(tmp_path, epoch=4, avg=1, use_averaged_model=False)
    with pytest.raises(ValueError, match="--epoch > --avg"):
        _save(tmp_path / "epoch-1.pt", 0.0, 1, avg=0.0)
        load_model_state(tmp_path, epoch=1, avg=1, use_averaged_model=True)


def test_rng_state_roundtrip():
    state = get_rng_state()
    a = (random.random(), torch.rand(3))
    set_rng_state(state)
    b = (random.random(), torch.rand(3))
    assert a[0] == b[0] and torch.equal(a[1], b[1])


def test_atomic_write_gives_normal_permissions(tmp_path):
    import os
    umask = os.umask(0o022)
    try:
        atomic_write(tmp_path / "f.txt", lambda tmp: tmp.write_text("x"))
    finally:
        os.umask(umask)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644


def _trained_state():
    """A model, ScaledAdam + Eden after one step, a lhotse sampler mid-epoch, a grad scaler."""
    model = nn.Linear(3, 2)
    optimizer = ScaledAdam([{"named_params": list(model.named_parameters()), "lr": 0.01}], lr=0.01)
    scheduler = Eden(optimizer, 10, 1, warmup_batches=5)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    scheduler.step_batch(1)
    cuts = CutSet.from_cuts([dummy_cut(i, duration=1.0 + i % 3) for i in range(20)])
    sampler = DynamicBucketingSampler(cuts, max_duration=5, num_buckets=2, shuffle=True, seed=0, buffer_size=40)
    next(iter(sampler))
    return model, optimizer, scheduler, sampler, torch.amp.GradScaler("cpu", init_scale=4.0)


@pytest.mark.filterwarnings("ignore:You are using DynamicBucketingSampler with an eagerly read CutSet")
def test_everything_saved_loads_weights_only_and_restores(tmp_path):
    model, optimizer, scheduler, sampler, scaler = _trained_state()
    subnet_rng = random.Random(3)
    params = {"batch_idx_train": 1, "exp_dir": "exp/x", "num_layers": (1, 2), "subnet_rng": subnet_rng.getstate()}
    save_checkpoint(tmp_path / "checkpoint-1.pt", model, params, model, optimizer, scheduler, sampler, scaler)
    expected = (random.random(), torch.rand(2).tolist(), subnet_rng.random())
    random.random(), torch.rand(2)  # move on, then restore
    ckpt = load_checkpoint(tmp_path / "checkpoint-1.pt", nn.Linear(3, 2), restore_rng=True)
    restored_rng = random.Random()
    restored_rng.setstate(ckpt["params"]["subnet_rng"])
    assert (random.random(), torch.rand(2).tolist(), restored_rng.random()) == expected
    assert ckpt["sampler"]["seed"] == 0 and ckpt["grad_scaler"]["scale"] == 4.0
    assert ckpt["scheduler"]["batch"] == 1 and ckpt["optimizer"]["state"]


@pytest.mark.parametrize("value, kind", [(Path("exp"), "pathlib.PosixPath"), (np.float64(1.0), "numpy.float64")])
def test_saving_what_weights_only_refuses_names_the_item(tmp_path, value, kind):
    with pytest.raises(TypeError, match=re.escape(f"checkpoint-1.pt['params']['exp_dir'] is a {kind}")):
        save_checkpoint(tmp_path / "checkpoint-1.pt", nn.Linear(2, 1), {"exp_dir": value})
    assert not list(tmp_path.iterdir())


def test_checkpoint_of_the_old_post_norm_encoder_is_refused_by_name(tmp_path):
    from todm.checkpoint import IncompatibleCheckpointError
    from todm.model_config import TransducerConfig

    old_config = TransducerConfig(vocab_size=20).to_dict()
    del old_config["encoder_version"]  # what checkpoints of the post-norm encoder hold
    for name, content in (("epoch-1.pt", {"model": {}, "params": {"model_config": old_config}}),
                          ("pretrained.pt", {"model": {}, "model_config": old_config})):
        torch.save(content, tmp_path / name)
        with pytest.raises(IncompatibleCheckpointError, match=rf"{name}: .*encoder version 1 \(post-norm.*retrain"):
            load_checkpoint_file(tmp_path / name)
    with pytest.raises(ValueError, match="encoder version 1"):
        TransducerConfig.from_dict(old_config)
