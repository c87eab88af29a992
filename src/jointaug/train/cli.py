"""``jointaug train CONFIG [key=value ...]``: train one recipe (single process, or under torchrun).

Examples::

    jointaug train simclr/synthetic optim.epochs=5 train.out_dir=runs/try
    jointaug train configs/simclr/cifar10.yaml data.root=/data/cifar-10-python.tar.gz
    torchrun --nproc_per_node 4 -m jointaug.cli train simclr/cifar10 data.root=...

Exit codes: 0 done, 2 bad config or input (one clear line), 3 training diverged (NaN/inf loss).
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``jointaug train``."""
    parser.add_argument("config", help="recipe file or name (e.g. simclr/cifar10 for configs/simclr/cifar10.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. optim.lr=0.3 train.out_dir=runs/x")
    parser.add_argument("--out", help="output directory (same as train.out_dir=...)")
    parser.add_argument("--print-config", action="store_true", help="print the validated config and exit")


def main(args: argparse.Namespace) -> int:
    """Validate the config, train, print the summary as JSON."""
    from jointaug.config import config_to_yaml, load_config

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"train.out_dir={args.out}")
    cfg = load_config(args.config, overrides)
    if args.print_config:
        print(config_to_yaml(cfg), end="")
        return 0
    from jointaug.train.trainer import NonFiniteLossError, train

    try:
        summary = train(cfg)
    except NonFiniteLossError as exc:
        print(f"jointaug train: {exc}", file=sys.stderr)
        return 3
    if summary:
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    from jointaug.cli import main as _cli_main

    raise SystemExit(_cli_main(["train", *sys.argv[1:]]))
