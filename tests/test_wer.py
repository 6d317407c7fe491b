"""icefall-format result files on a small example worked out by hand."""

import pytest

from todm.wer import read_recogs, write_results, write_wer_summary

# utt2: B->X substituted, E inserted; utt1: WORLD deleted; utt3 correct; utt4: two adjacent subs.
RESULTS = [
    ("utt2", ["A", "B", "C", "D"], ["A", "X", "C", "D", "E"]),
    ("utt1", ["HELLO", "WORLD"], ["HELLO"]),
    ("utt3", ["A", "B"], ["A", "B"]),
    ("utt4", ["P", "Q", "R"], ["X", "Y", "R"]),
]


def test_counts_and_files(tmp_path):
    stats = write_results(tmp_path, "dev", "L2-F16-H1_epoch-2_avg-1", RESULTS)
    assert stats == {"wer": pytest.approx(100 * 5 / 11), "ins": 1, "del": 1, "sub": 3, "ref_words": 11}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "errs-dev-L2-F16-H1_epoch-2_avg-1.txt",
        "recogs-dev-L2-F16-H1_epoch-2_avg-1.txt",
        "wer-summary-dev-L2-F16-H1_epoch-2_avg-1.txt",
    ]  # no temp files left behind

    recogs = (tmp_path / "recogs-dev-L2-F16-H1_epoch-2_avg-1.txt").read_text().splitlines()
    assert recogs[:4] == [
        "utt1:\tref=['HELLO', 'WORLD']",
        "utt1:\thyp=['HELLO']",
        "utt2:\tref=['A', 'B', 'C', 'D']",
        "utt2:\thyp=['A', 'X', 'C', 'D', 'E']",
    ]
    assert len(recogs) == 8 and recogs[-1] == "utt4:\thyp=['X', 'Y', 'R']"

    errs = (tmp_path / "errs-dev-L2-F16-H1_epoch-2_avg-1.txt").read_text().splitlines()
    assert errs[0] == "%WER = 45.45"
    assert errs[1] == "Errors: 1 insertions, 1 deletions, 3 substitutions, over 11 reference words (7 correct)"
    details = errs.index("PER-UTT DETAILS: corr or (ref->hyp)  ")
    assert errs[details + 1 : details + 5] == [
        "utt1:\tHELLO (WORLD->*)",
        "utt2:\tA (B->X) C D (*->E)",
        "utt3:\tA B",
        "utt4:\t(P Q->X Y) R",
    ]
    subs = errs.index("SUBSTITUTIONS: count ref -> hyp")
    assert errs[subs + 1 : subs + 4] == ["1   B -> X", "1   P -> X", "1   Q -> Y"]
    dels = errs.index("DELETIONS: count ref")
    assert errs[dels + 1] == "1   WORLD" and errs[dels + 2] == ""
    ins = errs.index("INSERTIONS: count hyp")
    assert errs[ins + 1] == "1   E" and errs[ins + 2] == ""
    per_word = errs.index("PER-WORD STATS: word  corr tot_errs count_in_ref count_in_hyp")
    rows = {line.split()[0]: line.split()[1:] for line in errs[per_word + 1 :]}
    assert rows["A"] == ["2", "0", "2", "2"]
    assert rows["B"] == ["1", "1", "2", "1"]  # correct in utt3, substituted in utt2
    assert rows["X"] == ["0", "2", "0", "2"]  # hypothesis side of two substitutions
    assert rows["E"] == ["0", "1", "0", "1"]
    assert rows["WORLD"] == ["0", "1", "1", "0"]
    assert errs[per_word + 1].startswith("X ")  # most errors first

    summary = (tmp_path / "wer-summary-dev-L2-F16-H1_epoch-2_avg-1.txt").read_text()
    assert summary == "settings\tWER\nL2-F16-H1_epoch-2_avg-1\t45.45\n"


def test_perfect_and_empty_hypotheses(tmp_path):
    assert write_results(tmp_path, "a", "k", [("u", ["X", "Y"], ["X", "Y"])])["wer"] == 0.0
    stats = write_results(tmp_path, "b", "k", [("u", ["X", "Y"], []), ("v", [], [])])
    assert stats == {"wer": 100.0, "ins": 0, "del": 2, "sub": 0, "ref_words": 2}


def test_summary_is_sorted(tmp_path):
    write_wer_summary(tmp_path / "s.txt", {"L2": 10.0, "L6": 1.5, "L4": 5.25})
    assert (tmp_path / "s.txt").read_text().splitlines() == ["settings\tWER", "L6\t1.50", "L4\t5.25", "L2\t10.00"]


@pytest.mark.parametrize("results, message", [
    ([], "no results"),
    ([("u", ["A"], ["A"]), ("u", ["B"], ["B"])], "cut u appears twice"),
    ([("u", "A B", ["A"])], "cut u: ref must be a list of words"),
    ([("u", ["A"], [1])], "cut u: hyp must be a list of words"),
    ([("u", [], ["A"])], "no words"),
])
def test_bad_input(tmp_path, results, message):
    with pytest.raises(ValueError, match=message):
        write_results(tmp_path, "dev", "k", results)
    assert not any(tmp_path.iterdir())


def test_read_recogs_gives_back_what_was_written(tmp_path):
    write_results(tmp_path, "dev", "k", RESULTS)
    assert read_recogs(tmp_path / "recogs-dev-k.txt") == sorted(RESULTS)


@pytest.mark.parametrize("text, message", [
    ("u1:\tref=['A']\nu1 hyp=['A']\n", ":2: expected"),
    ("u1:\tref=['A'\n", ":1: expected"),
    ("u1:\thyp=['A']\n", "hyp of cut u1 without a ref"),
    ("u1:\tref=['A']\n", "cut u1 has a ref line but no hyp"),
])
def test_read_recogs_names_the_bad_line(tmp_path, text, message):
    path = tmp_path / "recogs-dev-k.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_recogs(path)
