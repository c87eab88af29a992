"""ContrastiveCrop (Peng et al., CVPR 2022; spec section 9): per-image object boxes from heat maps.

After ``aug.ccrop_warmup_epochs`` epochs of ordinary crops, and then every ``aug.ccrop_every`` epochs
(at the end of epoch ``e`` when ``e >= warm-up``, ``(e - warm-up) % every == 0`` and ``e`` is not the
last epoch; the authors' schedule), every training image gets a box:

1. the clean image (no augmentation; resized to the view size when the training images have another
   size or are of varying sizes: a resize of the whole image, so relative coordinates are kept),
   normalised as for training, through the online backbone's ``forward_maps`` in eval mode;
2. heat map = the last feature map summed over channels, min-max normalised to [0, 1] per image at the
   feature map's resolution, then upsampled bilinearly (``align_corners=False``) to the image size
   (the authors' order); a flat map (max == min) carries no location and gives the whole image;
3. box = the rows and columns holding a pixel above ``aug.ccrop_threshold``, stored relative as
   ``(x0, y0, x1, y1) = (first col / W, first row / H, (last col + 1) / W, (last row + 1) / H)``
   (the authors store ``last / W``; ``+ 1`` makes the whole image exactly (0, 0, 1, 1), the initial box).

The boxes (:class:`RegionStore`) are state of the run: saved in the checkpoint and restored on resume.
Sampling reads them as a policy input: ``policy.sample(..., regions=store.lookup(indices))``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from jointaug.sampling.regions import check_regions, whole_regions

__all__ = ["RegionStore", "boxes_from_heat", "compute_regions", "has_feature_maps", "heat_maps"]


def has_feature_maps(backbone: nn.Module) -> bool:
    """True when ``backbone`` has ``forward_maps`` (the spatial feature map a heat map needs)."""
    return callable(getattr(backbone, "forward_maps", None))


@torch.no_grad()
def heat_maps(backbone: nn.Module, x: Tensor) -> Tensor:
    """[B, H, W] heat maps in [0, 1] of normalised images ``x`` [B, 3, H, W] (steps 1-2 of the module doc)."""
    maps = backbone.forward_maps(x)
    if maps.dim() != 4:
        raise ValueError(f"forward_maps must return [B, C, h, w], got shape {tuple(maps.shape)}")
    s = maps.float().sum(dim=1)  # [B, h, w]
    b = s.shape[0]
    flat = s.reshape(b, -1)
    lo, hi = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    span = hi - lo
    norm = torch.where(span > 0, (flat - lo) / span.clamp_min(torch.finfo(torch.float32).tiny), torch.zeros_like(flat))
    heat = F.interpolate(norm.reshape(b, 1, *s.shape[1:]), size=tuple(x.shape[-2:]), mode="bilinear",
                         align_corners=False)
    return heat[:, 0]


def boxes_from_heat(heat: Tensor, threshold: float) -> Tensor:
    """[B, 4] relative boxes (x0, y0, x1, y1) around the pixels of ``heat`` [B, H, W] above ``threshold``
    (the whole image when none is)."""
    b, h, w = heat.shape
    rows = heat.amax(dim=2) > threshold  # [B, H]
    cols = heat.amax(dim=1) > threshold  # [B, W]
    any_ = rows.any(dim=1)
    ar_h = torch.arange(h, device=heat.device)
    ar_w = torch.arange(w, device=heat.device)
    r0 = torch.where(rows, ar_h, h).amin(dim=1)
    r1 = torch.where(rows, ar_h, -1).amax(dim=1) + 1
    c0 = torch.where(cols, ar_w, w).amin(dim=1)
    c1 = torch.where(cols, ar_w, -1).amax(dim=1) + 1
    box = torch.stack([c0 / w, r0 / h, c1 / w, r1 / h], dim=1).float()
    return torch.where(any_[:, None], box, whole_regions(b).to(box.device))


class _Resized(Dataset):
    """Items of a data set as float images resized (whole image) to ``size`` x ``size``."""

    def __init__(self, base: Dataset, size: int) -> None:
        self.base, self.size = base, size

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> Tensor:
        img = self.base[i][0]
        return _resize(torch.as_tensor(img)[None], self.size)[0]


def _resize(x: Tensor, size: int | None) -> Tensor:
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


@torch.no_grad()
def compute_regions(backbone: nn.Module, images: Tensor | Dataset, *, threshold: float, mean: list[float],
                    std: list[float], size: int | None = None, batch_size: int = 256,
                    num_workers: int = 0) -> Tensor:
    """[N, 4] relative boxes of every image (uint8 [N, 3, H, W] in memory, or a data set of (image, label)).

    ``size``: resize each whole image to ``size`` x ``size`` first (required for images of varying sizes).
    The backbone runs in eval mode on its own device and dtype; its training flag is restored.
    """
    if not has_feature_maps(backbone):
        raise ValueError(f"ContrastiveCrop needs a backbone with forward_maps; {type(backbone).__name__} has none")
    p = next(iter(backbone.parameters()))
    device, dtype = p.device, p.dtype
    m = torch.tensor(mean, device=device, dtype=dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device, dtype=dtype).view(1, 3, 1, 1)
    if isinstance(images, Tensor):
        n = images.shape[0]
        batches: Any = (_resize(images[i:i + batch_size].to(device), size) for i in range(0, n, batch_size))
    else:
        if size is None:
            raise ValueError("compute_regions: images of a data set need a size (they may differ in size)")
        batches = DataLoader(_Resized(images, size), batch_size=batch_size, shuffle=False, num_workers=num_workers)
    was_training = backbone.training
    backbone.eval()
    out = []
    try:
        for x in batches:
            x = (x.to(device, dtype) - m) / s
            out.append(boxes_from_heat(heat_maps(backbone, x), threshold).cpu())
    finally:
        backbone.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 4)


class RegionStore:
    """The boxes of a run's training images ([N, 4] float32 in shared memory, so DataLoader workers
    see refreshes) and the ContrastiveCrop schedule."""

    def __init__(self, n: int, *, warmup_epochs: int, every: int, threshold: float) -> None:
        self.boxes = whole_regions(n).float().share_memory_()
        self.warmup_epochs, self.every, self.threshold = int(warmup_epochs), int(every), float(threshold)
        self.refreshed: list[int] = []  # epochs (1-based count of finished epochs) after which boxes were computed

    def active(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (0-based) draws region-centred crops (after the warm-up)."""
        return int(epoch) >= self.warmup_epochs

    def due(self, done: int, epochs: int) -> bool:
        """Whether to refresh the boxes after ``done`` finished epochs of ``epochs``."""
        return done >= max(self.warmup_epochs, 1) and (done - self.warmup_epochs) % self.every == 0 and done < epochs

    def lookup(self, indices: Tensor) -> Tensor:
        """[B, 4] boxes of the images ``indices``."""
        return self.boxes[torch.as_tensor(indices, dtype=torch.int64).cpu()]

    def update(self, boxes: Tensor, epoch: int) -> None:
        """Replace every box (in place, so workers holding this store see it)."""
        self.boxes.copy_(check_regions(boxes, self.boxes.shape[0]).float())
        self.refreshed.append(int(epoch))

    def state_dict(self) -> dict[str, Any]:
        return {"boxes": self.boxes.clone(), "refreshed": list(self.refreshed)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        boxes = torch.as_tensor(state["boxes"])
        if tuple(boxes.shape) != tuple(self.boxes.shape):
            raise ValueError(f"ContrastiveCrop boxes in the checkpoint have shape {tuple(boxes.shape)}, "
                             f"this run's training set needs {tuple(self.boxes.shape)}")
        self.boxes.copy_(boxes)
        self.refreshed = [int(e) for e in state.get("refreshed", [])]

    def mean_area(self) -> float:
        """Mean relative area of the boxes (1 = whole images)."""
        b = self.boxes.double()
        return float(((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).mean()) if b.shape[0] else 1.0

