"""ResNet backbones (v1.5, written from the paper's description) without the classifier.

``forward(x [N, 3, H, W]) -> [N, feature_dim]`` (global average pool of the last stage). The CIFAR
stem (3x3 conv, stride 1, no max-pool) keeps the spatial resolution of 32 px images, as in the
small-data-set protocols of SimCLR-style papers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

NormLayer = Callable[[int], nn.Module]


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, norm: NormLayer = nn.BatchNorm2d) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = norm(planes)
        self.conv2 = _conv3x3(planes, cout)
        self.bn2 = norm(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(_conv1x1(cin, cout, stride), norm(cout))

    @property
    def last_bn(self) -> nn.Module:
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride: ResNet v1.5), 1x1 expand by 4."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, norm: NormLayer = nn.BatchNorm2d) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = _conv1x1(cin, planes)
        self.bn1 = norm(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = norm(planes)
        self.conv3 = _conv1x1(planes, cout)
        self.bn3 = norm(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(_conv1x1(cin, cout, stride), norm(cout))

    @property
    def last_bn(self) -> nn.Module:
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A ResNet feature extractor: stem, four stages, global average pool; no classifier.

    ``cifar_stem=True`` uses a 3x3 stride-1 stem without max-pool (for 32-96 px images);
    ``zero_init_residual=True`` zero-initialises the last BN of every block (each block starts as
    the identity), which helps large-batch training.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int] | list[int],
        *,
        cifar_stem: bool = False,
        zero_init_residual: bool = False,
        width: int = 64,
        in_channels: int = 3,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"ResNet: layers must be four positive block counts, got {layers!r}")
        if width < 1:
            raise ValueError(f"ResNet: width must be positive, got {width}")
        self.cifar_stem = cifar_stem
        if cifar_stem:
            self.conv1 = nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = norm_layer(width)
        self.relu = nn.ReLU(inplace=True)
        cin = width
        stages = []
        for i, n in enumerate(layers):
            planes = width * 2**i
            blocks = []
            for j in range(int(n)):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(cin, planes, stride, norm_layer))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim: int = cin
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)) and getattr(m.last_bn, "weight", None) is not None:
                    nn.init.zeros_(m.last_bn.weight)

    def forward_maps(self, x: Tensor) -> Tensor:
        """The last stage's feature map [N, feature_dim, h, w] (for heat maps, e.g. ContrastiveCrop)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(self.avgpool(self.forward_maps(x)), 1)


def resnet18(cifar_stem: bool = False, **kw) -> ResNet:
    """ResNet-18 backbone, feature_dim 512."""
    return ResNet(BasicBlock, (2, 2, 2, 2), cifar_stem=cifar_stem, **kw)


def resnet34(cifar_stem: bool = False, **kw) -> ResNet:
    """ResNet-34 backbone, feature_dim 512."""
    return ResNet(BasicBlock, (3, 4, 6, 3), cifar_stem=cifar_stem, **kw)


def resnet50(cifar_stem: bool = False, **kw) -> ResNet:
    """ResNet-50 (v1.5) backbone, feature_dim 2048."""
    return ResNet(Bottleneck, (3, 4, 6, 3), cifar_stem=cifar_stem, **kw)


__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50"]
