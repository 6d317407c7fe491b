import torch

from todm.alpha_divergence import adaptive_alpha_divergence, lattice_kd_loss, pruned_lattice_mask


def amari(p: torch.Tensor, q: torch.Tensor, alpha: float) -> torch.Tensor:
    """D_alpha(p||q) = 1/(a(a-1)) sum(p^a q^(1-a) - q), written independently of the module."""
    return ((p**alpha * q ** (1 - alpha)) - q).sum(-1) / (alpha * (alpha - 1))


def test_value_is_max_of_the_two_divergences():
    torch.manual_seed(0)
    s, t = torch.randn(6, 11, dtype=torch.float64), torch.randn(6, 11, dtype=torch.float64)
    p, q = t.softmax(-1), s.softmax(-1)
    kl = (p * (p.log() - q.log())).sum(-1)
    chi = amari(p, q, -1.0)
    got = adaptive_alpha_divergence(s, t, iw_clip=1e9)
    torch.testing.assert_close(got, torch.maximum(kl, chi).float(), rtol=1e-5, atol=1e-6)


def test_gradient_matches_true_divergence_when_unclipped():
    torch.manual_seed(1)
    t = torch.randn(5, 7, dtype=torch.float64)
    for alpha_min in (-1.0, -0.5):
        s = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
        got = adaptive_alpha_divergence(s, t, alpha_min=alpha_min, iw_clip=1e9).sum()
        (g_got,) = torch.autograd.grad(got, s)
        s2 = s.detach().clone().requires_grad_(True)
        p, q = t.softmax(-1), s2.softmax(-1)
        both = torch.stack([amari(p, q, alpha_min), (p * (p.log() - q.log())).sum(-1)])
        (g_ref,) = torch.autograd.grad(both.max(0).values.sum(), s2)
        torch.testing.assert_close(g_got.double(), g_ref, rtol=1e-4, atol=1e-6)


def test_clipping_bounds_the_gradient_and_zero_when_equal():
    t = torch.tensor([[10.0, -10.0, 0.0]])
    s = torch.tensor([[-10.0, 10.0, 0.0]], requires_grad=True)
    loss = adaptive_alpha_divergence(s, t, iw_clip=5.0).sum()
    loss.backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().max() < 10
    same = torch.randn(3, 4)
    assert adaptive_alpha_divergence(same, same).abs().max() < 1e-5


def test_lattice_loss_ignores_padding_nodes():
    torch.manual_seed(2)
    B, T, R, V = 2, 4, 3, 5
    ranges = torch.arange(R).expand(B, T, R).clone()
    boundary = torch.tensor([[0, 0, 2, 4], [0, 0, 1, 2]])
    mask = pruned_lattice_mask(ranges, boundary)
    assert mask[0].all()  # S=2, T=4: every node of utterance 0 is real
    assert mask[1, 2:].any().item() is False and mask[1, :2, 2].any().item() is False
    s, t = torch.randn(B, T, R, V), torch.randn(B, T, R, V)
    base = lattice_kd_loss(s, t, ranges, boundary)
    s2 = s.clone()
    s2[1, 3] += 100.0  # a padded frame of utterance 1
    torch.testing.assert_close(lattice_kd_loss(s2, t, ranges, boundary), base)
