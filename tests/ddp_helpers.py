"""Shared by the DDP tests: a 2-process gloo run (torchrun) against one process on the same global batch.

Both runs compute in float64 (``train.dtype=float64``): the only differences are rounding in the order
of reductions (gradient all-reduce, synchronised BN sums, gathered keys), about eps64 = 1.1e-16 relative
per operation. In float32 3 LARS steps at lr 1 amplified such rounding to 1.9e-5 on AMD CPUs (about
1e4 x eps32 x |w|); allowing 1e7 x eps64 = 1e-9 keeps a 1,000-fold margin over that amplification while
a real sharding or seeding error (differences of order 1e-3 and above) fails.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import torch

from jointaug.config import load_config
from jointaug.train.trainer import train

TOL = 1e7 * torch.finfo(torch.float64).eps


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_two_processes(recipe: str, overrides: list[str]) -> None:
    """``jointaug train RECIPE OVERRIDES`` under torchrun with 2 gloo processes (one thread each)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{free_port()}", "-m", "jointaug.cli", "train",
           recipe, *overrides]
    proc = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def train_one_process(recipe: str, overrides: list[str]) -> None:
    """The same run in this process (torch's thread count restored afterwards)."""
    threads = torch.get_num_threads()
    try:
        train(load_config(recipe, overrides))
    finally:
        torch.set_num_threads(threads)


def assert_states_match(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Same keys; float64 tensors within :data:`TOL`, every other tensor equal."""
    assert a.keys() == b.keys()  # SyncBatchNorm saves like BatchNorm
    for k in a:
        x, y = a[k], b[k]
        if x.is_floating_point():
            assert x.dtype == torch.float64, (k, x.dtype)
            assert torch.allclose(x, y, rtol=TOL, atol=TOL), (k, (x - y).abs().max())
        else:
            assert torch.equal(x, y), k
