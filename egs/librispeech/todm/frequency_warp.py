"""Vocal tract length perturbation (VTLP) of log-mel features, a lhotse input transform.

A longer or shorter vocal tract moves every formant by the same factor: speaker B's spectrum is
speaker A's with its frequency axis stretched, ``S_B(f) = S_A(f / alpha)`` (Jaitly & Hinton,
"Vocal Tract Length Perturbation (VTLP) improves speech recognition", 2013). Training on
utterances warped by a random ``alpha`` per utterance turns a few speakers into a continuum of
them, which is what lets a model hear voices it was never trained on. Speed perturbation moves
the formants too, but only by its three factors and together with the tempo and the pitch.

The warp works on the features stage 1 stored, so it costs a linear interpolation per batch
instead of a new feature extraction: bin ``i`` of the warped utterance takes the log-energy
the original has at frequency ``f_i / alpha``, ``f_i`` being bin ``i``'s centre (read off the
mel scale between ``low_freq`` and ``high_freq``, lhotse's and Kaldi's Fbank defaults).
Frequencies past the first or the last bin take that bin's value.

    dataset = K2SpeechRecognitionDataset(input_transforms=[FrequencyWarp(max_warp=0.1)])
"""

import numpy as np
import torch
from lhotse.features.kaldi.layers import lin2mel, mel2lin


def _mel_band(num_bins: int, low_freq: float, high_freq: float) -> tuple[float, float]:
    """The band's lower edge and the spacing of the bin centres, both in mel (as lhotse's Fbank)."""
    low = lin2mel(low_freq)
    return low, (lin2mel(high_freq) - low) / (num_bins + 1)


def mel_bin_centres(num_bins: int, low_freq: float, high_freq: float) -> torch.Tensor:
    """Centre frequency (Hz) of each of ``num_bins`` triangular mel filters spanning low..high."""
    low, step = _mel_band(num_bins, low_freq, high_freq)
    return torch.from_numpy(mel2lin(low + step * np.arange(1, num_bins + 1)))


def warp_source_positions(alpha: torch.Tensor, num_bins: int, low_freq: float, high_freq: float) -> torch.Tensor:
    """For each factor of ``alpha`` [N], the fractional bin index [N, num_bins] of the original
    utterance that each bin of the warped one reads (``f_i / alpha`` on the mel bin axis)."""
    low, step = _mel_band(num_bins, low_freq, high_freq)
    centres = mel_bin_centres(num_bins, low_freq, high_freq).numpy()
    source_mel = lin2mel(centres[None, :] / alpha.double().numpy()[:, None])
    return torch.from_numpy((source_mel - low) / step - 1.0).clamp(0, num_bins - 1)


def warp_features(features: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Read ``features`` [T, F] at fractional bin ``positions`` [F], interpolating linearly."""
    below = positions.floor().long().clamp(max=features.shape[-1] - 2)
    frac = (positions - below).to(features.dtype)
    return features[:, below] * (1 - frac) + features[:, below + 1] * frac


def supervised_spans(features: torch.Tensor, supervision_segments: torch.Tensor | None) -> list[list[int]]:
    """``[sequence_idx, start_frame, num_frames]`` of each supervision of a batch [B, T, F], as lhotse
    passes them to an input transform; without them, every whole sequence."""
    if supervision_segments is None:
        return [[i, 0, features.shape[1]] for i in range(features.shape[0])]
    return supervision_segments.tolist()


class FrequencyWarp:
    """Stretch each utterance's frequency axis by a factor drawn uniformly in 1 +- ``max_warp``.

    Called as lhotse calls its input transforms, ``transform(features [B, T, F],
    supervision_segments=[[sequence_idx, start_frame, num_frames], ...])``; only the frames of
    the supervisions change (padding stays padding). Draws from torch's global generator, as
    dropout does, so a resumed training run repeats the same warps.
    """

    def __init__(self, max_warp: float = 0.1, low_freq: float = 20.0, high_freq: float = 7600.0):
        if not 0.0 < max_warp < 1.0:
            raise ValueError(f"max_warp must be in (0, 1), got {max_warp}")
        if not 0.0 < low_freq < high_freq:
            raise ValueError(f"need 0 < low_freq < high_freq, got {low_freq}, {high_freq}")
        self.max_warp, self.low_freq, self.high_freq = max_warp, low_freq, high_freq

    def __repr__(self) -> str:
        return f"FrequencyWarp(max_warp={self.max_warp}, low_freq={self.low_freq}, high_freq={self.high_freq})"

    def __call__(self, features: torch.Tensor, supervision_segments: torch.Tensor | None = None) -> torch.Tensor:
        spans = supervised_spans(features, supervision_segments)
        alpha = 1.0 + (2 * torch.rand(len(spans)) - 1) * self.max_warp
        positions = warp_source_positions(alpha, features.shape[-1], self.low_freq, self.high_freq)
        out = features.clone()
        for (seq, start, num), pos in zip(spans, positions):
            out[seq, start:start + num] = warp_features(features[seq, start:start + num], pos)
        return out

