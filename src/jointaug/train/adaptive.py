"""Adaptive view difficulty during training (issue 13): the values in force, the policy they give, and the
online difficulty signal.

- :class:`AdaptiveViews`: ``aug.schedule`` (numeric view-policy values as functions of training progress
  ``p = i / (total_steps - 1)`` for the step of 0-based index ``i``: the first step runs at a schedule's start
  value, the last at its end value; ``train.max_steps`` does not change it) and ``aug.controller``
  (a :class:`~jointaug.train.difficulty.BetaController` on ``aug.beta``). ``policy_at(epoch, step)`` is what
  the main-process data paths call to draw a step's views; policies are rebuilt only when the values change
  and cached by value tuple. State (the controller's) is a plain dict for the checkpoint: schedules are pure,
  so a resumed run recomputes the same values from its step.
- :class:`PairProbe`: a forward hook on the online backbone that keeps its outputs during one training
  forward (no extra pass). Methods call the backbone on ``torch.cat(views)`` (SimCLR, SimSiam, BYOL, DINO:
  one call per run of equal-sized views) or once per view (MoCo v3, symmetric MoCo), so the first ``2n``
  rows over the calls, in call order, are views 0 and 1 of a batch of ``n``; momentum / teacher backbones
  are other modules and are not seen. Their row-wise cosine is the online SDF of the batch (paper Eq. 2 on
  the training views, with the backbone in training mode).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from jointaug.config import aug_schedules, build_policy, controller_settings, policy_kwargs, with_aug_values
from jointaug.train.difficulty import BetaController

__all__ = ["AdaptiveViews", "PairProbe", "branch_names", "breakpoint_policies", "row_cosines"]

#: policies kept per run (a continuous schedule gives a new value at every step)
_CACHE_SIZE = 64


def breakpoint_policies(cfg: DictConfig) -> list[Any]:
    """The view policies at every breakpoint of ``aug.schedule`` (every schedule kind moves monotonically
    between its points, so the extremes of each value, e.g. the smallest crop area, are among them)."""
    schedules = aug_schedules(cfg)
    points = sorted({p for s in schedules.values() for p, _ in s.points} | {0.0, 1.0}) if schedules else []
    return [build_policy(cfg, {k: s(p) for k, s in schedules.items()}) for p in points]


class AdaptiveViews:
    """The view-policy values in force at each step (schedules and controller) and their policies."""

    def __init__(self, cfg: DictConfig, total_steps: int, steps_per_epoch: int, base_policy: Any = None) -> None:
        from jointaug.sampling import make_policy

        self.schedules = aug_schedules(cfg)
        ctrl = controller_settings(cfg)
        self.controller = None
        if ctrl is not None:
            self.controller = BetaController(beta=float(cfg.aug.beta), **ctrl)
        self.total_steps, self.steps_per_epoch = max(int(total_steps), 1), int(steps_per_epoch)
        self._kwargs = policy_kwargs(cfg)
        self._make = make_policy
        self._cache: OrderedDict[tuple, Any] = OrderedDict()
        self.base_policy = base_policy if base_policy is not None else make_policy(**self._kwargs)

    @property
    def active(self) -> bool:
        """True when some value changes during training (a schedule or the controller)."""
        return bool(self.schedules) or self.controller is not None

    @property
    def keys(self) -> list[str]:
        """The keys whose values are logged (``aug_<key>``, dots as underscores)."""
        return sorted(set(self.schedules) | ({"beta"} if self.controller is not None else set()))

    def progress(self, global_step: int) -> float:
        """Training progress of the step with 0-based index ``global_step``: 0 at the first step, 1 at the last
        (``global_step / (total_steps - 1)``), so a schedule's start and end values are both used."""
        return min(max(global_step / max(self.total_steps - 1, 1), 0.0), 1.0)

    def values_at(self, global_step: int) -> dict[str, float]:
        """The values in force for the step with 0-based index ``global_step`` (the controller's beta as of now)."""
        p = self.progress(global_step)
        out = {k: float(s(p)) for k, s in self.schedules.items()}
        if self.controller is not None:
            out["beta"] = float(self.controller.beta)
        return out

    def policy_for(self, values: dict[str, float]) -> Any:
        """The view policy with ``values`` in force (cached by value tuple)."""
        if not values:
            return self.base_policy
        key = tuple(sorted(values.items()))
        policy = self._cache.get(key)
        if policy is None:
            policy = self._make(**with_aug_values(self._kwargs, values))
            self._cache[key] = policy
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return policy

    def policy_at(self, epoch: int, step: int) -> Any:
        """The policy of step ``step`` of epoch ``epoch`` (what the data paths draw views with)."""
        return self.policy_for(self.values_at(epoch * self.steps_per_epoch + step))

    def observe(self, sdf: float, global_step: int) -> None:
        """Feed the online SDF of the step with 0-based index ``global_step`` to the controller (if any)."""
        if self.controller is not None:
            self.controller.update(float(sdf), self.progress(global_step))

    def log_values(self, values: dict[str, float]) -> dict[str, float]:
        """``values`` as log fields: ``aug_beta``, ``aug_scale_0`` ..."""
        return {f"aug_{k.replace('.', '_')}": float(v) for k, v in sorted(values.items())}

    def state_dict(self) -> dict[str, Any]:
        """Checkpoint state: the controller's (schedules are pure functions of the step)."""
        return {"controller": self.controller.state_dict() if self.controller is not None else None}

    def load_state_dict(self, state: dict[str, Any] | None, where: str = "the checkpoint") -> None:
        """Restore :meth:`state_dict`; a controller run needs the controller's state."""
        if self.controller is None:
            return
        saved = (state or {}).get("controller")
        if saved is None:
            raise ValueError(f"cannot resume from {where}: aug.controller is set but the checkpoint holds no "
                             "controller state")
        self.controller.load_state_dict(saved)


def row_cosines(a: Tensor, b: Tensor, eps: float = 1e-12) -> Tensor:
    """Row-wise cosine similarity of two [n, D] tensors in float64 (the formula of the offline SDF)."""
    a, b = a.double(), b.double()
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(eps)


class PairProbe:
    """Keeps the online backbone's outputs during a training forward; see the module docstring."""

    def __init__(self, backbone: nn.Module) -> None:
        self.outputs: list[Tensor] = []
        self._on = False
        self._handle = backbone.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if self._on and isinstance(output, Tensor):
            self.outputs.append(output.detach())

    @contextmanager
    def capture(self) -> Iterator[PairProbe]:
        """Collect the backbone's outputs of the calls inside the block (and only those)."""
        self.outputs = []
        self._on = True
        try:
            yield self
        finally:
            self._on = False

    def pair_cosines(self, n: int) -> Tensor | None:
        """cos(f(view 0), f(view 1)) per image [n] (float64) from the captured rows; None when the backbone
        saw fewer than 2n rows (the method passes a view through another network only)."""
        rows, got = [], 0
        for out in self.outputs:
            if got >= 2 * n:
                break
            rows.append(out.flatten(1))
            got += out.shape[0]
        self.outputs = []
        if got < 2 * n:
            return None
        f = torch.cat(rows)[: 2 * n] if len(rows) > 1 else rows[0][: 2 * n]
        return row_cosines(f[:n], f[n:])

    def close(self) -> None:
        """Remove the hook."""
        self._handle.remove()


def branch_names(policy: Any) -> list[str]:
    """Names of a per-image coin's alternatives (``jcrop``, ``jblur``, else ``alt<i>``); empty without a coin."""
    names = []
    for i, alt in enumerate(getattr(policy, "alternatives", None) or []):
        params = {c.param for c in alt}
        names.append("jcrop" if params == {"scale"} else "jblur" if params == {"sigma"} else f"alt{i}")
    return names
