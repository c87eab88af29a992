"""``jointaug bench <name> [options]``: run one benchmark of the room ``jointaug.bench``.

Each benchmark module defines ``add_arguments(parser)`` and ``main(args) -> int`` and is imported
only when it runs; ``jointaug bench <name> --help`` lists its options. The scripts under
``benchmarks/`` are thin wrappers of these commands.
"""

from __future__ import annotations

import argparse
import importlib
import shlex

#: benchmark name -> (module, one-line help); a new benchmark adds one line here
BENCHMARKS: dict[str, tuple[str, str]] = {
    "augment": ("jointaug.bench.augment", "view-rendering throughput against PIL / torchvision / kornia"),
    "train": ("jointaug.bench.train", "training throughput and data wait through the real trainer"),
    "backbone": ("jointaug.bench.backbone", "forward + backward + SGD step images/s of backbones"),
    "decode": ("jointaug.bench.decode", "JPEG decode images/s: full vs draft at the side the views need"),
    "folder": ("jointaug.bench.folder", "image-folder training: images/s, data wait per epoch, peak memory"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``jointaug bench``: the benchmark's name, then that benchmark's own options."""
    parser.add_argument("which", choices=sorted(BENCHMARKS),
                        help="; ".join(f"{k}: {v[1]}" for k, v in BENCHMARKS.items()))
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's options (see --help after it)")


def main(args: argparse.Namespace) -> int:
    """Parse the chosen benchmark's options and run it."""
    module_name, help_ = BENCHMARKS[args.which]
    module = importlib.import_module(module_name)
    sub = argparse.ArgumentParser(prog=f"jointaug bench {args.which}", description=help_)
    module.add_arguments(sub)
    bench_args = sub.parse_args(args.options)
    bench_args.command_line = " ".join(["jointaug", "bench", args.which, *map(shlex.quote, args.options)])
    return int(module.main(bench_args) or 0)
