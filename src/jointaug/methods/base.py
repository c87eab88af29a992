"""The interface every self-supervised method implements, so the trainer needs no per-method code.

A method owns its backbone and heads (and, later, momentum encoders, queues, centres ...). The
trainer renders ``num_views`` views per image, calls ``forward(views)`` for a dict with a scalar
``"loss"`` (plus logged scalars), steps the optimiser built from ``parameter_groups``, then calls
``on_train_step_end`` (e.g. momentum updates).
"""

from __future__ import annotations

from typing import Any, ClassVar

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
    #: number of views per image the view policy must produce
    num_views: ClassVar[int] = 2

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

    def check_views(self, views: list[Tensor]) -> None:
        """Raise a clear error unless ``views`` is a list of ``num_views`` tensors with one batch size."""
        if not isinstance(views, (list, tuple)) or len(views) != self.num_views:
            got = len(views) if isinstance(views, (list, tuple)) else type(views).__name__
            raise ValueError(f"{type(self).__name__} expects a list of {self.num_views} view batches, got {got}")
        sizes = {int(v.shape[0]) for v in views}
        if len(sizes) != 1:
            raise ValueError(f"{type(self).__name__}: views have different batch sizes {sorted(sizes)}")

    def forward(self, views: list[Tensor]) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def on_train_step_end(self, step: int, total_steps: int) -> None:
        """Called by the trainer after each optimiser step (momentum encoders, schedules ...)."""

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


__all__ = ["Method"]
