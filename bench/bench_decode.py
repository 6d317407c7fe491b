#!/usr/bin/env python3
"""Decoding speed of every exported subnet: PyTorch vs onnxruntime (sherpa-onnx) fp32 vs int8.

Reads what stage 6 wrote (``exp/deploy/<spec>/``: ``pretrained.pt`` and the ONNX files) and
decodes the first ``--max-utterances`` utterances of a test set from their audio, one
utterance at a time, greedy search, ``--num-threads`` threads (1: the on-device setting):

- PyTorch: lhotse fbank + ``pretrained.pt`` (FFT SSM path) + batched greedy search;
- ONNX fp32 / int8: sherpa-onnx's OfflineRecognizer (its own fbank, onnxruntime).

RTF = processing seconds / audio seconds, the wall time of the whole loop including feature
extraction. Ratios are to PyTorch of the same subnet, measured in the same run.

    python bench/bench_decode.py --deploy-dir exp/deploy --test-set test --max-utterances 100
"""

import argparse
import time
from pathlib import Path

import torch

from local.compute_fbank import make_extractor
from todm.checkpoint import load_checkpoint_file
from todm.decode import decode_batch
from todm.model import Transducer
from todm.model_config import TransducerConfig
from todm.sherpa_decode import find_suffix, load_cuts, load_mono, make_recognizer, model_files, recognize


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deploy-dir", type=Path, default=Path("exp/deploy"), help="stage 6 output")
    parser.add_argument("--manifest-dir", type=Path, default=Path("data/fbank"))
    parser.add_argument("--corpus", type=str, default="builtin")
    parser.add_argument("--test-set", type=str, default="test")
    parser.add_argument("--max-utterances", type=int, default=100)
    parser.add_argument("--num-threads", type=int, default=1)
    return parser


def pytorch_rtf(spec_dir: Path, audios: list, sampling_rate: int) -> float:
    ckpt = load_checkpoint_file(spec_dir / "pretrained.pt")
    model = Transducer(TransducerConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    model.eval()
    extractor = make_extractor("fbank")
    start = time.perf_counter()
    with torch.inference_mode():
        for audio in audios:
            feats = torch.from_numpy(extractor.extract(audio, sampling_rate)).unsqueeze(0)
            decode_batch(model, feats, torch.tensor([feats.size(1)]), "greedy_search")
    return time.perf_counter() - start


def onnx_rtf(spec_dir: Path, precision: str, audios: list, sampling_rate: int, num_threads: int) -> float:
    files = model_files(spec_dir, find_suffix(spec_dir), precision)
    recognizer = make_recognizer(files, spec_dir / "tokens.txt", "greedy_search", num_threads, 4, "")
    start = time.perf_counter()
    for audio in audios:
        recognize(recognizer, audio, sampling_rate)
    return time.perf_counter() - start


def main() -> None:
    args = get_parser().parse_args()
    torch.set_num_threads(args.num_threads)
    spec_dirs = sorted(p.parent for p in args.deploy_dir.glob("*/export.json"))
    if not spec_dirs:
        raise SystemExit(f"no exported subnets in {args.deploy_dir}: run stage 6 (./run.sh --stage 6) first")
    cuts = load_cuts(args.manifest_dir, args.corpus, args.test_set, args.max_utterances)
    audios = [load_mono(cut) for cut in cuts]
    rates = {cut.sampling_rate for cut in cuts}
    if len(rates) != 1:
        raise SystemExit(f"{args.test_set}: mixed sampling rates {sorted(rates)}")
    sampling_rate = rates.pop()
    seconds = sum(a.size for a in audios) / sampling_rate

    print(f"{len(audios)} utterances of {args.corpus} {args.test_set} ({seconds:.1f} s of audio), greedy search, "
          f"one utterance at a time, {args.num_threads} thread(s); torch {torch.__version__}")
    header = "| subnet | RTF PyTorch | RTF ONNX fp32 | RTF ONNX int8 | fp32 / PyTorch | int8 / PyTorch | int8 / fp32 |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for spec_dir in spec_dirs:
        torch_s = pytorch_rtf(spec_dir, audios, sampling_rate)
        fp32_s = onnx_rtf(spec_dir, "fp32", audios, sampling_rate, args.num_threads)
        int8_s = onnx_rtf(spec_dir, "int8", audios, sampling_rate, args.num_threads)
        print(f"| {spec_dir.name} | {torch_s / seconds:.4f} | {fp32_s / seconds:.4f} | {int8_s / seconds:.4f} "
              f"| {fp32_s / torch_s:.2f}x | {int8_s / torch_s:.2f}x | {int8_s / fp32_s:.2f}x |")


if __name__ == "__main__":
    main()
