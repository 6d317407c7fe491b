"""In-place alpha-divergence knowledge distillation (AlphaNet, arXiv 2102.07954), per lattice node.

TODM's second technique. The largest subnet (teacher, detached) and each smaller subnet
(student) produce a joiner distribution at every node (t, s) of the *teacher's* pruned RNN-T
lattice. At each node we take AlphaNet's adaptive loss::

    D_a(p||q) = 1/(a(a-1)) * sum_i q_i * ((p_i/q_i)^a - 1)      p = teacher, q = student
    loss      = max(D_{a-}(p||q), D_{a+}(p||q))                a- = -1, a+ = +1 by default

a = +1 is KL(p||q) (mass-covering: punishes a student that is over-confident where the teacher
is not); a = -1 is half the chi^2(q||p) (mode-seeking: punishes a student that spreads mass
where the teacher has none). Taking the larger one per node corrects whichever way the student
is wrong. The gradient is AlphaNet's: -(1/a) * sum_i q_i * clip(w_i^a, 0, iw_clip) * grad log q_i
with w = p/q; the importance ratio is clipped (default 5) for stability, the KL branch is not.

How the node losses are combined is our documented choice (TODM's body is not available): a
uniform mean over the prune_range nodes of each valid frame, summed over frames and
utterances, so the KD term has the same per-frame scale as the summed transducer losses.
"""

import math

import torch


def _alpha_branch(log_q: torch.Tensor, log_p: torch.Tensor, alpha: float, iw_clip: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(value, surrogate) of D_alpha(p||q) over the last dim; only ``log_q`` carries gradient.

    ``value`` is the divergence itself (for logging and the max); ``surrogate`` is a tensor
    whose gradient w.r.t. the student logits is AlphaNet's clipped gradient.
    """
    q = log_q.detach().exp()
    log_w = log_p - log_q.detach()
    log_clip = math.log(iw_clip)
    if abs(alpha - 1.0) < 1e-3:  # forward KL: sum p log(p/q), gradient -sum p grad log q
        p = log_p.exp()
        value = (p * log_w).sum(-1)
        surrogate = -(p * log_q).sum(-1)
    elif abs(alpha) < 1e-3:  # reverse KL: sum q log(q/p)
        value = -(q * log_w).sum(-1)
        rho = 1.0 - log_w.clamp(max=log_clip)  # ratio w clipped
        surrogate = (q * rho * log_q).sum(-1)
    else:
        # w^alpha, clipped at iw_clip; computed in log space so q -> 0 cannot overflow.
        iw = torch.exp((alpha * log_w).clamp(max=log_clip))
        value = (q * (iw - 1.0)).sum(-1) / (alpha * (alpha - 1.0))
        surrogate = -(q * iw * log_q).sum(-1) / alpha
    return value, surrogate


def adaptive_alpha_divergence(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    alpha_min: float = -1.0,
    alpha_max: float = 1.0,
    iw_clip: float = 5.0,
) -> torch.Tensor:
    """Per-node AlphaNet loss: max over {alpha_min, alpha_max}, gradient of the winner.

    Args:
      student_logits: [..., V] unnormalised joiner outputs of the student.
      teacher_logits: [..., V] of the teacher; detached here (no gradient reaches it).
    Returns:
      [...] loss per node. Its value is max(D_{alpha_min}, D_{alpha_max}); its gradient
      w.r.t. ``student_logits`` is the clipped AlphaNet gradient of the larger branch.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student {tuple(student_logits.shape)} and teacher "
                         f"{tuple(teacher_logits.shape)} logits differ in shape")
    log_q = student_logits.float().log_softmax(-1)
    log_p = teacher_logits.detach().float().log_softmax(-1)
    v_min, s_min = _alpha_branch(log_q, log_p, alpha_min, iw_clip)
    v_max, s_max = _alpha_branch(log_q, log_p, alpha_max, iw_clip)
    use_min = v_min > v_max
    value = torch.where(use_min, v_min, v_max)
    surrogate = torch.where(use_min, s_min, s_max)
    return surrogate + (value - surrogate).detach()


def pruned_lattice_mask(ranges: torch.Tensor, boundary: torch.Tensor) -> torch.Tensor:
    """[B, T, R] bool: which nodes of a pruned lattice are real (t < T_b and s <= S_b)."""
    B, T, _ = ranges.shape
    t = torch.arange(T, device=ranges.device)
    valid_t = t[None, :] < boundary[:, 3:4]
    valid_s = ranges <= boundary[:, 2, None, None]
    return valid_t[:, :, None] & valid_s


def lattice_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    ranges: torch.Tensor,
    boundary: torch.Tensor,
    alpha_min: float = -1.0,
    alpha_max: float = 1.0,
    iw_clip: float = 5.0,
) -> torch.Tensor:
    """Summed KD loss over a pruned lattice (see the module docstring for the weighting).

    Args:
      student_logits, teacher_logits: [B, T, R, V] joiner outputs on the same nodes.
      ranges: [B, T, R] symbol positions of the nodes (the teacher's prune ranges).
      boundary: [B, 4] k2 boundary (s_begin, t_begin, s_end, t_end).
    """
    node_loss = adaptive_alpha_divergence(student_logits, teacher_logits, alpha_min, alpha_max, iw_clip)
    mask = pruned_lattice_mask(ranges, boundary)
    return (node_loss * mask).sum() / ranges.shape[-1]
