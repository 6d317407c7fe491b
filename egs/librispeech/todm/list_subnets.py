#!/usr/bin/env python3
"""Print the subnet specs of a trained supernet, one per line (used by run.sh stage 5).

    python -m todm.list_subnets --exp-dir exp/supernet --epoch 12          # deployable specs
    python -m todm.list_subnets --exp-dir exp/supernet --epoch 12 --all    # the whole search space
"""

import argparse
from pathlib import Path

from todm.checkpoint import load_checkpoint_file
from todm.cost import count_parameters
from todm.model_config import TransducerConfig
from todm.utils import str2bool


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp-dir", type=Path, required=True)
    parser.add_argument("--epoch", type=int, required=True)
    parser.add_argument("--all", type=str2bool, default=False, help="every spec, not only the deployable ones")
    parser.add_argument("--with-params", type=str2bool, default=False, help="also print parameter counts")
    args = parser.parse_args(argv)
    path = args.exp_dir / f"epoch-{args.epoch}.pt"
    if not path.is_file():
        raise SystemExit(f"{path} not found: run stage 3 first (./run.sh --stage 3 --stop-stage 3)")
    config = TransducerConfig.from_dict(load_checkpoint_file(path)["params"]["model_config"])
    space = config.search_space
    for spec in space.enumerate() if args.all else space.deployable():
        print(f"{spec}\t{count_parameters(config, spec)}" if args.with_params else spec)


if __name__ == "__main__":
    main()
