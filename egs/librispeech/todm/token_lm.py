"""A token n-gram language model for shallow fusion: Kneser-Ney over BPE pieces, stored as ARPA.

A transducer's prediction network is a weak language model: the stateless decoder sees the last
two tokens, and with small BPE units (the built-in preset uses 64) that is a few letters. Trained
on a small corpus its errors are then mostly spellings and word boundaries ("WATHER", "OUT SIDE")
that any n-gram over the training transcripts rules out. Shallow fusion adds
``lm_scale * log P_lm(token | previous tokens)`` to every non-blank step of the beam search and
``lm_scale * log P_lm(</s> | hypothesis)`` at its end (icefall's
``modified_beam_search_lm_shallow_fusion``, here with an n-gram instead of an RNN LM).

The model is interpolated Kneser-Ney (Chen & Goodman 1998): one absolute discount per order,
``D = n1 / (n1 + 2 n2)`` from its counts of counts, continuation counts for the lower orders, and
a uniform distribution under the unigrams so that every piece has a probability. It is written
as a standard ARPA file (log10 probabilities and back-off weights; readable by kenlm or kaldilm),
over the BPE pieces as words with ``<s>`` and ``</s>``::

    sentences = [sp.encode(text, out_type=str) for text in transcripts]
    write_arpa(kneser_ney(sentences, order=6, vocab=pieces), "data/lang_bpe_64/token_lm_6gram.arpa")
    lm = TokenNgramLm.from_arpa("data/lang_bpe_64/token_lm_6gram.arpa", pieces)
    lm.log_probs((17, 4))  # [len(pieces)] natural-log P(piece | <s> piece17 piece4)

``local/train_token_lm.py`` trains one from the training transcripts (run.sh stage 2).
"""

import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import torch

BOS, EOS = "<s>", "</s>"
SPECIAL_PIECES = ("<blk>", "<sos/eos>", "<unk>")  # icefall's token table: ids 0, 1, 2
LOG10 = math.log(10.0)
NgramTable = dict[tuple[str, ...], tuple[float, float | None]]  # ngram -> (log10 prob, log10 back-off or None)


def _discount(counts: Iterable[int]) -> float:
    """Kneser-Ney's absolute discount n1 / (n1 + 2 n2); 0.5 when the counts of counts cannot give one."""
    of_counts = Counter(c for c in counts if c in (1, 2))
    n1, n2 = of_counts[1], of_counts[2]
    discount = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5
    return discount if 0.0 < discount < 1.0 else 0.5


def kneser_ney(sentences: Iterable[Sequence[str]], order: int, vocab: Sequence[str | None] = ()) -> NgramTable:
    """Interpolated Kneser-Ney n-grams of ``sentences`` (token lists); ``vocab``: tokens that get
    a unigram even when the text never uses them. Returns {ngram: (log10 P, log10 back-off)}."""
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    raw: list[Counter] = [Counter() for _ in range(order)]
    for sentence in sentences:
        if BOS in sentence or EOS in sentence:
            raise ValueError(f"a sentence contains {BOS} or {EOS}: {' '.join(sentence)}")
        words = (BOS, *sentence, EOS)
        for n in range(1, order + 1):
            for i in range(len(words) - n + 1):
                raw[n - 1][words[i:i + n]] += 1
    if not raw[0]:
        raise ValueError("no sentences to train the language model on")

    # Lower orders count distinct left contexts (how many words precede the n-gram), except for
    # n-grams starting with <s>, which nothing can precede.
    adjusted: list[Counter] = [Counter() for _ in range(order)]
    adjusted[-1] = raw[-1]
    for n in range(order - 1, 0, -1):
        for longer in raw[n]:
            adjusted[n - 1][longer[1:]] += 1
        for gram, count in raw[n - 1].items():
            if gram[0] == BOS:
                adjusted[n - 1][gram] = count
    unigrams = adjusted[0]
    unigrams.pop((BOS,), None)
    for token in vocab:
        if token is not None and token not in (BOS, EOS):
            unigrams.setdefault((token,), 0)  # a piece the text never uses
    unigrams.setdefault((EOS,), 0)

    probs: dict[tuple[str, ...], float] = {}  # natural probabilities
    backoff: dict[tuple[str, ...], float] = {}

    def lower(gram: tuple[str, ...]) -> float:
        """P(gram[-1] | gram[:-1]) from the tables built so far, backing off as an ARPA reader does."""
        if gram in probs:
            return probs[gram]
        return backoff.get(gram[:-1], 1.0) * lower(gram[1:])

    discount = _discount(unigrams.values())
    total = sum(unigrams.values())
    uniform = discount * sum(1 for c in unigrams.values() if c > 0) / total / len(unigrams)
    for gram, count in unigrams.items():
        probs[gram] = max(count - discount, 0.0) / total + uniform
    for n in range(2, order + 1):
        discount = _discount(adjusted[n - 1].values())
        by_context: dict[tuple[str, ...], list[tuple[str, int]]] = defaultdict(list)
        for gram, count in adjusted[n - 1].items():
            by_context[gram[:-1]].append((gram[-1], count))
        for context, continuations in by_context.items():
            total = sum(c for _, c in continuations)
            gamma = discount * len(continuations) / total
            for word, count in continuations:
                probs[context + (word,)] = (count - discount) / total + gamma * lower(context[1:] + (word,))
            backoff[context] = gamma
    table: NgramTable = {gram: (math.log10(p), None) for gram, p in probs.items()}
    table[(BOS,)] = (-99.0, None)  # never predicted, only a context (ARPA convention)
    for context, gamma in backoff.items():
        table[context] = (table[context][0], math.log10(gamma))
    return table


def write_arpa(table: NgramTable, path: str | Path) -> None:
    """Write ``table`` as an ARPA file (atomically: a temporary file, then a rename)."""
    path = Path(path)
    order = max(len(g) for g in table)
    by_order = [sorted(g for g in table if len(g) == n) for n in range(1, order + 1)]
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write("\n\\data\\\n")
        f.writelines(f"ngram {n}={len(grams)}\n" for n, grams in enumerate(by_order, 1))
        for n, grams in enumerate(by_order, 1):
            f.write(f"\n\\{n}-grams:\n")
            for gram in grams:
                logp, bow = table[gram]
                f.write(f"{logp:.6f}\t{' '.join(gram)}" + (f"\t{bow:.6f}" if bow is not None else "") + "\n")
        f.write("\n\\end\\\n")
    tmp.replace(path)


def read_arpa(path: str | Path) -> NgramTable:
    """The n-grams of an ARPA file: {ngram: (log10 P, log10 back-off or None)}."""
    table: NgramTable = {}
    order = 0
    with Path(path).open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("ngram ") or line in ("\\data\\", "\\end\\"):
                continue
            if line.startswith("\\") and line.endswith("-grams:"):
                order = int(line[1:-len("-grams:")])
                continue
            fields = line.split()
            if order == 0 or len(fields) not in (order + 1, order + 2):
                raise ValueError(f"{path}:{number}: not an ARPA {order}-gram line: {line!r}")
            bow = float(fields[order + 1]) if len(fields) == order + 2 else None
            table[tuple(fields[1:order + 1])] = (float(fields[0]), bow)
    if not table:
        raise ValueError(f"{path}: no n-grams (is it an ARPA file?)")
    return table


def lm_pieces(sp) -> list[str | None]:
    """The pieces of a sentencepiece model by id, None for the transducer's special symbols (blank,
    ``<sos/eos>``, ``<unk>``), which the LM neither predicts nor is trained on."""
    return [None if sp.is_unknown(i) or sp.is_control(i) or sp.id_to_piece(i) in SPECIAL_PIECES else sp.id_to_piece(i)
            for i in range(sp.get_piece_size())]


class TokenNgramLm:
    """Natural-log next-token scores of an ARPA token LM, indexed like the ASR model's vocabulary.

    ``pieces[i]`` is the piece of token id ``i`` (``tokens.txt`` order), None for ids the LM must not
    score (``<blk>``, ``<sos/eos>``, ``<unk>``: see :func:`lm_pieces`); those and pieces the LM does
    not know score 0, so they pass through fusion unchanged.
    Scores of a context are computed once and cached.
    """

    def __init__(self, table: NgramTable, pieces: Sequence[str | None]) -> None:
        self.order = max(len(g) for g in table)
        self.pieces = list(pieces)
        index = {p: i for i, p in enumerate(self.pieces) if p is not None}
        if not any((p,) in table for p in index):
            raise ValueError("the language model shares no token with the ASR vocabulary (another BPE model?)")
        self._eos = len(self.pieces)
        index[EOS] = self._eos
        self._unscored = torch.tensor([p is None or (p,) not in table for p in self.pieces] + [False])
        self._backoff: dict[tuple[str, ...], float] = {}
        self._next: dict[tuple[str, ...], tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
        for gram, (logp, bow) in table.items():
            if bow is not None:
                self._backoff[gram] = bow * LOG10
            if gram[-1] in index:
                ids, scores = self._next[gram[:-1]]
                ids.append(index[gram[-1]])
                scores.append(logp * LOG10)
        self._cache: dict[tuple[str, ...], torch.Tensor] = {}

    @classmethod
    def from_arpa(cls, path: str | Path, pieces: Sequence[str]) -> "TokenNgramLm":
        return cls(read_arpa(path), pieces)

    def _context(self, history: Sequence[int]) -> tuple[str, ...]:
        words = (BOS, *(self.pieces[i] for i in history))
        return tuple(words[max(len(words) - self.order + 1, 0):]) if self.order > 1 else ()

    def _scores(self, context: tuple[str, ...]) -> torch.Tensor:
        """[len(pieces) + 1] log P(. | context), the last entry </s>."""
        cached = self._cache.get(context)
        if cached is not None:
            return cached
        if context:
            scores = self._scores(context[1:]) + self._backoff.get(context, 0.0)
        else:
            scores = torch.full((len(self.pieces) + 1,), -math.inf)
        ids, values = self._next.get(context, ((), ()))
        if ids:
            scores = scores.clone()
            scores[list(ids)] = torch.tensor(values)
        scores = scores.masked_fill(self._unscored, 0.0)
        self._cache[context] = scores
        return scores

    def log_probs(self, history: Sequence[int]) -> torch.Tensor:
        """[len(pieces)] natural-log P(token | <s> + history) for every token id (0 for unscored ids)."""
        return self._scores(self._context(history))[:-1]

    def eos_log_prob(self, history: Sequence[int]) -> float:
        return float(self._scores(self._context(history))[-1])
