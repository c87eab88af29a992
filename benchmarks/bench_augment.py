"""Augmentation throughput benchmark (thin wrapper): same as ``jointaug bench augment [options]``.

    python benchmarks/bench_augment.py [--quick] [--threads N] [--out benchmarks/results]
"""

from __future__ import annotations

import sys

from jointaug.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "augment", *sys.argv[1:]]))
