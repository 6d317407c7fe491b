"""todm.rnnt_loss: against a textbook RNN-T forward recursion, identities between the losses,
k2's signatures, and k2 / fast_rnnt when importable."""
import inspect
import math

import pytest
import torch

from conftest import import_reference
from todm import rnnt_loss as ours

BLANK = 0


def hat_log_probs(logits):
    """HAT's output distribution, written out: P(blank) = sigmoid(l_0), and the other
    symbols share 1 - sigmoid(l_0) in proportion to exp(l_c)."""
    p_blank = torch.sigmoid(logits[..., :1])
    p_other = (1 - p_blank) * torch.softmax(logits[..., 1:], dim=-1)
    return torch.cat([p_blank, p_other], dim=-1).log()


def textbook_rnnt_nll(logits, symbols, T, U, modified=False, delay_penalty=0.0, log_probs=None):
    """-log P(symbols[:U] | T frames) by Graves' alpha recursion over (frame, #emitted),
    from log_probs(logits[T', U'+1, C]) of one utterance (default: log-softmax). A symbol
    emitted on frame t gains delay_penalty * ((T - 1) / 2 - t)."""
    log_probs = log_probs or (lambda x: torch.log_softmax(x, dim=-1))
    logp = log_probs(logits.double()).tolist()
    y = symbols.tolist()

    def emit(t, u):
        return logp[t][u][y[u]] + delay_penalty * ((T - 1) / 2 - t)

    alpha = [[-math.inf] * (U + 1) for _ in range(T + 1)]
    alpha[0][0] = 0.0
    for t in range(T + 1):
        for u in range(U + 1):
            terms = [alpha[t][u]] if (t, u) == (0, 0) else []
            if t > 0:
                terms.append(alpha[t - 1][u] + logp[t - 1][u][BLANK])
                if modified and u > 0:
                    terms.append(alpha[t - 1][u - 1] + emit(t - 1, u - 1))
            if not modified and u > 0 and t < T:
                terms.append(alpha[t][u - 1] + emit(t, u - 1))
            finite = [x for x in terms if x > -math.inf]
            if finite:
                m = max(finite)
                alpha[t][u] = m + math.log(sum(math.exp(x - m) for x in finite))
    return -alpha[T][U]


def make_inputs(B=3, T=9, S=4, C=7, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    am = torch.randn(B, T, C, generator=gen, dtype=torch.float64).to(dtype)
    lm = torch.randn(B, S + 1, C, generator=gen, dtype=torch.float64).to(dtype)
    symbols = torch.randint(1, C, (B, S), generator=gen)
    lengths = [(S, T), (max(S - 1, 0), T - 2), (max(S - 3, 0), max(T - 5, S - 3, 1))][:B]
    boundary = torch.tensor([[0, 0, s, t] for s, t in lengths], dtype=torch.int64)
    return am, lm, symbols, boundary


def nonlinear_joiner(am, lm):
    """A joiner that is not additive, so the full and simple losses really differ."""
    return 3 * torch.tanh(am[:, :, None, :] + lm[:, None, :, :])


@pytest.mark.parametrize("rnnt_type", ["regular", "modified"])
def test_full_loss_matches_textbook_recursion(rnnt_type):
    am, lm, symbols, boundary = make_inputs()
    logits = nonlinear_joiner(am, lm)
    for delay in (0.0, 0.3):
        loss = ours.rnnt_loss(logits, symbols, BLANK, boundary, rnnt_type, delay, reduction="none")
        ref = [
            textbook_rnnt_nll(logits[b], symbols[b], t, s, rnnt_type == "modified", delay)
            for b, (_, _, s, t) in enumerate(boundary.tolist())
        ]
        # k2 computes the delay penalty in float32 (default dtype) even for float64 inputs.
        atol = 1e-6 if delay else 1e-10
        torch.testing.assert_close(loss, torch.tensor(ref, dtype=torch.float64), rtol=0, atol=atol)


@pytest.mark.parametrize("rnnt_type", ["regular", "modified", "constrained"])
def test_additive_full_loss_equals_simple_and_smoothed_with_zero_scales(rnnt_type):
    am, lm, symbols, boundary = make_inputs(seed=1)
    logits = am[:, :, None, :] + lm[:, None, :, :]
    full, (fx, fy) = ours.rnnt_loss(
        logits, symbols, BLANK, boundary, rnnt_type, reduction="none", return_grad=True
    )
    simple, (sx, sy) = ours.rnnt_loss_simple(
        lm, am, symbols, BLANK, boundary, rnnt_type, reduction="none", return_grad=True
    )
    smoothed = ours.rnnt_loss_smoothed(
        lm, am, symbols, BLANK, 0.0, 0.0, boundary, rnnt_type, reduction="none"
    )
    torch.testing.assert_close(simple, full, rtol=0, atol=1e-10)
    torch.testing.assert_close(smoothed, simple, rtol=0, atol=1e-10)
    torch.testing.assert_close(sx, fx, rtol=0, atol=1e-10)
    torch.testing.assert_close(sy, fy, rtol=0, atol=1e-10)
    smoothed_default = ours.rnnt_loss_smoothed(lm, am, symbols, BLANK, boundary=boundary, reduction="none")
    assert (smoothed_default - simple).abs().min() > 1e-3


def pruned_and_full(am, lm, symbols, boundary, s_range, rnnt_type="regular"):
    _, (px_grad, py_grad) = ours.rnnt_loss_simple(
        lm, am, symbols, BLANK, boundary, rnnt_type, reduction="none", return_grad=True
    )
    ranges = ours.get_rnnt_prune_ranges(px_grad, py_grad, boundary, s_range)
    am_pruned, lm_pruned = ours.do_rnnt_pruning(am, lm, ranges)
    logits = 3 * torch.tanh(am_pruned + lm_pruned)
    pruned = ours.rnnt_loss_pruned(logits, symbols, ranges, BLANK, boundary, rnnt_type, reduction="none")
    full = ours.rnnt_loss(nonlinear_joiner(am, lm), symbols, BLANK, boundary, rnnt_type, reduction="none")
    return pruned, full, ranges


@pytest.mark.parametrize("rnnt_type", ["regular", "modified"])
def test_pruned_loss_bounds_full_loss_and_equals_it_without_pruning(rnnt_type):
    am, lm, symbols, boundary = make_inputs(B=3, T=12, S=6, seed=2)
    pruned, full, ranges = pruned_and_full(am, lm, symbols, boundary, 2, rnnt_type)
    assert ranges.shape == (3, 12, 2)
    assert (pruned >= full - 1e-10).all() and (pruned > full + 1e-6).any()
    pruned, full, ranges = pruned_and_full(am, lm, symbols, boundary, 100, rnnt_type)
    assert ranges.shape == (3, 12, 7) and (ranges == torch.arange(7)).all()
    torch.testing.assert_close(pruned, full, rtol=0, atol=1e-10)


def test_prune_ranges_are_monotone_without_gaps():
    am, lm, symbols, boundary = make_inputs(B=3, T=40, S=12, seed=3)
    s_range = 4
    _, (px_grad, py_grad) = ours.rnnt_loss_simple(lm * 4, am * 4, symbols, BLANK, boundary, return_grad=True)
    ranges = ours.get_rnnt_prune_ranges(px_grad, py_grad, boundary, s_range)
    start = ranges[:, :, 0]
    assert (start[:, 0] == 0).all()
    steps = start[:, 1:] - start[:, :-1]
    assert (steps >= 0).all() and (steps <= s_range - 1).all()
    assert (ranges[:, :, 1:] - ranges[:, :, :-1] == 1).all()
    for b, (_, _, s_end, t_end) in enumerate(boundary.tolist()):
        assert (ranges[b, t_end - 1 :, -1] == max(s_end, s_range - 1)).all()
        assert ranges[b].max() <= max(s_end, s_range - 1)


def test_do_rnnt_pruning_gathers_the_right_rows():
    am, lm = torch.randn(2, 5, 3), torch.randn(2, 4, 3)
    ranges = torch.tensor([[0, 1], [0, 1], [1, 2], [2, 3], [2, 3]]).expand(2, 5, 2)
    am_pruned, lm_pruned = ours.do_rnnt_pruning(am, lm, ranges)
    assert am_pruned.shape == lm_pruned.shape == (2, 5, 2, 3)
    for b, t, k in [(0, 0, 0), (1, 2, 1), (1, 4, 0)]:
        assert torch.equal(am_pruned[b, t, k], am[b, t])
        assert torch.equal(lm_pruned[b, t, k], lm[b, ranges[b, t, k]])


def test_gradcheck_simple_and_full():
    am, lm, symbols, boundary = make_inputs(B=2, T=4, S=2, C=4, seed=4)
    am.requires_grad_(True)
    lm.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, l: ours.rnnt_loss_simple(l, a, symbols, BLANK, boundary, reduction="none"), (am, lm)
    )
    logits = nonlinear_joiner(am, lm).detach().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: ours.rnnt_loss(x, symbols, BLANK, boundary, reduction="none"), (logits,)
    )


def test_reductions_zero_symbols_one_frame_and_errors():
    am, lm, symbols, boundary = make_inputs(B=2, T=1, S=1, seed=5)
    boundary = torch.tensor([[0, 0, 0, 1], [0, 0, 1, 1]])  # no symbols; one symbol
    logits = nonlinear_joiner(am, lm)
    none = ours.rnnt_loss(logits, symbols, BLANK, boundary, reduction="none")
    ref = [textbook_rnnt_nll(logits[b], symbols[b], 1, s) for b, s in enumerate([0, 1])]
    torch.testing.assert_close(none, torch.tensor(ref, dtype=torch.float64))
    torch.testing.assert_close(ours.rnnt_loss(logits, symbols, BLANK, boundary), none.mean())
    torch.testing.assert_close(ours.rnnt_loss(logits, symbols, BLANK, boundary, reduction="sum"), none.sum())
    with pytest.raises(ValueError, match="reduction"):
        ours.rnnt_loss(logits, symbols, BLANK, boundary, reduction="avg")
    with pytest.raises(ValueError, match="T >= S"):
        ours.rnnt_loss_simple(lm, am, symbols, BLANK, torch.tensor([[0, 0, 1, 0], [0, 0, 1, 1]]), "modified")
    with pytest.raises(ValueError, match="rnnt_type"):
        ours.rnnt_loss_simple(lm, am, symbols, BLANK, boundary, "hat")
    with pytest.raises(ValueError, match="HAT needs the blank"):
        ours.rnnt_loss_pruned(logits, symbols, torch.zeros(2, 1, 2, dtype=torch.int64), 1, use_hat_loss=True)


def full_ranges(B, T, S):
    """Every symbol position at every frame: the pruned lattice is the whole lattice."""
    return torch.arange(S + 1).expand(B, T, S + 1)


@pytest.mark.parametrize("rnnt_type", ["regular", "modified"])
def test_hat_loss_matches_textbook_recursion_on_the_full_lattice(rnnt_type):
    am, lm, symbols, boundary = make_inputs(B=3, T=9, S=4, seed=8)
    logits = nonlinear_joiner(am, lm)
    ranges = full_ranges(3, 9, 4)
    for delay in (0.0, 0.3):
        hat = ours.rnnt_loss_pruned(logits, symbols, ranges, BLANK, boundary, rnnt_type, delay,
                                    reduction="none", use_hat_loss=True)
        ref = [textbook_rnnt_nll(logits[b], symbols[b], t, s, rnnt_type == "modified", delay, hat_log_probs)
               for b, (_, _, s, t) in enumerate(boundary.tolist())]
        torch.testing.assert_close(hat, torch.tensor(ref, dtype=torch.float64), rtol=0, atol=1e-6 if delay else 1e-10)
    hat, softmax = (ours.rnnt_loss_pruned(logits, symbols, ranges, BLANK, boundary, rnnt_type, reduction="none",
                                          use_hat_loss=use_hat) for use_hat in (True, False))
    assert (hat - softmax).abs().min() > 1e-3  # a different model, not the softmax loss again


def hat_pruned_and_full(B, T, S, C, s_range, seed):
    """HAT loss on the lattice pruned to s_range, its logits, and the HAT loss on the whole lattice."""
    am, lm, symbols, boundary = make_inputs(B=B, T=T, S=S, C=C, seed=seed)
    _, (px_grad, py_grad) = ours.rnnt_loss_simple(lm, am, symbols, BLANK, boundary, return_grad=True)
    ranges = ours.get_rnnt_prune_ranges(px_grad, py_grad, boundary, s_range)
    logits = (3 * torch.tanh(sum(ours.do_rnnt_pruning(am, lm, ranges)))).requires_grad_(True)

    def pruned_loss(x):
        return ours.rnnt_loss_pruned(x, symbols, ranges, BLANK, boundary, reduction="none", use_hat_loss=True)

    full = ours.rnnt_loss_pruned(nonlinear_joiner(am, lm), symbols, full_ranges(B, T, S), BLANK, boundary,
                                 reduction="none", use_hat_loss=True)
    return pruned_loss, logits, full


def test_hat_pruned_loss_bounds_full_hat_loss_and_has_gradients():
    pruned_loss, logits, full = hat_pruned_and_full(B=3, T=12, S=6, C=7, s_range=2, seed=9)
    pruned = pruned_loss(logits)
    assert (pruned >= full - 1e-10).all() and (pruned > full + 1e-6).any()
    pruned_loss, logits, _ = hat_pruned_and_full(B=2, T=4, S=2, C=4, s_range=2, seed=4)
    assert torch.autograd.gradcheck(pruned_loss, (logits.detach().requires_grad_(True),))


# k2's argument order (k2/python/k2/rnnt_loss.py and mutual_information.py, k2 master of July 2025):
# code written against k2 may pass any of these positionally. Ours may add arguments at the end.
K2_SIGNATURES = {
    "mutual_information_recursion": ["px", "py", "boundary", "return_grad"],
    "get_rnnt_logprobs": ["lm", "am", "symbols", "termination_symbol", "rnnt_type", "boundary"],
    "get_rnnt_logprobs_smoothed": ["lm", "am", "symbols", "termination_symbol", "lm_only_scale", "am_only_scale",
                                   "boundary", "rnnt_type"],
    "get_rnnt_logprobs_joint": ["logits", "symbols", "termination_symbol", "rnnt_type", "boundary"],
    "get_rnnt_logprobs_pruned": ["logits", "symbols", "ranges", "termination_symbol", "boundary", "rnnt_type"],
    "get_hat_logprobs_pruned": ["logits", "symbols", "ranges", "termination_symbol", "boundary", "rnnt_type"],
    "rnnt_loss_simple": ["lm", "am", "symbols", "termination_symbol", "boundary", "rnnt_type", "delay_penalty",
                         "reduction", "return_grad"],
    "rnnt_loss_smoothed": ["lm", "am", "symbols", "termination_symbol", "lm_only_scale", "am_only_scale",
                           "boundary", "rnnt_type", "delay_penalty", "reduction", "return_grad"],
    "rnnt_loss": ["logits", "symbols", "termination_symbol", "boundary", "rnnt_type", "delay_penalty", "reduction"],
    "rnnt_loss_pruned": ["logits", "symbols", "ranges", "termination_symbol", "boundary", "rnnt_type",
                         "delay_penalty", "reduction", "use_hat_loss"],
    "get_rnnt_prune_ranges": ["px_grad", "py_grad", "boundary", "s_range"],
    "do_rnnt_pruning": ["am", "lm", "ranges"],
}


@pytest.mark.parametrize("name", K2_SIGNATURES)
def test_argument_order_is_k2s(name):
    ours_args = list(inspect.signature(getattr(ours, name)).parameters)
    assert ours_args[: len(K2_SIGNATURES[name])] == K2_SIGNATURES[name]


def test_joint_logprobs_positionally_in_k2s_order():
    am, lm, symbols, _ = make_inputs(B=1, T=4, S=2, seed=10)
    logits = nonlinear_joiner(am, lm)
    boundary = torch.tensor([[0, 0, 2, 3]])  # shorter than T: px[:, :, 3] becomes -inf
    px, py = ours.get_rnnt_logprobs_joint(logits, symbols, BLANK, "modified", boundary)
    kw_px, kw_py = ours.get_rnnt_logprobs_joint(logits, symbols, BLANK, rnnt_type="modified", boundary=boundary)
    assert px.shape == (1, 2, 4) and torch.equal(px, kw_px) and torch.equal(py, kw_py)
    regular_px, _ = ours.get_rnnt_logprobs_joint(logits, symbols, BLANK, "regular", boundary)
    assert regular_px.shape == (1, 2, 5) and torch.isinf(regular_px[:, :, 3]).all()


def test_extreme_logits_give_finite_losses_and_grads():
    am, lm, symbols, boundary = make_inputs(seed=6, dtype=torch.float32)
    am = (am * 1e4).requires_grad_(True)
    lm = (lm * 1e4).requires_grad_(True)
    simple, (px_grad, py_grad) = ours.rnnt_loss_simple(lm, am, symbols, BLANK, boundary, return_grad=True)
    ranges = ours.get_rnnt_prune_ranges(px_grad, py_grad, boundary, 3)
    logits = sum(ours.do_rnnt_pruning(am, lm, ranges))
    logits = logits.masked_fill(torch.arange(7) == 6, float("-inf"))  # a never-used symbol
    pruned = ours.rnnt_loss_pruned(logits, symbols.clamp(max=5), ranges, BLANK, boundary)
    (simple + pruned).backward()
    for x in (simple, pruned, am.grad, lm.grad):
        assert torch.isfinite(x).all()


REFERENCES = ["fast_rnnt", "k2"]


@pytest.mark.parametrize("reference", REFERENCES)
@pytest.mark.parametrize("rnnt_type", ["regular", "modified", "constrained"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_reference_implementation(reference, rnnt_type, dtype):
    ref_module = import_reference(reference)
    with_hat = hasattr(ref_module, "get_hat_logprobs_pruned")  # k2 has HAT, fast_rnnt does not

    def losses_and_grads(module):
        am, lm, symbols, boundary = make_inputs(B=3, T=24, S=7, C=11, seed=7, dtype=dtype)
        am.requires_grad_(True)
        lm.requires_grad_(True)
        out = {}
        kw = dict(boundary=boundary, rnnt_type=rnnt_type, delay_penalty=0.05, reduction="none")
        out["simple"], (px_grad, py_grad) = module.rnnt_loss_simple(
            lm, am, symbols, BLANK, return_grad=True, **kw
        )
        out["px_grad"], out["py_grad"] = px_grad.clone(), py_grad.clone()  # k2 scales them in place
        out["smoothed"] = module.rnnt_loss_smoothed(lm, am, symbols, BLANK, 0.25, 0.1, **kw)
        ranges = module.get_rnnt_prune_ranges(px_grad, py_grad, boundary, 3)
        out["ranges"] = ranges.to(dtype)
        logits = 3 * torch.tanh(sum(module.do_rnnt_pruning(am, lm, ranges)))
        out["pruned"] = module.rnnt_loss_pruned(logits, symbols, ranges, BLANK, **kw)
        if with_hat:
            out["hat"] = module.rnnt_loss_pruned(logits, symbols, ranges, BLANK, use_hat_loss=True, **kw)
        out["full"] = module.rnnt_loss(nonlinear_joiner(am, lm), symbols, BLANK, **kw)
        total = sum(out[k].sum() for k in ("simple", "smoothed", "pruned", "hat", "full") if k in out)
        out["am_grad"], out["lm_grad"] = torch.autograd.grad(total, (am, lm))
        return out

    mine, theirs = losses_and_grads(ours), losses_and_grads(ref_module)
    atol = 1e-9 if dtype == torch.float64 else 1e-4
    for key in mine:
        torch.testing.assert_close(mine[key], theirs[key], rtol=0, atol=atol, msg=key)
