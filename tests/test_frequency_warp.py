import pytest
import torch

from todm.frequency_warp import FrequencyWarp, mel_bin_centres, warp_features, warp_source_positions

BINS, LOW, HIGH = 80, 20.0, 7600.0


def test_bin_centres_are_evenly_spaced_on_the_mel_scale_inside_the_band():
    centres = mel_bin_centres(BINS, LOW, HIGH)
    mels = 1127.0 * torch.log1p(centres / 700.0)
    steps = mels.diff()
    assert torch.allclose(steps, steps[0].expand_as(steps))
    assert LOW < centres[0] < centres[-1] < HIGH


def test_no_warp_reads_every_bin_in_place():
    positions = warp_source_positions(torch.tensor([1.0]), BINS, LOW, HIGH)[0]
    assert torch.allclose(positions, torch.arange(BINS, dtype=positions.dtype))


def test_a_stretched_spectrum_moves_a_formant_up_by_the_factor():
    # A peak at the bin centred near 1 kHz must land near 1.1 kHz after a warp of 1.1.
    centres = mel_bin_centres(BINS, LOW, HIGH)
    source = int((centres - 1000).abs().argmin())
    features = torch.zeros(1, BINS, dtype=torch.float64)
    features[0, source] = 1.0
    warped = warp_features(features, warp_source_positions(torch.tensor([1.1]), BINS, LOW, HIGH)[0])
    peak_hz = float((warped[0] * centres).sum() / warped[0].sum())
    assert peak_hz == pytest.approx(1.1 * float(centres[source]), rel=0.02)


def test_only_supervised_frames_change_and_padding_stays():
    torch.manual_seed(0)
    features = torch.randn(2, 40, BINS)
    features[1, 25:] = -23.0  # lhotse's padding value for log-mel features
    segments = torch.tensor([[0, 0, 40], [1, 0, 25]])
    out = FrequencyWarp(max_warp=0.2)(features, supervision_segments=segments)
    assert out.shape == features.shape
    assert torch.equal(out[1, 25:], features[1, 25:])
    assert not torch.allclose(out[0], features[0]) and not torch.allclose(out[1, :25], features[1, :25])


def test_warp_keeps_values_within_the_range_of_the_input():
    torch.manual_seed(1)
    features = torch.randn(3, 10, BINS)
    out = FrequencyWarp(max_warp=0.15)(features)
    assert out.min() >= features.min() and out.max() <= features.max()


def test_draws_are_repeatable_from_the_global_seed():
    features = torch.randn(2, 10, BINS)
    torch.manual_seed(3)
    first = FrequencyWarp(0.1)(features)
    torch.manual_seed(3)
    assert torch.equal(first, FrequencyWarp(0.1)(features))


@pytest.mark.parametrize("kwargs", [{"max_warp": 0.0}, {"max_warp": 1.0}, {"low_freq": 8000.0}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        FrequencyWarp(**kwargs)
