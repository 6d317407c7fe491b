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
    assert preset["world_size"] == "2" and preset["max_duration"] == "20"


def test_trains_with_the_presets_processes_unless_told_otherwise(tmp_path):
    preset = bench.read_preset(ROOT / "conf" / "builtin.sh")
    args = bench.get_parser().parse_args(["--train-args", "--base-lr 0.03"])
    args.manifest_dir = tmp_path
    command = bench.train_command(args, preset, tmp_path / "exp", "L2-F144-H1", port=29999)
    assert command[:6] == ["torchrun", "--nproc-per-node", "2", "--master-port", "29999", "-m"]
    assert command[command.index("--max-duration") + 1] == "20"
    assert command[-2:] == ["--base-lr", "0.03"] and "--num-threads" not in command
    args = bench.get_parser().parse_args(["--world-size", "1", "--max-duration", "40", "--num-threads", "1"])
    args.manifest_dir = tmp_path
    command = bench.train_command(args, preset, tmp_path / "exp", None, port=29999)
    assert command[1:3] == ["-m", "todm.train"] and "--subnet" not in command
    assert command[command.index("--max-duration") + 1] == "40.0" and "--num-threads" in command


def test_a_config_preset_is_completed_by_the_builtin_one_as_run_sh_does():
    default = bench.read_preset(ROOT / "conf" / "builtin.sh")
    long = bench.read_preset(ROOT / "conf" / "builtin_long.sh")
    assert long["data_dir"] == "data/long" and long["num_epochs"] == "7"
    assert "--random-subnets deployable" in default["preset_train_args"] and long["train_args"] == ""
    assert long["vocab_size"] == default["vocab_size"]
    # the long preset differs from the default run's training flags by its spectral envelope only
    assert "--spectral-envelope 0" in default["preset_train_args"]
    assert long["preset_train_args"].replace("--spectral-envelope 1.0", "--spectral-envelope 0") == default["preset_train_args"]
    assert bench.bpe_model(long) == "data/long/lang_bpe_64/bpe.model"


def test_valid_loss_of_each_epoch_is_the_validation_after_it(tmp_path):
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    (log_dir / "log-train-2026-01-01").write_text(
        "x validation: largest 9.0\n"  # a mid-epoch validation (--valid-interval) is not an epoch's
        "x epoch 1 done; filtered cuts: none\nx validation: largest 1.5, smallest 2.5\n"
        "x epoch 2, batch 700, 3 utts\nx epoch 2 done; filtered cuts: none\nx validation: largest 0.75\n")
    assert bench.valid_losses(tmp_path) == {1: {"largest": 1.5, "smallest": 2.5}, 2: {"largest": 0.75}}
