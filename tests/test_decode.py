"""todm.decode end to end on a tiny random supernet, random fbank cuts and a tiny BPE model."""

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import torch
from lhotse import CutSet, Features, MonoCut, SupervisionSegment
from lhotse.features.io import NumpyFilesWriter

from conftest import tiny_config
from local.train_bpe import train_sentencepiece
from local.train_token_lm import main as train_token_lm
from todm import decode
from todm.beam_search import greedy_search_batch
from todm.checkpoint import save_checkpoint
from todm.model import build_model
from todm.subnet import SearchSpace, SubnetSpec

TEXTS = ["THE CAT SAT ON THE MAT", "A DOG RAN IN THE PARK", "HELLO WORLD", "SHE SELLS SEA SHELLS",
         "GOOD MORNING TO YOU", "IT IS A SUNNY DAY"]
# fbank frames per cut: 5 is too short for the encoder, one cut is silence (log-energy floor)
NUM_FRAMES = [150, 230, 5, 300, 120, 90]


def make_bpe(lang_dir: Path, vocab_size: int = 40) -> Path:
    lang_dir.mkdir(parents=True, exist_ok=True)
    (lang_dir / "text").write_text("\n".join(TEXTS * 3) + "\n")
    train_sentencepiece(lang_dir / "text", lang_dir / "bpe.model", vocab_size, "bpe")
    return lang_dir / "bpe.model"


def make_cuts(manifest_dir: Path, corpus: str, part: str, seed: int) -> CutSet:
    """Cuts with random 80-dim features stored by lhotse; cut ids <part>-<i>."""
    rng = np.random.default_rng(seed)
    cuts = []
    with NumpyFilesWriter(manifest_dir / f"feats_{part}") as writer:
        for i, (frames, text) in enumerate(zip(NUM_FRAMES, TEXTS)):
            feats = rng.normal(-5.0, 3.0, (frames, 80)).astype(np.float32)
            if i == 4:
                feats[:] = -15.9
            cut_id, duration = f"{part}-{i}", frames / 100
            key = writer.write(cut_id, feats)
            features = Features(type="fbank", num_frames=frames, num_features=80, frame_shift=0.01,
                                sampling_rate=16000, start=0.0, duration=duration, storage_type=writer.name,
                                storage_path=str(writer.storage_path), storage_key=key, recording_id=cut_id,
                                channels=0)
            sup = SupervisionSegment(id=cut_id, recording_id=cut_id, start=0.0, duration=duration, text=text)
            cuts.append(MonoCut(id=cut_id, start=0.0, duration=duration, channel=0, features=features,
                                supervisions=[sup]))
    cut_set = CutSet.from_cuts(cuts)
    cut_set.to_file(manifest_dir / f"{corpus}_cuts_{part}.jsonl.gz")
    return cut_set


def make_tiny_exp(root: Path) -> dict[str, Path]:
    """A tiny trained-looking recipe: bpe model, dev/test cuts, exp dir with epoch-1.pt and epoch-2.pt.

    Both epochs store the same ``model_avg``, so the averaged model of --epoch 2 --avg 1 is exactly
    those weights (also returned as ``model.pt`` for independent checks).
    """
    bpe = make_bpe(root / "lang")
    vocab_size = spm.SentencePieceProcessor(model_file=str(bpe)).get_piece_size()
    manifest_dir = root / "fbank"
    manifest_dir.mkdir(parents=True)
    for seed, part in enumerate(("dev", "test")):
        make_cuts(manifest_dir, "tiny", part, seed)
    torch.manual_seed(0)
    config = tiny_config(vocab_size=vocab_size)
    model, model_avg = build_model(config), build_model(config)
    with torch.no_grad():
        model_avg.joiner.output_linear.weight.mul_(5.0)  # random weights that emit tokens often
        model_avg.joiner.output_linear.bias[0] -= 2.0
    exp_dir = root / "exp"
    for epoch, batch_idx in ((1, 10), (2, 20)):
        params = {"model_config": config.to_dict(), "batch_idx_train": batch_idx, "cur_epoch": epoch}
        save_checkpoint(exp_dir / f"epoch-{epoch}.pt", model, params, model_avg=model_avg.double())
        model_avg.float()
    torch.save(model_avg.state_dict(), root / "model.pt")
    return {"root": root, "bpe": bpe, "manifest_dir": manifest_dir, "exp_dir": exp_dir}


def base_argv(paths: dict[str, Path]) -> list[str]:
    return ["--exp-dir", str(paths["exp_dir"]), "--epoch", "2", "--avg", "1", "--bpe-model", str(paths["bpe"]),
            "--manifest-dir", str(paths["manifest_dir"]), "--corpus", "tiny", "--max-duration", "5",
            "--device", "cpu"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    return make_tiny_exp(tmp_path_factory.mktemp("decode"))


@pytest.fixture(scope="module")
def greedy_run(tiny):
    return decode.main(base_argv(tiny))


SUFFIX = "epoch-2_avg-1_use-averaged-model"


def test_every_file_and_json_field(tiny, greedy_run):
    res_dir = tiny["exp_dir"] / "greedy_search"
    specs = [r["spec"] for r in greedy_run]
    assert specs == [str(s) for s in tiny_config().search_space.deployable()]  # default: the deployable subnets
    for spec in specs:
        key = f"{spec}_{SUFFIX}"
        for test_set in ("dev", "test"):
            for kind in ("recogs", "errs", "wer-summary"):
                assert (res_dir / f"{kind}-{test_set}-{key}.txt").is_file(), (kind, test_set, key)
        result = json.loads((res_dir / f"results-{key}.json").read_text())
        for field in ("spec", "params", "macs_per_second", "wer", "sets", "rtf", "decode_seconds", "audio_seconds",
                      "method", "suffix", "num_threads", "one_at_a_time", "clock"):
            assert field in result, field
        assert result["method"] == "greedy_search" and result["suffix"] == SUFFIX and result["num_threads"] == 1
        assert result["one_at_a_time"] is True and result["clock"] == "process_time"  # as todm.sherpa_decode times
        assert set(result["wer"]) == {"dev", "test"}
        assert result["sets"]["dev"]["ref_words"] == sum(len(t.split()) for t in TEXTS)
        assert result["audio_seconds"] == pytest.approx(2 * sum(NUM_FRAMES) / 100)
        assert result["rtf"] == pytest.approx(result["decode_seconds"] / result["audio_seconds"])
        assert result["rtf"] > 0 and result["params"] > 0 and result["macs_per_second"] > 0
    params = [r["params"] for r in greedy_run]
    assert params == sorted(params) and len(set(params)) == 4
    summary = json.loads((res_dir / f"summary_{SUFFIX}.json").read_text())
    assert [r["spec"] for r in summary] == specs
    lines = (res_dir / f"wer-summary-dev-{SUFFIX}.txt").read_text().splitlines()
    assert lines[0] == "settings\tWER" and len(lines) == 5
    wers = [float(line.split("\t")[1]) for line in lines[1:]]
    assert wers == sorted(wers)
    assert list(res_dir.glob(f"log-decode-{SUFFIX}-*"))


def test_hypotheses_equal_supernet_under_spec(tiny, greedy_run):
    """Independent path: the averaged weights, the supernet run with ``spec`` (no extraction)."""
    sp = spm.SentencePieceProcessor(model_file=str(tiny["bpe"]))
    model = build_model(tiny_config(vocab_size=sp.get_piece_size())).eval()
    model.load_state_dict(torch.load(tiny["root"] / "model.pt", weights_only=True))
    cuts = CutSet.from_file(tiny["manifest_dir"] / "tiny_cuts_dev.jsonl.gz")
    spec = SubnetSpec.parse("L2-F32-H1")
    expected = {}
    with torch.no_grad():
        for cut in cuts:
            x = torch.from_numpy(cut.load_features()).unsqueeze(0)
            if x.size(1) < 9:
                expected[cut.id] = []
                continue
            enc, enc_lens = model.forward_encoder(x, torch.tensor([x.size(1)]), spec=spec)
            expected[cut.id] = sp.decode(greedy_search_batch(model, enc, enc_lens)[0]).split()
    recogs = (tiny["exp_dir"] / "greedy_search" / f"recogs-dev-L2-F32-H1_{SUFFIX}.txt").read_text().splitlines()
    hyps = {line.split(":\t")[0]: ast.literal_eval(line.split("hyp=")[1]) for line in recogs if "\thyp=" in line}
    assert hyps == expected
    assert hyps["dev-2"] == []  # 5 frames: empty hypothesis, no crash
    assert sum(map(len, hyps.values())) > 0


def test_rtf_is_timed_one_utterance_at_a_time_and_batches_decode_the_same(tiny, tmp_path, monkeypatch):
    exp = tmp_path / "exp"
    exp.mkdir()
    for epoch in (1, 2):
        shutil.copy(tiny["exp_dir"] / f"epoch-{epoch}.pt", exp)
    argv = base_argv(tiny)
    argv[1] = str(exp)
    sizes, decode_batch = [], decode.decode_batch

    def counting(model, x, *args, **kwargs):
        sizes.append(x.size(0))
        return decode_batch(model, x, *args, **kwargs)

    monkeypatch.setattr(decode, "decode_batch", counting)
    recogs = {}
    for one in ("true", "false"):
        sizes.clear()
        [result] = decode.main(argv + ["--subnets", "L2-F32-H1", "--one-at-a-time", one])
        assert result["one_at_a_time"] is (one == "true") and result["decode_seconds"] > 0
        assert (max(sizes) == 1) is (one == "true")  # --max-duration 5 batches several cuts
        recogs[one] = [(exp / "greedy_search" / f"recogs-{s}-L2-F32-H1_{SUFFIX}.txt").read_text()
                       for s in ("dev", "test")]
    assert recogs["true"] == recogs["false"]


def test_modified_beam_search_keys(tiny):
    results = decode.main(base_argv(tiny) + ["--decoding-method", "modified_beam_search", "--beam-size", "2",
                                             "--subnets", "L1-F16-H1", "--test-sets", "dev"])
    key = f"L1-F16-H1_{SUFFIX}_beam-size-2"
    res_dir = tiny["exp_dir"] / "modified_beam_search"
    assert results[0]["key"] == key and results[0]["beam_size"] == 2
    assert (res_dir / f"errs-dev-{key}.txt").is_file() and (res_dir / f"results-{key}.json").is_file()
    assert (res_dir / f"summary_{SUFFIX}_beam-size-2.json").is_file()


def test_lm_shallow_fusion_keys_and_errors(tiny):
    lm = tiny["root"] / "lang" / "token_lm_3gram.arpa"
    if not lm.is_file():
        train_token_lm(["--lang-dir", str(lm.parent), "--order", "3", "--text", str(lm.parent / "text")])
    method = "modified_beam_search_lm_shallow_fusion"
    argv = base_argv(tiny) + ["--decoding-method", method, "--beam-size", "2", "--subnets", "L1-F16-H1",
                              "--test-sets", "dev"]
    results = decode.main(argv + ["--lm", str(lm), "--lm-scale", "0.3", "--blank-penalty", "1.5"])
    key = f"L1-F16-H1_{SUFFIX}_beam-size-2_lm-scale-0.3_blank-penalty-1.5"
    assert results[0]["key"] == key and results[0]["lm"] == str(lm) and results[0]["lm_scale"] == 0.3
    assert (tiny["exp_dir"] / method / f"results-{key}.json").is_file()
    with pytest.raises(ValueError, match="needs --lm"):
        decode.main(argv)
    with pytest.raises(FileNotFoundError, match="train_token_lm.py"):
        decode.main(argv + ["--lm", str(lm.with_name("missing.arpa"))])
    with pytest.raises(ValueError, match="not greedy_search"):
        decode.main(base_argv(tiny) + ["--blank-penalty", "1"])


def test_lodr_keys_and_errors(tiny):
    lang = tiny["root"] / "lang"
    for order in (2, 3):
        if not (lang / f"token_lm_{order}gram.arpa").is_file():
            train_token_lm(["--lang-dir", str(lang), "--order", str(order), "--text", str(lang / "text")])
    lm, bigram = lang / "token_lm_3gram.arpa", lang / "token_lm_2gram.arpa"
    method = "modified_beam_search_LODR"
    argv = base_argv(tiny) + ["--decoding-method", method, "--beam-size", "2", "--subnets", "L1-F16-H1",
                              "--test-sets", "dev", "--lm", str(lm), "--lm-scale", "0.3"]
    results = decode.main(argv + ["--lodr-lm", str(bigram), "--lodr-lm-scale", "-0.2"])
    key = f"L1-F16-H1_{SUFFIX}_beam-size-2_lm-scale-0.3_lodr-lm-scale--0.2"
    assert results[0]["key"] == key and results[0]["lodr_lm"] == str(bigram)
    assert results[0]["lodr_lm_scale"] == -0.2 and results[0]["lm"] == str(lm)
    assert (tiny["exp_dir"] / method / f"results-{key}.json").is_file()
    with pytest.raises(ValueError, match="needs --lodr-lm"):
        decode.main(argv)
    with pytest.raises(FileNotFoundError, match="--lodr-lm .*missing.arpa does not exist"):
        decode.main(argv + ["--lodr-lm", str(bigram.with_name("missing.arpa"))])


@pytest.mark.parametrize("extra, error, message", [
    (["--subnets", "L1-F16-H1 L3-F16-H1"], ValueError, "num_layers=3 is not in the search space"),
    (["--subnets", "L1-F17"], ValueError, "--subnets: bad subnet spec"),
    (["--epoch", "7"], FileNotFoundError, "stage 3"),
    (["--epoch", "2", "--avg", "2"], ValueError, "needs --epoch > --avg"),
    (["--test-sets", "dev nosuchset"], FileNotFoundError, "tiny_cuts_nosuchset.jsonl.gz not found"),
])
def test_bad_input(tiny, extra, error, message):
    with pytest.raises(error, match=message):
        decode.main(base_argv(tiny) + extra)


def test_missing_exp_dir_and_mismatched_checkpoint(tiny, tmp_path):
    argv = base_argv(tiny)
    with pytest.raises(FileNotFoundError, match="stage 3"):
        decode.main(argv[:1] + [str(tmp_path / "nowhere")] + argv[2:])
    other_bpe = make_bpe(tmp_path / "lang", vocab_size=30)
    with pytest.raises(ValueError, match="has 30 tokens but .* vocab_size 40"):
        decode.main(argv + ["--bpe-model", str(other_bpe)])
    # weights of a deeper model under a config that says otherwise
    bad = tmp_path / "exp"
    deeper = SearchSpace(layers=(1, 2, 3), ffn_dims=(16, 32), heads=(1, 2))
    wide = build_model(tiny_config(vocab_size=40, search_space=deeper))
    save_checkpoint(bad / "epoch-1.pt", wide, {"model_config": tiny_config(vocab_size=40).to_dict(),
                                               "batch_idx_train": 5})
    with pytest.raises(ValueError, match="weights do not match its model_config"):
        decode.main(["--exp-dir", str(bad), "--epoch", "1", "--avg", "1", "--use-averaged-model", "false"]
                    + argv[6:])
