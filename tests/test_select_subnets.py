"""Subnet selection under budgets: pure pieces on hand-made numbers, then end to end on the tiny exp."""

import json
import random

import pytest

from conftest import tiny_config
from test_decode import base_argv, make_tiny_exp
from todm import decode, select_subnets
from todm.cost import count_parameters
from todm.select_subnets import Budget, candidate_specs, choose, parse_budgets, pareto_front

CANDIDATES = [  # spec, params, latency, wer: C is dominated by B, E is dominated by D on latency only
    {"spec": "A", "params": 100, "latency": 0.01, "wer": 30.0},
    {"spec": "B", "params": 200, "latency": 0.02, "wer": 20.0},
    {"spec": "C", "params": 300, "latency": 0.03, "wer": 25.0},
    {"spec": "D", "params": 400, "latency": 0.02, "wer": 10.0},
    {"spec": "E", "params": 500, "latency": 0.05, "wer": 10.0},
]


def test_parse_budgets():
    assert parse_budgets("params:1.5e6  latency:0.05") == [Budget("params", 1.5e6), Budget("latency", 0.05)]
    assert parse_budgets("") == []
    for bad, message in (("flops:3", "must look like"), ("params", "must look like"), ("params:abc", "not a number"),
                         ("latency:0", "must be positive")):
        with pytest.raises(ValueError, match=f"--budgets: '{bad}'.*{message}"):
            parse_budgets(bad)


def test_pareto_and_choice():
    assert pareto_front(CANDIDATES, "params") == ["A", "B", "D"]
    assert pareto_front(CANDIDATES, "latency") == ["A", "D"]  # D is as fast as B and better
    assert choose(CANDIDATES, Budget("params", 350))["spec"] == "B"
    assert choose(CANDIDATES, Budget("params", 1e9))["spec"] == "D"  # E ties on WER but costs more
    assert choose(CANDIDATES, Budget("latency", 0.015))["spec"] == "A"
    none = choose(CANDIDATES, Budget("latency", 0.001))
    assert none["spec"] is None and "cheapest is A with latency 0.01" in none["message"]


def test_candidate_specs():
    config = tiny_config()
    every = config.search_space.enumerate()
    assert candidate_specs(config, 0, 1) == every
    some = candidate_specs(config, 4, seed=3)
    assert len(some) == 4 and len(set(some)) == 4 and set(some) <= set(every)
    assert config.search_space.smallest() in some and config.search_space.largest() in some
    assert candidate_specs(config, 4, seed=3) == some
    assert len({tuple(candidate_specs(config, 4, seed=s)) for s in range(10)}) > 1


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_exp(tmp_path_factory.mktemp("select"))


def test_end_to_end(tiny, capsys):
    config = tiny_config(vocab_size=40)
    sizes = sorted(count_parameters(config, s) for s in config.search_space.enumerate())
    middle = (sizes[3] + sizes[4]) / 2
    argv = base_argv(tiny) + ["--budgets", f"params:{middle} params:1e9 latency:1e-9 latency:100"]
    selection = select_subnets.main(argv)
    path = tiny["exp_dir"] / "selection_epoch-2_avg-1_use-averaged-model.json"
    assert json.loads(path.read_text()) == selection
    candidates = {c["spec"]: c for c in selection["candidates"]}
    assert len(candidates) == 8 and selection["num_threads"] == 1 and selection["device"] == "cpu"
    assert all(c["latency"] > 0 for c in candidates.values())

    small, large, too_fast, slow = selection["budgets"]
    within = [c for c in candidates.values() if c["params"] <= middle]
    assert len(within) == 4 and small["spec"] in {c["spec"] for c in within}
    assert small["wer"] == min(c["wer"] for c in within)
    assert large["wer"] == min(c["wer"] for c in candidates.values()) == slow["wer"]
    assert too_fast["spec"] is None and "no evaluated subnet meets latency:1e-09" in too_fast["message"]
    front = [candidates[s] for s in selection["pareto"]["params"]]
    assert [c["params"] for c in front] == sorted(c["params"] for c in front)
    assert [c["wer"] for c in front] == sorted((c["wer"] for c in front), reverse=True)
    out = capsys.readouterr().out
    assert "latency:1e-09" in out and "selected subnets: " + small["spec"] in out

    # the same WER as todm.decode gives for that subnet on dev
    spec = random.Random(0).choice(sorted(candidates))
    decoded = decode.main(base_argv(tiny) + ["--subnets", spec, "--test-sets", "dev"])
    assert decoded[0]["wer"]["dev"] == pytest.approx(candidates[spec]["wer"])


def test_impossible_params_budget_fails_before_decoding(tiny):
    with pytest.raises(ValueError, match=r"budget params:10 is impossible: the smallest subnet .* L1-F16-H1"):
        select_subnets.main(base_argv(tiny) + ["--budgets", "params:10"])
