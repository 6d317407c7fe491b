#!/usr/bin/env python3
"""Streaming decoding of a causal run's subnets: RTF and latency over chunk sizes (the trade-off).

    python bench/bench_streaming.py --deploy-dir exp/causal/deploy --chunks 1,2,4,8,16,32 --max-utterances 50

For each subnet (default: the smallest and the largest deployed) and each chunk size k (encoder
frames of 40 ms; the deployed online model uses 8), the subnet's ``pretrained.pt`` is exported
as an online encoder of chunks of k frames (``todm.streaming``, with the deployed decoder and
joiner), and the first ``--max-utterances`` test utterances are decoded by sherpa-onnx's
OnlineRecognizer, greedy search, one thread, as if the audio arrived in real time: 10 ms
packets, each fed as it arrives, then decoded as far as whole chunks are ready; at the end of
the utterance the silence tail the stream needs (``todm.sherpa_stream.padded_for_stream``)
comes at once. The reference, measured in the same run: the offline model of the same subnet
(OfflineRecognizer, the whole utterance at once, stage 6's files).

Time is the CPU time of this process (on a shared machine wall time also counts the waits for
a core; one thread's CPU time is what the decoder costs on a core of its own).

- RTF = decoding time / audio time (feature extraction included, audio loading excluded).
- Latency of a word = when the stream emits the word's last token - when the word ended.
  Emission: a virtual clock follows the stream: a packet is processed once it has arrived and
  the decoder is free, taking the time it took here; the tokens it adds are emitted when it is
  done. End of the word: there is no forced alignment of the corpus, so the end is taken from
  the model itself: the token was emitted at encoder frame t (sherpa-onnx's timestamp, which is
  the offline causal model's greedy frame on the same audio), and the last audio sample frame t
  reads is the end of fbank frame 4t + 8's 25 ms window, 40 t + 97.5 ms (capped at the end of
  the utterance). This is the latency streaming adds to a causal model that sees the whole
  utterance at once: waiting for the chunk to fill, and the compute, queued if slower than real
  time. It leaves out the model's own emission delay (how long after the acoustic end of a word
  the trained model chooses to emit it), which does not depend on the chunk size. "wait" is the
  same latency with free compute, the part the chunk size alone costs: for a token at frame j of
  its chunk, 40 (k - 1 - j) + 12.5 ms (the rest of the chunk; one more fbank frame, since
  sherpa-onnx decodes a chunk once a frame beyond it is ready; 2.5 ms to the end of the packet
  that completes that frame's window), about 20 (k - 1) + 12.5 ms on average.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from todm.checkpoint import load_checkpoint_file
from todm.model import Transducer
from todm.model_config import TransducerConfig
from todm.onnx_io import quantize
from todm.sherpa_decode import find_suffix, load_cuts, load_mono, make_recognizer, model_files, recognize
from todm.sherpa_stream import FRAME_SHIFT, SAMPLE_RATE, make_online_recognizer, padded_for_stream
from todm.streaming import SUBSAMPLING, chunk_input_frames, chunk_multiple, export_streaming_encoder
from todm.subsampling import MIN_INPUT_FRAMES
from todm.utils import int_list

PACKET = FRAME_SHIFT  # samples per packet: 10 ms
WINDOW_END = 280  # fbank frame i's 25 ms window ends at sample 160 i + 280 (kaldi, snip_edges false)
RTF_TARGET = 0.05  # issue 13: the largest built-in subnet, 1 thread


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deploy-dir", type=Path, default=Path("exp/causal/deploy"), help="a causal run's stage 6")
    parser.add_argument("--subnets", type=str, default="", help="specs; default: the smallest and largest deployed")
    parser.add_argument("--chunks", type=int_list, default=(1, 2, 4, 8, 16, 32), help="encoder frames per chunk")
    parser.add_argument("--precisions", type=str, default="fp32", help="fp32 and/or int8 encoders")
    parser.add_argument("--manifest-dir", type=Path, default=Path("data/fbank"))
    parser.add_argument("--corpus", type=str, default="builtin")
    parser.add_argument("--test-set", type=str, default="test")
    parser.add_argument("--max-utterances", type=int, default=50)
    return parser


def frame_audio_end(frame: int) -> float:
    """Seconds: the end of the last audio sample encoder frame ``frame`` reads (fbank frame 4t + 8)."""
    return ((SUBSAMPLING * frame + MIN_INPUT_FRAMES - 1) * FRAME_SHIFT + WINDOW_END) / SAMPLE_RATE


def stream_utterance(recognizer, audio: np.ndarray, size: int, shift: int) -> tuple[float, list[tuple]]:
    """Decode ``audio`` as it arrives (see the module doc). Returns (CPU seconds, emissions): one
    (token, frame, emitted at, emitted at with free compute) per token, times in audio seconds."""
    stream = recognizer.create_stream()
    padded = padded_for_stream(audio, size, shift)
    packets = [(min(end, audio.size) / SAMPLE_RATE, audio[end - PACKET:end], False)
               for end in range(PACKET, audio.size + PACKET, PACKET)]
    packets.append((audio.size / SAMPLE_RATE, padded[audio.size:], True))
    busy, compute, emissions = 0.0, 0.0, []
    for arrival, samples, last in packets:
        start = time.process_time()
        stream.accept_waveform(SAMPLE_RATE, samples)
        if last:
            stream.input_finished()
        decoded = recognizer.is_ready(stream)
        while recognizer.is_ready(stream):
            recognizer.decode_stream(stream)
        seconds = time.process_time() - start
        compute += seconds
        busy = max(busy, arrival) + seconds
        if decoded:
            result = recognizer.get_result_all(stream)
            for token, stamp in list(zip(result.tokens, result.timestamps))[len(emissions):]:
                emissions.append((token, round(stamp * SAMPLE_RATE / (SUBSAMPLING * FRAME_SHIFT)), busy, arrival))
    return compute, emissions


def word_latencies(emissions: list[tuple], audio_seconds: float) -> list[tuple[float, float]]:
    """(latency, latency with free compute) in seconds of each word: its last token's emission
    minus the end of the audio that token's frame reads, capped at the end of the utterance."""
    out = []
    for i, (_, frame, emitted, arrived) in enumerate(emissions):
        if i + 1 == len(emissions) or emissions[i + 1][0].startswith(("▁", " ")):
            end = min(frame_audio_end(frame), audio_seconds)
            out.append((emitted - end, arrived - end))
    return out


def load_subnet(spec_dir: Path) -> Transducer:
    ckpt = load_checkpoint_file(spec_dir / "pretrained.pt")
    model = Transducer(TransducerConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    return model.eval()


def offline_rtf(spec_dir: Path, audios: list[np.ndarray]) -> float:
    recognizer = make_recognizer(model_files(spec_dir, find_suffix(spec_dir), "fp32"), spec_dir / "tokens.txt",
                                 "greedy_search", 1, 4, "")
    start = time.process_time()
    for audio in audios:
        recognize(recognizer, audio)
    return (time.process_time() - start) / (sum(a.size for a in audios) / SAMPLE_RATE)


def measure(spec_dir: Path, encoder: Path, audios: list[np.ndarray], chunk: int) -> dict[str, float]:
    """Streaming RTF and word latencies of one online encoder over ``audios``."""
    files = model_files(spec_dir, find_suffix(spec_dir), "fp32") | {"encoder": encoder}
    recognizer = make_online_recognizer(files, spec_dir / "tokens.txt", "greedy_search", 1, 4)
    compute, latencies = 0.0, []
    for audio in audios:
        seconds, emissions = stream_utterance(recognizer, audio, chunk_input_frames(chunk), SUBSAMPLING * chunk)
        compute += seconds
        latencies += word_latencies(emissions, audio.size / SAMPLE_RATE)
    total, wait = (np.array([lat[i] for lat in latencies]) * 1000 for i in (0, 1))
    return {"rtf": compute / (sum(a.size for a in audios) / SAMPLE_RATE), "words": len(latencies),
            "mean": total.mean(), "p50": np.percentile(total, 50), "p90": np.percentile(total, 90),
            "max": total.max(), "wait": wait.mean()}


def chosen_subnets(deploy_dir: Path, subnets: str) -> list[Path]:
    if subnets.strip():
        return [deploy_dir / s for s in subnets.replace(",", " ").split()]
    dirs = sorted((p.parent for p in deploy_dir.glob("*/pretrained.pt")),
                  key=lambda d: json.loads((d / "export.json").read_text())["params"])
    if not dirs:
        raise SystemExit(f"no deployed subnets in {deploy_dir}: run stage 6 of a causal run "
                         "(./run.sh --causal true --exp-dir exp/causal --stage 6)")
    return [dirs[0], dirs[-1]] if len(dirs) > 1 else dirs


def main() -> None:
    args = get_parser().parse_args()
    torch.set_num_threads(1)
    cuts = load_cuts(args.manifest_dir, args.corpus, args.test_set, args.max_utterances)
    audios = [load_mono(cut) for cut in cuts]
    seconds = sum(a.size for a in audios) / SAMPLE_RATE
    precisions = args.precisions.replace(",", " ").split()
    print(f"{len(audios)} utterances of {args.corpus} {args.test_set} ({seconds:.1f} s of audio), greedy search, "
          "1 thread, audio arriving in real time in 10 ms packets; CPU time; latency in ms (see the doc)")
    header = ("| subnet | encoder | chunk | RTF stream | RTF offline | stream / offline | words | latency mean "
              "| p50 | p90 | max | wait mean |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    with tempfile.TemporaryDirectory() as tmp:
        for spec_dir in chosen_subnets(args.deploy_dir, args.subnets):
            model, reference = load_subnet(spec_dir), offline_rtf(spec_dir, audios)
            for chunk in args.chunks:
                if chunk % chunk_multiple(model):
                    print(f"| {spec_dir.name} | - | {chunk} ({chunk * 40} ms) | skipped: its blocks at a lower frame "
                          f"rate need chunks of a multiple of {chunk_multiple(model)} frames |", flush=True)
                    continue
                encoder = Path(tmp) / f"encoder-{spec_dir.name}-{chunk}.onnx"
                export_streaming_encoder(model, encoder, chunk, {"todm_spec": spec_dir.name})
                for precision in precisions:
                    if precision == "int8":
                        quantize(encoder, encoder.with_suffix(".int8.onnx"), ["MatMul"])
                    m = measure(spec_dir, encoder.with_suffix(".int8.onnx") if precision == "int8" else encoder,
                                audios, chunk)
                    print(f"| {spec_dir.name} | {precision} | {chunk} ({chunk * 40} ms) | {m['rtf']:.4f} | "
                          f"{reference:.4f} | {m['rtf'] / reference:.2f}x | {m['words']} | {m['mean']:.0f} | "
                          f"{m['p50']:.0f} | {m['p90']:.0f} | {m['max']:.0f} | {m['wait']:.0f} |", flush=True)
    print(f"target: streaming RTF <= {RTF_TARGET} for the largest subnet at 1 thread")


if __name__ == "__main__":
    main()
