# Paper-scale preset: LibriSpeech 960 h on GPUs.  ./run.sh --config conf/librispeech.sh
# (add --corpus-dir /path/to/LibriSpeech if it is already downloaded)
corpus=librispeech
vocab_size=500
perturb_speed=true
num_epochs=30
world_size=8            # GPUs on this node; --num-nodes/--node-rank/--master-addr for more nodes
max_duration=1000       # seconds of audio per batch and GPU (80 GB cards)
nj=16
# A supernet of tens of millions of parameters (largest subnet); see README "LibriSpeech".
model_args="--encoder-dim 512 --head-dim 64 --state-dim 32 --decoder-dim 512 --joiner-dim 512 --dropout 0.1 \
  --num-layers 8,10,12,14,16 --ffn-dim 1024,1536,2048 --num-heads 4,6,8"
train_args="--use-bf16 true --num-workers 4 --save-every-n 4000 --keep-last-k 10 --average-period 200 \
  --lr-batches 7500 --lr-epochs 3.5 --log-interval 50 --num-buckets 30"
