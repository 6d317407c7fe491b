# Longer CPU preset of the built-in corpus: TODM against every deployed spec trained alone, on a
# bigger training set, about 2.2 h on 2 cores (estimated from the costs below; no full run measured yet).
#   ./run.sh --config conf/builtin_long.sh
# Its data and models stay apart from the default run's (data/long, exp/long); run.sh sources the
# default preset (conf/builtin.sh) after this file for everything not set here (BPE 64, batches,
# training flags), and so does bench/bench_convergence.py --preset conf/builtin_long.sh.
data_dir=data/long
exp_dir=exp/long
# 2000 more training sentences (4-12 words among the 4000 most frequent; 4400 in all, ~2.5 h of
# audio, 7.4 h with speed perturbation) with the default run's dev and test sets, so that the
# two runs' WERs compare: the default supernet's valid loss stops falling after ~5 epochs of
# the 2400 default sentences.
builtin_args="--num-extra-train 2000 --extra-max-words 12 --extra-top-words 4000"
# ~700 steps per epoch. Cost per step on 2 cores (default run, 2 threads): sandwich ~1.0 s,
# baselines L2 0.29 .. L6 0.59 s, ~2.2 s for all five: 3 epochs take ~2 h of training.
num_epochs=3
baseline_subnets=all
report_args="--target-wer-largest 10 --target-wer-every 15"
