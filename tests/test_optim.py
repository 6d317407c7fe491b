"""Tests for todm.optim: ScaledAdam and Eden.

References are independent of the code under test: torch.optim.Adam for convergence speed,
the Eden formula written out here, bit-exact replays for resume, hand-made gradients for
clipping, missing and non-finite gradients.
"""

from __future__ import annotations

import io
import logging

import pytest
import torch
from torch import nn

from todm.optim import MAX_CONSECUTIVE_NONFINITE, Eden, ScaledAdam


def _teacher_data(seed: int = 0, n: int = 256, dim: int = 16):
    """Regression targets from a fixed random teacher MLP (learnable by the student)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    w1 = torch.randn(dim, 32, generator=g) / dim**0.5
    w2 = torch.randn(32, 1, generator=g) / 32**0.5
    return x, torch.tanh(x @ w1) @ w2


def _student(seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1)
    )


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, x, y, steps: int) -> float:
    for _ in range(steps):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return nn.functional.mse_loss(model(x), y).item()


def test_converges_at_least_as_fast_as_adam():
    x, y = _teacher_data()
    steps = 150
    initial = nn.functional.mse_loss(_student()(x), y).item()
    adam_model = _student()
    adam_loss = _train(adam_model, torch.optim.Adam(adam_model.parameters()), x, y, steps)
    scaled_model = _student()
    scaled_loss = _train(scaled_model, ScaledAdam(scaled_model.parameters()), x, y, steps)
    print(f"initial {initial:.5f}  Adam {adam_loss:.5f}  ScaledAdam {scaled_loss:.5f}")
    assert scaled_loss <= adam_loss
    assert scaled_loss < 0.1 * initial


class _TwoBranch(nn.Module):
    """A trunk always used, a branch used only on odd steps (like an unsampled subnet
    layer), a scalar gain, and a weight whose gradient covers only a prefix slice."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(8, 8)
        self.branch = nn.Linear(8, 8)
        self.gain = nn.Parameter(torch.tensor(1.0))
        self.wide = nn.Parameter(torch.randn(8, 12) * 0.3)

    def forward(self, x: torch.Tensor, step: int) -> torch.Tensor:
        h = torch.tanh(self.trunk(x))
        if step % 2 == 1:
            h = h + torch.tanh(self.branch(h))
        width = 6 if step % 3 else 12
        return self.gain * (h @ self.wide[:, :width]).sum(dim=-1)


def _make_run(seed: int = 3):
    torch.manual_seed(seed)
    model = _TwoBranch()
    groups = [
        {"named_params": [(n, p) for n, p in model.named_parameters() if n != "gain"]},
        {"named_params": [("gain", model.gain)], "lr": 0.02},
    ]
    optimizer = ScaledAdam(groups, lr=0.05, clipping_scale=1.0, clipping_update_period=8)
    scheduler = Eden(optimizer, lr_batches=10, lr_epochs=2, warmup_batches=6)
    return model, optimizer, scheduler


def _run_steps(model, optimizer, scheduler, first: int, count: int) -> None:
    for step in range(first, first + count):
        if step % 20 == 0:
            scheduler.step_epoch(step // 20)
        g = torch.Generator().manual_seed(1000 + step)
        x = torch.randn(16, 8, generator=g)
        target = torch.randn(16, generator=g)
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x, step), target).backward()
        optimizer.step()
        scheduler.step_batch(step + 1)


def test_resume_is_bit_exact():
    n_first, n_more = 23, 22
    model, optimizer, scheduler = _make_run()
    _run_steps(model, optimizer, scheduler, 0, n_first)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict()}, buffer)
    _run_steps(model, optimizer, scheduler, n_first, n_more)
    assert optimizer.clipping_info(0)["threshold"] is not None

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed_model, resumed_optimizer, resumed_scheduler = _make_run(seed=99)  # other init
    resumed_model.load_state_dict(saved["model"])
    resumed_optimizer.load_state_dict(saved["optimizer"])
    resumed_scheduler.load_state_dict(saved["scheduler"])
    _run_steps(resumed_model, resumed_optimizer, resumed_scheduler, n_first, n_more)

    for (name, p), q in zip(model.named_parameters(), resumed_model.parameters()):
        assert torch.equal(p, q), name
    assert resumed_scheduler.get_last_lr() == scheduler.get_last_lr()
    assert resumed_optimizer.clipping_info(0) == optimizer.clipping_info(0)


def test_resume_without_clipping_history_differs():
    """The resume test can fail: dropping the clipping record changes the trajectory."""
    model, optimizer, scheduler = _make_run()
    _run_steps(model, optimizer, scheduler, 0, 23)
    saved = optimizer.state_dict()
    expected = [p.clone() for p in model.parameters()]
    _run_steps(model, optimizer, scheduler, 23, 22)
    fresh_model, fresh_optimizer, fresh_scheduler = _make_run()
    _run_steps(fresh_model, fresh_optimizer, fresh_scheduler, 0, 23)
    assert all(torch.equal(p, e) for p, e in zip(fresh_model.parameters(), expected))
    saved["clipping"] = []
    fresh_optimizer.load_state_dict(saved)
    _run_steps(fresh_model, fresh_optimizer, fresh_scheduler, 23, 22)
    assert not all(torch.equal(p, q) for p, q in zip(model.parameters(), fresh_model.parameters()))


def _spike_run(clipping_scale: float | None):
    """30 ordinary steps, then one step whose gradient is 1e6 times larger.
    Returns (optimizer, largest ordinary step change, spike step change, exp_avg_sq growth)."""
    x, y = _teacher_data(n=64)
    model = _student()
    optimizer = ScaledAdam(model.named_parameters(), clipping_scale=clipping_scale,
                           clipping_update_period=10)
    weight = model[2].weight
    largest_change = 0.0
    for step in range(31):
        before = weight.detach().clone()
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        (loss * (1e6 if step == 30 else 1.0)).backward()
        if step == 30:
            sq_before = optimizer.state[weight]["exp_avg_sq"].max().item()
        optimizer.step()
        change = (weight - before).abs().max().item()
        if step < 30:
            largest_change = max(largest_change, change)
    sq_growth = optimizer.state[weight]["exp_avg_sq"].max().item() / sq_before
    return optimizer, largest_change, change, sq_growth


def test_clipping_engages_on_huge_gradient(caplog):
    with caplog.at_level(logging.WARNING):
        optimizer, largest_change, spike_change, sq_growth = _spike_run(clipping_scale=2.0)
    info = optimizer.clipping_info()
    assert info["threshold"] is not None
    assert info["last_factor"] < 1e-4
    assert info["num_clipped"] >= 1
    assert "Scaling gradients" in caplog.text and "weight" in caplog.text
    assert spike_change <= 2.0 * largest_change  # the update stays an ordinary one
    assert sq_growth < 10.0  # the second-moment statistics are not poisoned

    # Control: without clipping the same spike does blow the statistics up.
    _, _, _, unclipped_growth = _spike_run(clipping_scale=None)
    assert unclipped_growth > 1e6


def test_eden_matches_formula():
    p1, p2 = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3))
    optimizer = ScaledAdam([{"params": [p1]}, {"params": [p2], "lr": 0.01}], lr=0.045)
    scheduler = Eden(optimizer, lr_batches=7500, lr_epochs=3.5, warmup_batches=500,
                     warmup_start=0.5)

    def expected(base, b, e):
        warm = 1.0 if b >= 500 else 0.5 + 0.5 * b / 500
        batch_term = ((b * b + 7500**2) / 7500**2) ** -0.25
        epoch_term = ((e * e + 3.5**2) / 3.5**2) ** -0.25
        return base * batch_term * epoch_term * warm

    assert scheduler.get_last_lr() == pytest.approx([0.045 * 0.5, 0.01 * 0.5], rel=1e-12)
    for batch, epoch in [(0, 0), (100, 0), (499, 0), (500, 1), (7500, 3.5), (20000, 10), (1e6, 30)]:
        scheduler.step_epoch(epoch)
        scheduler.step_batch(batch)
        want = [expected(0.045, batch, epoch), expected(0.01, batch, epoch)]
        assert scheduler.get_last_lr() == pytest.approx(want, rel=1e-12), (batch, epoch)
        assert [g["lr"] for g in optimizer.param_groups] == scheduler.get_last_lr()
    assert expected(1.0, 7500, 0) == pytest.approx(2**-0.25)  # sanity of the reference
    gentle = Eden(ScaledAdam([nn.Parameter(torch.ones(2))], lr=0.045), 7500, 3.5,
                  warmup_batches=100, warmup_start=0.1)
    gentle.step_batch(30)
    assert gentle.get_last_lr()[0] == pytest.approx(
        0.045 * (0.1 + 0.9 * 30 / 100) * ((30**2 + 7500**2) / 7500**2) ** -0.25, rel=1e-12)

    scheduler.step_batch()
    assert scheduler.batch == 1e6 + 1
    one_group = Eden(ScaledAdam([nn.Parameter(torch.ones(2))]), 7500, 3.5)
    with pytest.raises(ValueError, match="2 base lrs"):
        one_group.load_state_dict(scheduler.state_dict())
    q1, q2 = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3))
    other = Eden(ScaledAdam([{"params": [q1]}, {"params": [q2]}]), 7500, 3.5)
    other.load_state_dict(scheduler.state_dict())
    assert other.get_last_lr() == scheduler.get_last_lr()


def test_first_steps_match_formula():
    """Step 0: v_hat = g^2, so a tensor moves by -lr (1-beta1) rms(p) sign(g) and a scalar by
    -lr scalar_lr_scale (1-beta1) sign(g); step 1 adds beta1 times the first move (momentum)."""
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(5, 7, dtype=torch.float64))
    s = nn.Parameter(torch.tensor(0.3, dtype=torch.float64))
    optimizer = ScaledAdam([w, s], lr=0.05)
    w0, s0, rms = w.detach().clone(), s.detach().clone(), w.detach().pow(2).mean().sqrt()
    g = torch.randn(5, 7, dtype=torch.float64)
    w.grad, s.grad = g.clone(), torch.tensor(-2.0, dtype=torch.float64)
    optimizer.step()
    first_w = -0.05 * 0.1 * rms * g / (g.abs() + 1e-8)  # eps=1e-8 in the denominator
    torch.testing.assert_close(w.detach(), w0 + first_w, rtol=0, atol=1e-12)
    assert s.item() == pytest.approx(s0.item() + 0.05 * 0.1 * 0.1 * 2 / (2 + 1e-8), abs=1e-15)

    w1 = w.detach().clone()
    w.grad = g.clone()  # same gradient again: v_hat is still g^2
    optimizer.step()
    torch.testing.assert_close(w.detach(), w1 + 0.9 * first_w + first_w, rtol=0, atol=1e-12)


def _reference_tensor_trajectory(theta, target, steps, lr, max_rms):
    """ScaledAdam on one tensor, written from the update rule in the paper notes (§4.1):
    loss = 0.5 |theta - target|^2, betas (0.9, 0.98), eps 1e-8, period 4, eta = 0.1."""
    b1, b2, eps, period, eta = 0.9, 0.98, 1e-8, 4, 0.1
    theta = theta.clone()
    v, w, delta = torch.zeros_like(theta), 0.0, torch.zeros_like(theta)
    r = theta.pow(2).mean().sqrt()
    scale_grads = [0.0] * period
    for t in range(steps):
        g = theta - target
        delta = b1 * delta
        scale_grads[t % period] = (theta * g).sum()
        if t % period == period - 1:
            r = theta.pow(2).mean().sqrt()
            bp = b2**period
            w = bp * w + (1 - bp) * sum(x * x for x in scale_grads) / period
            n = (t + 1) // period
            ds = -eta * lr * (1 - bp**n) ** 0.5 * sum(scale_grads) / (w**0.5 + eps)
            ds = min(max(ds, -0.1), 0.1, (max_rms - r) / r)
            delta = delta + (1 - b1) * theta * ds
        v = b2 * v + (1 - b2) * g * g
        bc = 1 - b2 ** (t + 1)
        v_hat = v / bc if bc < 0.99 else v
        delta = delta - lr * (1 - b1) * max(r, 1e-5) * g / (v_hat.sqrt() + eps)
        theta = theta + delta
    return theta


@pytest.mark.parametrize("max_rms_factor", [None, 1.03])
def test_scale_learning_matches_reference(max_rms_factor):
    torch.manual_seed(0)
    theta0 = torch.randn(6, 5, dtype=torch.float64)
    target = 3.0 * theta0  # the loss wants the tensor larger: the scale step grows it
    max_rms = 3.0 if max_rms_factor is None else max_rms_factor * theta0.pow(2).mean().sqrt()
    p = nn.Parameter(theta0.clone())
    optimizer = ScaledAdam([p], lr=0.05, param_max_rms=float(max_rms))
    for _ in range(12):
        optimizer.zero_grad()
        (0.5 * (p - target).pow(2).sum()).backward()
        optimizer.step()
    expected = _reference_tensor_trajectory(theta0, target, 12, 0.05, float(max_rms))
    torch.testing.assert_close(p.detach(), expected, rtol=1e-10, atol=1e-12)
    if max_rms_factor is not None:  # the cap engaged: growth is slower than uncapped
        uncapped = _reference_tensor_trajectory(theta0, target, 12, 0.05, 3.0)
        assert p.detach().pow(2).mean() < uncapped.pow(2).mean()


def test_params_without_grad_are_untouched():
    torch.manual_seed(0)
    used, unused = nn.Parameter(torch.randn(4, 4)), nn.Parameter(torch.randn(4, 4))
    later = nn.Parameter(torch.randn(4))
    optimizer = ScaledAdam([used, unused, later])
    unused_before, later_before, used_before = unused.clone(), later.clone(), used.clone()
    for step in range(10):
        optimizer.zero_grad()
        loss = (used**2).sum() + ((later**2).sum() if step >= 6 else 0.0)
        loss.backward()
        optimizer.step()
        if step == 5:
            assert torch.equal(later, later_before)
    assert torch.equal(unused, unused_before) and unused.grad is None
    assert len(optimizer.state[unused]) == 0
    assert not torch.equal(used, used_before)
    assert optimizer.state[used]["step"] == 10 and optimizer.state[later]["step"] == 4


def test_nonfinite_gradient_skips_then_raises(caplog):
    model = nn.Linear(3, 2)
    optimizer = ScaledAdam(model.named_parameters())
    before = [p.clone() for p in model.parameters()]
    with caplog.at_level(logging.WARNING):
        for _ in range(MAX_CONSECUTIVE_NONFINITE - 1):
            model.weight.grad = torch.ones_like(model.weight)
            model.weight.grad[0, 1] = float("nan")
            model.bias.grad = torch.ones_like(model.bias)
            optimizer.step()
    assert "non-finite gradient" in caplog.text and "weight" in caplog.text
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    assert optimizer.clipping_info()["num_nonfinite"] == MAX_CONSECUTIVE_NONFINITE - 1
    model.weight.grad[0, 0] = float("inf")
    with pytest.raises(RuntimeError, match="non-finite gradient.*weight"):
        optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_scalar_is_clamped_and_input_forms():
    gain = nn.Parameter(torch.tensor(0.0))
    optimizer = ScaledAdam([gain], scalar_max=0.05, lr=0.5)
    for _ in range(50):
        optimizer.zero_grad()
        (-gain).backward()  # always pushes the scalar up
        optimizer.step()
    assert gain.item() == pytest.approx(0.05)

    model = nn.Linear(2, 2)
    for params in (model.parameters(), model.named_parameters(),
                   [{"params": [model.weight]}, {"params": [model.bias], "lr": 0.1}],
                   [{"named_params": list(model.named_parameters())}]):
        ScaledAdam(params)
    with pytest.raises(ValueError, match="empty parameter list"):
        ScaledAdam([])
    with pytest.raises(ValueError, match="clipping_scale"):
        ScaledAdam(model.parameters(), clipping_scale=0.0)
    with pytest.raises(ValueError, match="warmup_start"):
        Eden(ScaledAdam(model.parameters()), 7500, 3.5, warmup_start=1.5)


def test_group_without_rms_scaling_keeps_large_tensors_unscaled():
    """A frequency-like tensor (RMS ~12 > param_max_rms) is shrunk by the RMS ceiling in a
    normal group even with a zero gradient, and left alone in an ``rms_scaled=False`` group,
    where a constant gradient moves every element by the same absolute step."""
    freqs = torch.pi * torch.arange(8.0)
    scaled, plain = nn.Parameter(freqs.clone()), nn.Parameter(freqs.clone())
    optimizer = ScaledAdam([{"params": [scaled]},
                            {"params": [plain], "rms_scaled": False, "scalar_max": float("inf")}],
                           clipping_scale=None)
    for _ in range(8):
        optimizer.zero_grad()
        (0.0 * (scaled.sum() + plain.sum())).backward()
        optimizer.step()
    assert scaled.pow(2).mean().sqrt() < 0.9 * freqs.pow(2).mean().sqrt()
    assert torch.equal(plain, freqs)
    for _ in range(20):
        optimizer.zero_grad()
        (-plain.sum()).backward()
        optimizer.step()
    moved = plain.detach() - freqs
    assert torch.all(moved > 0) and torch.allclose(moved, moved[0].expand(8), atol=1e-5)


def test_make_optimizer_gives_ssm_dynamics_plain_adam():
    import argparse

    from conftest import tiny_config
    from todm.model import build_model
    from todm.optimizer_setup import make_optimizer

    model = build_model(tiny_config())
    args = argparse.Namespace(optimizer="scaled_adam", base_lr=None, lr_batches=100, lr_epochs=2,
                              warmup_batches=10)
    optimizer, _ = make_optimizer(model, args)
    weights, dynamics = optimizer.param_groups
    assert weights["rms_scaled"] and not dynamics["rms_scaled"]
    assert {n.rsplit(".", 1)[-1] for n in dynamics["param_names"]} == {"a_imag", "log_a_real", "log_dt"}
    num_ssm_layers = sum(1 for n, _ in model.named_parameters() if n.endswith("ssm.log_dt"))
    assert len(dynamics["params"]) == 3 * num_ssm_layers
    assert len(weights["params"]) + len(dynamics["params"]) == len(list(model.parameters()))
