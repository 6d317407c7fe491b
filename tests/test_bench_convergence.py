"""bench/bench_convergence.py reads the default run's preset and the trainer's validation log."""

import importlib.util

from conftest import ROOT

spec = importlib.util.spec_from_file_location("bench_convergence", ROOT / "bench" / "bench_convergence.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_reads_the_preset_run_sh_uses_for_the_builtin_corpus():
    preset = bench.read_preset(ROOT / "conf" / "builtin.sh")
    run_sh = (ROOT / "run.sh").read_text()
    assert ". conf/builtin.sh" in run_sh
    assert preset["vocab_size"] == "64" and float(preset["max_duration"]) > 0
    assert "--use-ctc true" in " ".join(preset["preset_train_args"].split())
    assert preset["data_dir"] == "data"


def test_a_config_preset_is_completed_by_the_builtin_one_as_run_sh_does():
    default = bench.read_preset(ROOT / "conf" / "builtin.sh")
    long = bench.read_preset(ROOT / "conf" / "builtin_long.sh")
    assert long["data_dir"] == "data/long" and long["num_epochs"] == "3"
    assert long["vocab_size"] == default["vocab_size"] and long["preset_train_args"] == default["preset_train_args"]
    assert bench.bpe_model(long) == "data/long/lang_bpe_64/bpe.model"


def test_valid_loss_of_each_epoch_is_the_validation_after_it(tmp_path):
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    (log_dir / "log-train-2026-01-01").write_text(
        "x validation: largest 9.0\n"  # a mid-epoch validation (--valid-interval) is not an epoch's
        "x epoch 1 done; filtered cuts: none\nx validation: largest 1.5, smallest 2.5\n"
        "x epoch 2, batch 700, 3 utts\nx epoch 2 done; filtered cuts: none\nx validation: largest 0.75\n")
    assert bench.valid_losses(tmp_path) == {1: {"largest": 1.5, "smallest": 2.5}, 2: {"largest": 0.75}}
