#!/usr/bin/env bash
# TODM recipe: train one RNN-T supernet, deploy many subnets.
#
#   ./run.sh                                  # everything, built-in offline corpus, CPU
#   ./run.sh --stage 3 --stop-stage 4         # only training and decoding
#   ./run.sh --config conf/builtin_long.sh    # longer CPU preset: bigger built-in corpus, every baseline
#   ./run.sh --config conf/librispeech.sh     # LibriSpeech, paper-scale preset (GPUs)
#   ./run.sh --causal true --exp-dir exp/causal   # streaming: causal supernet, online models in stage 6
#
# Every variable below is an option: --max-duration 300 sets max_duration=300.
set -euo pipefail

stage=-1
stop_stage=6

# data
corpus=builtin          # builtin | librispeech | any lhotse recipe name (see local/prepare_lhotse_recipe.py)
corpus_dir=             # an existing corpus directory (librispeech and other recipes)
dl_dir=download         # where downloads and the synthesised built-in audio go
data_dir=data           # manifests, features and BPE models of this run ($data_dir/{manifests,fbank,lang_bpe_N})
builtin_args=""         # extra flags for local/prepare_builtin.py, e.g. "--num-extra-train 3000" (builtin corpus)
tiny=false              # tiny built-in corpus and tiny training: the smoke test
seed=42
nj=$(nproc)
train_parts=            # default per corpus, see below
dev_parts=
test_parts=
perturb_speed=          # speed perturbation 0.9/1.1 of the training set; default per corpus (builtin, librispeech: true)
vocab_size=             # BPE size; default per corpus, see below

# training (stage 3 and 5)
exp_dir=exp
num_epochs=             # default per corpus/preset
max_duration=           # seconds of audio per batch
world_size=             # processes per node (GPUs, or CPU processes with gloo); default per preset (builtin: 2)
num_nodes=1
node_rank=0
master_addr=localhost
master_port=12354
train_args=""           # extra flags for todm.train, e.g. "--num-random-subnets 3 --kd-weight 0.5"
model_args=""           # model-shape flags for todm.train (see python -m todm.train --help)
causal=false            # streaming run: causal SSMs (--causal true); stage 6 also exports and decodes online models
baselines=true          # stage 5: individually trained baselines of the deployed archs
baseline_subnets=       # which: all (every deployed spec) | ends (the smallest and the largest) | a list of specs
dry_run=false           # stages 3 and 5 print each todm.train command and the model it builds, and train nothing

# decoding and deployment (stages 4-6)
avg=                    # checkpoints averaged for decoding/export; default per corpus
use_averaged_model=true
subnets=""              # specs to decode/deploy, e.g. "L6-F576-H4 L2-F144-H1"; default: the deployable ones
decoding_methods=       # stages 4-5; default per preset (builtin: greedy_search and the token LM; else also modified_beam_search)
sherpa_methods="greedy_search"  # stage 6 sherpa-onnx check of the exports (add modified_beam_search if you like)
streaming_chunk=8       # encoder frames (40 ms each) per chunk of the online models (--causal true)
beam_size=              # hypotheses of the beam searches (and sherpa-onnx's max active paths); default per preset (4)
lm_order=8              # token n-gram LM of the training text (stage 2) for the LM methods, --decoding-methods
lm_scale=               #   "... modified_beam_search_LODR" or "... modified_beam_search_lm_shallow_fusion"; its
lm_blank_penalty=       #   weight, and the --blank-penalty that pays back the LM's cost of every token (else:
                        #   deletions); default per preset (0.5, 2.0)
lodr_order=2            # LODR: the low-order n-gram of the same text that is subtracted (it stands in for what
lodr_lm_scale=          #   the decoder has learnt of that text), and its weight; default per preset (-0.24)
report_method=          # whose WERs the report tabulates and checks; default per preset (else greedy_search)
decode_args=""          # extra flags for todm.decode
report_args=""          # extra flags for todm.report (its targets: --target-wer-largest 10 ...); presets set them

help_message=$(sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//')

. shared/parse_options.sh || exit 1
if [ $# -ne 0 ]; then
  echo "run.sh: unexpected argument '$1' (options are --name value; see --help)" >&2
  exit 1
fi
. ./path.sh

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%d %H:%M:%S') ($fname:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

if $tiny; then
  : "${num_epochs:=2}" "${max_duration:=60}"
  : "${vocab_size:=64}" "${perturb_speed:=false}" "${world_size:=1}"
  model_args="--encoder-dim 32 --head-dim 8 --state-dim 8 --num-layers 1,2 --ffn-dim 32,64 --num-heads 1,2 \
    --decoder-dim 32 --joiner-dim 32 $model_args"
fi
if $causal; then
  model_args="--causal true $model_args"
fi
preset_train_args=""    # per-corpus training defaults, before $train_args (which override them)
case "$corpus" in
  builtin)
    . conf/builtin.sh ;;  # the CPU preset of the default run
  librispeech)
    : "${train_parts:=train-clean-100 train-clean-360 train-other-500}" "${dev_parts:=dev-clean dev-other}"
    : "${test_parts:=test-clean test-other}" "${vocab_size:=500}" "${perturb_speed:=true}" ;;
  *)
    if [ -z "$train_parts" ] || [ -z "$dev_parts" ] || [ -z "$test_parts" ] || [ -z "$vocab_size" ]; then
      echo "run.sh: corpus '$corpus' needs --train-parts, --dev-parts, --test-parts and --vocab-size" >&2
      exit 1
    fi ;;
esac
: "${num_epochs:=12}" "${max_duration:=200}" "${perturb_speed:=false}" "${baseline_subnets:=all}" "${world_size:=1}"
: "${decoding_methods:=greedy_search modified_beam_search}" "${report_method:=greedy_search}" "${beam_size:=4}"
: "${lm_scale:=0.5}" "${lm_blank_penalty:=2.0}" "${lodr_lm_scale:=-0.24}"
lm_method=modified_beam_search_lm_shallow_fusion
lodr_method=modified_beam_search_LODR
: "${avg:=$(( num_epochs > 4 ? 4 : num_epochs - 1 ))}"
lang_dir=$data_dir/lang_bpe_${vocab_size}

if [ $stage -le -1 ] && [ $stop_stage -ge -1 ]; then
  log "Stage -1: environment (tools/setup.sh; skipped when done)"
  tools/setup.sh
  . ./path.sh
fi

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "Stage 0: $corpus -> lhotse manifests in $data_dir/manifests"
  mkdir -p "$data_dir/manifests"
  case "$corpus" in
    builtin)
      # shellcheck disable=SC2086
      python local/prepare_builtin.py --output-dir "$data_dir/manifests" --audio-dir "$dl_dir/builtin/wav" \
        --seed "$seed" --num-jobs "$nj" --tiny "$tiny" $builtin_args ;;
    librispeech)
      python local/prepare_librispeech.py --output-dir "$data_dir/manifests" --dl-dir "$dl_dir" \
        ${corpus_dir:+--corpus-dir "$corpus_dir"} --parts "$train_parts $dev_parts $test_parts" --num-jobs "$nj" ;;
    *)
      python local/prepare_lhotse_recipe.py --recipe "$corpus" --output-dir "$data_dir/manifests" \
        ${corpus_dir:+--corpus-dir "$corpus_dir"} --dl-dir "$dl_dir" --num-jobs "$nj" ;;
  esac
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: 80-dim fbank -> $data_dir/fbank"
  python local/compute_fbank.py --corpus "$corpus" --manifest-dir "$data_dir/manifests" --output-dir "$data_dir/fbank" \
    --train-parts "$train_parts" --dev-parts "$dev_parts" --test-parts "$test_parts" \
    --perturb-speed "$perturb_speed" --num-jobs "$nj"
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  log "Stage 2: BPE ($vocab_size) -> $lang_dir"
  python local/train_bpe.py --lang-dir "$lang_dir" --vocab-size "$vocab_size" \
    --cuts "$data_dir/fbank/${corpus}_cuts_train.jsonl.gz"
  supervisions=()
  for part in $train_parts; do supervisions+=("$data_dir/manifests/${corpus}_supervisions_${part}.jsonl.gz"); done
  orders=()
  case " $decoding_methods " in *" $lm_method "* | *" $lodr_method "*) orders+=("$lm_order") ;; esac
  case " $decoding_methods " in *" $lodr_method "*) orders+=("$lodr_order") ;; esac
  for order in "${orders[@]}"; do
    log "Stage 2: token $order-gram LM of the training transcripts -> $lang_dir"
    python local/train_token_lm.py --lang-dir "$lang_dir" --order "$order" --supervisions "${supervisions[@]}"
  done
fi

# Launches todm.train: one process, or torchrun with world_size processes per node.
train() {
  if $dry_run; then  # the command, then its model's config and size (todm.describe_model)
    echo "todm.train $*"
    if [ "$world_size" -gt 1 ] || [ "$num_nodes" -gt 1 ]; then
      echo "(launched by torchrun: $world_size process(es) per node, $num_nodes node(s))"
    fi
    python -m todm.describe_model --vocab-size "$vocab_size" "$@"
    return
  fi
  if [ "$world_size" -gt 1 ] || [ "$num_nodes" -gt 1 ]; then
    torchrun --nproc-per-node "$world_size" --nnodes "$num_nodes" --node-rank "$node_rank" \
      --master-addr "$master_addr" --master-port "$master_port" -m todm.train "$@"
  else
    python -m todm.train "$@"
  fi
}
common_train_args=(--manifest-dir "$data_dir/fbank" --corpus "$corpus" --bpe-model "$lang_dir/bpe.model"
  --num-epochs "$num_epochs" --max-duration "$max_duration" --seed "$seed" --auto-resume true)

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "Stage 3: train the TODM supernet -> $exp_dir/supernet"
  # shellcheck disable=SC2086
  train "${common_train_args[@]}" --exp-dir "$exp_dir/supernet" $preset_train_args $model_args $train_args
fi

# Decodes every subnet in $subnets (default: the deployable specs of that checkpoint) of one exp dir.
decode() {
  local dir=$1
  for method in $decoding_methods; do
    # One utterance at a time (RTF comparable with stage 6's sherpa-onnx) for the methods stage 6
    # also runs; whole batches (several times faster on a CPU) for the others.
    local one_at_a_time=false method_args=()
    case " $sherpa_methods " in *" $method "*) one_at_a_time=true ;; esac
    case $method in
      "$lm_method" | "$lodr_method")
        method_args=(--lm "$lang_dir/token_lm_${lm_order}gram.arpa" --lm-scale "$lm_scale"
          --blank-penalty "$lm_blank_penalty") ;;
    esac
    if [ "$method" = "$lodr_method" ]; then
      method_args+=(--lodr-lm "$lang_dir/token_lm_${lodr_order}gram.arpa" --lodr-lm-scale "$lodr_lm_scale")
    fi
    # shellcheck disable=SC2086
    python -m todm.decode --exp-dir "$dir" --epoch "$num_epochs" --avg "$avg" --one-at-a-time "$one_at_a_time" \
      --use-averaged-model "$use_averaged_model" --bpe-model "$lang_dir/bpe.model" \
      --manifest-dir "$data_dir/fbank" --corpus "$corpus" --test-sets "$test_parts" \
      --decoding-method "$method" --beam-size "$beam_size" ${subnets:+--subnets "$subnets"} "${method_args[@]}" $decode_args
  done
}

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "Stage 4: decode the subnets of the supernet -> $exp_dir/supernet/<method>/"
  decode "$exp_dir/supernet"
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  if $baselines; then
    deployed=(${subnets:-$(python -m todm.list_subnets --exp-dir "$exp_dir/supernet" --epoch "$num_epochs")})
    case "$baseline_subnets" in
      all) specs=${deployed[*]} ;;
      ends) specs=$(printf '%s\n' "${deployed[0]}" "${deployed[-1]}" | uniq) ;;  # the list runs small to large
      *) specs=$baseline_subnets ;;
    esac
    for spec in $specs; do
      log "Stage 5: individually trained baseline $spec -> $exp_dir/baseline-$spec"
      # shellcheck disable=SC2086
      train "${common_train_args[@]}" --exp-dir "$exp_dir/baseline-$spec" --subnet "$spec" $preset_train_args \
        $model_args $train_args
      subnets_saved=$subnets; subnets=$spec
      decode "$exp_dir/baseline-$spec"
      subnets=$subnets_saved
    done
  else
    log "Stage 5: skipped (--baselines false)"
  fi
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  log "Stage 6: deploy each subnet (standalone checkpoint, ONNX fp32/int8, sherpa-onnx decode) and report"
  python -m todm.export --exp-dir "$exp_dir/supernet" --epoch "$num_epochs" --avg "$avg" \
    --use-averaged-model "$use_averaged_model" --tokens "$lang_dir/tokens.txt" --out-dir "$exp_dir/deploy" \
    --streaming-chunk "$streaming_chunk" ${subnets:+--subnets "$subnets"}
  streaming_modes=false
  if $causal; then streaming_modes="false true"; fi  # a causal run also decodes the online models
  for streaming in $streaming_modes; do
    python -m todm.sherpa_decode --deploy-dir "$exp_dir/deploy" --manifest-dir "$data_dir/fbank" --corpus "$corpus" \
      --test-sets "$test_parts" --decoding-methods "$sherpa_methods" --max-active-paths "$beam_size" \
      --streaming "$streaming" ${subnets:+--subnets "$subnets"}
  done
  # shellcheck disable=SC2086
  python -m todm.report --exp-dir "$exp_dir" --decoding-method "$report_method" \
    --onnx-method "${sherpa_methods%% *}" $report_args
fi
