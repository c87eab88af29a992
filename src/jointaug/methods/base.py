"""The interface every self-supervised method implements, so the trainer needs no per-method code.

A method owns its backbone, heads and state (momentum encoders, queues, centres: submodules and
buffers, so they are in ``state_dict`` and hence in every checkpoint). Per step the trainer:

1. ``on_train_step_start(step, total_steps, steps_per_epoch)``: schedules that the forward uses
   (DINO's teacher temperature);
2. ``forward(views)`` -> dict with a scalar ``"loss"`` plus detached scalars to log;
3. backward, then ``on_before_optimizer_step(...)`` (e.g. DINO freezes its last layer in epoch 1);
4. the optimiser step over ``parameter_groups`` (a group with ``"fixed_lr": True`` keeps its base
   learning rate: SimSiam's predictor; one with ``"lr_scale": s`` gets ``s`` times the base learning
   rate, scheduled as the others: BYOL's ``pred_lr_scale``), the lr schedule step;
5. ``on_train_step_end(step, total_steps)``: momentum (EMA) updates, queues.

``step`` counts optimiser steps from 1. ``num_views`` views are global views; a method with
``multicrop = True`` also takes extra (local) views after them, of any size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn


def _no_weight_decay(module: nn.Module, param_name: str, param: nn.Parameter) -> bool:
    norm_types = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)
    return param.ndim <= 1 or param_name == "bias" or isinstance(module, norm_types)


class Method(nn.Module):
    """Base class of self-supervised methods: ``Method(backbone, **hyperparams)``.

    Subclasses set ``num_views`` and implement ``forward(views) -> {"loss": scalar, ...}``; extra
    entries are detached scalars for logging.
    """

    #: registry name (set by :func:`jointaug.methods.register_method`)
    name: ClassVar[str] = ""
    #: number of (global) views per image the view policy must produce
    num_views: ClassVar[int] = 2
    #: whether extra (local, multi-crop) views may follow the global ones
    multicrop: ClassVar[bool] = False

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"{type(self).__name__}: backbone must be an nn.Module, got {type(backbone).__name__}")
        self.backbone = backbone

    @property
    def feature_dim(self) -> int:
        """Dimension of the backbone features (what kNN / linear evaluation uses)."""
        dim = getattr(self.backbone, "feature_dim", None)
        if not isinstance(dim, int):
            raise AttributeError(
                f"{type(self).__name__}: backbone {type(self.backbone).__name__} has no integer feature_dim "
                "(build it with jointaug.models.build_backbone or wrap_backbone)"
            )
        return dim

    @classmethod
    def views_error(cls, n_views: int) -> str | None:
        """Why a policy with ``n_views`` views cannot feed this method (None when it can)."""
        if n_views == cls.num_views or (cls.multicrop and n_views > cls.num_views):
            return None
        if cls.multicrop:
            return f"needs {cls.num_views} global views, optionally followed by local views (got {n_views})"
        return f"needs exactly {cls.num_views} views (got {n_views}; it does not take multi-crop local views)"

    @classmethod
    def config_errors(cls, params: dict[str, Any], *, batch_size: int, num_views: int | None
                      ) -> list[tuple[str, str]]:
        """``(hyperparameter, message)`` for each value this method cannot use in a run with this global
        batch size and number of views; checked by the config validation before anything starts, once
        before the view policy is built (``num_views=None``) and once after. ``params`` holds every
        hyperparameter (defaults filled in)."""
        return []

    @classmethod
    def policy_options(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Extra :func:`~jointaug.sampling.make_policy` keywords this method's views need, from its
        hyperparameters (LooC: its leave-one-out views); empty for most methods."""
        return {}

    @classmethod
    def online_pairs_error(cls, params: dict[str, Any]) -> str | None:
        """Why ``forward`` does not pass views 0 and 1 through ``self.backbone`` (None when it does: the
        trainer's online SDF reads the backbone's outputs during the forward, no extra pass)."""
        return None

    def features(self, x: Tensor, kind: str = "backbone") -> Tensor:
        """Frozen features for evaluation: ``"backbone"`` (every method); others per method (see
        ``feature_kinds``)."""
        if kind != "backbone":
            raise ValueError(f"{type(self).__name__}: unknown feature kind {kind!r}; choose from "
                             f"{', '.join(self.feature_kinds)}")
        return self.backbone(x)

    #: evaluation feature kinds :meth:`features` accepts
    feature_kinds: ClassVar[tuple[str, ...]] = ("backbone",)

    def check_views(self, views: list[Tensor]) -> None:
        """Raise a clear error unless ``views`` is a list of view batches this method takes, one batch size."""
        n = len(views) if isinstance(views, (list, tuple)) else None
        if n is None or self.views_error(n):
            got = n if n is not None else type(views).__name__
            want = f"{self.num_views}" + (" or more" if self.multicrop else "")
            raise ValueError(f"{type(self).__name__} expects a list of {want} view batches, got {got}")
        sizes = {int(v.shape[0]) for v in views}
        if len(sizes) != 1:
            raise ValueError(f"{type(self).__name__}: views have different batch sizes {sorted(sizes)}")

    def forward(self, views: list[Tensor]) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def on_train_step_start(self, step: int, total_steps: int, steps_per_epoch: int) -> None:
        """Called before the forward of optimiser step ``step`` (1-based): schedules the forward uses."""

    def on_before_optimizer_step(self, step: int, total_steps: int, steps_per_epoch: int) -> None:
        """Called after backward, before the optimiser step (e.g. drop the gradients of a frozen layer)."""

    def on_train_step_end(self, step: int, total_steps: int) -> None:
        """Called by the trainer after each optimiser step (momentum encoders, queues ...)."""

    def encode(self, views: list[Tensor], net: Callable[[Tensor], Tensor] | None = None) -> list[Tensor]:
        """``net(view)`` for each view batch (default ``net``: the backbone), with one call per run of
        equal-sized views (multi-crop: globals together, locals together), so that BN layers in ``net``
        see each resolution as one batch (SimCLR's 2N-view batch statistics)."""
        net = self.backbone if net is None else net
        out: list[Tensor] = []
        start = 0
        while start < len(views):
            end = start + 1
            while end < len(views) and views[end].shape[-2:] == views[start].shape[-2:]:
                end += 1
            n = views[start].shape[0]
            out += list(net(torch.cat(list(views[start:end]), dim=0)).split(n))
            start = end
        return out

    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Optimiser groups: weights with ``weight_decay``; biases and norm parameters without decay
        and marked ``"lars_exclude": True`` (LARS must not adapt them). Empty groups are dropped."""
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        seen: set[int] = set()
        for module in self.modules():
            for pname, param in module.named_parameters(recurse=False):
                if not param.requires_grad or id(param) in seen:
                    continue
                seen.add(id(param))
                (no_decay if _no_weight_decay(module, pname, param) else decay).append(param)
        groups = [
            {"params": decay, "weight_decay": float(weight_decay), "lars_exclude": False, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "lars_exclude": True, "name": "no_decay"},
        ]
        return [g for g in groups if g["params"]]

    def split_fixed_lr(self, groups: list[dict[str, Any]], module: nn.Module) -> list[dict[str, Any]]:
        """``groups`` with the parameters of ``module`` moved to twin groups marked ``"fixed_lr": True``
        (the trainer's schedule leaves their learning rate at its base value)."""
        return self.split_groups(groups, module, {"fixed_lr": True}, "_fixed_lr")

    def split_lr_scale(self, groups: list[dict[str, Any]], module: nn.Module, scale: float
                       ) -> list[dict[str, Any]]:
        """``groups`` with the parameters of ``module`` moved to twin groups marked ``"lr_scale": scale``
        (:func:`~jointaug.train.optim.build_optimizer` gives them ``scale`` times the base learning rate;
        the schedule then applies to it as to every group). A no-op for ``scale == 1``."""
        if float(scale) == 1.0:
            return groups
        return self.split_groups(groups, module, {"lr_scale": float(scale)}, "_lr_scale")

    @staticmethod
    def split_groups(groups: list[dict[str, Any]], module: nn.Module, marks: dict[str, Any], suffix: str
                     ) -> list[dict[str, Any]]:
        """``groups`` with the parameters of ``module`` moved to twin groups carrying ``marks`` (keys
        added to the group) and ``suffix`` appended to the name; groups left empty are dropped."""
        moving = {id(p) for p in module.parameters()}
        out: list[dict[str, Any]] = []
        for g in groups:
            keep = [p for p in g["params"] if id(p) not in moving]
            moved = [p for p in g["params"] if id(p) in moving]
            if keep:
                out.append({**g, "params": keep})
            if moved:
                out.append({**g, "params": moved, **marks, "name": g["name"] + suffix})
        return out


class MomentumMethod(Method):
    """A method with momentum (EMA) copies: ``momentum_pairs()`` names (copy, online) module pairs and
    ``self.momentum`` is a :class:`~jointaug.methods.momentum.MomentumSchedule`; after each optimiser
    step every copy moves by the EMA rule (subclasses add their own updates, e.g. queues)."""

    momentum: Any

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def on_train_step_end(self, step: int, total_steps: int) -> None:
        from jointaug.methods.momentum import ema_update

        m = self.momentum(step, total_steps)
        for target, online in self.momentum_pairs():
            ema_update(target, online, m)


def range_errors(params: dict[str, Any], ranges: dict[str, tuple[float | None, float | None, str]]
                 ) -> list[tuple[str, str]]:
    """Check numeric hyperparameters: ``ranges[name] = (lo, hi, kind)`` with kind ``"()"``, ``"[)"``,
    ``"(]"`` or ``"[]"`` (open/closed ends; None = unbounded). Returns ``(name, message)`` pairs."""
    errors: list[tuple[str, str]] = []
    for name, (lo, hi, kind) in ranges.items():
        v = params.get(name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            errors.append((name, "must be a finite number"))
            continue
        bad_lo = lo is not None and (v <= lo if kind[0] == "(" else v < lo)
        bad_hi = hi is not None and (v >= hi if kind[1] == ")" else v > hi)
        if bad_lo or bad_hi:
            lo_s = "-inf" if lo is None else f"{lo:g}"
            hi_s = "inf" if hi is None else f"{hi:g}"
            errors.append((name, f"must be in {kind[0]}{lo_s}, {hi_s}{kind[1]}"))
    return errors


def raise_errors(owner: str, errors: list[tuple[str, str]], params: dict[str, Any]) -> None:
    """Raise one ValueError naming every bad hyperparameter (constructors call this)."""
    if errors:
        raise ValueError(f"{owner}: " + "; ".join(f"{k}={params.get(k)!r} {m}" for k, m in errors))


@torch.no_grad()
def output_std(z: Tensor) -> Tensor:
    """Mean over dimensions of the per-dimension std (over the batch) of L2-normalised outputs.

    A collapse detector (SimSiam paper, Fig. 2): about 1/sqrt(d) for well-spread outputs, 0 when
    every image maps to one point."""
    z = nn.functional.normalize(z.detach().float(), dim=1)
    return z.std(dim=0).mean() if z.shape[0] > 1 else z.new_zeros(())


__all__ = ["Method", "MomentumMethod", "output_std", "raise_errors", "range_errors"]
