"""Pieces shared by the momentum methods (MoCo v1/v2/v3, BYOL, DINO, LooC): a frozen momentum copy,
the EMA rule and its schedule, and a queue of keys.

EMA rule, applied to parameters only: ``target <- m * target + (1 - m) * online`` after each optimiser
step. Buffers (BN running statistics) of a momentum copy are its own, updated by its own forward passes
in train mode, as in the MoCo and BYOL reference code. Schedules: ``constant`` (MoCo v1/v2, m = 0.999)
or ``cosine`` from ``base`` to ``final`` over training, ``m(k) = final - (final - base) (cos(pi k/K) + 1)/2``
(BYOL 0.996 -> 1, MoCo v3 0.99 -> 1, DINO 0.996 -> 1).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from jointaug import distributed as jdist

__all__ = ["KeyQueue", "MomentumSchedule", "ema_update", "momentum_copy", "momentum_errors"]


def momentum_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose parameters take no gradient (a momentum / teacher encoder)."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, m: float) -> None:
    """``target_p <- m * target_p + (1 - m) * online_p`` for every parameter (same order and shapes)."""
    tp = list(target.parameters())
    op = list(online.parameters())
    if len(tp) != len(op):
        raise ValueError(f"ema_update: target has {len(tp)} parameters, online {len(op)}")
    for t, o in zip(tp, op):
        t.mul_(m).add_(o.detach(), alpha=1.0 - m)


def momentum_errors(params: dict, keys: tuple[str, ...] = ("momentum", "momentum_final")) -> list[tuple[str, str]]:
    """Config errors of a momentum schedule's hyperparameters: each in [0, 1], and final >= base."""
    from jointaug.methods.base import range_errors

    present = tuple(k for k in keys if k in params)
    errors = range_errors(params, {k: (0, 1, "[]") for k in present})
    if not errors and len(present) == 2 and params[present[1]] < params[present[0]]:
        errors.append((present[1], f"must be >= {present[0]}={params[present[0]]}"))
    return errors


class MomentumSchedule:
    """The momentum coefficient at each optimiser step: constant or cosine from ``base`` to ``final``."""

    def __init__(self, base: float, final: float = 1.0, schedule: str = "cosine") -> None:
        for name, v in (("base", base), ("final", final)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0.0 <= v <= 1.0):
                raise ValueError(f"momentum {name} must be a number in [0, 1], got {v!r}")
        if schedule not in ("cosine", "constant"):
            raise ValueError(f"momentum schedule must be 'cosine' or 'constant', got {schedule!r}")
        self.base, self.final, self.schedule = float(base), float(final), schedule

    def __call__(self, step: int, total_steps: int) -> float:
        """Momentum used for the update after optimiser step ``step`` (1-based) of ``total_steps``."""
        if self.schedule == "constant" or total_steps <= 0:
            return self.base
        k = min(max(step - 1, 0), total_steps) / total_steps  # step 1 uses the base value
        return self.final - (self.final - self.base) * (math.cos(math.pi * k) + 1.0) / 2.0

    def __repr__(self) -> str:
        return f"MomentumSchedule(base={self.base}, final={self.final}, schedule={self.schedule!r})"


class KeyQueue(nn.Module):
    """A FIFO of L2-normalised keys [size, dim] (MoCo's negatives), shared by every rank.

    ``push(keys)`` gathers the keys of every rank (rank order) and writes them at the pointer, so all
    ranks hold the same queue and a run on W processes equals one process on the same global batch.
    The queue and its pointer are buffers: they are saved in every checkpoint.
    """

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if int(size) < 1 or int(dim) < 1:
            raise ValueError(f"KeyQueue: size and dim must be positive integers, got {size}, {dim}")
        self.size, self.dim = int(size), int(dim)
        self.register_buffer("keys", nn.functional.normalize(torch.randn(self.size, self.dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, keys: Tensor) -> None:
        """Enqueue ``keys`` [n, dim] of this rank (all ranks' keys are gathered first)."""
        keys = jdist.all_gather_nograd(keys.detach()).to(self.keys.dtype)
        n = keys.shape[0]
        if self.size % n:
            raise ValueError(f"KeyQueue: queue size {self.size} is not divisible by the global batch {n}")
        p = int(self.ptr)
        self.keys[p:p + n] = keys
        self.ptr.fill_((p + n) % self.size)

    def forward(self) -> Tensor:  # pragma: no cover - a container, not a layer
        return self.keys
