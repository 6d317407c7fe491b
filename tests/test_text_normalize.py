"""Tests of local/text_normalize.py against hand-written LibriSpeech-style transcripts."""

import pytest

from local.text_normalize import is_speech_text, normalize_sentence


@pytest.mark.parametrize(
    "sentence, expected",
    [
        ("the bolt slipped into place", "THE BOLT SLIPPED INTO PLACE"),
        ("He didn't know the boys' names.", "HE DIDN'T KNOW THE BOYS' NAMES"),
        ("a well-known fact; sadly, true!", "A WELL KNOWN FACT SADLY TRUE"),
        ("Do I count?", "DO I COUNT"),
        ("  spaces   around  ", "SPACES AROUND"),
    ],
)
def test_normalizes_clean_sentences(sentence, expected):
    assert normalize_sentence(sentence) == expected


@pytest.mark.parametrize(
    "sentence",
    [
        "he scored 3 goals",  # digits
        "Dr. Smith is here",  # abbreviation with a full stop
        "ask Mr Brown",  # abbreviation without one
        "the NATO summit",  # acronym
        "TV is bad",  # two-letter acronym
        "the letter x is rare",  # letter name
        "an x-ray of the chest",  # letter inside a hyphenated word
        "he said 'no' twice",  # apostrophes used as quotes
        "rock and roll -- loud",  # dash
        "well- known",  # dangling hyphen
        "a café au lait",  # non-ASCII letter
        "salt & pepper",  # symbol
        "It rained. We stayed.",  # two sentences
        "",
        "...",
    ],
)
def test_rejects_sentences_whose_spoken_form_is_ambiguous(sentence):
    assert normalize_sentence(sentence) is None


def test_is_speech_text():
    assert is_speech_text("HELLO") and is_speech_text("ça va") and is_speech_text("你好")
    for bad in ("", "   ", "...", "123 456", None):
        assert not is_speech_text(bad)
