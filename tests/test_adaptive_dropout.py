import pytest

from todm.adaptive_dropout import DropoutRule


def test_rate_scales_with_size():
    rule = DropoutRule(p_max=0.2, gamma=1.0)
    assert rule.rate(100, 100) == pytest.approx(0.2)
    assert rule.rate(50, 100) == pytest.approx(0.1)
    assert DropoutRule(p_max=0.2, gamma=2.0).rate(50, 100) == pytest.approx(0.05)


def test_off_means_constant():
    assert DropoutRule(p_max=0.2, adaptive=False).rate(10, 100) == pytest.approx(0.2)


def test_bad_values_are_named():
    with pytest.raises(ValueError, match="p_max"):
        DropoutRule(p_max=1.5)
    with pytest.raises(ValueError, match="parameters"):
        DropoutRule().rate(200, 100)
