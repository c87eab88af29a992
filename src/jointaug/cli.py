"""The ``jointaug`` command: one subcommand per module, registered in ``SUBCOMMANDS``.

Each subcommand module defines ``add_arguments(parser)`` and ``main(args) -> int``; modules are
imported only when their subcommand runs, so ``jointaug --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("jointaug.train.main_job", "the main job: SimCLR with RandomCrop vs J-Crop(0), trained and evaluated"),
    "train": ("jointaug.train.cli", "train one recipe (configs/*.yaml) with key=value overrides"),
    "eval": ("jointaug.eval.cli", "kNN / linear evaluation of a checkpoint"),
    "stats": ("jointaug.analysis.stats", "difficulty statistics of a crop or blur policy (JSON + table)"),
    "plot": ("jointaug.analysis.plots", "log-ratio densities (Fig. 3) and corner distance vs beta (Fig. 7)"),
    "pairs": ("jointaug.analysis.pairs", "gallery of positive pairs for a folder of images"),
    "bench": ("jointaug.bench.cli", "benchmarks (renderer, training, backbones, decoding, folders): bench NAME"),
    "export": ("jointaug.export", "write a checkpoint's backbone for torchvision, timm or detectron2"),
    "sdf": ("jointaug.analysis.sdf", "SDF (paper Eq. 2): pair difficulty vs fixed area ratio and J-Crop/J-Blur beta"),
    "grid": ("jointaug.experiments.grid", "an experiment grid (axes x seeds) run sequentially, locally or on Slurm"),
    "report": ("jointaug.experiments.report", "self-contained HTML + Markdown report of a run or grid folder"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jointaug", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        if argv and argv[0] not in ("-h", "--help"):
            parser.print_usage(sys.stderr)
            print(f"jointaug: unknown command {argv[0]!r}; choose from {', '.join(SUBCOMMANDS)}", file=sys.stderr)
            return 2
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(SUBCOMMANDS[name][0])
    sub = argparse.ArgumentParser(prog=f"jointaug {name}", description=SUBCOMMANDS[name][1])
    module.add_arguments(sub)
    args = sub.parse_args(rest)
    try:
        return int(module.main(args) or 0)
    except KeyboardInterrupt:
        print("jointaug: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, KeyError, OSError) as exc:  # user errors: one clear line
        print(f"jointaug {name}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
