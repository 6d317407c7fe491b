# Longer CPU preset of the built-in corpus: TODM against every deployed spec trained alone, on a
# bigger training set: 68 min on 2 cores (fresh clone, measured; the README's results-long block).
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
# 765 steps per epoch. Cost per step on 2 cores (2 processes of 20 s): sandwich 0.38 s, baselines
# L2 0.105 .. L6 0.25 s, 0.86 s for all five: 4 epochs took 63 min of training. The supernet's valid
# loss still falls in epoch 4 (0.439 -> 0.404): 2.5 h would buy ~8 epochs.
num_epochs=4
baseline_subnets=all
report_args="--target-wer-largest 10 --target-wer-every 15"
