"""Rebuild a trained backbone from a training checkpoint (for evaluation and analysis).

Checkpoint format (written by the trainer with ``torch.save``, read with ``weights_only=True``):
a dict with ``"model"`` = the Method's state_dict (keys ``backbone.*``, heads ...; a DDP
``module.`` prefix is tolerated) and ``"config"`` = a plain dict holding at least
``model.backbone`` and ``model.cifar_stem`` (nested ``{"model": {"backbone": ...}}`` or flat
dotted keys); the trainer also stores the normalisation it used as top-level ``"mean"``/``"std"``.
Only the backbone is rebuilt, so head hyperparameters do not matter here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jointaug.checkpoint import load_checkpoint
from jointaug.models import build_backbone

_MISSING = object()


def config_get(config: dict[str, Any], dotted: str, default: Any = _MISSING) -> Any:
    """``config["a"]["b"]`` or ``config["a.b"]`` for ``dotted="a.b"``; ``default`` (or KeyError) if absent."""
    if dotted in config:
        return config[dotted]
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is _MISSING:
                raise KeyError(f"checkpoint config has no key {dotted!r}")
            return default
        node = node[part]
    return node


def load_checkpoint_dict(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and verify a checkpoint (``weights_only=True``, checksum checked) and check model and config are there."""
    ckpt = load_checkpoint(path, map_location)
    path = Path(path)
    for key in ("model", "config"):
        if key not in ckpt:
            raise KeyError(f"checkpoint {path} has no {key!r} entry (found: {', '.join(map(str, ckpt))})")
    if not isinstance(ckpt["config"], dict):
        raise ValueError(f"checkpoint {path}: 'config' is a {type(ckpt['config']).__name__}, expected a dict")
    return ckpt


def backbone_state_dict(model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``backbone.*`` entries of a Method state_dict, prefix removed (``module.`` stripped first)."""
    out = {}
    for key, val in model_state.items():
        key = key.removeprefix("module.")
        if key.startswith("backbone."):
            out[key[len("backbone."):]] = val
    return out


def backbone_from_checkpoint(ckpt: dict[str, Any], source: str = "checkpoint") -> nn.Module:
    """Build the backbone described by ``ckpt["config"]`` and load its ``backbone.*`` weights (eval mode).

    Constructor keywords come from ``model.backbone_kwargs`` (a dict) and ``model.width``.
    """
    config = ckpt["config"]
    name = config_get(config, "model.backbone")
    kwargs = dict(config_get(config, "model.backbone_kwargs", {}) or {})
    width = config_get(config, "model.width", None)
    if width is not None:
        kwargs.setdefault("width", width)
    backbone = build_backbone(name, cifar_stem=bool(config_get(config, "model.cifar_stem", False)), **kwargs)
    state = backbone_state_dict(ckpt["model"])
    if not state:
        keys = list(ckpt["model"])[:5]
        raise KeyError(f"{source}: no 'backbone.*' entries in 'model' (first keys: {keys})")
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{source}: backbone {name!r} does not match the saved weights: {exc}") from exc
    return backbone.eval()


class MethodFeatures(nn.Module):
    """A trained method seen as a feature extractor: ``forward(x) = method.features(x, kind)`` (e.g. LooC's
    ``heads`` = LooC++, or one of its ``z`` spaces), with ``feature_dim`` found by a probe."""

    def __init__(self, method: nn.Module, kind: str, probe_size: int = 32) -> None:
        super().__init__()
        self.method, self.kind = method, kind
        was = method.training
        method.eval()
        with torch.no_grad():
            p = next(method.parameters())
            self.feature_dim = int(self.forward(torch.zeros(2, 3, probe_size, probe_size, dtype=p.dtype)).shape[1])
        method.train(was)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.method.features(x, self.kind)


def features_from_checkpoint(ckpt: dict[str, Any], kind: str = "backbone", source: str = "checkpoint",
                             probe_size: int = 32) -> nn.Module:
    """The feature extractor ``kind`` of a checkpoint: the backbone, or a method's own features (the whole
    method is rebuilt from the checkpoint's ``method.name`` / ``method.params`` and its full state loaded)."""
    if kind == "backbone":
        return backbone_from_checkpoint(ckpt, source)
    from jointaug.methods import METHODS, build_method

    name = config_get(ckpt["config"], "method.name", None)
    if name not in METHODS:
        raise ValueError(f"{source}: --features {kind!r} needs the method, but the config names {name!r}")
    kinds = getattr(METHODS[name], "feature_kinds", ("backbone",))
    params = dict(config_get(ckpt["config"], "method.params", {}) or {})
    method = build_method(name, backbone_from_checkpoint(ckpt, source), **params)
    kinds = getattr(method, "feature_kinds", kinds)
    if kind not in kinds:
        raise ValueError(f"{source}: method {name!r} has no feature kind {kind!r}; choose from {', '.join(kinds)}")
    state = {k.removeprefix("module."): v for k, v in ckpt["model"].items()}
    method.load_state_dict(state, strict=True)
    return MethodFeatures(method.eval(), kind, probe_size)


def load_backbone(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """The trained backbone of checkpoint ``path`` (eval mode, on ``map_location``) and its config."""
    ckpt = load_checkpoint_dict(path, map_location)
    return backbone_from_checkpoint(ckpt, f"checkpoint {path}").to(map_location), ckpt["config"]


__all__ = ["MethodFeatures", "backbone_from_checkpoint", "backbone_state_dict", "config_get",
           "features_from_checkpoint", "load_backbone", "load_checkpoint_dict"]
