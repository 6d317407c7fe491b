"""The token n-gram LM: Kneser-Ney estimates, the ARPA round trip, and next-token scores by model id."""

import math

import pytest
import torch

from todm.token_lm import EOS, TokenNgramLm, kneser_ney, read_arpa, write_arpa

SENTENCES = [list("abcab"), list("abca"), list("cab"), list("bbc"), list("ab")]
PIECES = [None, "a", "b", "c", "d"]  # id 0 is like <blk>: never scored; "d" never occurs in the text


@pytest.fixture
def arpa(tmp_path):
    def write(order: int):
        path = tmp_path / f"lm{order}.arpa"
        write_arpa(kneser_ney(SENTENCES, order, PIECES), path)
        return path
    return write


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_context_is_a_distribution(arpa, order):
    lm = TokenNgramLm.from_arpa(arpa(order), PIECES)
    for history in [(), (1,), (1, 2), (3, 3, 1), (4, 4), (2, 1, 2, 3, 1)]:
        scores = lm.log_probs(history)
        assert scores[0] == 0.0  # unscored id
        total = sum(math.exp(v) for v in scores[1:].tolist()) + math.exp(lm.eos_log_prob(history))
        assert total == pytest.approx(1.0, abs=1e-5), history


def test_bigram_by_hand():
    """Interpolated Kneser-Ney of a corpus small enough to work out on paper."""
    table = kneser_ney([["a", "b"], ["a"]], order=2)
    # bigram counts: <s> a: 2, a b: 1, a </s>: 1, b </s>: 1 -> counts of counts n1 = 3, n2 = 1: D2 = 3/5.
    # unigram continuation counts: a 1 (<s>), b 1 (a), </s> 2 (a, b); n1 = 2, n2 = 1: D1 = 1/2;
    # P1(w) = (c - 1/2) / 4 + (1/2 * 3 / 4) / 3  ->  a 1/4, b 1/4, </s> 1/2.
    assert 10 ** table[("a",)][0] == pytest.approx(0.25)
    assert 10 ** table[(EOS,)][0] == pytest.approx(0.5)
    # after "a": 2 continuations of total count 2, gamma = (3/5) * 2 / 2 = 3/5
    gamma = 0.6
    assert 10 ** table[("a", "b")][0] == pytest.approx((1 - 0.6) / 2 + gamma * 0.25)
    assert 10 ** table[("a", EOS)][0] == pytest.approx((1 - 0.6) / 2 + gamma * 0.5)
    assert 10 ** table[("a",)][1] == pytest.approx(gamma)


def test_arpa_round_trip_and_header(arpa):
    path = arpa(3)
    text = path.read_text()
    table = read_arpa(path)
    assert text.startswith("\n\\data\\\nngram 1=") and text.rstrip().endswith("\\end\\")
    assert f"ngram 3={sum(len(g) == 3 for g in table)}" in text
    assert read_arpa(path)[("<s>",)][0] == -99.0
    assert not list(path.parent.glob("*.tmp"))


def test_history_beyond_the_order_is_ignored(arpa):
    lm = TokenNgramLm.from_arpa(arpa(2), PIECES)
    assert torch.equal(lm.log_probs((3, 3, 1, 2)), lm.log_probs((2,)))
    assert not torch.equal(lm.log_probs((2,)), lm.log_probs(()))  # <s> is a context too


def test_the_lm_prefers_the_spelling_it_was_trained_on(arpa):
    lm = TokenNgramLm.from_arpa(arpa(3), PIECES)
    after_ca = lm.log_probs((3, 1))  # "c a" was always followed by "b"
    assert int(after_ca[1:].argmax()) + 1 == 2
    assert after_ca[4] < after_ca[2] - 2  # "d", never seen, only gets the uniform floor


@pytest.mark.parametrize("sentences, order, message", [
    ([["a", "<s>"]], 2, "contains <s>"),
    ([["a"]], 0, "order must be >= 1"),
    ([], 2, "no sentences"),
])
def test_bad_training_input(sentences, order, message):
    with pytest.raises(ValueError, match=message):
        kneser_ney(sentences, order)


def test_bad_arpa_files(tmp_path):
    empty = tmp_path / "empty.arpa"
    empty.write_text("\\data\\\n\\end\\\n")
    with pytest.raises(ValueError, match="no n-grams"):
        read_arpa(empty)
    broken = tmp_path / "broken.arpa"
    broken.write_text("\\data\\\nngram 1=1\n\\1-grams:\n-0.5 a b c d\n\\end\\\n")
    with pytest.raises(ValueError, match=r"broken.arpa:4: not an ARPA 1-gram line"):
        read_arpa(broken)
    with pytest.raises(ValueError, match="shares no token"):
        TokenNgramLm(kneser_ney([["x", "y"]], 2), PIECES)
