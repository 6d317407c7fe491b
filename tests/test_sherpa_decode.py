"""todm.sherpa_decode: a tiny exported model decodes a cut set of real 16 kHz wavs in sherpa-onnx.

The expected fp32 greedy WER is computed here, independently: a greedy search over lhotse fbank
with the PyTorch model (test_export's reference) and kaldialign's edit distance.
"""

import json
import shutil
import sys
from pathlib import Path

import kaldialign
import pytest
import soundfile as sf
from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from test_export import SPEC, SUFFIX, _greedy_reference, tiny_supernet, write_tokens, write_wav

from todm import sherpa_decode
from todm.export import deploy_subnet

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
    argv = ["todm.sherpa_decode", "--deploy-dir", str(root / "deploy"), "--manifest-dir",
            str(root / "data" / "fbank"), "--corpus", "builtin", "--test-sets", "test"]
    old, sys.argv = sys.argv, argv
    try:
        sherpa_decode.main()
    finally:
        sys.argv = old
    return root, supernet, audio


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
