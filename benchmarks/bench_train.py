"""Training throughput benchmark (thin wrapper): same as ``jointaug bench train [options]``.

    python benchmarks/bench_train.py [--methods simclr,...] [--models resnet18,convnet4] [--out STEM]

See :mod:`jointaug.bench.train` for what is measured; results go to ``benchmarks/results/``.
"""

from __future__ import annotations

import sys

from jointaug.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "train", *sys.argv[1:]]))
