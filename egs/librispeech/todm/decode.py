#!/usr/bin/env python3
"""Stage 4: decode subnets of a trained TODM supernet (or a stage-5 baseline) and score them.

    python -m todm.decode --exp-dir exp/supernet --epoch 12 --avg 4 \\
        --bpe-model data/lang_bpe_64/bpe.model --manifest-dir data/fbank --corpus builtin \\
        --decoding-method greedy_search --subnets "L6-F576-H4 L2-F144-H1" --test-sets "dev test"

``--decoding-method modified_beam_search_lm_shallow_fusion --lm data/lang_bpe_64/token_lm_8gram.arpa
--lm-scale 0.5 --blank-penalty 2.0 --beam-size 8`` adds a token n-gram of the training transcripts
to the beam search (:mod:`todm.token_lm`, trained by ``local/train_token_lm.py``);
``--decoding-method modified_beam_search_LODR`` also subtracts a bigram of the same text
(``--lodr-lm data/lang_bpe_64/token_lm_2gram.arpa --lodr-lm-scale -0.21``), see
:func:`todm.beam_search.modified_beam_search`.

The weights are chosen as in icefall (``--epoch/--iter/--avg/--use-averaged-model``); the model
is rebuilt from the ``model_config`` stored in the checkpoint, so no model flags are needed.
Each subnet is cut out of the supernet with ``model.extract(spec)`` (a standalone, smaller
model, exactly what stage 6 deploys) and decodes every test set. Outputs under
``<exp-dir>/<decoding-method>/``, with ``key = <spec>_<suffix><tag>``, ``suffix`` like
``epoch-12_avg-4_use-averaged-model`` and ``tag`` empty for greedy search, else
``_beam-size-K[_lm-scale-S][_lodr-lm-scale-L][_blank-penalty-P]``:

- icefall's ``recogs-<set>-<key>.txt``, ``errs-<set>-<key>.txt``, ``wer-summary-<set>-<key>.txt``
  and ``wer-summary-<set>-<suffix><tag>.txt`` (every decoded subnet, best first);
- ``results-<key>.json``: spec, params, macs_per_second, wer {set: %}, per-set errors, rtf
  (decode seconds / audio seconds over all sets; encoder + search, features already computed),
  decode_seconds, audio_seconds, method, suffix, device, num_threads, one_at_a_time, clock
  (``time.process_time`` or ``time.perf_counter``, see ``rtf_clock``);
- ``summary_<suffix><tag>.json``: the list of those results (merged with earlier runs
  of other specs), smallest model first;
- ``log-decode-<suffix><tag>-<date>``.

RTF is measured with ``--num-threads`` torch threads (default 1, the on-device setting) after
one untimed warm-up call, one utterance at a time (``--one-at-a-time``, default true), and on one
CPU thread in process CPU time (``rtf_clock``): what ``todm.sherpa_decode`` measures in stage 6,
so that the two RTFs compare (batches of ~30 utterances took PyTorch 3-5x less time per utterance).
Utterances shorter than the encoder's minimum input (9 fbank frames) get an empty hypothesis
without running the model.
"""

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import sentencepiece as spm
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from todm.asr_datamodule import AsrDataModule, batch_to_tensors
from todm.beam_search import greedy_search_batch, modified_beam_search
from todm.checkpoint import add_weight_arguments, load_model_state
from todm.cost import count_macs_per_second, count_parameters
from todm.model import Transducer, build_model
from todm.model_config import TransducerConfig
from todm.subnet import SubnetSpec
from todm.subsampling import MIN_INPUT_FRAMES
from todm.token_lm import TokenNgramLm, lm_pieces
from todm.utils import DEFAULT_BPE_MODEL, save_json, setup_logger, str2bool
from todm.wer import write_results, write_wer_summary

LM_METHOD = "modified_beam_search_lm_shallow_fusion"
LODR_METHOD = "modified_beam_search_LODR"
LM_METHODS = (LM_METHOD, LODR_METHOD)
DECODING_METHODS = ("greedy_search", "modified_beam_search") + LM_METHODS


@dataclass
class LmFusion:
    """Shallow fusion of a token n-gram (``--lm``, ``--lm-scale``) in modified beam search, less a
    low-order n-gram for LODR (``--lodr-lm``, ``--lodr-lm-scale``)."""

    lm: TokenNgramLm
    scale: float
    lodr_lm: TokenNgramLm | None = None
    lodr_scale: float = 0.0


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """Which weights, which tokens, where to run: shared by decode and select_subnets."""
    add_weight_arguments(parser)
    g = parser.add_argument_group("model input/output")
    g.add_argument("--bpe-model", type=Path, default=DEFAULT_BPE_MODEL)
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda if available")
    g.add_argument("--num-threads", type=int, default=1, help="torch CPU threads (1 for on-device RTF)")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_checkpoint_arguments(parser)
    g = parser.add_argument_group("decoding")
    g.add_argument("--decoding-method", choices=DECODING_METHODS, default="greedy_search")
    g.add_argument("--beam-size", type=int, default=4, help="hypotheses kept by modified_beam_search*")
    g.add_argument("--blank-penalty", type=float, default=0.0,
                   help="modified_beam_search*: subtracted from the blank logit (icefall, sherpa-onnx); with an LM "
                        "it pays back the LM's cost of every token, which otherwise favours deletions")
    g.add_argument("--lm", type=Path, default=None,
                   help="the LM methods: token n-gram ARPA file of the same BPE model (local/train_token_lm.py)")
    g.add_argument("--lm-scale", type=float, default=0.5, help="the LM methods: weight of the LM's log-probabilities")
    g.add_argument("--lodr-lm", type=Path, default=None,
                   help=f"{LODR_METHOD}: low-order (bigram) token n-gram of the same text, subtracted")
    g.add_argument("--lodr-lm-scale", type=float, default=-0.24,
                   help=f"{LODR_METHOD}: its weight, negative (icefall's --LODR-lm-scale)")
    g.add_argument("--max-sym-per-frame", type=int, default=1, help="greedy_search: symbols per frame at most")
    g.add_argument("--subnets", type=str, default="",
                   help='space-separated specs, e.g. "L6-F576-H4 L2-F144-H1"; default: the deployable '
                        "subnets of the checkpoint's search space")
    g.add_argument("--test-sets", type=str, default="dev test", help="cut parts <corpus>_cuts_<set>.jsonl.gz")
    g.add_argument("--one-at-a-time", type=str2bool, default=True,
                   help="decode each utterance alone, as a device and todm.sherpa_decode do, so that RTF "
                        "compares with stage 6's; false: whole batches of --max-duration (faster on a GPU)")
    AsrDataModule.add_arguments(parser)
    return parser


@dataclass
class LoadedModel:
    model: Transducer  # the supernet (eval mode, CPU)
    config: TransducerConfig
    params: dict[str, Any]  # hyper-parameters stored in the last checkpoint
    suffix: str  # e.g. epoch-12_avg-4_use-averaged-model
    sp: spm.SentencePieceProcessor


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_trained_model(args: argparse.Namespace) -> LoadedModel:
    """The supernet (or baseline) of ``--exp-dir`` with the weights chosen by the checkpoint flags."""
    exp_dir: Path = args.exp_dir
    if not exp_dir.is_dir():
        raise FileNotFoundError(f"--exp-dir {exp_dir} does not exist: train first (run.sh stage 3 for the "
                                f"supernet, stage 5 for baselines)")
    try:
        state, params, suffix = load_model_state(exp_dir, args.epoch, args.avg, args.use_averaged_model, args.iter)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{e}\n(the checkpoints come from run.sh stage 3 for the supernet, stage 5 for "
                                f"baselines; check --exp-dir/--epoch/--iter/--avg)") from None
    if "model_config" not in params:
        raise ValueError(f"{exp_dir}: the checkpoint has no model_config; it was not written by todm.train")
    try:
        config = TransducerConfig.from_dict(params["model_config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{exp_dir}: the checkpoint's model_config is not valid: {e}") from None
    model = build_model(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{exp_dir}: the checkpoint's weights do not match its model_config "
                         f"({config.search_space}): {e}") from None
    model.eval()

    if not Path(args.bpe_model).is_file():
        raise FileNotFoundError(f"--bpe-model {args.bpe_model} does not exist: run run.sh stage 2")
    sp = spm.SentencePieceProcessor(model_file=str(args.bpe_model))
    if sp.get_piece_size() != config.vocab_size:
        raise ValueError(f"--bpe-model {args.bpe_model} has {sp.get_piece_size()} tokens but the checkpoint in "
                         f"{exp_dir} was trained with vocab_size {config.vocab_size}: use the BPE model of training")
    if sp.piece_to_id("<blk>") != config.blank_id:
        raise ValueError(f"--bpe-model {args.bpe_model}: <blk> has id {sp.piece_to_id('<blk>')}, the model's "
                         f"blank_id is {config.blank_id}")
    return LoadedModel(model, config, params, suffix, sp)


def parse_subnets(text: str, config: TransducerConfig) -> list[SubnetSpec]:
    """Specs of ``--subnets`` (default: the deployable ones), each checked against the search space."""
    if not text.strip():
        return config.search_space.deployable()
    specs = []
    for item in text.split():
        try:
            spec = SubnetSpec.parse(item)
            config.search_space.validate(spec)
        except ValueError as e:
            raise ValueError(f"--subnets: {e} (checkpoint search space: {config.search_space})") from None
        if spec not in specs:
            specs.append(spec)
    return specs


@torch.no_grad()
def decode_batch(model: Transducer, x: torch.Tensor, x_lens: torch.Tensor, method: str,
                 beam_size: int = 4, max_sym_per_frame: int = 1, lm: LmFusion | None = None,
                 blank_penalty: float = 0.0) -> list[list[int]]:
    """Token ids per utterance for features x [B, T, 80] with lengths x_lens [B].

    Utterances too short for the conv front end (< MIN_INPUT_FRAMES frames) are not run
    through the model: their hypothesis is empty.
    """
    hyps: list[list[int]] = [[] for _ in range(x.size(0))]
    keep = (x_lens >= MIN_INPUT_FRAMES).nonzero().squeeze(1)
    if keep.numel() == 0:
        return hyps
    lens = x_lens[keep]
    encoder_out, encoder_out_lens = model.forward_encoder(x[keep, : int(lens.max())], lens)
    if method == "greedy_search":
        found = greedy_search_batch(model, encoder_out, encoder_out_lens, max_sym_per_frame=max_sym_per_frame)
    elif method == "modified_beam_search":
        found = modified_beam_search(model, encoder_out, encoder_out_lens, beam=beam_size, blank_penalty=blank_penalty)
    elif method in LM_METHODS:
        if lm is None or (method == LODR_METHOD and lm.lodr_lm is None):
            raise ValueError(f"{method} needs its language models (--lm, and --lodr-lm for LODR)")
        found = modified_beam_search(model, encoder_out, encoder_out_lens, beam=beam_size, lm=lm.lm,
                                     lm_scale=lm.scale, blank_penalty=blank_penalty, lodr_lm=lm.lodr_lm,
                                     lodr_lm_scale=lm.lodr_scale)
    else:
        raise ValueError(f"unknown decoding method {method!r} (choose from {', '.join(DECODING_METHODS)})")
    for i, h in zip(keep.tolist(), found):
        hyps[i] = h
    return hyps


@dataclass
class DecodeOutput:
    results: list[tuple[str, list[str], list[str]]]  # (cut_id, ref words, hyp words)
    decode_seconds: float  # encoder + search, summed over batches
    audio_seconds: float


def rtf_clock(num_threads: int, cuda: bool = False) -> Callable[[], float]:
    """The clock RTF is measured with: on one CPU thread the process's CPU time, what the work
    takes on a core of its own however busy the machine is (so that runs at different times
    compare); otherwise wall time (the CPU times of several threads would add up, and the CPU
    waits while a GPU works)."""
    return time.process_time if num_threads == 1 and not cuda else time.perf_counter


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warm_up(model: Transducer, device: torch.device, method: str, beam_size: int, lm: LmFusion | None = None) -> None:
    """One untimed call on 2 s of zeros, so that one-time costs (allocations, kernels) stay out of RTF."""
    x = torch.zeros(1, 200, model.config.feature_dim, device=device)
    decode_batch(model, x, torch.tensor([200], device=device), method, beam_size, lm=lm)
    _sync(device)


def decode_dataset(model: Transducer, dl: DataLoader, sp: spm.SentencePieceProcessor, device: torch.device,
                   method: str, beam_size: int = 4, max_sym_per_frame: int = 1, desc: str = "",
                   one_at_a_time: bool = False, lm: LmFusion | None = None,
                   blank_penalty: float = 0.0) -> DecodeOutput:
    """Decode every batch of ``dl`` (a lhotse K2SpeechRecognitionDataset with return_cuts), each
    utterance alone if ``one_at_a_time``; decode_seconds on ``rtf_clock``."""
    clock = rtf_clock(torch.get_num_threads(), device.type == "cuda")
    results, decode_seconds, audio_seconds = [], 0.0, 0.0
    for batch in tqdm(dl, desc=desc, unit="batch", leave=False):
        x, x_lens, _ = batch_to_tensors(batch, sp, device)
        sup = batch["supervisions"]
        hyps = []
        for rows in ([slice(i, i + 1) for i in range(x.size(0))] if one_at_a_time else [slice(None)]):
            _sync(device)
            start = clock()
            hyps += decode_batch(model, x[rows], x_lens[rows], method, beam_size, max_sym_per_frame, lm, blank_penalty)
            _sync(device)
            decode_seconds += clock() - start
        for cut, text, hyp in zip(sup["cut"], sup["text"], hyps):
            results.append((cut.id, text.split(), sp.decode(hyp).split()))
            audio_seconds += cut.duration
    return DecodeOutput(results, decode_seconds, audio_seconds)


def _beam_tag(args: argparse.Namespace) -> str:
    """``_beam-size-K[_lm-scale-S][_lodr-lm-scale-L][_blank-penalty-P]`` of the beam methods, in result
    file names."""
    if args.decoding_method == "greedy_search":
        return ""
    tag = f"_beam-size-{args.beam_size}"
    tag += f"_lm-scale-{args.lm_scale:g}" if args.decoding_method in LM_METHODS else ""
    tag += f"_lodr-lm-scale-{args.lodr_lm_scale:g}" if args.decoding_method == LODR_METHOD else ""
    return tag + (f"_blank-penalty-{args.blank_penalty:g}" if args.blank_penalty else "")


def _read_lm(flag: str, path: Path | None, method: str, sp: spm.SentencePieceProcessor) -> TokenNgramLm:
    if path is None:
        raise ValueError(f"--decoding-method {method} needs {flag} (local/train_token_lm.py, run.sh stage 2)")
    if not path.is_file():
        raise FileNotFoundError(f"{flag} {path} does not exist: train it with local/train_token_lm.py "
                                f"(run.sh stage 2)")
    try:
        return TokenNgramLm.from_arpa(path, lm_pieces(sp))
    except ValueError as e:
        raise ValueError(f"{flag} {path}: {e}") from None


def load_lm(args: argparse.Namespace, sp: spm.SentencePieceProcessor) -> LmFusion | None:
    """The ``--lm`` (and ``--lodr-lm``) of the LM methods (None for the others), checked against the BPE model."""
    method = args.decoding_method
    if method not in LM_METHODS:
        return None
    lm = _read_lm("--lm", args.lm, method, sp)
    if method != LODR_METHOD:
        return LmFusion(lm, args.lm_scale)
    return LmFusion(lm, args.lm_scale, _read_lm("--lodr-lm", args.lodr_lm, method, sp), args.lodr_lm_scale)


def _merge_summary(path: Path, new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Results of this run plus those of earlier runs (same suffix) for other specs, smallest first."""
    by_spec = {}
    if path.is_file():
        by_spec = {r["spec"]: r for r in json.loads(path.read_text())}
    by_spec.update({r["spec"]: r for r in new})
    return sorted(by_spec.values(), key=lambda r: (r["params"], r["spec"]))


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = get_parser().parse_args(argv)
    if args.beam_size < 1 or args.max_sym_per_frame < 1:
        raise ValueError("--beam-size and --max-sym-per-frame must be >= 1")
    if args.blank_penalty and args.decoding_method == "greedy_search":
        raise ValueError("--blank-penalty applies to modified_beam_search and its LM variants, not greedy_search")
    test_sets = args.test_sets.split()
    if not test_sets:
        raise ValueError("--test-sets is empty")
    torch.set_num_threads(args.num_threads)
    device = pick_device(args.device)
    loaded = load_trained_model(args)
    specs = parse_subnets(args.subnets, loaded.config)
    lm = load_lm(args, loaded.sp)
    data = AsrDataModule(args)
    cut_sets = {name: data.cuts(name) for name in test_sets}  # fail early if a set is missing

    tag = _beam_tag(args)
    res_dir = args.exp_dir / args.decoding_method
    setup_logger(res_dir / f"log-decode-{loaded.suffix}{tag}")
    logging.info(f"decoding {' '.join(map(str, specs))} of {args.exp_dir} ({loaded.suffix}) on "
                 f"{' '.join(test_sets)} with {args.decoding_method}{tag}, device {device}, "
                 f"{args.num_threads} thread(s)")

    all_results = []
    for spec in specs:
        model = loaded.model.extract(spec).eval().to(device)
        key = f"{spec}_{loaded.suffix}{tag}"
        warm_up(model, device, args.decoding_method, args.beam_size, lm)
        per_set: dict[str, dict[str, Any]] = {}
        for name, cuts in cut_sets.items():
            out = decode_dataset(model, data.eval_dataloader(cuts), loaded.sp, device, args.decoding_method,
                                 args.beam_size, args.max_sym_per_frame, desc=f"{spec} {name}",
                                 one_at_a_time=args.one_at_a_time, lm=lm, blank_penalty=args.blank_penalty)
            stats = write_results(res_dir, name, key, out.results)
            per_set[name] = {**stats, "num_utterances": len(out.results), "decode_seconds": out.decode_seconds,
                             "audio_seconds": out.audio_seconds, "rtf": out.decode_seconds / out.audio_seconds}
        decode_seconds = sum(s["decode_seconds"] for s in per_set.values())
        audio_seconds = sum(s["audio_seconds"] for s in per_set.values())
        result = {
            "spec": str(spec),
            "key": key,
            "params": count_parameters(loaded.config, spec),
            "macs_per_second": count_macs_per_second(loaded.config, spec),
            "wer": {name: s["wer"] for name, s in per_set.items()},
            "sets": per_set,
            "rtf": decode_seconds / audio_seconds,
            "decode_seconds": decode_seconds,
            "audio_seconds": audio_seconds,
            "method": args.decoding_method,
            "beam_size": args.beam_size if tag else None,
            "lm": str(args.lm) if lm else None,
            "lm_scale": args.lm_scale if lm else None,
            "lodr_lm": str(args.lodr_lm) if lm and lm.lodr_lm else None,
            "lodr_lm_scale": args.lodr_lm_scale if lm and lm.lodr_lm else None,
            "blank_penalty": args.blank_penalty,
            "suffix": loaded.suffix,
            "exp_dir": str(args.exp_dir),
            "device": str(device),
            "num_threads": args.num_threads,
            "one_at_a_time": args.one_at_a_time,
            "clock": rtf_clock(args.num_threads, device.type == "cuda").__name__,  # process_time or perf_counter
        }
        save_json(result, res_dir / f"results-{key}.json")
        all_results.append(result)
        logging.info(f"{spec}: {result['params']:,} params, WER "
                     + ", ".join(f"{n} {w:.2f}%" for n, w in result["wer"].items()) + f", RTF {result['rtf']:.4f}")

    summary_path = res_dir / f"summary_{loaded.suffix}{tag}.json"
    summary = _merge_summary(summary_path, all_results)
    save_json(summary, summary_path)
    for name in test_sets:
        wers = {r["key"]: r["wer"][name] for r in summary if name in r["wer"]}
        write_wer_summary(res_dir / f"wer-summary-{name}-{loaded.suffix}{tag}.txt", wers)
        best = min(wers, key=wers.get)
        logging.info(f"best for {name}: {best} {wers[best]:.2f}%")
    logging.info(f"results in {res_dir}")
    return all_results


if __name__ == "__main__":
    main()
