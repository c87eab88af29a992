"""Seed derivation shared by the trainer and the per-image transform: one seed, many streams."""

from __future__ import annotations

import hashlib
from typing import Any


def derive_seed(seed: int, *keys: Any) -> int:
    """A 63-bit seed from the run seed and labels (stable across runs, machines and processes)."""
    text = "/".join([str(int(seed)), *(str(k) for k in keys)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1
