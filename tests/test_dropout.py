import pytest
import torch

from todm.dropout import dropout, keep_mask


def test_keep_mask_rate_and_independence():
    torch.manual_seed(0)
    for p in (0.05, 0.1, 0.37):
        m = keep_mask(torch.Size([400, 1001]), p)
        assert m.shape == (400, 1001) and m.dtype == torch.bool
        assert m.float().mean().item() == pytest.approx(1 - p, abs=2e-3)
        # neighbours (the four elements cut from one 64-bit draw) are independent
        pair = (m[:, :-1] & m[:, 1:]).float().mean().item()
        assert pair == pytest.approx((1 - p) ** 2, abs=3e-3)


def test_dropout_expectation_gradient_and_modes():
    torch.manual_seed(0)
    x = torch.randn(300, 500, requires_grad=True)
    y = dropout(x, 0.2)
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / 0.8, rtol=1e-3, atol=1e-6)
    assert 1 - kept.float().mean().item() == pytest.approx(0.2, abs=3e-3)
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / 0.8, rtol=1e-3, atol=1e-6)
    assert dropout(x, 0.2, training=False) is x and dropout(x, 0.0) is x
    with pytest.raises(ValueError, match="dropout probability"):
        dropout(x, 1.0)


def test_dropout_follows_the_torch_seed():
    x = torch.randn(50, 60)
    torch.manual_seed(3)
    a = dropout(x, 0.3)
    torch.manual_seed(3)
    torch.testing.assert_close(a, dropout(x, 0.3))
    assert not torch.equal(a, dropout(x, 0.3))
