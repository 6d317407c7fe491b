"""todm.mutual_information against a naive O(S*T) dynamic program written here."""
import math

import pytest
import torch

from conftest import import_reference
from todm.mutual_information import mutual_information_recursion

NEG_INF = float("-inf")


def _logaddexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def naive_forward_backward(px, py, boundary):
    """Plain-Python alpha/beta over one lattice; returns (score, px_grad, py_grad).

    The gradients are occupation probabilities exp(alpha + edge + beta_next - score).
    """
    px, py = px.tolist(), py.tolist()
    s0, t0, s1, t1 = boundary
    modified = len(px[0]) == len(py[0]) if px else False
    S1, T = len(py), len(py[0])
    alpha = [[NEG_INF] * (T + 1) for _ in range(S1)]
    beta = [[NEG_INF] * (T + 1) for _ in range(S1)]

    def px_edge(s, t):  # from (s, t) to the node it leads to, or None
        if not s0 <= s < s1:
            return None
        if modified:
            return (s + 1, t + 1) if t0 <= t < t1 else None
        return (s + 1, t) if t0 <= t <= t1 else None

    def py_edge(s, t):
        return (s, t + 1) if s0 <= s <= s1 and t0 <= t < t1 else None

    alpha[s0][t0] = 0.0
    for s in range(s0, s1 + 1):
        for t in range(t0, t1 + 1):
            if t > t0:  # blank from (s, t-1)
                alpha[s][t] = _logaddexp(alpha[s][t], alpha[s][t - 1] + py[s][t - 1])
            if s > s0 and not modified:  # symbol from (s-1, t)
                alpha[s][t] = _logaddexp(alpha[s][t], alpha[s - 1][t] + px[s - 1][t])
            if s > s0 and modified and t > t0:  # symbol from (s-1, t-1)
                alpha[s][t] = _logaddexp(alpha[s][t], alpha[s - 1][t - 1] + px[s - 1][t - 1])
    beta[s1][t1] = 0.0
    for s in range(s1, s0 - 1, -1):
        for t in range(t1, t0 - 1, -1):
            for table, edge_fn in ((px, px_edge), (py, py_edge)):
                nxt = edge_fn(s, t)
                if nxt is not None and nxt[0] <= s1 and nxt[1] <= t1:
                    beta[s][t] = _logaddexp(beta[s][t], table[s][t] + beta[nxt[0]][nxt[1]])
    score = alpha[s1][t1]

    def occupation(table, edge_fn):
        grad = [[0.0] * len(row) for row in table]
        for s, row in enumerate(table):
            for t, value in enumerate(row):
                nxt = edge_fn(s, t)
                if nxt is None or score == NEG_INF:
                    continue
                term = alpha[s][t] + value + beta[nxt[0]][nxt[1]] - score
                grad[s][t] = math.exp(term) if term != NEG_INF else 0.0
        return grad

    return score, occupation(px, px_edge), occupation(py, py_edge)


def naive_batch(px, py, boundary):
    out = [naive_forward_backward(px[b], py[b], boundary[b].tolist()) for b in range(px.shape[0])]
    scores = torch.tensor([o[0] for o in out], dtype=torch.float64)
    px_grad = torch.tensor([o[1] for o in out], dtype=torch.float64).reshape(px.shape)
    py_grad = torch.tensor([o[2] for o in out], dtype=torch.float64).reshape(py.shape)
    return scores, px_grad, py_grad


def random_lattice(B, S, T, modified, gen, dtype=torch.float64):
    px = torch.randn(B, S, T if modified else T + 1, generator=gen, dtype=torch.float64)
    py = torch.randn(B, S + 1, T, generator=gen, dtype=torch.float64)
    return px.to(dtype), py.to(dtype)


def random_boundary(B, S, T, modified, gen):
    rows = []
    for _ in range(B):
        s0 = int(torch.randint(0, max(S // 2, 0) + 1, (1,), generator=gen))
        t0 = int(torch.randint(0, max(T // 3, 0) + 1, (1,), generator=gen))
        s1 = int(torch.randint(s0, S + 1, (1,), generator=gen))
        t_min = t0 + (s1 - s0 if modified else 0)
        t1 = int(torch.randint(t_min, T + 1, (1,), generator=gen)) if t_min <= T else T
        rows.append([s0, t0, s1, t1])
    return torch.tensor(rows, dtype=torch.int64)


@pytest.mark.parametrize("modified", [False, True])
@pytest.mark.parametrize("S,T", [(3, 7), (5, 5), (7, 3), (0, 4), (4, 1), (1, 1), (2, 0)])
def test_matches_naive_dp_with_boundaries(modified, S, T):
    if modified and S > T:
        pytest.skip("modified lattices need T >= S")
    gen = torch.Generator().manual_seed(S * 10 + T)
    px, py = random_lattice(4, S, T, modified, gen)
    for boundary in (None, random_boundary(4, S, T, modified, gen)):
        scores, (px_grad, py_grad) = mutual_information_recursion(px, py, boundary, return_grad=True)
        full = torch.tensor([[0, 0, S, T]] * 4) if boundary is None else boundary
        ref, ref_px_grad, ref_py_grad = naive_batch(px, py, full)
        torch.testing.assert_close(scores, ref, rtol=0, atol=1e-10)
        torch.testing.assert_close(px_grad, ref_px_grad, rtol=0, atol=1e-10)
        torch.testing.assert_close(py_grad, ref_py_grad, rtol=0, atol=1e-10)


@pytest.mark.parametrize("modified", [False, True])
def test_minus_inf_entries_and_garbage_padding(modified):
    """Pruned lattices are mostly -inf; padding outside the boundary may hold anything."""
    gen = torch.Generator().manual_seed(3)
    B, S, T = 5, 4, 9
    px, py = random_lattice(B, S, T, modified, gen)
    px = px.masked_fill(torch.rand(px.shape, generator=gen) < 0.3, NEG_INF)
    py = py.masked_fill(torch.rand(py.shape, generator=gen) < 0.3, NEG_INF)
    boundary = random_boundary(B, S, T, modified, gen)
    scores, (px_grad, py_grad) = mutual_information_recursion(px, py, boundary, return_grad=True)
    ref, ref_px_grad, ref_py_grad = naive_batch(px, py, boundary)
    torch.testing.assert_close(scores, ref, rtol=0, atol=1e-9)
    torch.testing.assert_close(px_grad, ref_px_grad, rtol=0, atol=1e-9)
    torch.testing.assert_close(py_grad, ref_py_grad, rtol=0, atol=1e-9)

    garbage_px, garbage_py = px.clone(), py.clone()
    for b, (s0, t0, s1, t1) in enumerate(boundary.tolist()):
        garbage_px[b, s1:] = float("nan")
        garbage_py[b, s1 + 1 :] = 1e30
        garbage_py[b, :, t1:] = float("inf")
        garbage_px[b, :s0] = -1e30
    torch.testing.assert_close(mutual_information_recursion(garbage_px, garbage_py, boundary), scores)


def test_gradcheck_and_backward_scaling():
    gen = torch.Generator().manual_seed(4)
    for modified in (False, True):
        px, py = random_lattice(3, 3, 5, modified, gen)
        boundary = torch.tensor([[0, 0, 3, 5], [1, 1, 3, 4], [0, 2, 2, 5]])
        px.requires_grad_(True)
        py.requires_grad_(True)
        assert torch.autograd.gradcheck(
            lambda a, b: mutual_information_recursion(a, b, boundary), (px, py)
        )
        scores, (px_occ, py_occ) = mutual_information_recursion(px, py, boundary, return_grad=True)
        weights = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
        px_grad, py_grad = torch.autograd.grad((scores * weights).sum(), (px, py))
        torch.testing.assert_close(px_grad, px_occ * weights.view(3, 1, 1))
        torch.testing.assert_close(py_grad, py_occ * weights.view(3, 1, 1))


def test_no_path_scores_minus_inf_with_zero_grads():
    px = torch.full((2, 2, 4), NEG_INF, dtype=torch.float64, requires_grad=True)
    py = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    boundary = torch.tensor([[0, 0, 2, 3], [0, 0, 0, 3]])
    scores = mutual_information_recursion(px, py, boundary)
    assert scores[0] == NEG_INF
    torch.testing.assert_close(scores[1], py[1, 0].sum())
    scores[1].backward()
    assert torch.isfinite(px.grad).all() and torch.isfinite(py.grad).all()
    assert (py.grad[0] == 0).all()
    torch.testing.assert_close(py.grad[1, 0], torch.ones(3, dtype=torch.float64))


def test_large_magnitudes_stay_accurate_in_float32():
    gen = torch.Generator().manual_seed(5)
    px, py = random_lattice(2, 4, 6, False, gen)
    px, py = px * 1e4, py * 1e4
    ref, _, _ = naive_batch(px, py, torch.tensor([[0, 0, 4, 6]] * 2))
    ours = mutual_information_recursion(px.float(), py.float())
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours.double(), ref, rtol=1e-6, atol=0)


def test_float32_long_lattice_has_no_cancellation():
    """Scores of a few thousand in float32: the float64 scan keeps float32 resolution."""
    gen = torch.Generator().manual_seed(6)
    S, T = 30, 200
    px = torch.log_softmax(torch.randn(1, S, T + 1, 2, generator=gen, dtype=torch.float64), -1)[..., 0]
    py = torch.log_softmax(torch.randn(1, S + 1, T, 2, generator=gen, dtype=torch.float64), -1)[..., 0]
    px[:, :, T] = NEG_INF
    ref, _, _ = naive_batch(px, py, torch.tensor([[0, 0, S, T]]))
    ours = mutual_information_recursion(px.float(), py.float())
    torch.testing.assert_close(ours.double(), ref, rtol=2e-7, atol=0)


def test_bad_inputs_raise_clear_errors():
    px, py = torch.zeros(2, 3, 5), torch.zeros(2, 4, 4)
    with pytest.raises(ValueError, match="boundary\\[1\\]"):
        mutual_information_recursion(px, py, torch.tensor([[0, 0, 3, 4], [0, 0, 4, 4]]))
    with pytest.raises(ValueError, match="int64"):
        mutual_information_recursion(px, py, torch.zeros(2, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match="px \\[B, S, T\\+1\\]"):
        mutual_information_recursion(torch.zeros(2, 3, 7), py)
    nan_py = py.clone()
    nan_py[1, 2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or \\+inf .* batch element 1"):
        mutual_information_recursion(px, nan_py)


@pytest.mark.parametrize("modified", [False, True])
def test_matches_fast_rnnt(modified):
    fast_rnnt = import_reference("fast_rnnt")
    gen = torch.Generator().manual_seed(7)
    B, S, T = 4, 12, 30
    px, py = random_lattice(B, S, T, modified, gen)
    px = px.masked_fill(torch.rand(px.shape, generator=gen) < 0.2, NEG_INF)
    boundary = random_boundary(B, S, T, modified, gen)
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 2e-5)):
        a, b = px.to(dtype), py.to(dtype)
        ours, (gx, gy) = mutual_information_recursion(a, b, boundary, return_grad=True)
        ref, (rx, ry) = fast_rnnt.mutual_information_recursion(a, b, boundary, return_grad=True)
        torch.testing.assert_close(ours, ref, rtol=0, atol=tol)
        torch.testing.assert_close(gx, rx, rtol=0, atol=tol)
        torch.testing.assert_close(gy, ry, rtol=0, atol=tol)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(8)
    px, py = random_lattice(3, 6, 10, False, gen, dtype=torch.float32)
    boundary = random_boundary(3, 6, 10, False, gen)
    cpu, (gx, gy) = mutual_information_recursion(px, py, boundary, return_grad=True)
    gpu, (cx, cy) = mutual_information_recursion(px.cuda(), py.cuda(), boundary.cuda(), return_grad=True)
    torch.testing.assert_close(gpu.cpu(), cpu)
    torch.testing.assert_close(cx.cpu(), gx)
    torch.testing.assert_close(cy.cpu(), gy)
