"""Backbones and heads: shapes for both stems, feature_dim, zero-init, build_backbone errors."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from jointaug.models import (
    BACKBONES,
    ConvNet4,
    PredictionHead,
    ProjectionHead,
    build_backbone,
    resnet18,
    resnet50,
    wrap_backbone,
)


@pytest.mark.parametrize("cifar_stem, size, map_hw", [(True, 32, 4), (False, 32, 1), (False, 64, 2)])
def test_resnet18_shapes_both_stems(cifar_stem, size, map_hw):
    net = resnet18(cifar_stem=cifar_stem)
    x = torch.randn(2, 3, size, size)
    assert net.feature_dim == 512
    assert net.forward_maps(x).shape == (2, 512, map_hw, map_hw)
    assert net(x).shape == (2, 512)
    assert isinstance(net.maxpool, nn.Identity) == cifar_stem
    assert net.conv1.kernel_size == ((3, 3) if cifar_stem else (7, 7))
    assert net.conv1.stride == ((1, 1) if cifar_stem else (2, 2))


def test_resnet50_and_34_feature_dims():
    net = resnet50(cifar_stem=True)
    assert net.feature_dim == 2048
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 2048)
    assert build_backbone("resnet34").feature_dim == 512
    n18 = sum(p.numel() for p in resnet18().parameters())
    assert 11_000_000 < n18 < 11_300_000  # ResNet-18 without fc: ~11.18M parameters


def test_zero_init_residual_makes_blocks_identity_like():
    net = resnet18(cifar_stem=True, zero_init_residual=True)
    block = net.layer1[0]
    assert torch.count_nonzero(block.bn2.weight) == 0
    block.eval()
    x = torch.rand(1, 64, 8, 8)
    torch.testing.assert_close(block(x), torch.relu(x))  # residual branch is zero at init
    assert torch.count_nonzero(resnet18().layer1[0].bn2.weight) > 0


def test_convnet4_interface_and_grad():
    net = ConvNet4(width=8)
    out = net(torch.randn(3, 3, 32, 32))
    assert out.shape == (3, 64) and net.feature_dim == 64
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    assert build_backbone("convnet4", cifar_stem=True, width=8).feature_dim == 64


def test_build_backbone_unknown_name_lists_choices():
    with pytest.raises(ValueError, match="unknown backbone 'resnet19'") as err:
        build_backbone("resnet19")
    for name in [*BACKBONES, "timm:<name>", "torchvision:<name>"]:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="resnet18"):
        build_backbone("resnet18", depth=3)  # bad keyword, named
    with pytest.raises(TypeError):
        build_backbone(3)  # type: ignore[arg-type]


@pytest.mark.skipif(importlib.util.find_spec("timm") is not None, reason="timm installed")
def test_timm_backbone_without_timm_is_a_clear_error():
    with pytest.raises(ValueError, match="timm"):
        build_backbone("timm:resnet18")


def test_torchvision_backbone_without_torchvision_is_a_clear_error():
    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision installed")
    with pytest.raises(ValueError, match="torchvision"):
        build_backbone("torchvision:resnet18")


def test_wrap_backbone_infers_feature_dim_and_pools_maps():
    flat = nn.Sequential(nn.Conv2d(3, 5, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert build_backbone(flat) is flat and flat.feature_dim == 5
    maps = nn.Conv2d(3, 7, 3)
    wrapped = wrap_backbone(maps)
    assert wrapped.feature_dim == 7 and wrapped(torch.randn(2, 3, 9, 9)).shape == (2, 7)
    assert wrap_backbone(nn.Identity(), feature_dim=11).feature_dim == 11
    with pytest.raises(ValueError, match="returns shape"):
        wrap_backbone(nn.Flatten(0))  # 1-D output


def test_cifar_stem_on_a_module_without_stem_is_an_error():
    with pytest.raises(ValueError, match="cifar_stem"):
        build_backbone(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()), cifar_stem=True)


def test_projection_head_layers():
    head = ProjectionHead(512, 64, 16, num_layers=3, batch_norm=True, last_bn=True)
    kinds = [type(m).__name__ for m in head.net]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    assert head.net[-1].affine is False
    assert head(torch.randn(4, 512)).shape == (4, 16)
    plain = ProjectionHead(8, 4, 2, num_layers=1)
    assert [type(m).__name__ for m in plain.net] == ["Linear"]
    no_bn = ProjectionHead(8, 4, 2, batch_norm=False)
    assert [type(m).__name__ for m in no_bn.net] == ["Linear", "ReLU", "Linear"]
    with pytest.raises(ValueError, match="num_layers"):
        ProjectionHead(8, 4, 2, num_layers=0)
    pred = PredictionHead(16, 4)
    assert pred(torch.randn(3, 16)).shape == (3, 16)
