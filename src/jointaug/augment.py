"""Batched view making for training loops: sample ViewParams on the CPU, render on the images' device.

``BatchViews(policy)(images, generator)`` is the whole augmentation step of a contrastive method:
one call to the policy's sampler (tensors of parameters for the batch) and one call to the batched
renderer. Replaying the returned params with :func:`jointaug.render.batched.render_views` gives the
same pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .constants import IMAGENET_MEAN, IMAGENET_STD  # also re-exported from here
from .sampling.params import ViewParams
from .sampling.policy import ViewPolicy

MODES = ("fast", "exact")


class BatchViews:
    """Make every view of a batch of images under ``policy`` (batched, CPU or CUDA)."""

    def __init__(
        self,
        policy: ViewPolicy,
        *,
        mode: str = "fast",
        mean: tuple[float, ...] | None = IMAGENET_MEAN,
        std: tuple[float, ...] | None = IMAGENET_STD,
        blur_kernel: str = "tenth",
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"render mode must be one of {MODES}, got {mode!r}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std for normalisation, or neither")
        if std is not None and any(s <= 0 for s in std):
            raise ValueError(f"normalisation std must be positive, got {std}")
        self.policy, self.mode, self.mean, self.std, self.blur_kernel = policy, mode, mean, std, blur_kernel

    def _render_kwargs(self) -> dict:
        return dict(mode=self.mode, mean=self.mean, std=self.std, blur_kernel=self.blur_kernel)

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> tuple[list[Tensor], ViewParams]:
        """``images``: [N, C, H, W] uint8 (or float in [0, 1]); returns (V view tensors, params)."""
        from .render.batched import render_views

        if images.dim() != 4:
            raise ValueError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
        n, _, h, w = images.shape
        params = self.policy.sample(torch.tensor([[h, w]]).expand(n, 2), generator)
        views = render_views(images, params.to(images.device), **self._render_kwargs())
        return views, params

    def from_list(
        self, images: list[Tensor], generator: torch.Generator | None = None, *, policy: ViewPolicy | None = None,
        regions: Tensor | None = None,
    ) -> tuple[list[Tensor], ViewParams]:
        """Images of different sizes ([C, H_i, W_i] each): per-image crop stage, batched photometric stage.

        ``policy``: draw with this policy instead of ``self.policy`` (ContrastiveCrop's warm-up twin);
        ``regions``: [N, 4] per-image regions for region-centred crops (``ViewPolicy.sample``)."""
        from .render.batched import render_views_list

        hw = torch.tensor([[int(im.shape[-2]), int(im.shape[-1])] for im in images], dtype=torch.int64)
        params = (policy or self.policy).sample(hw, generator, regions=regions)
        device = images[0].device if images else torch.device("cpu")
        views = render_views_list(images, params.to(device), **self._render_kwargs())
        return views, params

    def replay(self, images: Tensor, params: ViewParams) -> list[Tensor]:
        """Render given params again (same pixels as the call that drew them)."""
        from .render.batched import render_views

        return render_views(images, params.to(images.device), **self._render_kwargs())
