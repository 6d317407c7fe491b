"""local/wer_by_group.py: a decoded set's WER split by a supervision field, on a hand-made set."""

import pytest
from lhotse import CutSet, MonoCut, SupervisionSegment, SupervisionSet

from local.wer_by_group import group_of_ids, main, wer_by_group
from todm.wer import write_results

# a and b are training voices, c is held out; c's one word out of two is wrong, b's one of four.
SUPERVISIONS = [
    SupervisionSegment(id=f"{speaker}_1", recording_id=f"{speaker}_1", start=0, duration=1, speaker=speaker,
                       custom={"held_out_voice": speaker == "c"})
    for speaker in "abc"
]
RESULTS = [
    ("a_1", ["HELLO", "WORLD"], ["HELLO", "WORLD"]),
    ("b_1", ["ONE", "TWO", "THREE", "FOUR"], ["ONE", "TOO", "THREE", "FOUR"]),
    ("c_1", ["GOOD", "DAY"], ["GOOD"]),
]


@pytest.fixture
def supervisions(tmp_path):
    path = tmp_path / "supervisions.jsonl.gz"
    SupervisionSet.from_segments(SUPERVISIONS).to_file(path)
    return path


def test_split_by_a_custom_key_and_by_speaker(supervisions):
    by_voice = wer_by_group(RESULTS, group_of_ids(supervisions, "held_out_voice"))
    assert by_voice == {"False": {"utts": 2, "words": 6, "wer": pytest.approx(100 / 6)},
                        "True": {"utts": 1, "words": 2, "wer": pytest.approx(50.0)}}
    by_speaker = wer_by_group(RESULTS, group_of_ids(supervisions, "speaker"))
    assert {k: v["wer"] for k, v in by_speaker.items()} == {"a": 0.0, "b": 25.0, "c": 50.0}


def test_cut_ids_of_a_cut_set(tmp_path):
    cuts = CutSet.from_cuts(MonoCut(id=f"cut-{s.id}", start=0, duration=1, channel=0, supervisions=[s])
                            for s in SUPERVISIONS)
    path = tmp_path / "cuts.jsonl.gz"
    cuts.to_file(path)
    groups = group_of_ids(path, "held_out_voice")
    assert groups["cut-c_1"] == groups["c_1"] == "True"


def test_errors_name_the_item(supervisions):
    with pytest.raises(ValueError, match="supervision a_1 has no field or custom key 'accent'"):
        group_of_ids(supervisions, "accent")
    with pytest.raises(ValueError, match="cut d_1 is not in the manifest"):
        wer_by_group(RESULTS + [("d_1", ["X"], ["X"])], group_of_ids(supervisions, "speaker"))


def test_command_line(tmp_path, supervisions, capsys):
    write_results(tmp_path, "test", "k", RESULTS)
    main([str(tmp_path / "recogs-test-k.txt"), "--manifest", str(supervisions)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["recogs", "held_out_voice", "utts", "words", "WER"]
    assert [line.split()[1:] for line in lines[1:]] == [["False", "2", "6", "16.67"], ["True", "1", "2", "50.00"]]
    with pytest.raises(SystemExit, match="wer_by_group: .*missing.txt"):
        main([str(tmp_path / "missing.txt"), "--manifest", str(supervisions)])
