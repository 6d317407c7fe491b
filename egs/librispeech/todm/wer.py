"""Word error rate and icefall's result files, with kaldialign doing the alignment.

For one test set and one decoding key (e.g. ``L6-F576-H4_epoch-12_avg-4_use-averaged-model``),
``write_results`` writes into ``res_dir``:

- ``recogs-<set>-<key>.txt``: two lines per cut, sorted by cut id::

      <cut_id>:\tref=['HELLO', 'WORLD']
      <cut_id>:\thyp=['HELLO', 'WORD']

- ``errs-<set>-<key>.txt``: ``%WER = x.xx``, an ``Errors:`` line, then the sections
  ``PER-UTT DETAILS:`` (the alignment of every cut, runs of errors shown as ``(ref->hyp)``),
  ``SUBSTITUTIONS:``, ``DELETIONS:``, ``INSERTIONS:`` (most frequent first) and
  ``PER-WORD STATS:`` (``word corr tot_errs count_in_ref count_in_hyp``, most errors first);
- ``wer-summary-<set>-<key>.txt``: ``settings\\tWER`` then ``<key>\\t<wer>``.

``read_recogs`` reads a ``recogs`` file back into results, e.g. to score a part of a set again.
``write_wer_summary`` writes icefall's multi-key summary (keys sorted by ascending WER), which
``todm.decode`` uses to list every decoded subnet of a set in one file.

The layout is icefall's (``icefall/utils.py``: ``store_transcripts``, ``write_error_stats``),
so tools that read icefall results read these too. All files are written atomically.
"""

import ast
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import kaldialign

from todm.utils import atomic_write

EPS = "*"  # the gap symbol of the alignment, as in icefall

Result = tuple[str, Sequence[str], Sequence[str]]  # (cut_id, reference words, hypothesis words)


@dataclass
class ErrorStats:
    """Counts over a whole test set (``words`` maps word -> [corr, ref_sub, hyp_sub, ins, del])."""

    ref_words: int = 0
    correct: int = 0
    subs: Counter = field(default_factory=Counter)  # (ref, hyp) -> count
    dels: Counter = field(default_factory=Counter)  # ref word -> count
    ins: Counter = field(default_factory=Counter)  # hyp word -> count
    words: dict[str, list[int]] = field(default_factory=dict)
    alignments: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(self.subs.values()) + sum(self.dels.values()) + sum(self.ins.values())

    @property
    def wer(self) -> float:
        """Percent of the reference words (``write_results`` refuses a set without any)."""
        return 100.0 * self.errors / self.ref_words

    def _word(self, w: str) -> list[int]:
        return self.words.setdefault(w, [0, 0, 0, 0, 0])


def _check_results(test_set: str, results: Sequence[Result]) -> list[Result]:
    """Sorted results; clear errors for what would otherwise give a silently wrong WER."""
    if len(results) == 0:
        raise ValueError(f"test set {test_set!r}: no results to score")
    seen = set()
    for item in results:
        if len(item) != 3:
            raise ValueError(f"test set {test_set!r}: expected (cut_id, ref_words, hyp_words), got {item!r}")
        cut_id, ref, hyp = item
        if cut_id in seen:
            raise ValueError(f"test set {test_set!r}: cut {cut_id} appears twice")
        seen.add(cut_id)
        for name, words in (("ref", ref), ("hyp", hyp)):
            if isinstance(words, str) or not all(isinstance(w, str) for w in words):
                raise ValueError(f"test set {test_set!r}, cut {cut_id}: {name} must be a list of words, got {words!r}")
    return sorted((str(c), list(r), list(h)) for c, r, h in results)


def compute_error_stats(results: Sequence[Result]) -> ErrorStats:
    """Align every (ref, hyp) pair with kaldialign and count corrects and errors per word."""
    stats = ErrorStats()
    for cut_id, ref, hyp in results:
        pairs = kaldialign.align(ref, hyp, EPS)
        stats.alignments.append((cut_id, pairs))
        stats.ref_words += len(ref)
        for r, h in pairs:
            if r == EPS:
                stats.ins[h] += 1
                stats._word(h)[3] += 1
            elif h == EPS:
                stats.dels[r] += 1
                stats._word(r)[4] += 1
            elif r != h:
                stats.subs[(r, h)] += 1
                stats._word(r)[1] += 1
                stats._word(h)[2] += 1
            else:
                stats.correct += 1
                stats._word(r)[0] += 1
    return stats


def _utterance_details(pairs: list[tuple[str, str]]) -> str:
    """``a b (c d->x) e``: correct words as they are, each run of adjacent errors as one group."""
    out, run_ref, run_hyp = [], [], []

    def flush() -> None:
        if run_ref or run_hyp:
            ref = " ".join(w for w in run_ref if w != EPS) or EPS
            hyp = " ".join(w for w in run_hyp if w != EPS) or EPS
            out.append(f"({ref}->{hyp})")
            run_ref.clear()
            run_hyp.clear()

    for r, h in pairs:
        if r == h:
            flush()
            out.append(r)
        else:
            run_ref.append(r)
            run_hyp.append(h)
    flush()
    return " ".join(out)


def _errs_text(stats: ErrorStats) -> str:
    n_ins, n_del, n_sub = sum(stats.ins.values()), sum(stats.dels.values()), sum(stats.subs.values())
    lines = [
        f"%WER = {stats.wer:.2f}",
        f"Errors: {n_ins} insertions, {n_del} deletions, {n_sub} substitutions, "
        f"over {stats.ref_words} reference words ({stats.correct} correct)",
        "Search below for sections starting with PER-UTT DETAILS:, SUBSTITUTIONS:, DELETIONS:, "
        "INSERTIONS:, PER-WORD STATS:",
        "",
        "PER-UTT DETAILS: corr or (ref->hyp)  ",
    ]
    lines += [f"{cut_id}:\t{_utterance_details(pairs)}" for cut_id, pairs in stats.alignments]
    lines += ["", "SUBSTITUTIONS: count ref -> hyp"]
    lines += [f"{n}   {r} -> {h}" for (r, h), n in sorted(stats.subs.items(), key=lambda kv: (-kv[1], kv[0]))]
    lines += ["", "DELETIONS: count ref"]
    lines += [f"{n}   {w}" for w, n in sorted(stats.dels.items(), key=lambda kv: (-kv[1], kv[0]))]
    lines += ["", "INSERTIONS: count hyp"]
    lines += [f"{n}   {w}" for w, n in sorted(stats.ins.items(), key=lambda kv: (-kv[1], kv[0]))]
    lines += ["", "PER-WORD STATS: word  corr tot_errs count_in_ref count_in_hyp"]
    by_errors = sorted(stats.words.items(), key=lambda kv: (-sum(kv[1][1:]), kv[0]))
    for word, (corr, ref_sub, hyp_sub, ins, dels) in by_errors:
        lines.append(f"{word}   {corr} {ref_sub + hyp_sub + ins + dels} {corr + ref_sub + dels} {corr + hyp_sub + ins}")
    return "\n".join(lines) + "\n"


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_wer_summary(path: Path | str, wers: dict[str, float]) -> None:
    """icefall's ``wer-summary`` file: ``settings\\tWER`` then one ``key\\twer`` line per key, best first."""
    lines = ["settings\tWER"] + [f"{key}\t{wer:.2f}" for key, wer in sorted(wers.items(), key=lambda kv: (kv[1], kv[0]))]
    _write_text(Path(path), "\n".join(lines) + "\n")


def write_results(res_dir: Path | str, test_set: str, key: str, results: Sequence[Result]) -> dict[str, float | int]:
    """Score ``results`` and write the recogs / errs / wer-summary files of (test_set, key).

    Args:
      res_dir: output directory (created if needed).
      test_set: name of the set, e.g. ``dev`` or ``test-clean``.
      key: the decoding setting, e.g. ``L6-F576-H4_epoch-12_avg-4``.
      results: (cut_id, reference words, hypothesis words) per utterance; words are lists of str.
    Returns:
      {"wer": percent, "ins": int, "del": int, "sub": int, "ref_words": int}.
    """
    res_dir = Path(res_dir)
    results = _check_results(test_set, results)
    stats = compute_error_stats(results)
    if stats.ref_words == 0:
        raise ValueError(f"test set {test_set!r}: the references have no words, the WER is undefined")

    recogs = []
    for cut_id, ref, hyp in results:
        recogs += [f"{cut_id}:\tref={ref}", f"{cut_id}:\thyp={hyp}"]
    _write_text(res_dir / f"recogs-{test_set}-{key}.txt", "\n".join(recogs) + "\n")
    _write_text(res_dir / f"errs-{test_set}-{key}.txt", _errs_text(stats))
    write_wer_summary(res_dir / f"wer-summary-{test_set}-{key}.txt", {key: stats.wer})

    out = {"wer": stats.wer, "ins": sum(stats.ins.values()), "del": sum(stats.dels.values()),
           "sub": sum(stats.subs.values()), "ref_words": stats.ref_words}
    logging.info(f"[{test_set}] {key}: %WER {stats.wer:.2f} [{stats.errors} / {stats.ref_words}, "
                 f"{out['ins']} ins, {out['del']} del, {out['sub']} sub]")
    return out


def read_recogs(path: Path | str) -> list[Result]:
    """The (cut_id, ref, hyp) results of a ``recogs-<set>-<key>.txt`` file (``write_results``'s layout)."""
    path = Path(path)
    refs: dict[str, list[str]] = {}
    results = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        cut_id, sep, value = line.partition(":\t")
        side, _, words = value.partition("=")
        try:
            parsed = ast.literal_eval(words) if sep and side in ("ref", "hyp") else None
        except (ValueError, SyntaxError):
            parsed = None
        if not isinstance(parsed, list):
            raise ValueError(f"{path}:{n}: expected '<cut_id>:\\tref=[...]' or '...hyp=[...]', got {line!r}")
        if side == "ref":
            refs[cut_id] = parsed
        elif cut_id not in refs:
            raise ValueError(f"{path}:{n}: hyp of cut {cut_id} without a ref line before it")
        else:
            results.append((cut_id, refs.pop(cut_id), parsed))
    if refs:
        raise ValueError(f"{path}: cut {next(iter(refs))} has a ref line but no hyp line")
    return results
