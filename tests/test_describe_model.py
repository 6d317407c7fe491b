"""todm.describe_model and run.sh --dry-run: the model a training command line would build."""

import json

import pytest

from conftest import make_recipe_dir, run_recipe
from todm import describe_model

# What conf/librispeech.sh describes (its model_args, vocab_size and training flags).
LIBRISPEECH_MODEL = {"vocab_size": 500, "encoder_dim": 512, "head_dim": 64, "state_dim": 32, "decoder_dim": 512,
                     "joiner_dim": 512, "dropout": 0.1,
                     "search_space": "layers=8,10,12,14,16;ffn=1024,1536,2048;heads=4,6,8"}
LIBRISPEECH_FLAGS = ["--corpus librispeech", "--num-epochs 30", "--max-duration 1000", "--use-bf16 true",
                     "--num-workers 4", "--save-every-n 4000", "--num-buckets 30", "--auto-resume true"]


def test_dry_run_of_the_librispeech_preset_builds_the_model_it_describes(tmp_path):
    recipe = make_recipe_dir(tmp_path / "recipe")
    r = run_recipe(recipe, "--config", "conf/librispeech.sh", "--stage", "3", "--stop-stage", "3",
                   "--dry-run", "true")
    assert r.returncode == 0, r.stderr[-3000:]
    command = next(line for line in r.stdout.splitlines() if line.startswith("todm.train "))
    assert all(flag in command for flag in LIBRISPEECH_FLAGS), command
    assert "--enable-spec-aug false" not in command  # the built-in CPU preset stays out
    described = json.loads(r.stdout[r.stdout.index("{", r.stdout.index(command)):])
    config = described["model_config"]
    assert {key: config[key] for key in LIBRISPEECH_MODEL} == LIBRISPEECH_MODEL
    assert described["parameters"] == described["largest"]["parameters"]  # the supernet holds its largest subnet
    assert 10e6 < described["smallest"]["parameters"] < described["largest"]["parameters"] < 100e6
    assert described["num_subnets"] == 45 and not list(recipe.glob("exp/*/*.pt"))  # nothing trained


def test_dry_run_of_the_default_run_shows_its_two_processes_of_20_s(tmp_path):
    recipe = make_recipe_dir(tmp_path / "recipe")
    r = run_recipe(recipe, "--stage", "3", "--stop-stage", "3", "--dry-run", "true")
    assert r.returncode == 0, r.stderr[-3000:]
    command = next(line for line in r.stdout.splitlines() if line.startswith("todm.train "))
    assert "--max-duration 20 " in command and "--ctc-loss-scale 2.0" in command
    assert "(launched by torchrun: 2 process(es) per node, 1 node(s))" in r.stdout
    r = run_recipe(recipe, "--stage", "3", "--stop-stage", "3", "--dry-run", "true", "--world-size", "1",
                   "--max-duration", "40")
    assert "--max-duration 40 " in r.stdout and "launched by torchrun" not in r.stdout


def test_baseline_is_its_one_architecture(capsys):
    describe_model.main(["--bpe-model", "no/bpe.model", "--vocab-size", "50", "--subnet", "L2-F144-H1"])
    described = json.loads(capsys.readouterr().out)
    assert described["search_space"] == "layers=2;ffn=144;heads=1" and described["num_subnets"] == 1
    assert described["parameters"] == described["largest"]["parameters"] == described["smallest"]["parameters"]


@pytest.mark.parametrize("flags, error, message", [
    ([], SystemExit, "--bpe-model no/bpe.model does not exist: pass --vocab-size"),
    (["--vocab-size", "50", "--subnet", "L9-F144-H1"], ValueError, "num_layers=9"),
])
def test_bad_input_is_named(flags, error, message):
    with pytest.raises(error, match=message):
        describe_model.main(["--bpe-model", "no/bpe.model", *flags])
