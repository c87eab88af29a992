"""Backbones (feature extractors without classifier) and MLP heads.

Every backbone maps ``x [N, 3, H, W] -> [N, feature_dim]`` and has an integer attribute
``feature_dim``. :func:`build_backbone` builds one by name (or adopts an ``nn.Module``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
from torch import Tensor, nn

from jointaug.models.convnet import ConvNet4
from jointaug.models.heads import PredictionHead, ProjectionHead
from jointaug.models.resnet import ResNet, resnet18, resnet34, resnet50

#: Built-in backbone constructors, by name. ``timm:<name>`` and ``torchvision:<name>`` are also accepted.
BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "convnet4": lambda cifar_stem=False, **kw: ConvNet4(**kw),  # no stem to change: cifar_stem ignored
}


class _PooledBackbone(nn.Module):
    """Adds global average pooling to a module that returns feature maps [N, C, h, w]."""

    def __init__(self, net: nn.Module, feature_dim: int) -> None:
        super().__init__()
        self.net = net
        self.feature_dim = feature_dim

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.net(x), 1), 1)


def _probe_output(module: nn.Module, sizes: tuple[int, ...]) -> Tensor:
    param = next(iter(module.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    was_training = module.training
    module.eval()
    errors = []
    try:
        with torch.no_grad():
            for size in sizes:
                try:
                    return module(torch.zeros(1, 3, size, size, device=device, dtype=dtype))
                except Exception as exc:  # noqa: BLE001 - try the next input size
                    errors.append(f"{size}px: {type(exc).__name__}: {exc}")
    finally:
        module.train(was_training)
    raise ValueError(
        f"wrap_backbone: could not run {type(module).__name__} on a dummy image ({'; '.join(errors)})"
    )


def wrap_backbone(
    module: nn.Module, feature_dim: int | None = None, *, input_size: int | None = None
) -> nn.Module:
    """Make ``module`` a backbone: set ``feature_dim`` (inferred by a dummy forward if not given).

    A module that returns 4-D feature maps is wrapped with global average pooling; one that
    returns [N, D] is returned itself with ``feature_dim = D`` set on it.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"wrap_backbone: expected an nn.Module, got {type(module).__name__}")
    if feature_dim is not None:
        module.feature_dim = int(feature_dim)
        return module
    if isinstance(getattr(module, "feature_dim", None), int):
        return module
    out = _probe_output(module, (input_size,) if input_size else (224, 32))
    if isinstance(out, (tuple, list)):
        kind = type(out).__name__
        raise ValueError(f"wrap_backbone: {type(module).__name__} returns a {kind}, expected a tensor")
    if out.dim() == 2:
        module.feature_dim = int(out.shape[1])
        return module
    if out.dim() == 4:
        return _PooledBackbone(module, int(out.shape[1]))
    raise ValueError(
        f"wrap_backbone: {type(module).__name__} returns shape {tuple(out.shape)}; "
        "expected [N, D] or [N, C, h, w]"
    )


def _cifar_stem_inplace(net: nn.Module, name: str) -> None:
    conv = getattr(net, "conv1", None)
    if not isinstance(conv, nn.Conv2d) or not hasattr(net, "maxpool"):
        raise ValueError(f"build_backbone: cifar_stem=True is not supported for {name!r} (no conv1/maxpool)")
    has_bias = conv.bias is not None
    net.conv1 = nn.Conv2d(conv.in_channels, conv.out_channels, 3, stride=1, padding=1, bias=has_bias)
    net.maxpool = nn.Identity()


def _external(prefix: str, model: str, cifar_stem: bool, kw: dict) -> nn.Module:
    if prefix == "timm":
        try:
            timm = importlib.import_module("timm")
        except ImportError as exc:
            raise ValueError(f"build_backbone: 'timm:{model}' needs the timm package") from exc
        kw.setdefault("pretrained", False)
        net = timm.create_model(model, num_classes=0, **kw)
    else:
        try:
            tv_models = importlib.import_module("torchvision.models")
        except ImportError as exc:
            raise ValueError(f"build_backbone: 'torchvision:{model}' needs torchvision") from exc
        if not hasattr(tv_models, model):
            raise ValueError(f"build_backbone: torchvision.models has no {model!r}")
        kw.setdefault("weights", None)
        net = getattr(tv_models, model)(**kw)
        for head in ("fc", "classifier", "head", "heads"):
            if isinstance(getattr(net, head, None), nn.Module):
                setattr(net, head, nn.Identity())
                break
    if cifar_stem:
        _cifar_stem_inplace(net, f"{prefix}:{model}")
    return wrap_backbone(net)


def build_backbone(name: str | nn.Module, *, cifar_stem: bool = False, **kw) -> nn.Module:
    """A backbone by name: one of :data:`BACKBONES`, ``timm:<name>``, ``torchvision:<name>``, or a module.

    ``kw`` goes to the constructor (e.g. ``zero_init_residual=True``, ``width=32``).
    """
    if isinstance(name, nn.Module):
        if cifar_stem:
            _cifar_stem_inplace(name, type(name).__name__)
        return wrap_backbone(name, kw.pop("feature_dim", None))
    if not isinstance(name, str):
        raise TypeError(f"build_backbone: name must be a string or an nn.Module, got {type(name).__name__}")
    if ":" in name:
        prefix, _, model = name.partition(":")
        if prefix in ("timm", "torchvision") and model:
            return _external(prefix, model, cifar_stem, dict(kw))
    if name not in BACKBONES:
        choices = ", ".join([*BACKBONES, "timm:<name>", "torchvision:<name>"])
        raise ValueError(f"unknown backbone {name!r}; choose from {choices} (or pass an nn.Module)")
    try:
        return BACKBONES[name](cifar_stem=cifar_stem, **kw)
    except TypeError as exc:
        raise ValueError(f"build_backbone: bad keyword for {name!r}: {exc}") from exc


__all__ = [
    "BACKBONES",
    "ConvNet4",
    "PredictionHead",
    "ProjectionHead",
    "ResNet",
    "build_backbone",
    "resnet18",
    "resnet34",
    "resnet50",
    "wrap_backbone",
]
