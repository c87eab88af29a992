"""Constants shared by several rooms, in a module that imports nothing (the lowest room).

``IMAGENET_MEAN`` / ``IMAGENET_STD``: ImageNet's per-channel RGB statistics in [0, 1], the default
normalisation of rendered views (augment, transforms, train) and of evaluation images (eval).
"""

from __future__ import annotations

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD"]
