"""Crop centres drawn inside per-image regions (ContrastiveCrop, Peng et al. CVPR 2022; spec section 9).

A *region* is one box per image in relative coordinates ``(x0, y0, x1, y1)``, ``0 <= x0 <= x1 <= 1``
(the image spans [0, 1] on each axis; ``(0, 0, 1, 1)`` is the whole image). ContrastiveCrop takes it
from a heat map of the encoder (:mod:`jointaug.train.ccrop`); here it is just a policy input, like
the image sizes: ``ViewPolicy.sample(image_hw, generator, regions=Tensor[N, 4])``.

Placement of a crop of size ``s`` px on an axis of ``S`` px whose region is ``[lo, hi]``
(``ViewSpec.centre="region_beta"``), following the authors' released ``ContrastiveCrop.get_params``:

1. the start positions of crops centred on the region's two edges, each clamped into the image:
   ``a = clamp(lo * S - s / 2, 0, S - s)``, ``b = clamp(hi * S - s / 2, 0, S - s)``;
2. ``u ~ Beta(alpha, alpha)`` (independently per axis, view and image);
3. start ``= floor(a + (b - a) * u)``; the drawn centre is ``a + (b - a) * u + s / 2``.

So the centre follows the Beta law across the part of the region where a crop of that size fits
inside the image, and the crop never leaves the image. When the region and the feasible centres
``[s / 2, S - s / 2]`` overlap, the drawn centre is inside the region; when they do not (a thin region
at a border, a large crop), the centre is the feasible one nearest the region and the crop covers the
region on that axis. The authors work in integer pixels (``int(S * lo) - s // 2``); here the
coordinates are continuous, a difference of under one pixel. Alpha < 1 pushes centres towards the
region's edges ("centre-suppressed": the two views overlap less); alpha = 1 is uniform.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: centre laws of a resized crop: uniform over the positions where it fits (RandomResizedCrop), or
#: Beta(alpha, alpha) inside the image's region (ContrastiveCrop)
CENTRE_LAWS = ("uniform", "region_beta")


def check_alpha(alpha: float, name: str = "region_alpha") -> float:
    """``alpha`` as a float, or a ValueError naming ``name`` and the value unless it is finite and > 0."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {alpha!r}")
    return float(alpha)


def whole_regions(n: int) -> Tensor:
    """[n, 4] regions covering the whole image, ``(0, 0, 1, 1)`` (ContrastiveCrop's initial boxes)."""
    return torch.tensor([0.0, 0.0, 1.0, 1.0]).repeat(n, 1)


def check_regions(regions: Tensor, n: int) -> Tensor:
    """``regions`` as float64 [n, 4] after checking shape and values (errors name the image and box)."""
    r = torch.as_tensor(regions)
    if r.dim() != 2 or r.shape[1] != 4 or r.shape[0] != n:
        raise ValueError(f"regions must be [N, 4] (x0, y0, x1, y1) with N = {n} images, got shape {tuple(r.shape)}")
    if not r.is_floating_point():
        raise ValueError(f"regions must hold relative coordinates (floats in [0, 1]), got dtype {r.dtype}")
    r = r.detach().to("cpu", torch.float64)
    bad = ~torch.isfinite(r).all(dim=1)
    bad |= (r < 0).any(dim=1) | (r > 1).any(dim=1) | (r[:, 0] > r[:, 2]) | (r[:, 1] > r[:, 3])
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"region of image {i} is {r[i].tolist()}: a region is (x0, y0, x1, y1) with "
                         f"0 <= x0 <= x1 <= 1 and 0 <= y0 <= y1 <= 1")
    return r


def sample_beta(shape: tuple[int, ...], alpha: float, generator: torch.Generator) -> Tensor:
    """Beta(alpha, alpha) draws (float64) from ``generator`` only: X / (X + Y) with X, Y ~ Gamma(alpha).

    Gamma(alpha) = Gamma(alpha + 1) * U^(1/alpha); Gamma(alpha + 1) by Marsaglia and Tsang's squeeze
    (normal and uniform draws, rejection repeated for the rejected entries only, so the stream is fixed
    by the generator). Computed in logs, so small alphas do not underflow to 0 / 0.
    """
    alpha = check_alpha(alpha, "Beta alpha")
    n = math.prod(shape)
    log_g = [_log_gamma_boosted(n, alpha, generator) for _ in range(2)]
    return torch.sigmoid(log_g[0] - log_g[1]).reshape(shape)


def _log_gamma_boosted(n: int, a: float, g: torch.Generator) -> Tensor:
    """log of n Gamma(a) draws: Marsaglia-Tsang for shape a + 1 >= 1, times U^(1/a)."""
    d = a + 1.0 - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(n, dtype=torch.float64)
    todo = torch.arange(n)
    while todo.numel():
        k = todo.numel()
        x = torch.randn(k, generator=g, dtype=torch.float64)
        u = torch.rand(k, generator=g, dtype=torch.float64)
        v = (1.0 + c * x) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        out[todo[ok]] = math.log(d) + torch.log(v[ok])
        todo = todo[~ok]
    u = torch.rand(n, generator=g, dtype=torch.float64).clamp_min(torch.finfo(torch.float64).tiny)
    return out + torch.log(u) / a


def region_starts(side: Tensor, size: Tensor, lo: Tensor, hi: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """Start (pixel, float64, integral) and drawn centre of crops on one axis (see the module docstring).

    ``side``: image side S, ``size``: crop side s (px), ``lo``/``hi``: the region on this axis (relative),
    ``u``: the Beta draws in [0, 1]; all broadcast together.
    """
    room = side - size
    a = (lo * side - size / 2).clamp(min=0).minimum(room)
    b = (hi * side - size / 2).clamp(min=0).minimum(room)
    pos = a + (b - a) * u
    start = torch.floor(pos).clamp(min=0).minimum(room)
    return start, pos + size / 2


__all__ = ["CENTRE_LAWS", "check_alpha", "check_regions", "region_starts", "sample_beta", "whole_regions"]
