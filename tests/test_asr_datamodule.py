import argparse

import pytest
import sentencepiece as spm
import torch
from lhotse.dataset import DynamicBucketingSampler

from todm.asr_datamodule import AsrDataModule, CutFilter, SkipFirst
from todm.subsampling import subsampled_lengths


def _data(recipe, *flags):
    parser = argparse.ArgumentParser()
    AsrDataModule.add_arguments(parser)
    args = parser.parse_args(["--manifest-dir", str(recipe / "data/fbank"), "--max-duration", "10", *flags])
    return AsrDataModule(args)


def test_skip_first_continues_the_same_epoch(tiny_recipe):
    cuts = _data(tiny_recipe).cuts("train")

    def batches(skip):
        s = DynamicBucketingSampler(cuts, max_duration=10, shuffle=True, seed=3)
        s.set_epoch(1)
        return [[c.id for c in b] for b in SkipFirst(s, skip)]

    full = batches(0)
    assert len(full) > 3 and batches(3) == full[3:]


@pytest.mark.parametrize("flag", ["--freq-warp", "--spectral-envelope"])
def test_feature_perturbations_change_training_features_only(tiny_recipe, monkeypatch, flag):
    monkeypatch.chdir(tiny_recipe)  # the manifests name their feature files relative to the recipe

    def first_batch(data, training):
        cuts = data.cuts("train")
        loader = data.train_dataloader(cuts, epoch=1, seed=0) if training else data.eval_dataloader(cuts)
        return next(iter(loader))["inputs"]

    fixed = ("--enable-spec-aug", "false", "--shuffle", "false", "--num-buckets", "2")
    plain, warped = _data(tiny_recipe, *fixed), _data(tiny_recipe, *fixed, flag, "0.1")
    assert torch.equal(first_batch(plain, training=True), first_batch(plain, training=True))
    assert not torch.equal(first_batch(plain, training=True), first_batch(warped, training=True))
    assert torch.equal(first_batch(plain, training=False), first_batch(warped, training=False))


def test_filter_counts_what_it_drops(tiny_recipe):
    sp = spm.SentencePieceProcessor(model_file=str(tiny_recipe / "data/lang_bpe_64/bpe.model"))
    cuts = list(_data(tiny_recipe).cuts("train"))
    f = CutFilter(sp, min_duration=0.0, max_duration=1e9)
    short = cuts[0].truncate(duration=0.12)  # 12 fbank frames -> 1 encoder frame, fewer than its tokens
    assert subsampled_lengths(short.num_frames) < len(sp.encode(short.supervisions[0].text))
    assert all(f(c) for c in cuts) and not f(short)
    assert f.report() == "1 (more tokens than frames)"


def test_missing_manifest_names_the_stage(tmp_path):
    parser = argparse.ArgumentParser()
    AsrDataModule.add_arguments(parser)
    data = AsrDataModule(parser.parse_args(["--manifest-dir", str(tmp_path)]))
    try:
        data.cuts("train")
    except FileNotFoundError as e:
        assert "stage 1" in str(e)
    else:
        raise AssertionError("expected FileNotFoundError")
