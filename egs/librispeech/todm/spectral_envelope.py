"""Random spectral envelope perturbation of log-mel features, a lhotse input transform.

Two voices saying the same words differ, beyond their formant positions (which the frequency
warp of ``todm/frequency_warp.py`` moves), in their spectral envelope: one has a steeper tilt,
more energy around 3 kHz, a duller top octave. A microphone or a room does the same. In the
log-mel domain such a filter is a curve over the mel bins added to every frame of the
utterance. Training on utterances with a random smooth curve added turns the training voices'
timbres into a continuum, without anything at decoding time (so a streaming model keeps no
per-utterance statistics, unlike cepstral mean normalisation, which removes the curve but needs
the whole utterance).

The curve is a short cosine series over the bin index ``i`` of ``F`` bins,
``c(i) = sum_k a_k cos(pi k (i + 0.5) / F)``, ``k = 1..K``, with ``a_k`` uniform in
``+- max_gain / k``: ``k = 1`` is a tilt from low to high frequencies, higher ``k`` bumps and dips
at coarser-than-formant resolution. ``max_gain`` is in the features' natural-log energy units
(1.0 is 4.3 dB).

    dataset = K2SpeechRecognitionDataset(input_transforms=[SpectralEnvelope(max_gain=1.0)])
"""

import math

import torch

from todm.frequency_warp import supervised_spans


def cosine_basis(num_components: int, num_bins: int) -> torch.Tensor:
    """[num_components, num_bins]: row ``k - 1`` is ``cos(pi k (i + 0.5) / num_bins)``."""
    k = torch.arange(1, num_components + 1, dtype=torch.float64)[:, None]
    i = torch.arange(num_bins, dtype=torch.float64)[None, :]
    return torch.cos(math.pi * k * (i + 0.5) / num_bins)


class SpectralEnvelope:
    """Add to each utterance's log-mel frames one random smooth curve over frequency.

    Called as lhotse calls its input transforms, ``transform(features [B, T, F],
    supervision_segments=[[sequence_idx, start_frame, num_frames], ...])``; only the frames of
    the supervisions change (padding stays padding). Draws from torch's global generator, as
    dropout does, so a resumed training run repeats the same curves.
    """

    def __init__(self, max_gain: float = 1.0, num_components: int = 4):
        if not max_gain > 0.0:
            raise ValueError(f"max_gain must be > 0, got {max_gain}")
        if num_components < 1:
            raise ValueError(f"num_components must be >= 1, got {num_components}")
        self.max_gain, self.num_components = max_gain, num_components

    def __repr__(self) -> str:
        return f"SpectralEnvelope(max_gain={self.max_gain}, num_components={self.num_components})"

    def curves(self, count: int, num_bins: int) -> torch.Tensor:
        """``count`` random curves [count, num_bins] of this transform's distribution."""
        scale = self.max_gain / torch.arange(1, self.num_components + 1, dtype=torch.float64)
        gains = (2 * torch.rand(count, self.num_components, dtype=torch.float64) - 1) * scale
        return gains @ cosine_basis(self.num_components, num_bins)

    def __call__(self, features: torch.Tensor, supervision_segments: torch.Tensor | None = None) -> torch.Tensor:
        spans = supervised_spans(features, supervision_segments)
        curves = self.curves(len(spans), features.shape[-1]).to(features.dtype)
        out = features.clone()
        for (seq, start, num), curve in zip(spans, curves):
            out[seq, start:start + num] += curve
        return out
