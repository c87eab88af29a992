"""MLP heads: the projection head (SimCLR/MoCo v2/BYOL ...) and the predictor (BYOL/SimSiam)."""

from __future__ import annotations

from torch import Tensor, nn


class ProjectionHead(nn.Module):
    """MLP ``in_dim -> hidden_dim (x num_layers-1) -> out_dim``: Linear(-BN)-ReLU per hidden layer.

    ``batch_norm`` adds BN after every hidden Linear (SimCLR v2 / lightly style; SimCLR v1 had
    none); ``last_bn`` adds an affine-free BN on the output (MoCo v3 / SimSiam style).
    ``num_layers=1`` is a single Linear.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int = 2,
        batch_norm: bool = True,
        last_bn: bool = False,
    ) -> None:
        super().__init__()
        for key, val in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim),
                         ("num_layers", num_layers)):
            if int(val) < 1:
                raise ValueError(f"ProjectionHead: {key} must be a positive integer, got {val!r}")
        self.in_dim, self.hidden_dim, self.out_dim = int(in_dim), int(hidden_dim), int(out_dim)
        layers: list[nn.Module] = []
        dim = self.in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, self.hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(self.hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = self.hidden_dim
        layers.append(nn.Linear(dim, self.out_dim, bias=not last_bn))
        if last_bn:
            layers.append(nn.BatchNorm1d(self.out_dim, affine=False))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class PredictionHead(ProjectionHead):
    """BYOL/SimSiam predictor: Linear-BN-ReLU-Linear (bottleneck ``hidden_dim``), no output BN."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int | None = None) -> None:
        super().__init__(in_dim, hidden_dim, in_dim if out_dim is None else out_dim,
                         num_layers=2, batch_norm=True, last_bn=False)


__all__ = ["ProjectionHead", "PredictionHead"]
