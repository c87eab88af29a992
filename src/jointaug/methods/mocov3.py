"""MoCo v3, ResNet version (Chen, Xie, He 2021): projector and predictor MLPs with BN, a momentum copy
of backbone + projector, and a symmetrised contrastive loss over in-batch keys.

``q_i = h(g(f(x_i)))`` (online: backbone, projector, predictor), ``k_i = g_m(f_m(x_i))`` (momentum copy,
no gradient); loss ``ctr(q1, k2) + ctr(q2, k1)`` where ``ctr`` is cross-entropy over the keys of the
global batch (gathered across ranks) x 2T (:func:`~jointaug.methods.losses.moco_v3_contrastive`).
The momentum follows a cosine schedule from 0.99 to 1. Defaults from the reference code's ResNet-50
setting: projector 2 layers (4096 hidden, 256 out, BN everywhere, affine-free BN on the output),
predictor 2 layers (4096, 256, no output BN), temperature 1.0 (0.2 is the ViT value), LARS in the
recipes. Each view goes through the encoders as its own batch (per-view BN statistics), as in the
reference code.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from jointaug.methods.base import MomentumMethod, output_std, raise_errors, range_errors
from jointaug.methods.losses import moco_v3_contrastive
from jointaug.methods.momentum import MomentumSchedule, momentum_copy, momentum_errors
from jointaug.models.heads import ProjectionHead


class MoCoV3(MomentumMethod):
    """``MoCoV3(backbone, proj_hidden_dim=4096, proj_out_dim=256, proj_layers=2, pred_hidden_dim=4096,
    temperature=1.0, momentum=0.99, momentum_final=1.0)``."""

    num_views = 2

    def __init__(
        self,
        backbone: nn.Module,
        proj_hidden_dim: int = 4096,
        proj_out_dim: int = 256,
        proj_layers: int = 2,
        pred_hidden_dim: int = 4096,
        temperature: float = 1.0,
        momentum: float = 0.99,
        momentum_final: float = 1.0,
    ) -> None:
        super().__init__(backbone)
        params = dict(temperature=temperature, momentum=momentum, momentum_final=momentum_final)
        raise_errors("MoCoV3", self._param_errors(params), params)
        self.temperature = float(temperature)
        self.momentum = MomentumSchedule(float(momentum), float(momentum_final), "cosine")
        self.projector = ProjectionHead(self.feature_dim, proj_hidden_dim, proj_out_dim, num_layers=proj_layers,
                                        batch_norm=True, last_bn=True)
        self.predictor = ProjectionHead(proj_out_dim, pred_hidden_dim, proj_out_dim, num_layers=2,
                                        batch_norm=True, last_bn=False)
        self.momentum_backbone = momentum_copy(self.backbone)
        self.momentum_projector = momentum_copy(self.projector)

    @staticmethod
    def _param_errors(params: dict[str, Any]) -> list[tuple[str, str]]:
        return range_errors(params, {"temperature": (0, None, "()")}) + momentum_errors(params)

    @classmethod
    def config_errors(cls, params: dict[str, Any], *, batch_size: int, num_views: int | None
                      ) -> list[tuple[str, str]]:
        return cls._param_errors(params)

    def forward(self, views: list[Tensor]) -> dict[str, Tensor]:
        self.check_views(views)
        x1, x2 = views
        q1 = self.predictor(self.projector(self.backbone(x1)))
        q2 = self.predictor(self.projector(self.backbone(x2)))
        with torch.no_grad():
            k1 = self.momentum_projector(self.momentum_backbone(x1))
            k2 = self.momentum_projector(self.momentum_backbone(x2))
        a = moco_v3_contrastive(q1, k2, self.temperature)
        b = moco_v3_contrastive(q2, k1, self.temperature)
        with torch.no_grad():
            pos = nn.functional.cosine_similarity(q1.float(), k2.float(), dim=1).mean()
        return {"loss": a.loss + b.loss, "acc": 0.5 * (a.top1() + b.top1()), "pos_sim": pos,
                "out_std": output_std(q1)}

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.momentum_backbone, self.backbone), (self.momentum_projector, self.projector)]


__all__ = ["MoCoV3"]
