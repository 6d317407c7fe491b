import random

import pytest
import torch

from conftest import tiny_config
from todm.adaptive_dropout import DropoutRule
from todm.cost import count_parameters
from todm.loss_backend import get_loss_backend
from todm.model import build_model
from todm.sandwich import SandwichConfig, random_subnet_pool, sample_sandwich, sandwich_step
from todm.subnet import SearchSpace, SubnetSpec
from todm.transducer_loss import loss_scales

API = get_loss_backend("todm")


def _setup(seed: int = 0, space: SearchSpace | None = None):
    torch.manual_seed(seed)
    config = tiny_config(**({"search_space": space} if space else {}))
    model = build_model(config)
    num_params = {s: count_parameters(config, s) for s in config.search_space.enumerate()}
    x = torch.randn(3, 60, 80)
    x_lens = torch.tensor([60, 50, 40])
    y = [[3, 4, 5], [6, 7], [8]]
    return model, num_params, (x, x_lens, y)


def _step(cfg: SandwichConfig, rule=DropoutRule(0.2), seed: int = 0, batch_idx: int = 3000, space=None,
          autocast_dtype=None, model_hook=None):
    model, num_params, batch = _setup(seed, space)
    if model_hook is not None:
        model_hook(model)
    subnets = sample_sandwich(model.config.search_space, random.Random(0), cfg.num_random_subnets)
    res = sandwich_step(model, API, batch, subnets, cfg, rule, num_params, batch_idx, autocast_dtype=autocast_dtype)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return res, grads, subnets


def test_sandwich_order_and_baseline_mode():
    space = SearchSpace(layers=(1, 2), ffn_dims=(16, 32), heads=(1, 2))
    kinds = [k for k, _ in sample_sandwich(space, random.Random(0), 2)]
    assert kinds == ["largest", "random", "random", "smallest"]
    single = SearchSpace.single(SubnetSpec(2, 32, 2))
    assert sample_sandwich(single, random.Random(0), 2) == [("largest", SubnetSpec(2, 32, 2))]


def test_kd_flag_adds_and_removes_the_kd_term():
    with_kd, g_kd, _ = _step(SandwichConfig(num_random_subnets=1, kd=True))
    without, g_plain, _ = _step(SandwichConfig(num_random_subnets=1, kd=False))
    assert "kd_loss" in with_kd.losses["smallest"] and "kd_loss" in with_kd.losses["random"]
    assert "kd_loss" not in without.losses["smallest"] and "kd_loss" not in with_kd.losses["largest"]
    assert with_kd.losses["largest"] == without.losses["largest"]  # the teacher's own loss is unchanged
    assert set(g_kd) == set(g_plain)
    assert any(not torch.allclose(g_kd[n], g_plain[n]) for n in g_kd if n.startswith("encoder."))


@pytest.mark.parametrize("batch_idx, share", [(0, 0.0), (250, 0.25), (1000, 1.0), (3000, 1.0)])
def test_kd_warmup_ramps_the_kd_weight(batch_idx, share):
    full, _, _ = _step(SandwichConfig(num_random_subnets=1, kd_weight=2.0), batch_idx=batch_idx)
    ramped, _, _ = _step(SandwichConfig(num_random_subnets=1, kd_weight=2.0, kd_warmup_batches=1000),
                         batch_idx=batch_idx)
    for kind in ("random", "smallest"):
        kd = full.losses[kind]["kd_loss"]
        assert ramped.losses[kind]["kd_loss"] == pytest.approx(kd)
        missing = full.losses[kind]["loss"] - ramped.losses[kind]["loss"]
        assert missing == pytest.approx(2.0 * (1 - share) * kd, rel=1e-4)


def test_students_without_ground_truth_get_only_kd():
    res, _, _ = _step(SandwichConfig(num_random_subnets=0, student_gt_loss=False))
    assert set(res.losses["smallest"]) == {"kd_loss", "loss"}
    assert res.losses["smallest"]["loss"] == pytest.approx(res.losses["smallest"]["kd_loss"], rel=1e-5)


def test_adaptive_dropout_per_subnet():
    res, _, _ = _step(SandwichConfig(num_random_subnets=0), DropoutRule(0.2, 1.0, adaptive=True))
    assert res.dropout["largest"] == pytest.approx(0.2) and res.dropout["smallest"] < 0.2
    res, _, _ = _step(SandwichConfig(num_random_subnets=0), DropoutRule(0.2, 1.0, adaptive=False))
    assert res.dropout["smallest"] == pytest.approx(0.2)


def test_non_finite_loss_stops_the_step():
    model, num_params, (x, x_lens, y) = _setup()
    x[0, 5, 3] = float("nan")
    subnets = sample_sandwich(model.config.search_space, random.Random(0), 1)
    res = sandwich_step(model, API, (x, x_lens, y), subnets, SandwichConfig(num_random_subnets=1),
                        DropoutRule(), num_params, 10)
    assert not res.finite and "largest" in res.bad_subnet


def test_ctc_head_adds_its_loss_to_every_subnet_with_ground_truth():
    torch.manual_seed(0)
    config = tiny_config(use_ctc=True)
    model = build_model(config)
    num_params = {s: count_parameters(config, s) for s in config.search_space.enumerate()}
    _, _, batch = _setup()
    subnets = sample_sandwich(config.search_space, random.Random(0), 1)
    res = sandwich_step(model, API, batch, subnets, SandwichConfig(num_random_subnets=1, ctc_loss_scale=0.3),
                        DropoutRule(0.0), num_params, 3000)
    for kind in ("largest", "random", "smallest"):
        losses = res.losses[kind]
        assert losses["ctc_loss"] > 0
        expected = 0.5 * losses["simple_loss"] + losses["pruned_loss"] + 0.3 * losses["ctc_loss"]
        assert losses["loss"] == pytest.approx(expected + losses.get("kd_loss", 0.0), rel=1e-5)
    assert model.ctc_output.weight.grad is not None and model.ctc_output.weight.grad.abs().sum() > 0
    without, _, _ = _step(SandwichConfig(num_random_subnets=1))
    assert "ctc_loss" not in without.losses["largest"]


def test_ctc_loss_matches_torch_and_ignores_impossible_targets():
    from todm.ctc_loss import ctc_forward

    torch.manual_seed(0)
    head = torch.nn.Linear(8, 6)
    encoder_out, lens = torch.randn(2, 5, 8), torch.tensor([5, 2])
    symbols, y_lens = torch.tensor([[1, 2], [3, 4]]), torch.tensor([2, 2])
    expected = torch.nn.functional.ctc_loss(head(encoder_out[:1]).log_softmax(-1).transpose(0, 1), symbols[:1],
                                            lens[:1], y_lens[:1], reduction="sum")
    # the second utterance needs 2 frames for "3 4" and has 2: possible; shorten it to 1 frame: impossible
    got = ctc_forward(head, encoder_out, torch.tensor([5, 1]), symbols, y_lens, blank_id=0)
    assert torch.isfinite(got) and got.item() == pytest.approx(expected.item(), rel=1e-5)


def _gradient_alone(spec: SubnetSpec, cfg: SandwichConfig) -> dict[str, torch.Tensor]:
    """The gradient of one subnet's loss, on a fresh copy of the model, nothing accumulated."""
    from todm.transducer_loss import transducer_forward

    model, _, (x, x_lens, y) = _setup()
    out = transducer_forward(model, API, x, x_lens, y, spec, dropout=0.0)
    loss = cfg.simple_loss_scale * out.simple_loss + out.pruned_loss
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
    return {n: g for (n, _), g in zip(params, grads) if g is not None}


def test_gradients_are_the_sum_of_each_subnets_gradient():
    # Accumulated, not overwritten: every parameter's gradient after the sandwich is the sum of
    # the gradients of its subnets computed one at a time, including the conv front end, which
    # the sandwich runs once for all of them.
    cfg = SandwichConfig(num_random_subnets=1, kd=False)
    res, grads, subnets = _step(cfg, DropoutRule(0.0))
    alone = [_gradient_alone(spec, cfg) for _, spec in subnets]
    assert len({spec for _, spec in subnets}) == 3 and res.seconds["front_end"] > 0
    assert set(grads) == set().union(*alone)
    for name, grad in grads.items():
        expected = sum(g[name] for g in alone if name in g)
        torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-6, msg=name)
    shared = "decoder.embedding.weight"  # every subnet adds to it: the sum is none of its terms
    assert all(not torch.allclose(grads[shared], g[shared], atol=1e-6) for g in alone)


def test_bf16_autocast_step_on_cpu_is_close_to_float32():
    # What todm.train --use-bf16 true does on a CPU: the same step under bfloat16 autocast.
    joiner_dtypes = []

    def record_joiner_dtype(model):
        model.joiner.register_forward_hook(lambda module, args, out: joiner_dtypes.append(out.dtype))

    cfg = SandwichConfig(num_random_subnets=1)
    ref, ref_grads, _ = _step(cfg, DropoutRule(0.0))
    res, grads, _ = _step(cfg, DropoutRule(0.0), autocast_dtype=torch.bfloat16, model_hook=record_joiner_dtype)
    assert res.finite and set(joiner_dtypes) == {torch.bfloat16}  # autocast really ran
    for kind, losses in ref.losses.items():
        for name, value in losses.items():  # the KD loss of near-equal outputs is ~1e-4 of the total:
            tolerance = 1e-3 * losses["loss"]  # there bf16's rounding of the logits is what it measures
            assert res.losses[kind][name] == pytest.approx(value, rel=0.01, abs=tolerance), (kind, name)
    assert set(grads) == set(ref_grads)
    for name, grad in grads.items():  # bf16 keeps 8 bits of mantissa: about 0.4% per rounding
        assert torch.isfinite(grad).all() and (grad - ref_grads[name]).norm() <= 0.1 * ref_grads[name].norm(), name
    total = torch.cat([(grads[n] - ref_grads[n]).flatten() for n in grads]).norm()
    assert total <= 0.02 * torch.cat([g.flatten() for g in ref_grads.values()]).norm()


@pytest.mark.parametrize("batch_idx, simple, pruned", [(0, 1.0, 0.1), (1000, 0.75, 0.55), (2000, 0.5, 1.0),
                                                       (9000, 0.5, 1.0)])
def test_loss_warm_up_moves_weight_from_simple_to_pruned_loss(batch_idx, simple, pruned):
    # icefall's warm-up over warm_step batches: simple 1 -> simple_loss_scale, pruned 0.1 -> 1
    assert loss_scales(batch_idx, 2000, 0.5) == pytest.approx((simple, pruned))
    res, _, _ = _step(SandwichConfig(num_random_subnets=0, kd=False, warm_step=2000), batch_idx=batch_idx)
    for losses in res.losses.values():
        expected = simple * losses["simple_loss"] + pruned * losses["pruned_loss"]
        assert losses["loss"] == pytest.approx(expected, rel=1e-5)


class _CountingBackend:
    """The loss backend, counting calls per function and marking when one is running."""

    def __init__(self, module):
        self.module, self.calls, self.running = module, {}, None

    def __getattr__(self, name):
        function = getattr(self.module, name)

        def call(*args, **kwargs):
            self.calls[name] = self.calls.get(name, 0) + 1
            self.running = name
            try:
                return function(*args, **kwargs)
            finally:
                self.running = None
        return call


def test_a_step_reads_the_device_once_besides_the_loss_functions(monkeypatch):
    # On a GPU every read of a tensor's value on the host (.item(), bool(), int(), .tolist())
    # waits for the device to finish all queued work. The step reads once, at its end (it read
    # each loss and checked finiteness per subnet, and synchronized per subnet: 15 reads per
    # subnet); the todm loss functions read once per call, the pruned loss twice (its ranges).
    backend = _CountingBackend(API)
    reads: dict[str, int] = {}
    for name in ("item", "tolist", "__bool__", "__int__", "__float__"):
        def counting(self, *args, _original=getattr(torch.Tensor, name), **kwargs):
            where = backend.running or "step"
            reads[where] = reads.get(where, 0) + 1
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, counting)
    model, num_params, batch = _setup()
    subnets = sample_sandwich(model.config.search_space, random.Random(0), 2)
    res = sandwich_step(model, backend, batch, subnets, SandwichConfig(), DropoutRule(0.2), num_params, 3000)
    assert res.finite and len(res.losses) == 3 and res.num_frames > 0
    assert reads.pop("step") == 1
    allowed = {"rnnt_loss_smoothed": 1, "get_rnnt_prune_ranges": 1, "rnnt_loss_pruned": 2, "do_rnnt_pruning": 0}
    assert set(reads) <= set(backend.calls)
    for name, count in reads.items():
        assert count <= allowed[name] * backend.calls[name], (name, count, backend.calls[name])


def test_random_subnets_from_the_deployable_specs():
    space = SearchSpace(layers=(1, 2, 3, 4), ffn_dims=(16, 32, 48, 64), heads=(1, 2, 3, 4))
    pool = random_subnet_pool(space, "deployable")
    assert pool == [s for s in space.deployable() if s not in (space.smallest(), space.largest())]
    assert len(pool) == 3
    rng = random.Random(0)
    drawn = {spec for _ in range(200) for kind, spec in sample_sandwich(space, rng, 2, pool) if kind == "random"}
    assert drawn == set(pool)  # every deployable middle spec, nothing else
    assert random_subnet_pool(space, "space") is None
    tiny = SearchSpace(layers=(1, 2), ffn_dims=(16,), heads=(1,))  # no spec between the ends: the whole space
    assert random_subnet_pool(tiny, "deployable") is None
    with pytest.raises(ValueError, match="unknown source 'middle'"):
        random_subnet_pool(space, "middle")
