"""Rendering: turn images + ViewParams into pixels (batched on CPU/GPU, or per image for reference).

- :func:`jointaug.render.batched.render_views` / :func:`~jointaug.render.batched.render_views_list`:
  the batched renderer (modes ``"fast"`` and ``"exact"``);
- :func:`jointaug.render.reference.render_view_reference`: per-image reference semantics;
- :func:`jointaug.render.kernels.blur_kernel_size`: the Gaussian kernel-size rule of every backend.

See ``docs/rendering.md``.
"""

from .batched import render_views, render_views_list
from .kernels import blur_kernel_size
from .reference import render_view_reference

__all__ = ["render_views", "render_views_list", "render_view_reference", "blur_kernel_size"]
