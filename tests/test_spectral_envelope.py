import pytest
import torch

from todm.spectral_envelope import SpectralEnvelope, cosine_basis

BINS = 80


def test_first_component_is_a_tilt_and_every_component_averages_to_zero():
    basis = cosine_basis(4, BINS)
    assert basis[0, 0] > 0.99 and basis[0, -1] < -0.99 and (basis[0].diff() < 0).all()
    assert torch.allclose(basis.mean(dim=1), torch.zeros(4, dtype=basis.dtype), atol=1e-12)


def test_curves_stay_within_the_sum_of_the_component_bounds():
    torch.manual_seed(0)
    curves = SpectralEnvelope(max_gain=0.5, num_components=3).curves(2000, BINS)
    bound = 0.5 * (1 + 1 / 2 + 1 / 3)
    assert curves.abs().max() <= bound
    # the tilt reaches most of its range: the curves are not all flat
    tilt = curves[:, 0] - curves[:, -1]
    assert tilt.abs().max() > 0.8 and tilt.mean().abs() < 0.05


def test_every_frame_of_an_utterance_gets_the_same_curve_and_padding_stays():
    torch.manual_seed(1)
    features = torch.randn(2, 30, BINS)
    features[1, 20:] = -23.0  # lhotse's padding value for log-mel features
    segments = torch.tensor([[0, 0, 30], [1, 0, 20]])
    out = SpectralEnvelope(max_gain=1.0)(features, supervision_segments=segments)
    added = out - features
    assert torch.equal(out[1, 20:], features[1, 20:])
    assert torch.allclose(added[0], added[0, :1].expand(30, -1), atol=1e-6)
    assert torch.allclose(added[1, :20], added[1, :1].expand(20, -1), atol=1e-6)
    assert not torch.allclose(added[0, 0], added[1, 0])


def test_draws_are_repeatable_from_the_global_seed():
    features = torch.randn(2, 10, BINS)
    torch.manual_seed(3)
    first = SpectralEnvelope()(features)
    torch.manual_seed(3)
    assert torch.equal(first, SpectralEnvelope()(features))


@pytest.mark.parametrize("kwargs", [{"max_gain": 0.0}, {"max_gain": -1.0}, {"num_components": 0}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        SpectralEnvelope(**kwargs)
