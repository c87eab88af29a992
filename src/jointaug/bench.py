"""``jointaug bench``: benchmarks. ``jointaug bench augment`` measures view-rendering throughput.

The augment benchmark compares the per-image PIL pipeline, kornia (when installed) and jointaug's
batched renderer (fast and exact modes, random crops and J-Crop + J-Blur, CUDA when present) on one
machine and thread setting, and writes ``augment.json`` and ``augment.md`` (see
:mod:`jointaug.render.benchmark`).
"""

from __future__ import annotations

import argparse
import shlex
import sys

BENCHMARKS = ("augment",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``jointaug bench``."""
    parser.add_argument("which", choices=BENCHMARKS, help="which benchmark to run")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one round (smoke test, not for reporting)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every pipeline (default 1)")
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds per pipeline (default 7, quick 1)")
    parser.add_argument("--out", default="benchmarks/results", help="folder for augment.json and augment.md")
    parser.add_argument("--data", default=None, help="CIFAR-10 JPEG archive (default: ../shared/datasets/...)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="also benchmark CUDA: auto (when present), cpu (never), cuda (required)")
    parser.add_argument("--no-kornia", action="store_true", help="skip the kornia row")
    parser.add_argument("--no-malloc-tune", action="store_true",
                        help="leave glibc malloc's defaults (memory returned to the OS after every batch)")


def main(args: argparse.Namespace) -> int:
    """Run the chosen benchmark, print its table, write its files."""
    from .render import benchmark

    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.rounds is not None and args.rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {args.rounds}")
    command = "jointaug bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 \
        else "jointaug bench augment"
    result = benchmark.run(quick=args.quick, threads=args.threads, rounds=args.rounds, cifar=args.data,
                           device=args.device, kornia=not args.no_kornia, malloc_tune=not args.no_malloc_tune,
                           log=lambda s: print(s, file=sys.stderr, flush=True))
    pj, pm = benchmark.write(result, args.out, command)
    print(pm.read_text())
    print(f"wrote {pj} and {pm}", file=sys.stderr)
    return 0
