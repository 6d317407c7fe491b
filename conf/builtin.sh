# CPU preset of the built-in offline corpus: the default run (./run.sh). run.sh sources this file
# when --corpus is builtin, before its generic defaults; every value is a default only (":="), so
# a command-line option (--num-epochs 3) or a --config file wins. bench/bench_convergence.py
# reads the same file, so its learning curves use the default run's data, batches and flags.
: "${train_parts:=train}" "${dev_parts:=dev}" "${test_parts:=dev test}" "${vocab_size:=256}"
# The CPU schedule: ~770 steps in all, 2 epochs of the speed-perturbed set (3 x 1.3 h), what
# fits the 30-minute run with the five baselines (3 epochs: an estimated ~36 min on 2 cores).
# Small batches (40 s: more steps per hour of audio) and an auxiliary CTC loss get the
# transducer out of its early plateau (blank/LM-only outputs) within this budget. At ~1000
# steps the model under-fits, so SpecAugment is off (the largest subnet trained alone for ~1100
# steps: 74.9% dev WER with SpecAugment and dropout 0.1, 61.9% with neither, 58.3% adding speed
# perturbation). icefall's warm-ups (500 lr batches, 2000 loss batches) are scaled down. The
# model changes fast to the end, so the last epoch is not averaged with earlier ones.
# One random subnet per sandwich step (largest + 1 random + smallest) keeps the supernet job
# near half the baselines' cost here; the flag's default (and the LibriSpeech preset) is 2.
: "${num_epochs:=2}" "${max_duration:=40}" "${avg:=1}" "${perturb_speed:=true}"
# Baselines of the smallest and the largest deployed spec only (the report estimates the cost of
# the others from them, so the train-once ratio still compares against every deployed spec).
: "${baseline_subnets:=ends}"
preset_train_args="--warmup-batches 100 --lr-batches 1000 --lr-epochs 2 --warm-step 300
  --enable-spec-aug false --use-ctc true --ctc-loss-scale 0.5 --num-random-subnets 1"
