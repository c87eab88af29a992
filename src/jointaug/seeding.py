"""Seed derivation shared by the trainer and the per-image transform: one seed, many streams."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import torch


def derive_seed(seed: int, *keys: Any) -> int:
    """A 63-bit seed from the run seed and labels (stable across runs, machines and processes)."""
    text = "/".join([str(int(seed)), *(str(k) for k in keys)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


class ProcessGenerator:
    """One ``torch.Generator`` per process for per-image transforms used inside DataLoaders.

    In the main process it is seeded with ``seed`` (a random seed when None); in a DataLoader worker
    with ``derive_seed(seed or 0, worker seed, rank)``: the worker seed comes from the loader's own
    generator, so the same loader seed gives the same streams, and workers, epochs and ranks differ.
    The generator is rebuilt whenever it is used from another process or worker (never pickled)."""

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self._gen: torch.Generator | None = None
        self._owner: tuple | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"seed": self.seed, "_gen": None, "_owner": None}

    def get(self) -> torch.Generator:
        """This process's generator (created, or re-created after a fork into a worker)."""
        info = torch.utils.data.get_worker_info()
        owner = (os.getpid(), None if info is None else (info.id, info.seed))
        if self._gen is None or self._owner != owner:
            if info is None:
                seed = self.seed if self.seed is not None else int(torch.randint(0, 2**62, (1,)).item())
            else:
                dist = torch.distributed
                rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
                seed = derive_seed(self.seed or 0, info.seed, rank)
            self._gen = torch.Generator().manual_seed(seed)
            self._owner = owner
        return self._gen
