# Longer CPU preset of the built-in corpus: TODM against every deployed spec trained alone, on a
# bigger training set, about 1.4 h on 2 cores (estimated from the costs below).
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
# ~715 steps per epoch. Cost per step on 2 cores (default run: 2 processes of 20 s): sandwich
# 0.46 s, baselines L2 0.125 .. L6 ~0.28 s, ~1.05 s for all five: 4 epochs take ~72 min of training.
num_epochs=4
baseline_subnets=all
report_args="--target-wer-largest 10 --target-wer-every 15"
