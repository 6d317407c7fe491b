"""The smoke test: ./run.sh stages 0-6 on the tiny built-in corpus, as a user runs it.

Beyond every output being there, its contents are checked against each other: checkpoints
against the model they describe, WERs recomputed from the recognitions and the corpus
references, the deployed models' WER against PyTorch's, the report against the results.
"""

import ast
import json
import shutil
from pathlib import Path

import pytest
from kaldialign import edit_distance
from lhotse import load_manifest_lazy

from conftest import run_recipe
from todm.checkpoint import load_checkpoint_file
from todm.cost import count_parameters
from todm.model import build_model
from todm.model_config import TransducerConfig
from todm.subnet import SearchSpace, SubnetSpec

SETS = ("dev", "test")  # the tiny built-in corpus decodes both
LM_METHOD = "modified_beam_search_LODR"  # the built-in preset's report tabulates its WERs
METHODS = ("greedy_search", "modified_beam_search", "modified_beam_search_lm_shallow_fusion", LM_METHOD)


@pytest.fixture(scope="module")
def finished(tiny_recipe, tmp_path_factory):
    recipe = tmp_path_factory.mktemp("smoke") / "recipe"
    shutil.copytree(tiny_recipe, recipe, symlinks=True)
    # every search (the built-in preset decodes greedy and with LODR): the smoke run checks each
    r = run_recipe(recipe, "--stage", "0", "--stop-stage", "6", "--tiny", "true",
                   "--decoding-methods", " ".join(METHODS))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return recipe, r.stdout + r.stderr


def _json(path: Path):
    return json.loads(path.read_text())


def _results(method_dir: Path) -> dict[str, dict]:
    """{spec: todm.decode results} of one decoding directory."""
    return {r["spec"]: r for r in map(_json, method_dir.glob("results-*.json"))}


def _config(checkpoint: Path) -> tuple[TransducerConfig, dict]:
    params = load_checkpoint_file(checkpoint)["params"]
    return TransducerConfig.from_dict(params["model_config"]), params


def test_every_stage_leaves_its_outputs(finished):
    recipe, log = finished
    exp = recipe / "exp"
    specs = sorted(_results(exp / "supernet" / "greedy_search"))
    for method in METHODS[1:]:
        assert sorted(_results(exp / "supernet" / method)) == specs
    assert len(specs) >= 4
    assert all((recipe / "data" / "lang_bpe_64" / f"token_lm_{n}gram.arpa").is_file() for n in (2, 8))
    baselines = sorted(p.name[len("baseline-"):] for p in exp.glob("baseline-*"))
    deployed = [str(s) for s in _config(exp / "supernet" / "epoch-2.pt")[0].search_space.deployable()]
    assert baselines == sorted([deployed[0], deployed[-1]])  # the built-in preset's "ends": smallest, largest
    for spec in baselines:
        assert list((exp / f"baseline-{spec}" / "greedy_search").glob("results-*.json"))
    for spec in specs:
        deploy = exp / "deploy" / spec
        assert len(list(deploy.glob("*.int8.onnx"))) == 3 and len(list(deploy.glob("*.onnx"))) == 6
    assert (exp / "report" / "wer_vs_params.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "exp/report/report.md" in log


def test_checkpoints_hold_the_models_they_describe(finished):
    exp = finished[0] / "exp"
    config, params = _config(exp / "supernet" / "epoch-2.pt")
    build_model(config).load_state_dict(load_checkpoint_file(exp / "supernet" / "epoch-2.pt")["model"])
    cost = _json(exp / "supernet" / "train_cost.json")
    assert params["cur_epoch"] == cost["epochs"] == 2 and cost["batches"] == params["batch_idx_train"] > 0
    assert cost["wall_seconds"] > 0 and cost["largest_params"] == count_parameters(config, config.search_space.largest())
    for spec in (p.name[len("baseline-"):] for p in exp.glob("baseline-*")):
        baseline, _ = _config(exp / f"baseline-{spec}" / "epoch-2.pt")
        assert baseline.search_space == SearchSpace.single(SubnetSpec.parse(spec))
        params_alone = sum(p.numel() for p in build_model(baseline).parameters())
        assert params_alone == count_parameters(config, SubnetSpec.parse(spec))


def _references(recipe: Path, part: str) -> dict[str, list[str]]:
    cuts = load_manifest_lazy(recipe / "data" / "fbank" / f"builtin_cuts_{part}.jsonl.gz")
    return {c.id: " ".join(s.text for s in c.supervisions).split() for c in cuts}


def _recognitions(path: Path) -> dict[str, tuple[list[str], list[str]]]:
    """{cut id: (ref, hyp)} of an icefall recogs file (two lines per cut)."""
    lines = [line.split(":\t", 1) for line in path.read_text().splitlines()]
    refs = {cut: ast.literal_eval(text[len("ref="):]) for cut, text in lines if text.startswith("ref=")}
    return {cut: (refs[cut], ast.literal_eval(text[len("hyp="):])) for cut, text in lines if text.startswith("hyp=")}


def _wer(pairs) -> float:
    return 100 * sum(edit_distance(r, h)["total"] for r, h in pairs) / sum(len(r) for r, _ in pairs)


@pytest.mark.parametrize("method", METHODS)
def test_wers_are_those_of_the_recognitions_of_every_utterance(finished, method):
    recipe = finished[0]
    for spec, result in _results(recipe / "exp" / "supernet" / method).items():
        for part in SETS:
            recogs = _recognitions(recipe / "exp" / "supernet" / method / f"recogs-{part}-{result['key']}.txt")
            references = _references(recipe, part)
            assert {cut: ref for cut, (ref, _) in recogs.items()} == references, (spec, part)
            assert result["wer"][part] == pytest.approx(_wer(recogs.values())), (spec, part)


def test_deployed_models_decode_like_pytorch_and_the_report_says_so(finished):
    exp = finished[0] / "exp"
    todm, baselines = _results(exp / "supernet" / "greedy_search"), {}
    with_lm = _results(exp / "supernet" / LM_METHOD)
    for spec in todm:
        if (exp / f"baseline-{spec}").is_dir():
            baselines.update(_results(exp / f"baseline-{spec}" / LM_METHOD))
        onnx = _json(exp / "deploy" / spec / "onnx_results.json")
        export = _json(exp / "deploy" / spec / "export.json")
        assert max(export["onnx_check_fp32"].values()) < 1e-3 and onnx["params"] == todm[spec]["params"]
        for part in SETS:  # the report's tolerance for sherpa-onnx fp32 vs PyTorch
            assert abs(onnx["wer"]["fp32"]["greedy_search"][part] - todm[spec]["wer"][part]) <= 0.5, (spec, part)
    rows = {row["spec"]: row for row in _json(exp / "report" / "report.json")["rows"]}
    report = (exp / "report" / "report.md").read_text()
    assert set(rows) == set(todm)
    assert report.startswith(f"# TODM report ({LM_METHOD}; ONNX and RTF columns: greedy_search)")
    for spec, row in rows.items():
        assert row["wer"] == with_lm[spec]["wer"] and row["rtf_pytorch"] == todm[spec]["rtf"]
        if spec not in baselines:
            assert set(row["baseline_wer"].values()) == {None} and f"| {spec} | {row['params']:,} |" in report
            continue
        assert row["baseline_wer"] == baselines[spec]["wer"]
        difference = 100 * (row["wer"]["test"] - row["baseline_wer"]["test"]) / row["baseline_wer"]["test"]
        assert row["relative_difference"]["test"] == pytest.approx(difference)
        assert f"| {spec} | {row['params']:,} |" in report


def test_rerun_skips_finished_work(finished):
    recipe, _ = finished
    before = (recipe / "exp" / "supernet" / "epoch-2.pt").stat().st_mtime
    r = run_recipe(recipe, "--stage", "1", "--stop-stage", "3", "--tiny", "true")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "nothing to do" in r.stdout + r.stderr
    assert (recipe / "exp" / "supernet" / "epoch-2.pt").stat().st_mtime == before


@pytest.mark.parametrize("args, message", [
    (["--max-durration", "3"], "invalid option --max-durration"),
    (["--tiny", "yes"], "true or false"),
    (["--stage", "0", "--stop-stage", "0", "--corpus", "nosuchcorpus"], "nosuchcorpus"),
])
def test_bad_flags_are_named(tiny_recipe, args, message):
    r = run_recipe(tiny_recipe, *args)
    assert r.returncode != 0 and message in r.stdout + r.stderr


def test_data_dir_and_corpus_options_reach_the_data_stages(tiny_recipe, tmp_path):
    recipe = tmp_path / "recipe"
    shutil.copytree(tiny_recipe, recipe, symlinks=True)
    r = run_recipe(recipe, "--stage", "0", "--stop-stage", "2", "--tiny", "true", "--data-dir", "data/more",
                   "--builtin-args", "--num-extra-train 4")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    more = recipe / "data" / "more"
    sups = load_manifest_lazy(more / "manifests" / "builtin_supervisions_train.jsonl.gz")
    default = load_manifest_lazy(recipe / "data" / "manifests" / "builtin_supervisions_train.jsonl.gz")
    assert len(list(sups)) == len(list(default)) + 4
    assert (more / "fbank" / "builtin_cuts_train.jsonl.gz").is_file() and (more / "lang_bpe_64" / "bpe.model").is_file()


@pytest.mark.parametrize("methods, orders", [
    ("greedy_search modified_beam_search", ()),
    ("greedy_search modified_beam_search_lm_shallow_fusion", (4,)),  # --lm-order 4
    ("modified_beam_search_LODR", (2, 4)),  # and the bigram it subtracts
])
def test_stage_2_trains_the_token_lms_the_decoding_methods_need(tiny_recipe, tmp_path, methods, orders):
    recipe = tmp_path / "recipe"
    shutil.copytree(tiny_recipe, recipe, symlinks=True)
    lang = recipe / "data" / "lang_bpe_64"
    for arpa in lang.glob("token_lm_*gram.arpa"):
        arpa.unlink()
    r = run_recipe(recipe, "--stage", "2", "--stop-stage", "2", "--tiny", "true", "--decoding-methods", methods,
                   "--lm-order", "4")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert sorted(p.name for p in lang.glob("token_lm_*gram.arpa")) == [f"token_lm_{n}gram.arpa" for n in orders]


@pytest.fixture(scope="module")
def streamed(tiny_recipe, tmp_path_factory):
    """The streaming run: ./run.sh --causal true, stages 3-6 without baselines, in its own exp dir."""
    recipe = tmp_path_factory.mktemp("stream") / "recipe"
    shutil.copytree(tiny_recipe, recipe, symlinks=True)
    r = run_recipe(recipe, "--stage", "3", "--stop-stage", "6", "--tiny", "true", "--causal", "true",
                   "--baselines", "false", "--exp-dir", "exp/causal", "--streaming-chunk", "4")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return recipe / "exp" / "causal"


def test_a_causal_run_deploys_and_reports_online_models(streamed):
    config, _ = _config(streamed / "supernet" / "epoch-2.pt")
    assert config.causal
    todm = _results(streamed / "supernet" / "greedy_search")
    report = _json(streamed / "report" / "report.json")
    assert report["stream_sets"] == list(SETS) and "stream WER test" in (streamed / "report" / "report.md").read_text()
    for spec in todm:
        online = _json(streamed / "deploy" / spec / "streaming" / "onnx_results.json")
        assert online["model_type"] == "lstm" and online["streaming"] is True
        checked = online["streaming_equals_offline"]
        assert checked["identical"] == checked["utterances"] > 0, (spec, checked)
        assert _json(streamed / "deploy" / spec / "streaming" / "export.json")["chunk_frames"] == 4
    rows = {row["spec"]: row for row in report["rows"]}
    assert all(row["stream_wer"]["test"] is not None and row["stream_rtf"]["fp32"] > 0 for row in rows.values())
