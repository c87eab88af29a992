"""Re-export of :mod:`jointaug.checkpoint` (checkpoint files live in the room shared by train and eval)."""

from __future__ import annotations

from jointaug.checkpoint import (
    INTEGRITY_KEY,
    CheckpointError,
    CheckpointWriteError,
    checkpoint_candidates,
    get_rng_state,
    load_checkpoint,
    non_finite_tensors,
    remove_stale_temporaries,
    save_checkpoint,
    select_checkpoint,
    set_rng_state,
    state_digest,
    verify_checkpoint,
)

__all__ = [
    "INTEGRITY_KEY",
    "CheckpointError",
    "CheckpointWriteError",
    "checkpoint_candidates",
    "get_rng_state",
    "load_checkpoint",
    "non_finite_tensors",
    "remove_stale_temporaries",
    "save_checkpoint",
    "select_checkpoint",
    "set_rng_state",
    "state_digest",
    "verify_checkpoint",
]
