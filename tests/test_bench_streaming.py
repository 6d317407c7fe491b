"""bench/bench_streaming.py: its latency definition on synthetic emissions, and a run on a tiny
causal deploy whose latencies stay within what the chunking alone allows."""

import importlib.util
import re
import sys

import pytest
from test_export import SPEC, SUFFIX, tiny_supernet, write_tokens
from test_sherpa_decode import _write_cuts

from conftest import ROOT
from todm.export import deploy_subnet

spec = importlib.util.spec_from_file_location("bench_streaming", ROOT / "bench" / "bench_streaming.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_a_frame_reads_audio_up_to_the_end_of_its_last_fbank_window():
    # encoder frame t reads fbank frames 4t..4t+8; frame i's 25 ms window ends at 10 i + 17.5 ms
    assert bench.frame_audio_end(0) == pytest.approx(0.0975)
    assert bench.frame_audio_end(10) - bench.frame_audio_end(9) == pytest.approx(0.04)


def test_a_word_ends_at_its_last_token():
    emissions = [("▁A", 2, 0.5, 0.4), ("B", 5, 0.6, 0.5), ("▁C", 9, 1.0, 0.9), ("▁D", 30, 2.0, 1.5)]
    latencies = bench.word_latencies(emissions, audio_seconds=1.2)
    assert latencies == pytest.approx([(0.6 - bench.frame_audio_end(5), 0.5 - bench.frame_audio_end(5)),
                                       (1.0 - bench.frame_audio_end(9), 0.9 - bench.frame_audio_end(9)),
                                       (2.0 - 1.2, 1.5 - 1.2)])  # frame 30 reads past the end: capped


def test_runs_on_a_causal_deploy_and_waits_at_most_a_chunk(tmp_path, capsys):
    root = tmp_path
    _write_cuts(root)
    deploy_subnet(tiny_supernet(causal=True), SPEC, root / "deploy" / str(SPEC), SUFFIX,
                  write_tokens(root / "tokens.txt"), int8=False, streaming_chunk=0)
    old, sys.argv = sys.argv, ["bench_streaming.py", "--deploy-dir", str(root / "deploy"), "--manifest-dir",
                               str(root / "data" / "fbank"), "--chunks", "1,4", "--max-utterances", "2"]
    try:
        bench.main()
    finally:
        sys.argv = old
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {SPEC} |")]
    assert len(rows) == 2
    for row, chunk in zip(rows, (1, 4)):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == f"{chunk} ({chunk * 40} ms)" and float(cells[3]) > 0 and int(cells[6]) > 0
        # with free compute a word waits for the rest of its chunk, one more fbank frame and the end of
        # the 10 ms packet: 40 (k - 1 - j) + 12.5 ms for frame j of a chunk (less at the very end)
        assert 0 <= int(cells[11]) <= 40 * (chunk - 1) + 13 and int(cells[7]) >= int(cells[11])
        assert re.fullmatch(r"\d+\.\d\dx", cells[5])
