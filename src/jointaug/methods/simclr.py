"""SimCLR (Chen et al. 2020): backbone + MLP projection head + NT-Xent over two views.

Defaults follow the CIFAR-style SimCLR recipes: temperature 0.5 (SimCLR's CIFAR-10 choice; 0.1-0.2
is the ImageNet/large-batch choice, one argument away) and a 2-layer head
``feature_dim -> 2048 (BN, ReLU) -> 128``. Both views go through the backbone as one batch, so BN
statistics are over the 2N views (as in SimCLR's global BN). Multi-crop (as solo-learn offers): local
views after the two global ones; the loss is the mean NT-Xent over every pair of a global view with
another view.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from jointaug.methods.base import Method, output_std
from jointaug.methods.losses import nt_xent_detailed
from jointaug.models.heads import ProjectionHead


class SimCLR(Method):
    """SimCLR: ``SimCLR(backbone, proj_hidden_dim=2048, proj_out_dim=128, proj_layers=2, temperature=0.5)``."""

    num_views = 2
    multicrop = True

    def __init__(
        self,
        backbone: nn.Module,
        proj_hidden_dim: int = 2048,
        proj_out_dim: int = 128,
        proj_layers: int = 2,
        temperature: float = 0.5,
        proj_batch_norm: bool = True,
        gather_negatives: bool = True,
    ) -> None:
        super().__init__(backbone)
        if not temperature > 0:
            raise ValueError(f"SimCLR: temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)
        self.gather_negatives = bool(gather_negatives)
        self.projector = ProjectionHead(
            self.feature_dim, proj_hidden_dim, proj_out_dim, num_layers=proj_layers, batch_norm=proj_batch_norm
        )

    def forward(self, views: list[Tensor]) -> dict[str, Tensor]:
        self.check_views(views)
        z = self.encode(views, lambda x: self.projector(self.backbone(x)))
        out = nt_xent_detailed(z[0], z[1], self.temperature, gather=self.gather_negatives)
        loss = out.loss
        if len(z) > 2:  # multi-crop: mean NT-Xent over every pair (global view g, other view v)
            pairs = [(g, v) for g in range(self.num_views) for v in range(len(z)) if v > g or v >= self.num_views]
            loss = torch.stack([nt_xent_detailed(z[g], z[v], self.temperature, gather=self.gather_negatives).loss
                                for g, v in pairs]).mean()
        with torch.no_grad():
            pos_sim = nn.functional.cosine_similarity(z[0].float(), z[1].float(), dim=1).mean()
        return {"loss": loss, "pos_sim": pos_sim, "acc": out.top1(), "out_std": output_std(z[0])}


__all__ = ["SimCLR"]
