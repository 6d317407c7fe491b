"""Lhotse data loading for training and decoding (icefall's ``asr_datamodule.py``, slimmed).

Cuts come from stage 1 as ``<manifest-dir>/<corpus>_cuts_<part>.jsonl.gz`` (precomputed
80-dim fbank). Training batches are built by lhotse's DynamicBucketingSampler (rank-aware
under torch.distributed) with SpecAugment and vocal tract length perturbation (``--freq-warp``);
utterances the transducer cannot learn (too short, too long, or with more tokens than encoder
frames) are filtered and counted.
"""

import argparse
import logging
from pathlib import Path
from typing import Iterator

import torch
from lhotse import CutSet, load_manifest_lazy
from lhotse.cut import Cut
from lhotse.dataset import DynamicBucketingSampler, K2SpeechRecognitionDataset, SpecAugment
from torch.utils.data import DataLoader

from todm.frequency_warp import FrequencyWarp
from todm.spectral_envelope import SpectralEnvelope
from todm.subsampling import subsampled_lengths
from todm.utils import str2bool


class CutFilter:
    """Keeps cuts of min..max seconds whose token count fits the encoder frames; counts the rest."""

    def __init__(self, sp, min_duration: float, max_duration: float):
        self.sp, self.min_duration, self.max_duration = sp, min_duration, max_duration
        self.removed: dict[str, int] = {}

    def _drop(self, reason: str, cut: Cut) -> bool:
        self.removed[reason] = self.removed.get(reason, 0) + 1
        logging.debug(f"dropping cut {cut.id}: {reason}")
        return False

    def __call__(self, cut: Cut) -> bool:
        if not self.min_duration <= cut.duration <= self.max_duration:
            return self._drop("duration", cut)
        text = " ".join(s.text or "" for s in cut.supervisions).strip()
        if not text:
            return self._drop("empty transcript", cut)
        if subsampled_lengths(cut.num_frames) < len(self.sp.encode(text)):
            return self._drop("more tokens than frames", cut)
        return True

    def report(self) -> str:
        return ", ".join(f"{n} ({reason})" for reason, n in self.removed.items()) or "none"


class SkipFirst:
    """Iterates a sampler from its ``skip``-th batch: exact mid-epoch resume, no features loaded."""

    def __init__(self, sampler: DynamicBucketingSampler, skip: int):
        self.sampler, self.skip = sampler, skip

    def __iter__(self) -> Iterator[CutSet]:
        # A lhotse sampler restarts its epoch on every iter() call: call next() on it only.
        it = iter(self.sampler)
        for _ in range(self.skip):
            next(it, None)
        self.skip = 0
        while True:
            try:
                yield next(it)
            except StopIteration:
                return


class AsrDataModule:
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("data", "lhotse data loading")
        g.add_argument("--manifest-dir", type=Path, default=Path("data/fbank"),
                       help="where stage 1 wrote <corpus>_cuts_<part>.jsonl.gz")
        g.add_argument("--corpus", type=str, default="builtin", help="prefix of the cut manifests")
        g.add_argument("--train-part", type=str, default="train")
        g.add_argument("--valid-part", type=str, default="dev")
        g.add_argument("--max-duration", type=float, default=200.0, help="seconds of audio per batch")
        g.add_argument("--num-buckets", type=int, default=10)
        g.add_argument("--shuffle", type=str2bool, default=True)
        g.add_argument("--num-workers", type=int, default=0,
                       help="dataloader workers; 0 keeps mid-epoch resume bit-exact")
        g.add_argument("--enable-spec-aug", type=str2bool, default=True)
        g.add_argument("--spec-aug-time-warp-factor", type=int, default=80)
        g.add_argument("--freq-warp", type=float, default=0.0,
                       help="vocal tract length perturbation: stretch each training utterance's frequency "
                       "axis by a random factor in 1 +- this (0: off; todm/frequency_warp.py)")
        g.add_argument("--spectral-envelope", type=float, default=0.0,
                       help="add to each training utterance's log-mel frames a random smooth curve over "
                       "frequency, its tilt up to +- this in log energy (0: off; todm/spectral_envelope.py)")
        g.add_argument("--min-utt-duration", type=float, default=0.5)
        g.add_argument("--max-utt-duration", type=float, default=20.0)

    def __init__(self, args: argparse.Namespace):
        self.args = args

    def cuts(self, part: str) -> CutSet:
        path = self.args.manifest_dir / f"{self.args.corpus}_cuts_{part}.jsonl.gz"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run stage 1 (./run.sh --stage 1 --stop-stage 1) "
                                    f"or check --manifest-dir/--corpus")
        return load_manifest_lazy(path)

    def train_dataloader(self, cuts: CutSet, epoch: int, seed: int, skip_batches: int = 0) -> DataLoader:
        a = self.args
        transforms = [FrequencyWarp(a.freq_warp)] if a.freq_warp > 0 else []
        if a.spectral_envelope > 0:
            transforms.append(SpectralEnvelope(a.spectral_envelope))
        if a.enable_spec_aug:
            transforms.append(SpecAugment(time_warp_factor=a.spec_aug_time_warp_factor,
                                          num_frame_masks=10, features_mask_size=27,
                                          num_feature_masks=2, frames_mask_size=100))
        dataset = K2SpeechRecognitionDataset(input_transforms=transforms, return_cuts=True)
        sampler = DynamicBucketingSampler(cuts, max_duration=a.max_duration, shuffle=a.shuffle,
                                          num_buckets=a.num_buckets, drop_last=False, seed=seed,
                                          buffer_size=a.num_buckets * 2000)
        sampler.set_epoch(epoch)
        # Its own generator: creating the iterator must not draw from the global RNG, or a
        # resumed run would see different dropout/SpecAugment draws than an uninterrupted one.
        return DataLoader(dataset, sampler=SkipFirst(sampler, skip_batches), batch_size=None,
                          num_workers=a.num_workers, persistent_workers=False,
                          generator=torch.Generator().manual_seed(seed + epoch))

    def eval_dataloader(self, cuts: CutSet) -> DataLoader:
        dataset = K2SpeechRecognitionDataset(return_cuts=True)
        sampler = DynamicBucketingSampler(cuts, max_duration=self.args.max_duration, shuffle=False,
                                          num_buckets=min(self.args.num_buckets, 4))
        return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=self.args.num_workers,
                          generator=torch.Generator().manual_seed(0))


def batch_to_tensors(batch: dict, sp, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    """(features [B,T,80], lengths [B], token ids per utterance) from a lhotse batch."""
    sup = batch["supervisions"]
    x = batch["inputs"].to(device)
    x_lens = sup["num_frames"].to(device)
    y = sp.encode(list(sup["text"]))
    return x, x_lens, y
