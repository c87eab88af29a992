"""A small 4-layer convnet for fast CPU runs and tests (same interface as the ResNets)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ConvNet4(nn.Module):
    """Four conv3x3-BN-ReLU layers with channels (w, 2w, 4w, 8w), 2x2 max-pool after the first three,
    global average pool. ``forward(x) -> [N, feature_dim]`` with ``feature_dim = 8 * width``."""

    def __init__(self, width: int = 64, in_channels: int = 3) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"ConvNet4: width must be positive, got {width}")
        chans = [in_channels, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [
                nn.Conv2d(chans[i], chans[i + 1], kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(chans[i + 1]),
                nn.ReLU(inplace=True),
            ]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim: int = chans[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_maps(self, x: Tensor) -> Tensor:
        """The last feature map [N, feature_dim, h, w]."""
        return self.features(x)

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


__all__ = ["ConvNet4"]
