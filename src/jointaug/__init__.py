"""jointaug: joint view augmentations (JointCrop, JointBlur, JointColor) for contrastive learning."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported only when a backbone is loaded
    import os

    import torch
    from torch import nn

__version__ = "0.1.0"


def load_backbone(checkpoint: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """The trained online backbone of a jointaug checkpoint as an ``nn.Module`` in eval mode.

    Heads and momentum / teacher copies are left out; ``jointaug export`` writes the same weights
    for torchvision, timm or detectron2.
    """
    from .export import load_backbone as _load_backbone

    return _load_backbone(checkpoint, map_location)
