#!/usr/bin/env python3
"""Print the model a todm.train command line would train, without training (a dry run).

Takes exactly todm.train's flags, builds the model they describe (the supernet, or with
``--subnet`` the one architecture of a baseline) and prints JSON: its config, its search space,
the parameters of the built model and of its largest and smallest subnet. Nothing is read but
the BPE model (for the vocabulary size) and nothing is written.

    python -m todm.describe_model --num-layers 8,12,16 --encoder-dim 512 ... --bpe-model data/lang_bpe_500/bpe.model
    python -m todm.describe_model --vocab-size 500 ...   # before stage 2 made the BPE model
    ./run.sh --config conf/librispeech.sh --stage 3 --stop-stage 3 --dry-run true   # what run.sh would train

Useful to check a preset before a long job: that the flags reach the model, and its size.
"""

import argparse
import json
from typing import Any

import sentencepiece as spm
import torch

from todm.cost import count_parameters
from todm.model import Transducer
from todm.train import get_parser as get_train_parser, training_model


def get_parser() -> argparse.ArgumentParser:
    parser = get_train_parser()
    parser.description = __doc__
    parser.add_argument("--vocab-size", type=int, default=None,
                        help="vocabulary size when --bpe-model does not exist yet (ignored when it does)")
    return parser


def vocab_size_of(args: argparse.Namespace) -> int:
    """The BPE model's vocabulary size (what training uses), else --vocab-size."""
    if args.bpe_model.is_file():
        return spm.SentencePieceProcessor(model_file=str(args.bpe_model)).get_piece_size()
    if args.vocab_size is None:
        raise SystemExit(f"describe_model: --bpe-model {args.bpe_model} does not exist: pass --vocab-size "
                         f"(or run stage 2 first)")
    return args.vocab_size


def describe(model: Transducer) -> dict[str, Any]:
    """Config, search space and parameter counts of a built model."""
    config, space = model.config, model.config.search_space
    return {
        "model_config": config.to_dict(),
        "search_space": str(space),
        "num_subnets": len(space.enumerate()),
        "parameters": sum(p.numel() for p in model.parameters()),
        "largest": {"spec": str(space.largest()), "parameters": count_parameters(config, space.largest())},
        "smallest": {"spec": str(space.smallest()), "parameters": count_parameters(config, space.smallest())},
    }


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    with torch.device("meta"):  # shapes only: a paper-size model costs no memory or time
        model = training_model(args, vocab_size_of(args))
    print(json.dumps(describe(model), indent=2))


if __name__ == "__main__":
    main()
