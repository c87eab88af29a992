"""SimSiam (Chen & He 2021): a siamese network with a predictor and stop-gradient, no momentum encoder.

``z_i = g(f(x_i))`` (projector: 3 layers, BN on every layer, affine-free BN at the output),
``p_i = h(z_i)`` (predictor: bottleneck ``Linear(512)-BN-ReLU-Linear``); loss
``D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2`` with ``D`` the negative cosine. The predictor's parameters
form optimiser groups marked ``fixed_lr`` (SimSiam's "fix lr of predictor": no schedule decay);
``pred_lr_scale`` (default 1) multiplies the predictor's learning rate (groups marked ``lr_scale``).
Multi-crop (as for BYOL): local views go through projector and predictor only as predictions; the loss
averages ``D(p_v, sg(z_g))`` over every pair of a global view g and another view v != g (two views: the
paper's symmetric loss).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from jointaug.methods.base import Method, output_std, raise_errors, range_errors
from jointaug.methods.losses import negative_cosine
from jointaug.models.heads import ProjectionHead


class SimSiam(Method):
    """``SimSiam(backbone, proj_hidden_dim=2048, proj_out_dim=2048, proj_layers=3, pred_hidden_dim=512,
    fix_pred_lr=True, pred_lr_scale=1.0)``; takes 2 global views plus optional local views."""

    num_views = 2
    multicrop = True

    def __init__(
        self,
        backbone: nn.Module,
        proj_hidden_dim: int = 2048,
        proj_out_dim: int = 2048,
        proj_layers: int = 3,
        pred_hidden_dim: int = 512,
        fix_pred_lr: bool = True,
        pred_lr_scale: float = 1.0,
    ) -> None:
        super().__init__(backbone)
        params = dict(pred_lr_scale=pred_lr_scale)
        raise_errors("SimSiam", self.config_errors(params, batch_size=1, num_views=None), params)
        self.fix_pred_lr = bool(fix_pred_lr)
        self.pred_lr_scale = float(pred_lr_scale)
        self.projector = ProjectionHead(self.feature_dim, proj_hidden_dim, proj_out_dim, num_layers=proj_layers,
                                        batch_norm=True, last_bn=True)
        self.predictor = ProjectionHead(proj_out_dim, pred_hidden_dim, proj_out_dim, num_layers=2,
                                        batch_norm=True, last_bn=False)

    @classmethod
    def config_errors(cls, params: dict[str, Any], *, batch_size: int, num_views: int | None
                      ) -> list[tuple[str, str]]:
        return range_errors(params, {"pred_lr_scale": (0, None, "()")}) if "pred_lr_scale" in params else []

    def forward(self, views: list[Tensor]) -> dict[str, Tensor]:
        self.check_views(views)
        # projector and predictor on each run of equal-sized views at once (their BN batches, as in SimSiam)
        zp = self.encode(views, self._project_predict)
        d = zp[0].shape[1] // 2
        z, p = [t[:, :d] for t in zp], [t[:, d:] for t in zp]
        g_views = range(self.num_views)
        losses = [negative_cosine(p[v], z[g].detach()) for g in g_views for v in range(len(views)) if v != g]
        # two views: 0.5 D(p1, z2) + 0.5 D(p2, z1), as in SimSiam; more views: the mean over the pairs
        loss = torch.stack(losses).mean()
        with torch.no_grad():
            pos = nn.functional.cosine_similarity(z[0].float(), z[1].float(), dim=1).mean()
        return {"loss": loss, "pos_sim": pos, "out_std": output_std(z[0])}

    def _project_predict(self, x: Tensor) -> Tensor:
        z = self.projector(self.backbone(x))
        return torch.cat([z, self.predictor(z)], dim=1)

    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        groups = super().parameter_groups(weight_decay)
        if self.fix_pred_lr:
            groups = self.split_fixed_lr(groups, self.predictor)
        return self.split_lr_scale(groups, self.predictor, self.pred_lr_scale)


__all__ = ["SimSiam"]
