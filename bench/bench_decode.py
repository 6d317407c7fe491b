#!/usr/bin/env python3
"""Decoding speed of every exported subnet: PyTorch vs sherpa-onnx fp32 and int8, measured alike.

Reads what stage 6 wrote (``exp/deploy/<spec>/``: ``pretrained.pt`` and the ONNX files) and the
first ``--max-utterances`` cuts of a test set, and times what stages 4 and 6 time for the report's
RTF columns: one utterance at a time, greedy search, ``--num-threads`` threads, after an untimed
warm-up, on ``todm.decode.rtf_clock`` (process CPU time at 1 thread), encoder + search only:

- PyTorch: the cut's stored fbank (as stage 4) + ``pretrained.pt`` (FFT SSM path) + greedy search
  (``todm.decode.decode_batch`` of one utterance);
- ONNX fp32 / int8: sherpa-onnx's OfflineRecognizer on the audio (``todm.sherpa_decode``); the
  fbank it computes when a stream accepts the waveform is timed apart ("sherpa fbank").

Each utterance goes through the three in turn, so that a change of machine load hits them
alike. RTF = seconds / audio seconds; ratios are to PyTorch of the same subnet.

    python bench/bench_decode.py --deploy-dir exp/deploy --test-set test --max-utterances 100
"""

import argparse
from pathlib import Path

import torch

from todm.checkpoint import load_checkpoint_file
from todm.decode import decode_batch, rtf_clock, warm_up
from todm.model import Transducer
from todm.model_config import TransducerConfig
from todm.sherpa_decode import find_suffix, load_cuts, load_mono, make_decoder, model_files
from todm.sherpa_stream import SAMPLE_RATE

PRECISIONS = ("fp32", "int8")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deploy-dir", type=Path, default=Path("exp/deploy"), help="stage 6 output")
    parser.add_argument("--manifest-dir", type=Path, default=Path("data/fbank"))
    parser.add_argument("--corpus", type=str, default="builtin")
    parser.add_argument("--test-set", type=str, default="test")
    parser.add_argument("--max-utterances", type=int, default=100)
    parser.add_argument("--num-threads", type=int, default=1)
    return parser


def decoding_rtfs(spec_dir: Path, utterances: list, num_threads: int) -> dict[str, float]:
    """RTF of PyTorch over ``utterances`` [(16 kHz audio, fbank [1, T, 80])] and, utterance by
    utterance beside it, of each precision's sherpa-onnx decoding and of sherpa-onnx's fbank
    (fp32's): everything the table compares with PyTorch."""
    clock = rtf_clock(num_threads)
    ckpt = load_checkpoint_file(spec_dir / "pretrained.pt")
    model = Transducer(TransducerConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    model.eval()
    warm_up(model, torch.device("cpu"), "greedy_search", 1)
    suffix = find_suffix(spec_dir)
    decoders = {p: make_decoder(model_files(spec_dir, suffix, p), spec_dir / "tokens.txt", "greedy_search",
                                num_threads, 4, "", False) for p in PRECISIONS}
    seconds = dict.fromkeys(("PyTorch", *PRECISIONS, "sherpa fbank"), 0.0)
    for audio, feats in utterances:
        start = clock()
        decode_batch(model, feats, torch.tensor([feats.size(1)]), "greedy_search")
        seconds["PyTorch"] += clock() - start
        for precision, decode in decoders.items():
            decoded = decode(audio)
            seconds[precision] += decoded.decode_seconds
            seconds["sherpa fbank"] += decoded.feature_seconds if precision == "fp32" else 0.0
    audio_seconds = sum(audio.size for audio, _ in utterances) / SAMPLE_RATE
    return {key: value / audio_seconds for key, value in seconds.items()}


def main() -> None:
    args = get_parser().parse_args()
    torch.set_num_threads(args.num_threads)
    spec_dirs = sorted(p.parent for p in args.deploy_dir.glob("*/export.json"))
    if not spec_dirs:
        raise SystemExit(f"no exported subnets in {args.deploy_dir}: run stage 6 (./run.sh --stage 6) first")
    cuts = load_cuts(args.manifest_dir, args.corpus, args.test_set, args.max_utterances)
    utterances = [(load_mono(cut), torch.from_numpy(cut.load_features()).unsqueeze(0)) for cut in cuts]
    audio_seconds = sum(audio.size for audio, _ in utterances) / SAMPLE_RATE

    print(f"{len(utterances)} utterances of {args.corpus} {args.test_set} ({audio_seconds:.1f} s of audio), greedy "
          f"search, one utterance at a time, {args.num_threads} thread(s), {rtf_clock(args.num_threads).__name__}; "
          f"torch {torch.__version__}")
    header = ("| subnet | RTF PyTorch | RTF ONNX fp32 | RTF ONNX int8 | fp32 / PyTorch | int8 / PyTorch "
              "| RTF sherpa fbank |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for spec_dir in spec_dirs:
        rtf = decoding_rtfs(spec_dir, utterances, args.num_threads)
        print(f"| {spec_dir.name} | {rtf['PyTorch']:.4f} | {rtf['fp32']:.4f} | {rtf['int8']:.4f} | "
              f"{rtf['fp32'] / rtf['PyTorch']:.2f}x | {rtf['int8'] / rtf['PyTorch']:.2f}x | "
              f"{rtf['sherpa fbank']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
