"""Optimisers (SGD, LARS, AdamW) over a method's parameter groups, and the warm-up + cosine schedule.

LARS (You et al. 2017, as used by SimCLR): for each parameter tensor not marked ``lars_exclude``,
the update direction ``g = grad + weight_decay * w`` is rescaled by the trust ratio
``eta * ||w|| / ||g||`` (1 when either norm is 0), then heavy-ball momentum and the learning rate
apply. Groups with ``lars_exclude`` (biases, norm layers) get plain SGD with momentum.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["LARS", "build_optimizer", "build_scheduler", "lr_factor"]


class LARS(Optimizer):
    """Layer-wise adaptive rate scaling on top of SGD with momentum (see the module docstring)."""

    def __init__(self, params: Any, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.001, nesterov: bool = False) -> None:
        if not lr > 0:
            raise ValueError(f"LARS: lr must be > 0, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"LARS: momentum must be in [0, 1), got {momentum}")
        if not eta > 0:
            raise ValueError(f"LARS: eta must be > 0, got {eta}")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, nesterov=nesterov,
                        lars_exclude=False)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mom, wd, eta = group["lr"], group["momentum"], group["weight_decay"], group["eta"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if wd:
                    g = g.add(p, alpha=wd)
                if not group["lars_exclude"]:
                    w_norm = torch.linalg.vector_norm(p)
                    g_norm = torch.linalg.vector_norm(g)
                    trust = torch.where((w_norm > 0) & (g_norm > 0), eta * w_norm / g_norm,
                                        torch.ones_like(w_norm))
                    g = g * trust
                if mom:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = g.clone().detach()
                    else:
                        buf.mul_(mom).add_(g)
                    g = g.add(buf, alpha=mom) if group["nesterov"] else buf
                p.add_(g, alpha=-lr)
        return loss


def build_optimizer(model: nn.Module, name: str, lr: float, *, momentum: float = 0.9, weight_decay: float = 0.0,
                    nesterov: bool = False, betas: tuple[float, float] = (0.9, 0.999),
                    lars_eta: float = 0.001) -> Optimizer:
    """An optimiser over ``model.parameter_groups(weight_decay)`` (or all parameters, one group).

    A group marked ``"lr_scale": s`` (a positive finite number) gets learning rate ``lr * s``; the
    scheduler's factor multiplies each group's own base rate, so the ratio holds all along."""
    if hasattr(model, "parameter_groups"):
        groups = model.parameter_groups(weight_decay)
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay,
                   "lars_exclude": False, "name": "all"}]
    for g in groups:
        if "lr_scale" in g:
            s = g["lr_scale"]
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not (math.isfinite(s) and s > 0):
                raise ValueError(f"parameter group {g.get('name', '?')!r}: lr_scale must be a positive finite "
                                 f"number, got {s!r}")
            g["lr"] = float(lr) * float(s)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
                               weight_decay=weight_decay)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, eta=lars_eta, nesterov=nesterov)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    raise ValueError(f"unknown optimiser {name!r}; choose from sgd, lars, adamw")


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str = "cosine",
              min_ratio: float = 0.0) -> float:
    """Multiplier of the base lr after ``step`` optimiser steps: linear warm-up from 1/warmup, then cosine."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: Optimizer, total_steps: int, warmup_steps: int, schedule: str = "cosine",
                    min_ratio: float = 0.0) -> LambdaLR:
    """Per-step schedule (call ``.step()`` after every optimiser step); state is just the step count.

    Groups marked ``"fixed_lr": True`` (SimSiam's predictor) keep their base learning rate; the others,
    ``lr_scale`` groups included, follow ``lr_factor`` times their own base rate."""

    def factor(s: int) -> float:
        return lr_factor(s, total_steps, warmup_steps, schedule, min_ratio)

    def one(s: int) -> float:
        return 1.0

    return LambdaLR(optimizer, [one if g.get("fixed_lr") else factor for g in optimizer.param_groups])
