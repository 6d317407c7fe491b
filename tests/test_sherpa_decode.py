"""todm.sherpa_decode: a tiny exported model decodes a cut set of real 16 kHz wavs in sherpa-onnx,
offline and (a causal model) streaming; files that do not belong together are named.

The expected fp32 greedy WER is computed here, independently: a greedy search over lhotse fbank
with the PyTorch model (test_export's reference) and kaldialign's edit distance.
"""

import json
import re
import shutil
import sys
from pathlib import Path

import kaldialign
import numpy as np
import onnx
import pytest
import soundfile as sf
from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from test_export import SPEC, SUFFIX, _greedy_reference, tiny_supernet, write_tokens, write_wav

from todm import sherpa_decode
from todm.deploy_check import check_model_dir
from todm.export import deploy_subnet
from todm.sherpa_stream import padded_for_stream, stream_geometry
from todm.subnet import SubnetSpec

METHODS = ("greedy_search", "modified_beam_search")
TEXTS = ["W3 W5 W7", "W18 W16 W14 W10", "W4"]


def _write_cuts(root: Path) -> dict[str, list]:
    """data/fbank/builtin_cuts_test.jsonl.gz with two speech-length wavs and one of 50 ms."""
    recordings, supervisions, audio = [], [], {}
    for i, (seconds, text) in enumerate(zip((1.2, 0.8, 0.05), TEXTS)):
        path = root / "wav" / f"utt{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        audio[f"utt{i}"] = write_wav(path, seconds, seed=i)
        rec = Recording.from_file(path, recording_id=f"utt{i}")
        recordings.append(rec)
        supervisions.append(SupervisionSegment(id=f"utt{i}", recording_id=f"utt{i}", start=0.0,
                                               duration=rec.duration, text=text))
    cuts = CutSet.from_manifests(recordings=RecordingSet.from_recordings(recordings),
                                 supervisions=SupervisionSet.from_segments(supervisions))
    cuts = cuts.modify_ids(lambda cut_id: cut_id.split("-")[0])  # cut id = recording id
    (root / "data" / "fbank").mkdir(parents=True)
    cuts.to_file(root / "data" / "fbank" / "builtin_cuts_test.jsonl.gz")
    return audio


@pytest.fixture(scope="module")
def decoded(tmp_path_factory):
    root = tmp_path_factory.mktemp("sherpa")
    audio = _write_cuts(root)
    supernet = tiny_supernet()
    deploy_subnet(supernet, SPEC, root / "deploy" / str(SPEC), SUFFIX, write_tokens(root / "tokens.txt"))
    _decode_cuts(root)
    return root, supernet, audio


def _decode_cuts(root: Path, *args: str) -> None:
    """todm.sherpa_decode's command line on root/deploy and root's cut set."""
    old, sys.argv = sys.argv, ["todm.sherpa_decode", "--deploy-dir", str(root / "deploy"), "--manifest-dir",
                               str(root / "data" / "fbank"), "--corpus", "builtin", "--test-sets", "test", *args]
    try:
        sherpa_decode.main()
    finally:
        sys.argv = old


def test_files_and_json(decoded):
    root, _, _ = decoded
    spec_dir = root / "deploy" / str(SPEC)
    for precision in ("fp32", "int8"):
        for method in METHODS:
            key = f"sherpa-{precision}-{method}_{SUFFIX}"
            for kind in ("recogs", "errs", "wer-summary"):
                assert (spec_dir / f"{kind}-test-{key}.txt").is_file(), (kind, key)
            recogs = (spec_dir / f"recogs-test-{key}.txt").read_text()
            assert "utt2:\thyp=[]" in recogs  # 50 ms: too short to decode, empty hypothesis
    res = json.loads((spec_dir / "onnx_results.json").read_text())
    assert res["spec"] == str(SPEC) and res["suffix"] == SUFFIX and res["model_type"] == "conformer"
    assert res["num_threads"] == 1 and res["params"] > 0
    assert res["clock"] == "process_time" and res["rtf_includes_features"] is False  # timed as todm.decode times
    for precision, tag in (("fp32", ""), ("int8", ".int8")):
        sizes = res["file_bytes"][precision]
        on_disk = sum((spec_dir / f"{p}-{SUFFIX}{tag}.onnx").stat().st_size for p in ("encoder", "decoder", "joiner"))
        assert sizes["total"] == on_disk
        for method in METHODS:
            r = res["results"][precision][method]["test"]
            assert r["num_utterances"] == 3 and r["ref_words"] == 8
            assert abs(r["audio_seconds"] - 2.05) < 0.01 and r["decode_seconds"] > 0 and r["rtf"] > 0
            assert res["wer"][precision][method]["test"] == r["wer"]
            assert res["rtf"][precision][method] == pytest.approx(r["decode_seconds"] / r["audio_seconds"])
            assert r["feature_seconds"] > 0  # rounded to ms, rtf_features is not
            assert r["rtf_features"] * r["audio_seconds"] == pytest.approx(r["feature_seconds"], abs=1e-3)


def test_each_recognizer_is_warmed_up_and_features_are_timed_apart(decoded, monkeypatch):
    root, _, audio = decoded
    spec_dir = root / "deploy" / str(SPEC)
    files = sherpa_decode.model_files(spec_dir, SUFFIX, "fp32")
    seen, recognize = [], sherpa_decode.recognize

    def recording(recognizer, samples, *args, **kwargs):
        seen.append(samples)
        return recognize(recognizer, samples, *args, **kwargs)

    monkeypatch.setattr(sherpa_decode, "recognize", recording)
    decode = sherpa_decode.make_decoder(files, spec_dir / "tokens.txt", "greedy_search", 1, 4, "", False)
    assert len(seen) == 1 and seen[0].size == 2 * 16000 and not seen[0].any()  # 2 s of silence, before timing
    out = decode(audio["utt0"])
    assert out.feature_seconds > 0 and out.decode_seconds > 0  # the fbank is not in the decode time
    assert out.tokens == recognize(sherpa_decode.make_recognizer(files, spec_dir / "tokens.txt", "greedy_search", 1,
                                                                 4, ""), audio["utt0"]).tokens


def test_fp32_greedy_wer_matches_pytorch_reference(decoded):
    root, supernet, audio = decoded
    errors = 0
    for i, text in enumerate(TEXTS):
        samples = audio[f"utt{i}"]
        hyp = [] if samples.size < 1360 else [f"W{t}" for t in _greedy_reference(supernet, samples)]
        errors += kaldialign.edit_distance(text.split(), hyp)["total"]
    res = json.loads((root / "deploy" / str(SPEC) / "onnx_results.json").read_text())
    assert res["wer"]["fp32"]["greedy_search"]["test"] == pytest.approx(100.0 * errors / 8)


def test_bad_input_is_named(decoded, tmp_path):
    root, _, _ = decoded
    with pytest.raises(FileNotFoundError, match="stages 0-1"):
        sherpa_decode.load_cuts(root / "data" / "fbank", "builtin", "dev", 0)
    spec_dir = tmp_path / str(SPEC)
    shutil.copytree(root / "deploy" / str(SPEC), spec_dir)
    shutil.copy(spec_dir / f"encoder-{SUFFIX}.onnx", spec_dir / "encoder-epoch-2_avg-1.onnx")
    with pytest.raises(ValueError, match="pass --suffix"):
        sherpa_decode.find_suffix(spec_dir)
    assert sherpa_decode.find_suffix(spec_dir, SUFFIX) == SUFFIX
    (spec_dir / f"joiner-{SUFFIX}.int8.onnx").unlink()
    with pytest.raises(FileNotFoundError, match="joiner"):
        sherpa_decode.model_files(spec_dir, SUFFIX, "int8")
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, [[0.0, 0.0]] * 1600, 16000)
    cut = Recording.from_file(stereo, recording_id="two-channels").to_cut()
    with pytest.raises(ValueError, match="two-channels"):
        sherpa_decode.load_mono(cut)


@pytest.fixture(scope="module")
def streamed(tmp_path_factory):
    """A causal subnet deployed offline and online, its cut set decoded both ways by main()."""
    root = tmp_path_factory.mktemp("stream")
    audio = _write_cuts(root)
    supernet = tiny_supernet(causal=True)
    deploy_subnet(supernet, SPEC, root / "deploy" / str(SPEC), SUFFIX, write_tokens(root / "tokens.txt"),
                  streaming_chunk=3)
    for streaming in ("false", "true"):
        _decode_cuts(root, "--streaming", streaming)
    return root, supernet, audio


def test_streaming_decode_equals_offline_and_pytorch(streamed):
    root, supernet, audio = streamed
    stream_dir = root / "deploy" / str(SPEC) / "streaming"
    res = json.loads((stream_dir / "onnx_results.json").read_text())
    assert res["streaming"] is True and res["model_type"] == "lstm" and res["spec"] == str(SPEC)
    assert res["streaming_equals_offline"] == {"utterances": 3, "identical": 3, "differing": []}
    assert res["rtf_includes_features"] is True  # an online model computes features as it decodes
    assert "feature_seconds" not in res["results"]["fp32"]["greedy_search"]["test"]
    for precision in ("fp32", "int8"):
        for method in METHODS:
            assert (stream_dir / f"recogs-test-sherpa-streaming-{precision}-{method}_{SUFFIX}.txt").is_file()
            assert res["results"][precision][method]["test"]["num_utterances"] == 3
    errors = 0
    for i, text in enumerate(TEXTS):  # PyTorch's offline greedy search on the audio the stream decoded
        samples = padded_for_stream(audio[f"utt{i}"], *stream_geometry(stream_dir / f"encoder-{SUFFIX}.onnx"))
        hyp = [f"W{t}" for t in _greedy_reference(supernet, samples)]
        errors += kaldialign.edit_distance(text.split(), hyp)["total"]
    assert res["wer"]["fp32"]["greedy_search"]["test"] == pytest.approx(100.0 * errors / 8)
    offline = json.loads((root / "deploy" / str(SPEC) / "onnx_results.json").read_text())
    assert offline["streaming"] is False and "streaming_equals_offline" not in offline


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_models_that_do_not_belong_together_are_named(streamed, tmp_path):
    root, supernet, _ = streamed
    spec_dir = root / "deploy" / str(SPEC)
    files = sherpa_decode.model_files(spec_dir, SUFFIX, "fp32")
    other_vocab = write_tokens(tmp_path / "tokens10.txt", vocab_size=10)
    with pytest.raises(ValueError, match=re.escape(f"{files['decoder']}: exported with vocab_size 20, but "
                                                   f"{other_vocab} has 10 tokens")):
        check_model_dir(spec_dir, files, other_vocab, streaming=False)
    other = SubnetSpec(2, 16, 2)  # an encoder exported from another subnet, copied into SPEC's directory
    deploy_subnet(supernet, other, tmp_path / str(other), SUFFIX, root / "tokens.txt", int8=False, streaming_chunk=0)
    wrong = _copy(spec_dir, tmp_path / str(SPEC))
    shutil.copy(tmp_path / str(other) / f"encoder-{SUFFIX}.onnx", wrong / f"encoder-{SUFFIX}.onnx")
    with pytest.raises(ValueError, match=re.escape(f"{wrong / f'encoder-{SUFFIX}.onnx'}: exported from subnet "
                                                   f"{other}, but {wrong} is for {SPEC}")):
        sherpa_decode.decode_subnet(wrong, {}, ["greedy_search"], ["fp32"])


def _set_metadata(path: Path, **values: str) -> None:
    model = onnx.load(str(path))
    for prop in model.metadata_props:
        prop.value = values.get(prop.key, prop.value)
    onnx.save(model, str(path))


def test_a_too_short_chunk_and_a_wrong_sample_rate_are_named(streamed, tmp_path):
    root, _, _ = streamed
    stream_dir = _copy(root / "deploy" / str(SPEC) / "streaming", tmp_path / str(SPEC) / "streaming")
    encoder = stream_dir / f"encoder-{SUFFIX}.onnx"
    files = sherpa_decode.model_files(stream_dir, SUFFIX, "fp32")
    _set_metadata(encoder, T="9")  # a chunk too short for the 12-frame shift
    with pytest.raises(ValueError, match=re.escape(f"{encoder}: chunks of T=9 frames with a shift of 12 are not")):
        check_model_dir(stream_dir, files, stream_dir / "tokens.txt", streaming=True)
    _set_metadata(encoder, T="13", decode_chunk_len="8")  # whole chunks of 2 frames, but the graph's are of 3
    with pytest.raises(ValueError, match=re.escape(f"{encoder}: its metadata says chunks of T=13 frames but its "
                                                   "graph takes 17")):
        check_model_dir(stream_dir, files, stream_dir / "tokens.txt", streaming=True)
    wav = tmp_path / "8k.wav"
    sf.write(wav, np.zeros(8000, dtype=np.float32), 8000)
    cut = Recording.from_file(wav, recording_id="narrowband").to_cut()
    with pytest.raises(ValueError, match=re.escape(f"{wav}: cut ") + r"narrowband\S* is sampled at 8000 Hz"):
        sherpa_decode.load_mono(cut)
