"""RNN-T losses with k2's API (simple, smoothed, pruned, full), in pure PyTorch.

Drop-in for ``k2.rnnt_loss_*`` in an icefall ``model.py``: same names, argument order,
defaults (``reduction="mean"``) and numbers; only the recursion underneath differs
(``todm.mutual_information``). Shapes, with ``C`` the vocabulary incl. blank:

  am [B, T, C] (encoder side), lm [B, S+1, C] (decoder side, row 0 = blank context),
  symbols [B, S] int64, logits [B, T, S+1, C] (full) or [B, T, s_range, C] (pruned),
  ranges [B, T, s_range] int64, boundary int64 [B, 4] = [s_begin, t_begin, s_end, t_end].

Each loss builds the lattice scores ``px`` (emit the next symbol; [B, S, T+1] for
``rnnt_type="regular"``, [B, S, T] for "modified"/"constrained") and ``py`` (emit
``termination_symbol``, i.e. blank: [B, S+1, T]) and returns minus the total log-prob.
The regular lattice ends with a blank on the last frame.

``rnnt_loss_pruned(..., use_hat_loss=True)`` is k2's HAT variant (``get_hat_logprobs_pruned``):
the Hybrid Autoregressive Transducer (https://arxiv.org/abs/2003.07705) gives blank a Bernoulli
probability sigmoid(logit_blank) and shares the rest among the other symbols by a softmax over
their logits alone, so the non-blank part can be read as an internal language model.

Differences from k2, all where k2 would fail: utterances with no symbols (S = 0) are
accepted, and errors are ``ValueError`` with the offending item.
"""
import logging
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from todm.mutual_information import mutual_information_recursion

__all__ = [
    "mutual_information_recursion",
    "get_rnnt_logprobs",
    "get_rnnt_logprobs_smoothed",
    "get_rnnt_logprobs_joint",
    "get_rnnt_logprobs_pruned",
    "get_hat_logprobs_pruned",
    "rnnt_loss_simple",
    "rnnt_loss_smoothed",
    "rnnt_loss",
    "rnnt_loss_pruned",
    "get_rnnt_prune_ranges",
    "do_rnnt_pruning",
]

RNNT_TYPES = ("regular", "modified", "constrained")
LossAndGrads = Union[Tensor, Tuple[Tensor, Tuple[Tensor, Tensor]]]


def _check_lattice(S: int, T: int, rnnt_type: str, boundary: Optional[Tensor]) -> None:
    """Modified/constrained RNN-T emits at most one symbol per frame: needs T >= S."""
    if rnnt_type not in RNNT_TYPES:
        raise ValueError(f"rnnt_type must be one of {RNNT_TYPES}, got {rnnt_type!r}")
    if rnnt_type == "regular":
        return
    if boundary is None:
        if T < S:
            raise ValueError(f"rnnt_type={rnnt_type!r} needs T >= S, got T={T}, S={S}")
        return
    too_short = boundary[:, 3] < boundary[:, 2]
    if too_short.any():
        b = int(too_short.nonzero()[0, 0])
        raise ValueError(
            f"rnnt_type={rnnt_type!r} needs T >= S, but batch element {b} has "
            f"S={int(boundary[b, 2])} symbols and T={int(boundary[b, 3])} frames"
        )


def _finish_lattice(
    px_body: Tensor, py: Tensor, boundary: Optional[Tensor], rnnt_type: str
) -> Tuple[Tensor, Tensor]:
    """From px_body [B, S, T] (symbol scores per frame) to the px the recursion wants.

    Regular: append a -inf column (no symbol after the last frame), and put -inf at each
    utterance's own end frame. Constrained: a symbol is always followed by a blank.
    """
    if rnnt_type == "constrained":
        return px_body + py[:, 1:, :], py
    if rnnt_type == "modified":
        return px_body, py
    B, S, T = px_body.shape
    px = torch.cat([px_body, px_body.new_full((B, S, 1), float("-inf"))], dim=2)
    if boundary is not None:
        end_frame = boundary[:, 3].view(B, 1, 1).expand(B, S, 1)
        px = px.scatter(2, end_frame, float("-inf"))
    return px, py


def _normalizers_and_maxes(lm: Tensor, am: Tensor) -> Tuple[Tensor, ...]:
    """log sum_c exp(lm[b,s,c] + am[b,t,c]) as one matmul: [B, S+1, T]; plus the maxes
    and exp'd inputs (shifted by their max, so exp cannot overflow)."""
    am_max = am.amax(dim=2, keepdim=True)
    lm_max = lm.amax(dim=2, keepdim=True)
    am_probs = (am - am_max).exp()
    lm_probs = (lm - lm_max).exp()
    tiny = torch.finfo(am.dtype).tiny  # keeps log() finite when everything underflows
    normalizers = (lm_probs @ am_probs.transpose(1, 2) + tiny).log()
    normalizers = normalizers + lm_max + am_max.transpose(1, 2)
    return normalizers, am_max, lm_max, am_probs, lm_probs


def _check_simple_inputs(lm: Tensor, am: Tensor, symbols: Tensor) -> Tuple[int, int, int]:
    if lm.ndim != 3 or am.ndim != 3 or lm.shape[0] != am.shape[0] or lm.shape[2] != am.shape[2]:
        raise ValueError(
            f"expected lm [B, S+1, C] and am [B, T, C], got {tuple(lm.shape)}, {tuple(am.shape)}"
        )
    B, T, _ = am.shape
    S = lm.shape[1] - 1
    if symbols.shape != (B, S):
        raise ValueError(f"symbols must be [B={B}, S={S}], got {tuple(symbols.shape)}")
    return B, S, T


def get_rnnt_logprobs(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    rnnt_type: str = "regular",
    boundary: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """(px, py) of the "simple" joiner logits = lm[b, s] + am[b, t], log-normalised."""
    B, S, T = _check_simple_inputs(lm, am, symbols)
    _check_lattice(S, T, rnnt_type, boundary)
    normalizers = _normalizers_and_maxes(lm, am)[0]
    px_am = torch.gather(am.transpose(1, 2), 1, symbols.unsqueeze(2).expand(B, S, T))
    px_lm = torch.gather(lm[:, :S], 2, symbols.unsqueeze(2))  # [B, S, 1]
    px_body = px_am + px_lm - normalizers[:, :S]
    py = am[:, :, termination_symbol].unsqueeze(1) + lm[:, :, termination_symbol].unsqueeze(2)
    return _finish_lattice(px_body, py - normalizers, boundary, rnnt_type)


def get_rnnt_logprobs_smoothed(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    lm_only_scale: float = 0.1,
    am_only_scale: float = 0.1,
    boundary: Optional[Tensor] = None,
    rnnt_type: str = "regular",
) -> Tuple[Tensor, Tensor]:
    """(px, py) interpolating three models in log space: the simple joint model (weight
    1 - lm_only_scale - am_only_scale), lm alone, and am with a unigram "LM" (the mean of
    the lm's distributions over batch and positions). Keeps the simple loss from relying
    on one side only; icefall uses lm_only_scale=0.25, am_only_scale=0."""
    B, S, T = _check_simple_inputs(lm, am, symbols)
    _check_lattice(S, T, rnnt_type, boundary)
    C = am.shape[2]
    normalizers, am_max, lm_max, am_probs, lm_probs = _normalizers_and_maxes(lm, am)
    tiny = torch.finfo(lm.dtype).tiny
    lm_sums = lm_probs.sum(dim=2, keepdim=True)  # [B, S+1, 1]
    unigram = (lm_probs / lm_sums).mean(dim=(0, 1), keepdim=True) + tiny  # [1, 1, C]
    am_only_norm = (am_probs.reshape(-1, C) @ unigram.reshape(C)).reshape(B, 1, T).log()
    am_only_norm = am_only_norm + am_max.transpose(1, 2)  # [B, 1, T]
    log_unigram = unigram.log()
    lm_only_norm = lm_sums.log() + lm_max  # [B, S+1, 1]

    px_am = torch.gather(am.transpose(1, 2), 1, symbols.unsqueeze(2).expand(B, S, T))
    px_lm = torch.gather(lm[:, :S], 2, symbols.unsqueeze(2))
    px_unigram = torch.gather(log_unigram.expand(B, S, C), 2, symbols.unsqueeze(2))
    px = px_am + px_lm - normalizers[:, :S]
    px_am_only = px_am + px_unigram - am_only_norm
    px_lm_only = px_lm - lm_only_norm[:, :S]

    py_am = am[:, :, termination_symbol].unsqueeze(1)
    py_lm = lm[:, :, termination_symbol].unsqueeze(2)
    py = py_am + py_lm - normalizers
    py_am_only = py_am + log_unigram[0, 0, termination_symbol] - am_only_norm
    py_lm_only = py_lm - lm_only_norm

    combined_scale = 1.0 - lm_only_scale - am_only_scale
    # As k2: a zero weight becomes 1e-20 so that -inf scores stay -inf (-inf * 0 = NaN).
    lm_only_scale = lm_only_scale or 1e-20
    am_only_scale = am_only_scale or 1e-20
    px_body = px * combined_scale + px_lm_only * lm_only_scale + px_am_only * am_only_scale
    py = py * combined_scale + py_lm_only * lm_only_scale + py_am_only * am_only_scale
    return _finish_lattice(px_body, py, boundary, rnnt_type)


def get_rnnt_logprobs_joint(
    logits: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    rnnt_type: str = "regular",
    boundary: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """(px, py) of the full joiner output logits [B, T, S+1, C].

    Note k2's argument order here: ``rnnt_type`` before ``boundary`` (as in
    ``get_rnnt_logprobs``), unlike the losses, which take ``boundary`` first."""
    if logits.ndim != 4:
        raise ValueError(f"logits must be [B, T, S+1, C], got {tuple(logits.shape)}")
    B, T, S1, _ = logits.shape
    S = S1 - 1
    if symbols.shape != (B, S):
        raise ValueError(f"symbols must be [B={B}, S={S}], got {tuple(symbols.shape)}")
    _check_lattice(S, T, rnnt_type, boundary)
    normalizers = torch.logsumexp(logits, dim=3).permute(0, 2, 1)  # [B, S+1, T]
    index = symbols.view(B, 1, S, 1).expand(B, T, S, 1)
    px_body = torch.gather(logits, 3, index).squeeze(3).permute(0, 2, 1) - normalizers[:, :S]
    py = logits[:, :, :, termination_symbol].permute(0, 2, 1) - normalizers
    return _finish_lattice(px_body, py, boundary, rnnt_type)


def _check_pruned_inputs(logits: Tensor, symbols: Tensor, ranges: Tensor) -> int:
    """Checks logits [B, T, s_range, C], ranges [B, T, s_range] in [0, S], symbols [B, S]; returns S."""
    if logits.ndim != 4:
        raise ValueError(f"logits must be [B, T, s_range, C], got {tuple(logits.shape)}")
    B, T, s_range, _ = logits.shape
    if ranges.shape != (B, T, s_range):
        raise ValueError(
            f"ranges must be [B, T, s_range]={(B, T, s_range)}, got {tuple(ranges.shape)}"
        )
    if symbols.ndim != 2 or symbols.shape[0] != B:
        raise ValueError(f"symbols must be [B={B}, S], got {tuple(symbols.shape)}")
    S = symbols.shape[1]
    if ranges.numel():
        low, high = ranges.aminmax()
        if (low < 0) | (high > S):  # one host read
            raise ValueError(f"ranges must lie in [0, S={S}], got [{int(low)}, {int(high)}]")
    return S


def _pruned_symbol_logits(logits: Tensor, symbols: Tensor, ranges: Tensor, termination_symbol: int) -> Tensor:
    """[B, T, s_range]: the logit of the symbol that follows each kept position.

    Position s < S is followed by symbols[:, s]; position S (all emitted) by the termination
    symbol, a placeholder that the lattice drops (no symbol can follow the last one)."""
    B, T, _ = ranges.shape
    S = symbols.shape[1]
    with_end = torch.cat([symbols, symbols.new_full((B, 1), termination_symbol)], dim=1)
    pruned_symbols = torch.gather(with_end.unsqueeze(1).expand(B, T, S + 1), 2, ranges)
    return torch.gather(logits, 3, pruned_symbols.unsqueeze(3)).squeeze(3)


def _lattice_from_pruned(
    px_pruned: Tensor, py_pruned: Tensor, ranges: Tensor, S: int, boundary: Optional[Tensor], rnnt_type: str
) -> Tuple[Tensor, Tensor]:
    """Scatters scores of the kept positions [B, T, s_range] into the whole lattice, -inf
    elsewhere: px [B, S, T(+1)], py [B, S+1, T]."""
    B, T, _ = ranges.shape
    lattice = px_pruned.new_full((B, T, S + 1), float("-inf"))
    px_body = lattice.scatter(2, ranges, px_pruned)[:, :, :S].permute(0, 2, 1)
    py = lattice.scatter(2, ranges, py_pruned).permute(0, 2, 1)
    return _finish_lattice(px_body, py, boundary, rnnt_type)


def get_rnnt_logprobs_pruned(
    logits: Tensor,
    symbols: Tensor,
    ranges: Tensor,
    termination_symbol: int,
    boundary: Optional[Tensor] = None,
    rnnt_type: str = "regular",
) -> Tuple[Tensor, Tensor]:
    """(px, py) of the pruned joiner output logits [B, T, s_range, C], where
    logits[b, t, k] belongs to symbol position ranges[b, t, k]; every other lattice
    node is -inf."""
    S = _check_pruned_inputs(logits, symbols, ranges)
    _check_lattice(S, logits.shape[1], rnnt_type, boundary)
    normalizers = torch.logsumexp(logits, dim=3)  # [B, T, s_range]
    px_pruned = _pruned_symbol_logits(logits, symbols, ranges, termination_symbol) - normalizers
    py_pruned = logits[:, :, :, termination_symbol] - normalizers
    return _lattice_from_pruned(px_pruned, py_pruned, ranges, S, boundary, rnnt_type)


def get_hat_logprobs_pruned(
    logits: Tensor,
    symbols: Tensor,
    ranges: Tensor,
    termination_symbol: int,
    boundary: Optional[Tensor],
    rnnt_type: str = "regular",
) -> Tuple[Tensor, Tensor]:
    """get_rnnt_logprobs_pruned with HAT's output distribution instead of a softmax.

    With b the blank logit (termination_symbol, which must be 0 as in k2) and z_c the
    others: log P(blank) = log sigmoid(b), and log P(c) = log(1 - sigmoid(b)) +
    log softmax(z)_c, where 1 - sigmoid(b) = sigmoid(-b) and the softmax runs over the
    non-blank logits only."""
    if termination_symbol != 0:
        raise ValueError(f"HAT needs the blank (termination_symbol) to be 0, got {termination_symbol}")
    S = _check_pruned_inputs(logits, symbols, ranges)
    _check_lattice(S, logits.shape[1], rnnt_type, boundary)
    blank = logits[:, :, :, 0]
    non_blank_norm = torch.logsumexp(logits[:, :, :, 1:], dim=3) - F.logsigmoid(-blank)
    px_pruned = _pruned_symbol_logits(logits, symbols, ranges, termination_symbol) - non_blank_norm
    return _lattice_from_pruned(px_pruned, F.logsigmoid(blank), ranges, S, boundary, rnnt_type)


def _loss_from_lattice(
    px: Tensor,
    py: Tensor,
    boundary: Optional[Tensor],
    rnnt_type: str,
    delay_penalty: float,
    reduction: Optional[str],
    return_grad: bool,
) -> LossAndGrads:
    """Delay penalty (k2's formula), recursion, reduction: shared by every loss."""
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"reduction should be ('none' | 'mean' | 'sum'), given {reduction}")
    if delay_penalty > 0.0:
        # Reward symbols emitted early: +delay_penalty * ((T-1)/2 - t) on every px[:, :, t].
        B, _, T0 = px.shape
        T = T0 - 1 if rnnt_type == "regular" else T0
        if boundary is None:
            offset = torch.tensor((T - 1) / 2, dtype=px.dtype, device=px.device).expand(B)
        else:
            offset = (boundary[:, 3] - 1) / 2
        penalty = offset.view(B, 1, 1) - torch.arange(T0, device=px.device).view(1, 1, T0)
        px = px + (penalty * delay_penalty).to(px.dtype)
    if return_grad:
        scores, grads = mutual_information_recursion(px, py, boundary=boundary, return_grad=True)
    else:
        scores = mutual_information_recursion(px, py, boundary=boundary)
    if reduction == "none":
        loss = -scores
    elif reduction == "mean":
        loss = -scores.mean()
    else:
        loss = -scores.sum()
    return (loss, grads) if return_grad else loss


def rnnt_loss_simple(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    boundary: Optional[Tensor] = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: Optional[str] = "mean",
    return_grad: bool = False,
) -> LossAndGrads:
    """RNN-T loss of the additive joiner lm + am. With return_grad, also (px_grad,
    py_grad): the node occupation probabilities that get_rnnt_prune_ranges needs."""
    px, py = get_rnnt_logprobs(lm, am, symbols, termination_symbol, rnnt_type, boundary)
    return _loss_from_lattice(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad)


def rnnt_loss_smoothed(
    lm: Tensor,
    am: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    lm_only_scale: float = 0.1,
    am_only_scale: float = 0.1,
    boundary: Optional[Tensor] = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: Optional[str] = "mean",
    return_grad: bool = False,
) -> LossAndGrads:
    """rnnt_loss_simple on the smoothed lattice of get_rnnt_logprobs_smoothed."""
    px, py = get_rnnt_logprobs_smoothed(
        lm, am, symbols, termination_symbol, lm_only_scale, am_only_scale, boundary, rnnt_type
    )
    return _loss_from_lattice(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad)


def rnnt_loss(
    logits: Tensor,
    symbols: Tensor,
    termination_symbol: int,
    boundary: Optional[Tensor] = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: Optional[str] = "mean",
    return_grad: bool = False,
) -> LossAndGrads:
    """Full-lattice RNN-T loss of the joiner output logits [B, T, S+1, C]."""
    px, py = get_rnnt_logprobs_joint(logits, symbols, termination_symbol, rnnt_type, boundary)
    return _loss_from_lattice(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad)


def rnnt_loss_pruned(
    logits: Tensor,
    symbols: Tensor,
    ranges: Tensor,
    termination_symbol: int,
    boundary: Optional[Tensor] = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: Optional[str] = "mean",
    use_hat_loss: bool = False,
    return_grad: bool = False,
) -> LossAndGrads:
    """RNN-T loss on the pruned lattice: logits [B, T, s_range, C] for the symbol
    positions in ranges (from get_rnnt_prune_ranges); paths leaving it are dropped, so
    the loss is >= rnnt_loss on the same joiner. use_hat_loss: HAT's output distribution
    (get_hat_logprobs_pruned) instead of a softmax over all symbols."""
    logprobs = get_hat_logprobs_pruned if use_hat_loss else get_rnnt_logprobs_pruned
    px, py = logprobs(logits, symbols, ranges, termination_symbol, boundary, rnnt_type)
    return _loss_from_lattice(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad)


def _monotone_lower_bound(x: Tensor) -> Tensor:
    """y[..., t] = min(x[..., t:]): the largest non-decreasing sequence <= x."""
    return x.flip(-1).cummin(-1).values.flip(-1)


def _adjust_pruning_lower_bound(s_begin: Tensor, s_range: int) -> Tensor:
    """Makes window starts [B, T] non-decreasing, 0 at t=0, and rising by at most
    s_range - 1 per frame, so consecutive windows overlap and a path can get through."""
    slope = (s_range - 1) * torch.arange(s_begin.shape[1], device=s_begin.device)
    s_begin = _monotone_lower_bound(s_begin)
    return slope - _monotone_lower_bound(slope - s_begin).clamp(min=0)


def get_rnnt_prune_ranges(
    px_grad: Tensor, py_grad: Tensor, boundary: Tensor, s_range: int
) -> Tensor:
    """Per frame, the s_range consecutive symbol positions holding the most occupation
    mass (from rnnt_loss_simple/smoothed(..., return_grad=True)): ranges [B, T, s_range].

    As k2: regular lattices need s_range >= (S-1)//T + 2 (raised with a warning),
    s_range is capped at S+1, frames from t_end-1 on get the last window, and the windows
    are made monotone without gaps."""
    B, S, T1 = px_grad.shape
    T = py_grad.shape[2]
    if T1 not in (T, T + 1) or py_grad.shape != (B, S + 1, T):
        raise ValueError(
            f"px_grad {tuple(px_grad.shape)} and py_grad {tuple(py_grad.shape)} do not fit"
        )
    if boundary is None or boundary.shape != (B, 4):
        raise ValueError("get_rnnt_prune_ranges needs boundary, int64 [B, 4]")
    is_regular = T1 == T + 1
    _check_lattice(S, T, "regular" if is_regular else "modified", boundary)
    if is_regular:
        s_lens, t_lens = boundary[:, 2], boundary[:, 3].clamp(min=1)
        s_range_min = int(((s_lens - 1).div(t_lens, rounding_mode="trunc") + 2).max())
        if s_range < s_range_min:
            logging.warning(
                f"get_rnnt_prune_ranges: s_range={s_range} too small for S={s_lens.tolist()}, "
                f"T={boundary[:, 3].tolist()}; using {s_range_min}"
            )
            s_range = s_range_min
    s_range = min(s_range, S + 1)
    if s_range < (2 if is_regular and S > 0 else 1):
        raise ValueError(f"s_range={s_range} leaves no path through the pruned lattice")

    # Mass of window [s, s + s_range) at frame t, minus what flows into it from below.
    window_mass = py_grad.unfold(1, s_range, 1).sum(-1)  # [B, S+2-s_range, T]
    inflow = torch.cat([px_grad.new_zeros(B, 1, T1), px_grad], dim=1)[:, : S + 2 - s_range, :T]
    s_begin = torch.argmax(window_mass - inflow, dim=1)  # [B, T]
    frames = torch.arange(T, device=px_grad.device).view(1, T)
    last_window = (boundary[:, 2:3] - s_range + 1).clamp(min=0)
    s_begin = torch.where(frames < boundary[:, 3:4] - 1, s_begin, last_window)
    s_begin = _adjust_pruning_lower_bound(s_begin, s_range if is_regular else 2)
    return s_begin.unsqueeze(2) + torch.arange(s_range, device=px_grad.device)


def do_rnnt_pruning(am: Tensor, lm: Tensor, ranges: Tensor) -> Tuple[Tensor, Tensor]:
    """Joiner inputs on the pruned lattice: am [B, T, D] and lm [B, S+1, D] ->
    (am_pruned, lm_pruned), each [B, T, s_range, D] (am expanded, lm gathered)."""
    B, T, s_range = ranges.shape
    if am.shape[:2] != (B, T) or lm.shape[0] != B or am.shape[2] != lm.shape[2]:
        raise ValueError(
            f"am {tuple(am.shape)}, lm {tuple(lm.shape)} do not fit ranges {tuple(ranges.shape)}"
        )
    D = lm.shape[2]
    am_pruned = am.unsqueeze(2).expand(B, T, s_range, D)
    index = ranges.reshape(B, T * s_range, 1).expand(B, T * s_range, D)
    lm_pruned = torch.gather(lm, 1, index).reshape(B, T, s_range, D)
    return am_pruned, lm_pruned
