"""LibriSpeech-style transcript normalisation, in one place for every data-preparation script.

LibriSpeech transcripts are upper case words of letters and apostrophes separated by single
spaces ("HE DIDN'T KNOW THE BOYS' NAMES"). A text-to-speech engine, however, must be fed the
*original* sentence: it reads "NATO" or "TV" letter by letter, "Dr." as "doctor" and "1984"
as number words, so a transcript derived from such a sentence would not match the audio.
Rather than guess how a synthesiser verbalises them, :func:`normalize_sentence` rejects any
sentence whose spoken form is ambiguous (digits, abbreviations, acronyms, symbols) and
normalises the rest, so that the spoken words and the transcript agree exactly.

:func:`is_speech_text` is the looser check for transcripts of *real* corpora (any language):
a transcript must contain at least one letter to be usable for ASR training.
"""

import re

# Abbreviations that appear without a full stop and are spoken as something else.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr st jr sr vs etc eg ie ft lb lbs oz mph km cm mm kg mg approx".split()
)
# Characters allowed in a source sentence before normalisation.
_ALLOWED = re.compile(r"^[A-Za-z ,;:'.?!-]+$")
# One normalised word: letters, with apostrophes only inside ("DON'T") or as a plural
# possessive at the end ("BOYS'").
_WORD = re.compile(r"^[A-Z]+(?:'[A-Z]+)*(?:S')?$")
# A hyphen joins two letters ("well-known"); leading, trailing or doubled hyphens do not.
_BAD_HYPHEN = re.compile(r"(^|[^A-Za-z])-|-($|[^A-Za-z])")


def normalize_sentence(sentence: str) -> str | None:
    """Normalise one clean English sentence LibriSpeech-style, or reject it.

    Returns the transcript (upper case words separated by one space; hyphenated words are
    split, punctuation ``,;:.?!`` dropped), or ``None`` when the sentence cannot be
    normalised without guessing how it is spoken:

    - any character outside ASCII letters, space, apostrophe, hyphen and ``,;:.?!``
      (digits, quotes, brackets, ``&``, ``%``, accented letters ...);
    - a full stop, ``?`` or ``!`` anywhere but at the very end (abbreviations like "e.g.",
      "Dr. Smith", two sentences in one);
    - an acronym (a word of two or more capitals, e.g. "NATO", "TV") or a known abbreviation
      without a full stop ("Mr", "etc");
    - a single-letter word other than "a" and "I" (letter names, "x-ray");
    - an apostrophe that is a quotation mark rather than part of a word.

    >>> normalize_sentence("He didn't see the well-known boys' house.")
    "HE DIDN'T SEE THE WELL KNOWN BOYS' HOUSE"
    >>> normalize_sentence("Dr. Smith arrived at 5 o'clock") is None
    True
    """
    text = sentence.strip()
    if not text or not _ALLOWED.match(text) or _BAD_HYPHEN.search(text):
        return None
    body = text[:-1] if text[-1] in ".?!" else text
    if any(mark in body for mark in ".?!"):
        return None
    words = re.sub(r"[,;:]", " ", body).replace("-", " ").split()
    normalized = []
    for word in words:
        if len(word) > 1 and word.isupper():
            return None
        if word.lower() in _ABBREVIATIONS:
            return None
        if len(word) == 1 and word not in ("a", "A", "I"):
            return None
        upper = word.upper()
        if not _WORD.match(upper):
            return None
        normalized.append(upper)
    return " ".join(normalized) if normalized else None


def is_speech_text(text: str | None) -> bool:
    """True when ``text`` can serve as an ASR transcript: it contains at least one letter.

    Unicode-aware (``str.isalpha``), so transcripts of any language pass. Empty strings,
    whitespace and text without a single letter (``"..."``, ``"123"``) are rejected.
    """
    return bool(text) and any(ch.isalpha() for ch in text)
