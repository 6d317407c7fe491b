#!/usr/bin/env python3
"""WER of a decoded set split by a property of its supervisions (speaker, held-out voice ...).

A set's overall WER hides *who* the errors come from. The built-in corpus marks the test
utterances of voices never heard in training (``custom["held_out_voice"]``), and a model that
learns its training voices by heart shows it only there::

    python local/wer_by_group.py \\
      --manifest data/manifests/builtin_supervisions_test.jsonl.gz \\
      exp/supernet/greedy_search/recogs-test-*.txt

    recogs                                                       held_out_voice   utts   words     WER
    recogs-test-L6-F576-H4_epoch-7_avg-1_use-averaged-model.txt           False    150     907   18.85
    recogs-test-L6-F576-H4_epoch-7_avg-1_use-averaged-model.txt            True    150     900   38.56

``--group-by`` names a supervision field (``speaker``, ``language``, ``gender``) or a key of
its ``custom`` dict; ``--manifest`` is a lhotse SupervisionSet or CutSet (cut ids or
supervision ids may appear in the recogs file). The WERs are those of ``todm.wer``, the
alignment ``todm.decode`` used to write the file.
"""

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from lhotse import CutSet, SupervisionSet, load_manifest

from todm.wer import Result, compute_error_stats, read_recogs

_MISSING = object()


def group_of_ids(manifest_path: Path, group_by: str) -> dict[str, str]:
    """Cut and supervision id -> the value of ``group_by`` of its (first) supervision, as text."""
    manifest = load_manifest(manifest_path)
    if isinstance(manifest, CutSet):
        pairs = []
        for cut in manifest:
            pairs += [(cut.id, sup) for sup in cut.supervisions[:1]] + [(sup.id, sup) for sup in cut.supervisions]
    elif isinstance(manifest, SupervisionSet):
        pairs = [(sup.id, sup) for sup in manifest]
    else:
        raise ValueError(f"{manifest_path}: expected a SupervisionSet or CutSet, got {type(manifest).__name__}")
    groups = {}
    for item_id, sup in pairs:
        value = getattr(sup, group_by, _MISSING)  # lhotse looks up custom keys as attributes too
        if value is _MISSING or callable(value):
            raise ValueError(f"{manifest_path}: supervision {sup.id} has no field or custom key {group_by!r}")
        groups[item_id] = str(value)
    return groups


def wer_by_group(results: list[Result], groups: dict[str, str]) -> dict[str, dict[str, float]]:
    """{group: {"utts", "words", "wer"}} of ``results``, groups sorted by name."""
    split: dict[str, list[Result]] = defaultdict(list)
    for result in results:
        if result[0] not in groups:
            raise ValueError(f"cut {result[0]} is not in the manifest: was the set decoded from another manifest?")
        split[groups[result[0]]].append(result)
    out = {}
    for group in sorted(split):
        stats = compute_error_stats(split[group])
        out[group] = {"utts": len(split[group]), "words": stats.ref_words,
                      "wer": stats.wer if stats.ref_words else float("nan")}
    return out


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recogs", type=Path, nargs="+", help="recogs-<set>-<key>.txt files written by todm.decode")
    parser.add_argument("--manifest", type=Path, required=True,
                        help="the set's supervisions or cuts (lhotse jsonl.gz) that hold the group field")
    parser.add_argument("--group-by", default="held_out_voice",
                        help="a supervision field (speaker, language, gender) or a key of its custom dict")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    try:
        groups = group_of_ids(args.manifest, args.group_by)
        tables = [(path, wer_by_group(read_recogs(path), groups)) for path in args.recogs]
    except (OSError, ValueError) as e:
        sys.exit(f"wer_by_group: {e}")
    width = max(len(path.name) for path, _ in tables)
    group_width = max([len(args.group_by)] + [len(group) for _, table in tables for group in table])
    print(f"{'recogs':<{width}}  {args.group_by:>{group_width}}  {'utts':>5}  {'words':>6}  {'WER':>6}")
    for path, table in tables:
        for group, row in table.items():
            print(f"{path.name:<{width}}  {group:>{group_width}}  {row['utts']:>5}  {row['words']:>6}  {row['wer']:>6.2f}")


if __name__ == "__main__":
    main()
