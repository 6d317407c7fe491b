#!/usr/bin/env python3
"""Decode test sets with the exported models in sherpa-onnx, the real on-device runtime (stage 6).

For each deployed subnet ``<deploy-dir>/<spec>/`` (written by ``todm.export``), every cut of
``<manifest-dir>/<corpus>_cuts_<set>.jsonl.gz`` is decoded from its *audio* (the recording the
cut points to, not the stored fbank) by ``sherpa_onnx.OfflineRecognizer``: the fp32 and the int8
models, greedy search and modified beam search, one thread. sherpa-onnx computes its own fbank
with kaldi-native-fbank; its defaults (16 kHz, 80 bins, 25/10 ms, povey window, high_freq -400,
snip_edges false, dither 0) are lhotse ``FbankConfig``'s, so the front end matches training.

    python -m todm.sherpa_decode --deploy-dir exp/deploy --manifest-dir data/fbank --corpus builtin \
        --test-sets "test" [--subnets "L2-F144-H1"] [--decoding-methods "greedy_search"]

Writes, per subnet, icefall's ``recogs-/errs-/wer-summary-<set>-sherpa-<precision>-<method>_<suffix>``
(via ``todm.wer.write_results``) and ``onnx_results.json``: WER per precision, method and set,
RTF and the ONNX file sizes.

RTF = decode seconds / audio seconds, measured as stage 4 (``todm.decode``) measures PyTorch's,
so that the two compare: at ``--num-threads`` (1: process CPU time, ``todm.decode.rtf_clock``),
one utterance at a time, after an untimed warm-up decode, encoder + search only. sherpa-onnx
computes the fbank when a stream accepts the waveform, and stage 4 reads stored features, so
that part is timed apart (``feature_seconds``, ``rtf_features``). An online model computes
features as it decodes: its RTF includes them (``rtf_includes_features``). Audio loading is
never timed.

``--model-type ""`` (default) lets sherpa-onnx pick its implementation from the encoder's
``model_type`` metadata, as its ``sherpa-onnx-offline`` CLI does, so the metadata is tested too.

``--streaming true`` decodes the online models of a causal run instead (``<spec>/streaming/``,
``todm.streaming``) with ``sherpa_onnx.OnlineRecognizer``, chunk by chunk (``todm.sherpa_stream``),
and writes the same files there. It also decodes the same padded audio with the offline fp32
model of the subnet and counts the utterances whose greedy tokens are identical
(``streaming_equals_offline`` in onnx_results.json: both are the same causal model).

Before loading a model, ``todm.deploy_check`` checks that its files, metadata and tokens.txt
belong together; a cut sampled at another rate than the models' 16 kHz is refused, naming its
audio file.
"""

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import sherpa_onnx
from lhotse import CutSet

from todm.decode import rtf_clock
from todm.deploy_check import check_model_dir
from todm.onnx_io import metadata
from todm.sherpa_stream import (SAMPLE_RATE, make_online_recognizer, padded_for_stream, recognize_streaming,
                                stream_geometry)
from todm.streaming import STREAMING_DIR
from todm.subsampling import MIN_INPUT_FRAMES
from todm.utils import console_logging, read_tokens, save_json, str2bool
from todm.wer import write_results

PRECISIONS = {"fp32": "", "int8": ".int8"}
PARTS = ("encoder", "decoder", "joiner")
FRAME_SHIFT_SAMPLES_16K = 160
WARM_UP_SECONDS = 2.0  # of silence, decoded untimed by each recognizer before it is timed


class Decoded(NamedTuple):
    """One utterance decoded: words, tokens, and the seconds spent computing its features and
    then decoding them (an online model: features included in decode_seconds, feature_seconds 0)."""

    words: list[str]
    tokens: list[str]
    feature_seconds: float
    decode_seconds: float


def find_suffix(spec_dir: Path, suffix: str = "") -> str:
    """The checkpoint suffix of the ONNX files in ``spec_dir`` (``encoder-<suffix>.onnx``).

    Given ``suffix`` is checked; otherwise there must be exactly one fp32 encoder.
    """
    if suffix:
        if not (spec_dir / f"encoder-{suffix}.onnx").is_file():
            raise FileNotFoundError(f"{spec_dir}/encoder-{suffix}.onnx does not exist: run todm.export (stage 6)")
        return suffix
    found = sorted(p.name[len("encoder-"):-len(".onnx")] for p in spec_dir.glob("encoder-*.onnx")
                   if not p.name.endswith(".int8.onnx"))
    if not found:
        raise FileNotFoundError(f"no encoder-*.onnx in {spec_dir}: run todm.export (stage 6) first")
    if len(found) > 1:
        raise ValueError(f"{spec_dir} holds exports of several checkpoints ({', '.join(found)}): pass --suffix")
    return found[0]


def model_files(spec_dir: Path, suffix: str, precision: str) -> dict[str, Path]:
    """{"encoder": path, "decoder": ..., "joiner": ...} of one precision; errors name a missing file."""
    tag = PRECISIONS[precision]
    files = {part: spec_dir / f"{part}-{suffix}{tag}.onnx" for part in PARTS}
    for path in files.values():
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: run todm.export (stage 6)"
                                    + (" with --enable-int8-quantization true" if tag else ""))
    return files


def make_recognizer(files: dict[str, Path], tokens: Path, method: str, num_threads: int, max_active_paths: int,
                    model_type: str) -> sherpa_onnx.OfflineRecognizer:
    return sherpa_onnx.OfflineRecognizer.from_transducer(
        encoder=str(files["encoder"]), decoder=str(files["decoder"]), joiner=str(files["joiner"]),
        tokens=str(tokens), num_threads=num_threads, sample_rate=16000, feature_dim=80, dither=0.0,
        decoding_method=method, max_active_paths=max_active_paths, model_type=model_type)


def load_mono(cut) -> np.ndarray:
    """The cut's 16 kHz audio as a float32 [-1, 1] vector; errors name the cut (and its file)."""
    if cut.sampling_rate != SAMPLE_RATE:
        sources = ", ".join(str(s.source) for s in cut.recording.sources)
        raise ValueError(f"{sources}: cut {cut.id} is sampled at {cut.sampling_rate} Hz, the models at {SAMPLE_RATE} "
                         "Hz: resample it (stage 1 does, e.g. sox in.wav -r 16000 out.wav)")
    try:
        audio = cut.load_audio()
    except Exception as e:
        raise RuntimeError(f"cut {cut.id}: cannot load its audio ({e})") from e
    if audio.ndim == 2 and audio.shape[0] != 1:
        raise ValueError(f"cut {cut.id}: expected one audio channel, got {audio.shape[0]}")
    return np.ascontiguousarray(audio.reshape(-1), dtype=np.float32)


def too_short(num_samples: int, sampling_rate: int) -> bool:
    """Fewer fbank frames (10 ms, snip_edges false) than the 4x subsampling needs: decode as empty."""
    shift = sampling_rate // 100
    return (num_samples + shift // 2) // shift < MIN_INPUT_FRAMES


def recognize(recognizer: sherpa_onnx.OfflineRecognizer, audio: np.ndarray, sampling_rate: int = SAMPLE_RATE,
              clock: Callable[[], float] = time.process_time) -> Decoded:
    """One utterance (sherpa-onnx joins BPE pieces; ``▁`` becomes a space), timed on ``clock``:
    the fbank (computed as the stream accepts the waveform), then encoder + search."""
    if too_short(audio.size, sampling_rate):
        return Decoded([], [], 0.0, 0.0)
    start = clock()
    stream = recognizer.create_stream()
    stream.accept_waveform(sampling_rate, audio)
    computed = clock()
    recognizer.decode_stream(stream)
    end = clock()
    return Decoded(stream.result.text.split(), list(stream.result.tokens), computed - start, end - computed)


def make_decoder(files: dict[str, Path], tokens: Path, method: str, num_threads: int, max_active_paths: int,
                 model_type: str, streaming: bool) -> Callable[[np.ndarray], Decoded]:
    """audio -> ``Decoded`` with sherpa-onnx's offline recognizer, or its online one fed the
    padded audio chunk by chunk (``todm.sherpa_stream``), timed on ``rtf_clock(num_threads)``.
    The recognizer has decoded ``WARM_UP_SECONDS`` of silence (untimed) when it is returned."""
    clock = rtf_clock(num_threads)
    if streaming:
        online = make_online_recognizer(files, tokens, method, num_threads, max_active_paths, model_type)
        size, shift = stream_geometry(files["encoder"])

        def decode(audio: np.ndarray) -> Decoded:
            start = clock()
            words, tokens = recognize_streaming(online, audio, size, shift)
            return Decoded(words, tokens, 0.0, clock() - start)
    else:
        recognizer = make_recognizer(files, tokens, method, num_threads, max_active_paths, model_type)

        def decode(audio: np.ndarray) -> Decoded:
            return recognize(recognizer, audio, clock=clock)

    decode(np.zeros(int(WARM_UP_SECONDS * SAMPLE_RATE), dtype=np.float32))
    return decode


def load_cuts(manifest_dir: Path, corpus: str, test_set: str, max_utterances: int) -> CutSet:
    path = manifest_dir / f"{corpus}_cuts_{test_set}.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run stages 0-1 (manifests, fbank) for set {test_set!r}")
    cuts = CutSet.from_file(path)
    return cuts.subset(first=max_utterances) if max_utterances > 0 else cuts


def _decode_set(decoders: dict[tuple[str, str], Callable], cuts: CutSet, test_set: str) -> dict[str, Any]:
    """Decode one set with every decoder, each utterance's audio loaded once and given to the
    decoders in turn (so that a change of machine load hits them alike). Returns hyps
    {key: [(cut id, ref, hyp words)]}, tokens {key: {cut id: tokens}}, seconds and
    feature_seconds {key: s}, audio_seconds and num_cuts."""
    out: dict[str, Any] = {"hyps": {key: [] for key in decoders}, "tokens": {key: {} for key in decoders},
                           "seconds": dict.fromkeys(decoders, 0.0), "feature_seconds": dict.fromkeys(decoders, 0.0),
                           "audio_seconds": 0.0, "num_cuts": 0}
    for cut in cuts:
        if not cut.supervisions:
            raise ValueError(f"cut {cut.id} in set {test_set!r} has no supervision (reference text)")
        ref = " ".join(s.text or "" for s in cut.supervisions).split()
        audio = load_mono(cut)
        out["audio_seconds"] += audio.size / cut.sampling_rate
        out["num_cuts"] += 1
        for key, decode in decoders.items():
            decoded = decode(audio)
            out["seconds"][key] += decoded.decode_seconds
            out["feature_seconds"][key] += decoded.feature_seconds
            out["hyps"][key].append((cut.id, ref, decoded.words))
            out["tokens"][key][cut.id] = decoded.tokens
    if out["num_cuts"] == 0:
        raise ValueError(f"set {test_set!r} has no cuts")
    return out


def streaming_equals_offline(spec_dir: Path, suffix: str, cut_sets: dict[str, CutSet],
                             stream_tokens: dict[str, list[str]], num_threads: int) -> dict[str, Any]:
    """Decode each cut's padded audio (what the stream decoded) with the offline fp32 model of
    the same causal subnet, greedy search, and count the utterances whose tokens equal the
    stream's ``stream_tokens`` {cut id: tokens}."""
    offline = make_recognizer(model_files(spec_dir, suffix, "fp32"), spec_dir / "tokens.txt", "greedy_search",
                              num_threads, 4, "")
    size, shift = stream_geometry(model_files(spec_dir / STREAMING_DIR, suffix, "fp32")["encoder"])
    differing = [cut.id for cuts in cut_sets.values() for cut in cuts
                 if recognize(offline, padded_for_stream(load_mono(cut), size, shift)).tokens != stream_tokens[cut.id]]
    return {"utterances": len(stream_tokens), "identical": len(stream_tokens) - len(differing),
            "differing": differing[:20]}


def decode_subnet(spec_dir: Path, cut_sets: dict[str, CutSet], methods: list[str], precisions: list[str],
                  num_threads: int = 1, max_active_paths: int = 4, model_type: str = "",
                  suffix: str = "", streaming: bool = False) -> dict[str, Any]:
    """Decode every set with every (precision, method); write the WER files and onnx_results.json.

    ``streaming``: decode the online models of ``spec_dir/streaming/`` chunk by chunk and write
    there, with ``streaming_equals_offline`` when fp32 greedy search is among them.
    """
    model_dir = spec_dir / STREAMING_DIR if streaming else spec_dir
    if not model_dir.is_dir():
        raise FileNotFoundError(f"{model_dir} does not exist: online models are exported for causal models only "
                                "(./run.sh --causal true)")
    suffix = find_suffix(model_dir, suffix)
    tokens = model_dir / "tokens.txt"
    if not tokens.is_file():
        raise FileNotFoundError(f"{tokens} does not exist: run todm.export (stage 6)")
    if read_tokens(tokens).get("<blk>") != 0:
        raise ValueError(f"{tokens}: sherpa-onnx needs <blk> with id 0")
    files = {p: model_files(model_dir, suffix, p) for p in precisions}
    for precision in precisions:
        check_model_dir(model_dir, files[precision], tokens, streaming)
    decoders = {(p, m): make_decoder(files[p], tokens, m, num_threads, max_active_paths, model_type, streaming)
                for p in precisions for m in methods}
    tag = "streaming-" if streaming else ""
    results: dict[str, dict[str, dict[str, Any]]] = {p: {m: {} for m in methods} for p in precisions}
    greedy_tokens: dict[str, list[str]] = {}
    for test_set, cuts in cut_sets.items():
        decoded = _decode_set(decoders, cuts, test_set)
        greedy_tokens.update(decoded["tokens"].get(("fp32", "greedy_search"), {}))
        audio_seconds = decoded["audio_seconds"]
        for (precision, method), res in decoded["hyps"].items():
            stats = write_results(model_dir, test_set, f"sherpa-{tag}{precision}-{method}_{suffix}", res)
            seconds, features = decoded["seconds"][precision, method], decoded["feature_seconds"][precision, method]
            results[precision][method][test_set] = {
                **stats, "num_utterances": decoded["num_cuts"], "audio_seconds": round(audio_seconds, 3),
                "decode_seconds": round(seconds, 3), "rtf": seconds / audio_seconds,
                **({} if streaming else {"feature_seconds": round(features, 3),
                                         "rtf_features": features / audio_seconds}),
            }
            logging.info(f"{spec_dir.name} {tag}{precision} {method} {test_set}: WER {stats['wer']:.2f}% "
                         f"RTF {seconds / audio_seconds:.4f}")
    summary = {
        "spec": spec_dir.name,
        "suffix": suffix,
        "streaming": streaming,
        "params": _export_info(spec_dir).get("params"),
        "model_type": metadata(files[precisions[0]]["encoder"]).get("model_type"),
        "sherpa_model_type_arg": model_type,
        "num_threads": num_threads,
        "clock": rtf_clock(num_threads).__name__,  # process_time or perf_counter, as todm.decode's
        "rtf_includes_features": streaming,
        "max_active_paths": max_active_paths,
        "file_bytes": {p: _sizes(files[p]) for p in precisions},
        "results": results,
        "wer": {p: {m: {s: r["wer"] for s, r in results[p][m].items()} for m in methods} for p in precisions},
        "rtf": {p: {m: _pooled_rtf(results[p][m]) for m in methods} for p in precisions},
    }
    if streaming and greedy_tokens:
        summary["streaming_equals_offline"] = streaming_equals_offline(spec_dir, suffix, cut_sets, greedy_tokens,
                                                                       num_threads)
        logging.info(f"{spec_dir.name}: streaming greedy tokens = offline on "
                     f"{summary['streaming_equals_offline']['identical']}/{len(greedy_tokens)} utterances")
    save_json(summary, model_dir / "onnx_results.json")
    return summary


def _sizes(files: dict[str, Path]) -> dict[str, int]:
    sizes = {part: path.stat().st_size for part, path in files.items()}
    sizes["total"] = sum(sizes.values())
    return sizes


def _pooled_rtf(per_set: dict[str, dict[str, Any]]) -> float:
    """RTF over all sets together: total decode seconds / total audio seconds."""
    return sum(r["decode_seconds"] for r in per_set.values()) / sum(r["audio_seconds"] for r in per_set.values())


def _export_info(spec_dir: Path) -> dict[str, Any]:
    path = spec_dir / "export.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deploy-dir", type=Path, default=Path("exp/deploy"), help="todm.export's --out-dir")
    parser.add_argument("--subnets", type=str, default="", help="specs to decode; default: every exported one")
    parser.add_argument("--suffix", type=str, default="",
                        help="checkpoint suffix of the ONNX files (epoch-12_avg-4...); default: the only one")
    parser.add_argument("--manifest-dir", type=Path, default=Path("data/fbank"),
                        help="where stage 1 wrote <corpus>_cuts_<set>.jsonl.gz")
    parser.add_argument("--corpus", type=str, default="builtin", help="corpus name in the manifest file names")
    parser.add_argument("--test-sets", type=str, default="test", help="space/comma separated set names")
    parser.add_argument("--decoding-methods", type=str, default="greedy_search modified_beam_search",
                        help="sherpa-onnx decoding methods, space/comma separated")
    parser.add_argument("--max-active-paths", type=int, default=4, help="beam of modified_beam_search")
    parser.add_argument("--precisions", type=str, default="fp32 int8", help="fp32 and/or int8")
    parser.add_argument("--num-threads", type=int, default=1, help="onnxruntime threads (RTF is measured at this)")
    parser.add_argument("--model-type", type=str, default="",
                        help='sherpa-onnx model_type; "" = read it from the encoder metadata')
    parser.add_argument("--max-utterances", type=int, default=0, help="decode only the first N cuts per set (0 = all)")
    parser.add_argument("--streaming", type=str2bool, default=False,
                        help="decode the online models in <spec>/streaming/ (a --causal true run) chunk by chunk")
    return parser


def _split(text: str) -> list[str]:
    return text.replace(",", " ").split()


def main() -> None:
    args = get_parser().parse_args()
    console_logging()
    precisions, methods = _split(args.precisions), _split(args.decoding_methods)
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise ValueError(f"--precisions: expected fp32 and/or int8, got {args.precisions!r}")
    bad = [m for m in methods if m not in ("greedy_search", "modified_beam_search")]
    if bad or not methods:
        raise ValueError(f"--decoding-methods: expected greedy_search and/or modified_beam_search, got {bad or methods}")
    if args.subnets.strip():
        spec_dirs = [args.deploy_dir / s for s in _split(args.subnets)]
    else:
        spec_dirs = sorted(p.parent for p in args.deploy_dir.glob("*/export.json"))
    if not spec_dirs:
        raise FileNotFoundError(f"no exported subnets in {args.deploy_dir}: run todm.export (stage 6) first")
    missing = [str(d) for d in spec_dirs if not d.is_dir()]
    if missing:
        raise FileNotFoundError(f"not exported: {', '.join(missing)}; run todm.export (stage 6) for them")
    cut_sets = {s: load_cuts(args.manifest_dir, args.corpus, s, args.max_utterances) for s in _split(args.test_sets)}
    for spec_dir in spec_dirs:
        decode_subnet(spec_dir, cut_sets, methods, precisions, args.num_threads, args.max_active_paths,
                      args.model_type, args.suffix, args.streaming)
        logging.info(f"Wrote {spec_dir / (STREAMING_DIR if args.streaming else '') / 'onnx_results.json'}")


if __name__ == "__main__":
    main()
