"""The mutual-information recursion behind the (pruned) RNN-T loss, in pure PyTorch.

Same semantics as ``k2.mutual_information_recursion`` / ``fast_rnnt``. For each batch
element ``b`` it fills ``p[b]`` of shape ``[S+1, T+1]`` with

    p[s_begin, t_begin] = 0
    regular  (px: [B, S, T+1]):  p[s, t] = logaddexp(p[s-1, t]   + px[s-1, t],
                                                     p[s, t-1]   + py[s, t-1])
    modified (px: [B, S, T]):    p[s, t] = logaddexp(p[s-1, t-1] + px[s-1, t-1],
                                                     p[s, t-1]   + py[s, t-1])

(py: [B, S+1, T]; terms with indices outside the lattice are -inf) and returns
``p[b, s_end, t_end]``: the log of the summed score of all monotone paths. ``boundary``
(int64 ``[B, 4]`` = ``[s_begin, t_begin, s_end, t_end]``, default ``[0, 0, S, T]``) lets
sequences of different lengths share one padded tensor; entries outside each element's
lattice are ignored (padding may hold anything, even NaN).

How it is fast without a native kernel: for a fixed row ``s`` the recursion is a
first-order linear recurrence in ``t`` in log space,
``a[t] = logaddexp(e[t], a[t-1] + q[t-1])`` with ``e`` the entries from row ``s-1`` and
``q = py[s]``. With ``Q[t] = sum_{k<t} q[k]`` its solution is
``a[t] = Q[t] + logcumsumexp(e - Q)[t]``, so a whole row costs a handful of tensor ops
and the loop runs over rows only (over ``min(S, T) + 1`` rows: the regular lattice is
transposed when ``S > T``). The scan runs in float64 whatever the input dtype, because
``Q`` grows with ``t`` and ``e - Q`` would lose float32 digits to cancellation.

``Q`` cannot hold -inf (pruned lattices are mostly -inf): the last step of each run of
-inf steps in ``q`` becomes a finite step of ``-big``, with ``big`` above twice the largest
possible |path score|, and nodes inside a run (no finite step in or out along the row)
keep their entry ``e[t]`` and are left out of the scan. A path through a forbidden step
then scores at least 1000 below every real path, so it adds exactly nothing in float64;
a node that only such paths reach is recognised by its score and treated as -inf.

Gradients are the occupation probabilities ``exp(alpha + px + beta_next - total)``, with
``beta`` (scores from each node to the end) computed by the same row scan on the lattice
flipped in both axes. They are computed explicitly rather than by autograd through
``logcumsumexp``, whose backward turns -inf inputs into NaN. As in k2 they are produced in
the forward pass (``return_grad=True`` hands them out; they feed
``get_rnnt_prune_ranges``) and the backward pass only scales them.

A lattice with no path from start to end scores -inf, with zero gradients; NaN or +inf
inside a lattice raises ``NonFiniteLatticeError`` (a ``ValueError``).

Host reads: a call reads the device once (the checks of the boundary and of the scores,
read together after the scan), so on a GPU the host keeps queueing work instead of waiting;
a bad boundary is clamped for the scan and reported by that read.
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

_NEG_INF = float("-inf")
_SCAN_DTYPE = torch.float64
# A path through a forbidden step scores at least this much below any real path.
_FORBIDDEN_MARGIN = 1000.0


class NonFiniteLatticeError(ValueError):
    """px/py hold NaN or +inf inside a lattice (callers may skip the batch on it)."""


def _check_inputs(px: Tensor, py: Tensor, boundary: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
    """Validates shapes/dtypes like k2 does (but with ValueError) and returns the boundary
    as an int64 ``[B, 4]`` tensor on px's device (the default ``[0, 0, S, T]`` if None),
    clamped into the lattice, and the [B] flags of rows that were not (None for the default).
    The flags stay on the device: ``_recursion`` reads them with the scores."""
    if px.ndim != 3 or py.ndim != 3:
        raise ValueError(
            f"px and py must be 3-D, got px {tuple(px.shape)}, py {tuple(py.shape)}"
        )
    B, S, T1 = px.shape
    T = py.shape[2]
    if py.shape != (B, S + 1, T) or T1 not in (T, T + 1):
        raise ValueError(
            f"expected py [B, S+1, T] and px [B, S, T+1] (regular) or [B, S, T] "
            f"(modified); got px {tuple(px.shape)}, py {tuple(py.shape)}"
        )
    if px.dtype != py.dtype or not px.dtype.is_floating_point:
        raise ValueError(f"px, py need the same floating dtype, got {px.dtype}, {py.dtype}")
    if px.device != py.device:
        raise ValueError(f"px on {px.device} but py on {py.device}")
    if boundary is None:
        return torch.tensor([0, 0, S, T], device=px.device).expand(B, 4), None
    if boundary.dtype != torch.int64 or boundary.shape != (B, 4):
        raise ValueError(
            f"boundary must be int64 [B={B}, 4] ([s_begin, t_begin, s_end, t_end]), "
            f"got {boundary.dtype} {tuple(boundary.shape)}"
        )
    boundary = boundary.to(px.device)
    s_begin, t_begin, s_end, t_end = boundary.unbind(1)
    bad = (s_begin < 0) | (s_begin > s_end) | (s_end > S)
    bad |= (t_begin < 0) | (t_begin > t_end) | (t_end > T)
    s_end, t_end = s_end.clamp(0, S), t_end.clamp(0, T)
    clamped = torch.stack(
        [torch.minimum(s_begin.clamp(min=0), s_end), torch.minimum(t_begin.clamp(min=0), t_end), s_end, t_end], 1
    )
    return clamped, bad


def _raise_first_problem(bad_boundary: Tensor, non_finite: Tensor, boundary: Tensor, S: int, T: int) -> None:
    """The error for the first batch element with a bad boundary, else with non-finite scores."""
    if bad_boundary.any():
        b = int(bad_boundary.nonzero()[0, 0])
        raise ValueError(
            f"boundary[{b}] = {boundary[b].tolist()} violates 0 <= s_begin <= s_end <= "
            f"S={S} and 0 <= t_begin <= t_end <= T={T}"
        )
    b = int(non_finite.nonzero()[0, 0])
    raise NonFiniteLatticeError(
        f"mutual_information_recursion: px/py contain NaN or +inf inside the lattice "
        f"of batch element {b} (boundary {boundary[b].tolist()})"
    )


def _mask_outside_lattice(
    px: Tensor, py: Tensor, boundary: Tensor, modified: bool
) -> Tuple[Tensor, Tensor]:
    """Sets every px/py entry that no path of its batch element uses to -inf, so padding
    (whatever it holds) can neither leak into the scores nor into the bound on |scores|."""
    s_begin, t_begin, s_end, t_end = (x.view(-1, 1, 1) for x in boundary.unbind(1))
    S, T = px.shape[1], py.shape[2]
    s = torch.arange(S + 1, device=px.device).view(1, -1, 1)
    t = torch.arange(T + 1, device=px.device).view(1, 1, -1)
    px_t = t[..., : px.shape[2]]
    last_px_t = t_end - 1 if modified else t_end
    px_inside = (s[:, :S] >= s_begin) & (s[:, :S] < s_end) & (px_t >= t_begin)
    px_inside &= px_t <= last_px_t
    py_inside = (s >= s_begin) & (s <= s_end) & (t[..., :T] >= t_begin)
    py_inside &= t[..., :T] < t_end
    return px.masked_fill(~px_inside, _NEG_INF), py.masked_fill(~py_inside, _NEG_INF)


def _max_abs_finite(x: Tensor) -> Tensor:
    """[B] largest |finite entry| of each batch element (0 for none)."""
    if x.shape[1] * x.shape[2] == 0:
        return x.new_zeros(x.shape[0])
    return torch.where(torch.isfinite(x), x.abs(), 0.0).flatten(1).amax(1)


def _scan_rows(
    px: Tensor, py: Tensor, s0: Tensor, t0: Tensor, big: Tensor, modified: bool
) -> Tensor:
    """Forward scores p [B, S+1, T+1] (float64) from start node (s0[b], t0[b]), one row
    of the lattice at a time (see the module docstring for the algorithm)."""
    B, S1, T = py.shape
    blocked = F.pad(py == _NEG_INF, (0, 1), value=True)  # [..., t]: step t -> t+1 is -inf
    # A node whose steps in and out of its row are both -inf ("isolated") keeps exactly
    # what comes from below and passes nothing along the row: it is left out of the scan
    # and filled in afterwards. Then only the last step of each -inf run needs the -big
    # penalty, so cum stays small and float64 keeps its digits.
    isolated = blocked & F.pad(blocked[..., :-1], (1, 0), value=False)
    last_of_run = blocked[..., :-1] & ~blocked[..., 1:]
    step = torch.where(last_of_run, -big, py.masked_fill(blocked[..., :-1], 0.0))
    cum = F.pad(step.cumsum(-1), (1, 0))  # cum[..., t] = sum of step[..., :t]
    cum_scan = cum.masked_fill(isolated, float("inf"))  # entry - inf = -inf: left out
    start = py.new_full((B, S1, T + 1), _NEG_INF)
    start[torch.arange(B, device=py.device), s0, t0] = 0.0
    # Row-major copies ([row, B, t]) so that every per-row slice below is contiguous.
    px, cum, cum_scan, isolated, start = (
        x.transpose(0, 1).contiguous() for x in (px, cum, cum_scan, isolated, start)
    )
    rows = []
    for s in range(S1):
        entry = start[s]
        if s > 0:
            if modified:
                from_below = F.pad(rows[-1][:, :-1] + px[s - 1], (1, 0), value=_NEG_INF)
            else:
                from_below = rows[-1] + px[s - 1]
            # max() inserts the start node: from_below is -inf there (nothing precedes it).
            entry = torch.maximum(from_below, entry)
        row = torch.logcumsumexp(entry - cum_scan[s], dim=-1) + cum[s]
        rows.append(torch.where(isolated[s], entry, row))
    return torch.stack(rows, dim=1)


def _solve(
    px: Tensor, py: Tensor, boundary: Tensor, modified: bool, with_grads: bool
) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """Scores [B] and optional occupation gradients, all float64; px/py already masked."""
    B, S, _ = px.shape
    T = py.shape[2]
    if not modified and S > T:
        # Fewer sequential steps: the regular recursion is symmetric under swapping the
        # roles of (s, px) and (t, py).
        scores, gx, gy = _solve(
            py.transpose(1, 2), px.transpose(1, 2), boundary[:, [1, 0, 3, 2]], False, with_grads
        )
        if gx is None:
            return scores, None, None
        return scores, gy.transpose(1, 2), gx.transpose(1, 2)

    s_begin, t_begin, s_end, t_end = boundary.unbind(1)
    max_edge = torch.maximum(_max_abs_finite(px), _max_abs_finite(py)) + 1.0
    path_bound = (S + T + 1) * max_edge  # > |score| of any path or node, incl. log(#paths)
    big = (2 * path_bound + 2 * _FORBIDDEN_MARGIN).view(B, 1, 1)

    alpha = _scan_rows(px, py, s_begin, t_begin, big, modified)
    batch = torch.arange(B, device=px.device)
    scores = alpha[batch, s_end, t_end]
    reachable = scores > -path_bound - _FORBIDDEN_MARGIN
    scores = torch.where(reachable | torch.isnan(scores), scores, _NEG_INF)  # NaN: _recursion raises
    if not with_grads:
        return scores, None, None

    beta = _scan_rows(
        px.flip(1, 2), py.flip(1, 2), S - s_end, T - t_end, big, modified
    ).flip(1, 2)
    total = torch.where(reachable, scores, 0.0).view(B, 1, 1)
    keep = reachable.view(B, 1, 1)
    beta_after_px = beta[:, 1:, 1:] if modified else beta[:, 1:, :]
    px_grad = torch.exp(alpha[:, :S, : px.shape[2]] + px + beta_after_px - total)
    py_grad = torch.exp(alpha[:, :, :T] + py + beta[:, :, 1:] - total)
    return scores, px_grad.where(keep, 0.0), py_grad.where(keep, 0.0)


def _recursion(
    px: Tensor, py: Tensor, boundary: Optional[Tensor], with_grads: bool
) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    given = boundary
    boundary, bad_boundary = _check_inputs(px, py, boundary)
    modified = px.shape[2] == py.shape[2]
    px64, py64 = _mask_outside_lattice(
        px.detach().to(_SCAN_DTYPE), py.detach().to(_SCAN_DTYPE), boundary, modified
    )
    scores, px_grad, py_grad = _solve(px64, py64, boundary, modified, with_grads)
    non_finite = torch.isnan(scores) | (scores == float("inf"))
    problems = non_finite if bad_boundary is None else non_finite | bad_boundary
    if problems.any():  # the call's one host read
        bad = torch.zeros_like(non_finite) if bad_boundary is None else bad_boundary
        _raise_first_problem(bad, non_finite, boundary if given is None else given, px.shape[1], py.shape[2])
    if px_grad is None:
        return scores.to(px.dtype), None, None
    return scores.to(px.dtype), px_grad.to(px.dtype), py_grad.to(py.dtype)


class _MutualInformation(torch.autograd.Function):
    """Autograd wrapper: gradients are computed in forward (as k2 does), backward scales
    them by the incoming gradient of each score."""

    @staticmethod
    def forward(ctx, px: Tensor, py: Tensor, boundary: Optional[Tensor]):
        scores, px_grad, py_grad = _recursion(px, py, boundary, with_grads=True)
        ctx.save_for_backward(px_grad, py_grad)
        ctx.mark_non_differentiable(px_grad, py_grad)
        return scores, px_grad, py_grad

    @staticmethod
    def backward(ctx, scores_grad: Tensor, _unused_px: Tensor, _unused_py: Tensor):
        px_grad, py_grad = ctx.saved_tensors
        scale = scores_grad.view(-1, 1, 1)
        return px_grad * scale, py_grad * scale, None


def mutual_information_recursion(
    px: Tensor,
    py: Tensor,
    boundary: Optional[Tensor] = None,
    return_grad: bool = False,
) -> Union[Tensor, Tuple[Tensor, Tuple[Tensor, Tensor]]]:
    """Total log-score of all monotone paths through each lattice (k2's function).

    Args:
      px: [B, S, T+1] (regular) or [B, S, T] (modified) scores of moving s -> s+1.
      py: [B, S+1, T] scores of moving t -> t+1; same dtype/device as px.
      boundary: optional int64 [B, 4] rows [s_begin, t_begin, s_end, t_end]
        (default [0, 0, S, T]); 0 <= s_begin <= s_end <= S, 0 <= t_begin <= t_end <= T.
      return_grad: also return (px_grad, py_grad) = d(scores.sum())/d(px, py), the
        occupation probabilities (same shapes as px, py; zero outside each lattice).

    Returns:
      scores [B] (differentiable w.r.t. px and py), or (scores, (px_grad, py_grad)).
      A lattice without any path from start to end scores -inf.
    """
    needs_autograd = torch.is_grad_enabled() and (px.requires_grad or py.requires_grad)
    if needs_autograd:
        scores, px_grad, py_grad = _MutualInformation.apply(px, py, boundary)
    else:
        scores, px_grad, py_grad = _recursion(px, py, boundary, with_grads=return_grad)
    return (scores, (px_grad, py_grad)) if return_grad else scores
