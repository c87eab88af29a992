"""Clean (un-augmented) features of a frozen backbone, for kNN and linear evaluation.

Images are uint8 [N, 3, H, W] tensors or a Dataset whose items are an image (uint8 CHW tensor,
HWC numpy array or PIL image) or a tuple ``(image, label, ...)``. Optional ``size``: resize the
shorter side to ``round(size / crop_fraction)`` (bilinear, antialiased) and take the centre
``size x size`` crop, so data sets of variable-size images work too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

#: ImageNet channel statistics (the default normalisation).
from jointaug.constants import IMAGENET_MEAN, IMAGENET_STD
from jointaug.data.base import one_thread

Images = Tensor | list[Tensor]


def to_uint8_chw(img: Any) -> Tensor:
    """One image as a uint8 [3, H, W] tensor (from a CHW tensor, an HWC/HW numpy array or a PIL image)."""
    if isinstance(img, Tensor):
        t = img
    elif isinstance(img, np.ndarray):
        arr = img if img.ndim == 3 else img[:, :, None]
        t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
    elif hasattr(img, "convert") and hasattr(img, "size"):  # PIL image
        t = torch.from_numpy(np.asarray(img.convert("RGB")).copy()).permute(2, 0, 1)
    else:
        raise TypeError(f"unsupported image type {type(img).__name__}; expected a tensor, numpy array or PIL image")
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3 or t.shape[0] not in (1, 3):
        raise ValueError(f"expected an image of shape [3, H, W] (or [1, H, W]), got {tuple(t.shape)}")
    if t.dtype != torch.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {t.dtype}")
    return t.expand(3, -1, -1) if t.shape[0] == 1 else t


def collate_images(items: Sequence[Any]) -> tuple[Images, Tensor | None]:
    """DataLoader collate: images stacked when all sizes agree (else a list) and labels (or None)."""
    imgs, labels = [], []
    for item in items:
        if isinstance(item, (tuple, list)):
            imgs.append(to_uint8_chw(item[0]))
            labels.append(item[1] if len(item) > 1 else None)
        else:
            imgs.append(to_uint8_chw(item))
            labels.append(None)
    same = len({tuple(i.shape) for i in imgs}) == 1
    lab = None if any(x is None for x in labels) else torch.as_tensor([int(x) for x in labels], dtype=torch.long)
    return (torch.stack(imgs) if same else imgs), lab


def resize_center_crop(x: Tensor, size: int, crop_fraction: float = 1.0) -> Tensor:
    """Float images [B, C, H, W]: shorter side to ``round(size / crop_fraction)``, centre ``size`` crop."""
    h, w = x.shape[-2:]
    short = max(1, round(size / crop_fraction))
    if min(h, w) != short:
        scale = short / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
        h, w = nh, nw
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top:top + size, left:left + size]


def normalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """(x - mean) / std per channel for float images in [0, 1]."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def preprocess_clean(
    images: Images,
    *,
    device: torch.device | str,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    size: int | None = None,
    crop_fraction: float = 1.0,
) -> Tensor:
    """uint8 images (a batch tensor or a list of CHW tensors) -> normalised float batch on ``device``."""

    def one(t: Tensor) -> Tensor:
        x = t.to(device, non_blocking=True)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if size is not None:
            x = resize_center_crop(x, size, crop_fraction)
        return x

    if isinstance(images, Tensor):
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [N, 3, H, W], got shape {tuple(images.shape)}")
        x = one(images)
    else:
        if size is None and len({tuple(i.shape) for i in images}) > 1:
            raise ValueError("images have different sizes; pass size= to resize and centre-crop them")
        if torch.device(device).type == "cpu":  # per-image small ops: threads only add overhead (5x under load)
            with one_thread():
                x = torch.cat([one(i[None]) for i in images])
        else:
            x = torch.cat([one(i[None]) for i in images])
    return normalize(x, mean, std)


def _module_device(module: nn.Module) -> torch.device:
    p = next(iter(module.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _unwrap(backbone: nn.Module) -> nn.Module:
    backbone = getattr(backbone, "module", backbone)  # DistributedDataParallel
    return backbone.backbone if hasattr(backbone, "num_views") and hasattr(backbone, "backbone") else backbone


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    images: Tensor | Dataset,
    *,
    batch_size: int = 512,
    device: torch.device | str | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    size: int | None = None,
    crop_fraction: float = 1.0,
    num_workers: int = 0,
    return_labels: bool = False,
) -> Tensor | tuple[Tensor, Tensor | None]:
    """Features [N, D] (float32, on CPU) of clean images, backbone in eval mode, no gradient.

    ``device=None`` uses the backbone's device; otherwise the backbone is moved there. A Method or
    DDP wrapper is unwrapped to its backbone. ``return_labels`` also returns the labels of a
    Dataset of ``(image, label)`` items (None for a tensor input or unlabelled items).
    """
    if batch_size < 1:
        raise ValueError(f"extract_features: batch_size must be >= 1, got {batch_size}")
    net = _unwrap(backbone)
    if device is None:
        device = _module_device(net)
    else:
        net.to(device)
    was_training = net.training
    dtype = next((p.dtype for p in net.parameters() if p.is_floating_point()), torch.float32)
    net.eval()
    feats: list[Tensor] = []
    labels: list[Tensor] = []
    has_labels = True
    try:
        if isinstance(images, Tensor):
            if images.dim() != 4 or images.shape[1] != 3:
                raise ValueError(f"extract_features: expected images [N, 3, H, W], got {tuple(images.shape)}")
            # at most ~64 MB of float input per batch: 512 images of 224 px would be 308 MB (+ resize copies)
            step = max(1, min(batch_size, (64 << 20) // (4 * images[0].numel() or 1)))
            batches = ((images[i:i + step], None) for i in range(0, images.shape[0], step))
            has_labels = False
        else:
            batches = DataLoader(images, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                 collate_fn=collate_images)
        for imgs, lab in batches:
            x = preprocess_clean(imgs, device=device, mean=mean, std=std, size=size, crop_fraction=crop_fraction)
            out = net(x.to(dtype))
            if out.dim() != 2:
                raise ValueError(f"extract_features: backbone returned shape {tuple(out.shape)}, expected [N, D]")
            feats.append(out.float().cpu())
            if lab is None:
                has_labels = False
            else:
                labels.append(lab)
    finally:
        net.train(was_training)
    if feats:
        result = torch.cat(feats)
    else:
        result = torch.empty(0, int(getattr(net, "feature_dim", 0)))
    if return_labels:
        return result, (torch.cat(labels) if has_labels and labels else None)
    return result


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "collate_images",
    "extract_features",
    "normalize",
    "preprocess_clean",
    "resize_center_crop",
    "to_uint8_chw",
]
