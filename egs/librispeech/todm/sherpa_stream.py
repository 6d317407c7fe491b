"""Streaming recognition in sherpa-onnx's OnlineRecognizer, the on-device runtime, chunk by chunk.

The model is a ``<spec>/streaming/`` directory written by ``todm.streaming`` (the ``lstm`` online
model type). sherpa-onnx computes fbank as the audio arrives and runs the encoder on T = 4k + 5
frames at a time, advancing 4k frames (k encoder frames per chunk), as soon as one frame more
than the chunk is ready (``IsReady``: processed + T < ready). So it only ever decodes whole
chunks, and the last one needs a frame past its end: at the end of an utterance the audio is
padded with silence (``padded_for_stream``) to the first length whose chunks cover every
encoder frame the offline model computes on the original audio. On that padded audio the
stream's encoder frames are the offline causal model's, one for one, and so are its tokens.

    stream = recognizer.create_stream(); stream.accept_waveform(16000, samples)  # as they come
    while recognizer.is_ready(stream): recognizer.decode_stream(stream)          # whole chunks
    ... at the end: padded tail, stream.input_finished(), decode what is ready
"""

from pathlib import Path

import numpy as np
import sherpa_onnx

from todm.onnx_io import metadata
from todm.streaming import SUBSAMPLING
from todm.subsampling import subsampled_lengths

SAMPLE_RATE = 16000
FRAME_SHIFT = SAMPLE_RATE // 100  # samples per fbank frame (10 ms)


def stream_geometry(encoder: Path) -> tuple[int, int]:
    """(T, shift): fbank frames per encoder call and frames between calls, from the metadata."""
    meta = metadata(encoder)
    try:
        return int(meta["T"]), int(meta["decode_chunk_len"])
    except (KeyError, ValueError) as e:
        raise ValueError(f"{encoder}: not a streaming encoder (no integer T / decode_chunk_len metadata: {e}); "
                         "export one with todm.export from a --causal true model") from e


def make_online_recognizer(files: dict[str, Path], tokens: Path, method: str, num_threads: int,
                           max_active_paths: int, model_type: str = "") -> sherpa_onnx.OnlineRecognizer:
    """sherpa-onnx's online transducer on the files of one precision; model_type "" reads the
    encoder's metadata (``lstm``), as its CLI does. The front end is the offline one's."""
    return sherpa_onnx.OnlineRecognizer.from_transducer(
        tokens=str(tokens), encoder=str(files["encoder"]), decoder=str(files["decoder"]),
        joiner=str(files["joiner"]), num_threads=num_threads, sample_rate=SAMPLE_RATE, feature_dim=80, dither=0.0,
        decoding_method=method, max_active_paths=max_active_paths, model_type=model_type)


def padded_for_stream(audio: np.ndarray, chunk_size: int, shift: int) -> np.ndarray:
    """``audio`` with the silence the stream needs at its end (see the module doc).

    With F0 fbank frames ((n + 80) // 160 for n samples, kaldi's snip_edges=false), the offline
    model computes n0 = subsampled_lengths(F0) encoder frames; the stream covers them with
    N = ceil(n0 / k) chunks, the last of which is decoded once shift (N - 1) + T + 1 frames are
    ready. Audio that already has them is returned as it is; other audio is padded to exactly
    that many frames, on which the offline model computes N k frames: the stream's.
    """
    frames = (audio.size + FRAME_SHIFT // 2) // FRAME_SHIFT
    chunks = max(1, -(-max(subsampled_lengths(frames), 0) // (shift // SUBSAMPLING)))
    needed = shift * (chunks - 1) + chunk_size + 1
    if frames >= needed:
        return audio
    return np.concatenate([audio, np.zeros(needed * FRAME_SHIFT - audio.size, dtype=audio.dtype)])


def recognize_streaming(recognizer: sherpa_onnx.OnlineRecognizer, audio: np.ndarray, chunk_size: int,
                        shift: int) -> tuple[list[str], list[str]]:
    """(words, tokens) of one 16 kHz utterance, decoded chunk by chunk from its padded audio."""
    stream = recognizer.create_stream()
    stream.accept_waveform(SAMPLE_RATE, padded_for_stream(audio, chunk_size, shift))
    stream.input_finished()
    while recognizer.is_ready(stream):
        recognizer.decode_stream(stream)
    result = recognizer.get_result_all(stream)
    return result.text.split(), list(result.tokens)
