"""BYOL (Grill et al. 2020): an online network (backbone, projector, predictor) predicts the projection
of the other view by a target network, the EMA of backbone + projector; no negatives.

Loss: ``normalized_mse(p1, z2') + normalized_mse(p2, z1')`` (each ``2 - 2 cos``), with ``z'`` from the
target network (no gradient). Target momentum follows the cosine schedule 0.996 -> 1. Heads: projector
and predictor ``Linear(4096)-BN-ReLU-Linear(256)``. ``pred_lr_scale`` (default 1, as BYOL) multiplies
the predictor's learning rate (its optimiser groups carry ``"lr_scale"``): a predictor that adapts
faster than the encoder (DirectPred, Tian et al. 2021). Multi-crop (as solo-learn offers): extra views go
through the online network only; the loss averages ``normalized_mse(p_v, z_g')`` over every pair of a
global view g (target) and another view v != g (online).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from jointaug.methods.base import MomentumMethod, output_std, raise_errors, range_errors
from jointaug.methods.losses import normalized_mse
from jointaug.methods.momentum import MomentumSchedule, momentum_copy, momentum_errors
from jointaug.models.heads import ProjectionHead


class BYOL(MomentumMethod):
    """``BYOL(backbone, proj_hidden_dim=4096, proj_out_dim=256, pred_hidden_dim=4096, momentum=0.996,
    momentum_final=1.0, pred_lr_scale=1.0)``; takes 2 global views plus optional local views."""

    num_views = 2
    multicrop = True

    def __init__(
        self,
        backbone: nn.Module,
        proj_hidden_dim: int = 4096,
        proj_out_dim: int = 256,
        pred_hidden_dim: int = 4096,
        momentum: float = 0.996,
        momentum_final: float = 1.0,
        pred_lr_scale: float = 1.0,
    ) -> None:
        super().__init__(backbone)
        params = dict(momentum=momentum, momentum_final=momentum_final, pred_lr_scale=pred_lr_scale)
        raise_errors("BYOL", self._param_errors(params), params)
        self.pred_lr_scale = float(pred_lr_scale)
        self.momentum = MomentumSchedule(float(momentum), float(momentum_final), "cosine")
        self.projector = ProjectionHead(self.feature_dim, proj_hidden_dim, proj_out_dim, num_layers=2)
        self.predictor = ProjectionHead(proj_out_dim, pred_hidden_dim, proj_out_dim, num_layers=2)
        self.momentum_backbone = momentum_copy(self.backbone)
        self.momentum_projector = momentum_copy(self.projector)

    @staticmethod
    def _param_errors(params: dict[str, Any]) -> list[tuple[str, str]]:
        errors = momentum_errors(params)
        if "pred_lr_scale" in params:
            errors += range_errors(params, {"pred_lr_scale": (0, None, "()")})
        return errors

    @classmethod
    def config_errors(cls, params: dict[str, Any], *, batch_size: int, num_views: int | None
                      ) -> list[tuple[str, str]]:
        return cls._param_errors(params)

    def forward(self, views: list[Tensor]) -> dict[str, Tensor]:
        self.check_views(views)
        p = self.encode(views, lambda x: self.predictor(self.projector(self.backbone(x))))
        with torch.no_grad():
            z_t = [self.momentum_projector(self.momentum_backbone(views[g])) for g in range(self.num_views)]
        losses = [normalized_mse(p[v], z_t[g]) for g in range(self.num_views) for v in range(len(views)) if v != g]
        # two views: the sum of both directions, as in BYOL; more views: scaled to the same size
        loss = torch.stack(losses).mean() * 2.0
        with torch.no_grad():
            pos = nn.functional.cosine_similarity(p[0].float(), z_t[1].float(), dim=1).mean()
        return {"loss": loss, "pos_sim": pos, "out_std": output_std(p[0])}

    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        return self.split_lr_scale(super().parameter_groups(weight_decay), self.predictor, self.pred_lr_scale)

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.momentum_backbone, self.backbone), (self.momentum_projector, self.projector)]


__all__ = ["BYOL"]
