"""Colour operations on float RGB tensors in [0, 1]: torchvision semantics (exact) and linear maps (fast).

Exact semantics (torchvision's ColorJitter on float tensors): brightness ``x * b``; contrast: blend
with the mean of the grayscale image, ``c * x + (1 - c) * mean``; saturation: blend with the
grayscale image; hue: shift of the HSV hue by ``h`` turns; each followed by a clamp to [0, 1].
Grayscale is ITU-R 601 luma ``0.299 R + 0.587 G + 0.114 B`` (torchvision uses 0.2989 for R).

Fast semantics: every op is an affine map of the RGB vector (hue becomes a rotation about the gray
axis of the RGB cube), so a whole jitter + grayscale is one 3x3 matrix plus an offset per view,
composed in the sampled order, with a single clamp at the end.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

GRAY_WEIGHTS = (0.299, 0.587, 0.114)

def gray(x: Tensor) -> Tensor:
    """Luma of RGB ``x`` [..., 3, H, W] -> [..., 1, H, W]."""
    r, g, b = x.unbind(dim=-3)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(-3)


def rgb_to_hsv(x: Tensor) -> Tensor:
    """RGB [..., 3, H, W] in [0, 1] -> HSV (hue in turns [0, 1)), as Python's colorsys defines it."""
    r, g, b = x.unbind(dim=-3)
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    hr = torch.remainder((g - b) / safe, 6.0)
    hg = (b - r) / safe + 2.0
    hb = (r - g) / safe + 4.0
    h = torch.where(maxc == r, hr, torch.where(maxc == g, hg, hb))
    h = torch.where(delta > 0, h / 6.0, torch.zeros_like(h))
    return torch.stack((torch.remainder(h, 1.0), s, maxc), dim=-3)


def hsv_to_rgb(x: Tensor) -> Tensor:
    """HSV [..., 3, H, W] (hue in turns) -> RGB, via f(n) = v - v s clamp(min(k, 4 - k), 0, 1)."""
    h, s, v = x.unbind(dim=-3)
    h6 = h * 6.0
    vs = v * s
    out = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(h6 + n, 6.0)
        out.append(v - vs * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0))
    return torch.stack(out, dim=-3)


def _per_item(f: Tensor, x: Tensor) -> Tensor:
    """Factor [M] broadcast against x [M, C, H, W]."""
    return f.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))


def adjust_brightness(x: Tensor, b: Tensor) -> Tensor:
    """x * b, clamped (one factor per item of the batch x [M, 3, H, W])."""
    return (x * _per_item(b, x)).clamp_(0.0, 1.0)


def adjust_contrast(x: Tensor, c: Tensor) -> Tensor:
    """Blend with the mean luma of each image, clamped."""
    mean = gray(x).mean(dim=(-3, -2, -1), keepdim=True)
    cf = _per_item(c, x)
    return (cf * x + (1.0 - cf) * mean).clamp_(0.0, 1.0)


def adjust_saturation(x: Tensor, s: Tensor) -> Tensor:
    """Blend with the luma image, clamped."""
    sf = _per_item(s, x)
    return (sf * x + (1.0 - sf) * gray(x)).clamp_(0.0, 1.0)


def adjust_hue(x: Tensor, h: Tensor) -> Tensor:
    """Shift the HSV hue by h turns (h in [-0.5, 0.5])."""
    hsv = rgb_to_hsv(x)
    hue = torch.remainder(hsv[:, 0] + _per_item(h, x)[:, 0], 1.0)
    hsv = torch.stack((hue, hsv[:, 1], hsv[:, 2]), dim=1)
    return hsv_to_rgb(hsv).clamp_(0.0, 1.0)


#: exact colour ops in COLOR_OPS order (brightness, contrast, saturation, hue)
EXACT_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def shift_hue(x: Tensor, h: Tensor) -> Tensor:
    """HSV hue shift by ``h`` turns of RGB ``x`` [M, 3, H, W] without materialising HSV.

    The shift keeps value (max) and chroma (max - min); channel ``n`` of the result is
    ``max - chroma * clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + 6 * hue') mod 6``, n = 5, 3, 1
    (the numbers of :func:`rgb_to_hsv` then :func:`hsv_to_rgb`, up to rounding). Branch-free
    arithmetic only: boolean masks and ``where`` are several times slower on CPU.
    """
    r, g, b = x.unbind(dim=1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    chroma = maxc - torch.minimum(torch.minimum(r, g), b)
    inv = chroma.clamp(min=1e-12).reciprocal_()  # where chroma = 0 the numerators below are 0 too
    is_r = 1.0 - torch.sign(maxc - r)  # colorsys precedence: red, then green, then blue
    is_g = (1.0 - torch.sign(maxc - g)).mul_(1.0 - is_r)
    is_b = 1.0 - is_r - is_g
    h6 = (g - b).mul_(inv).mul_(is_r)
    h6.add_((b - r).mul_(inv).add_(2.0).mul_(is_g)).add_((r - g).mul_(inv).add_(4.0).mul_(is_b))
    h6.add_(6.0 * _per_item(h, x)[:, 0])
    out = torch.empty_like(x)
    for c, n in enumerate((5.0, 3.0, 1.0)):
        k = h6 + n
        k.sub_(torch.floor(k * (1.0 / 6.0)).mul_(6.0))  # k mod 6
        k = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
        torch.sub(maxc, k.mul_(chroma), out=out[:, c])
    return out


def hue_rotation_matrices(h: Tensor) -> Tensor:
    """[M, 3, 3] float64 rotations of RGB about the gray axis (1, 1, 1) by 2*pi*h (fast-mode hue).

    Grays stay gray. On CIFAR-10 images this is about half as far from the HSV hue shift as a
    rotation of the YIQ chroma plane (mean 4.5/255 against 7.9/255 at h = 0.1).
    """
    theta = 2.0 * math.pi * h.double()
    k = torch.full((3,), 1.0 / math.sqrt(3.0), dtype=torch.float64, device=h.device)
    cross = torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]],
                         dtype=torch.float64, device=h.device) / math.sqrt(3.0)
    eye = torch.eye(3, dtype=torch.float64, device=h.device)
    cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    return cos * eye + sin * cross + (1.0 - cos) * torch.outer(k, k)


def fast_color_matrices(
    brightness: Tensor, contrast: Tensor, saturation: Tensor, hue: Tensor, order: Tensor, apply: Tensor,
    to_gray: Tensor, dtype: torch.dtype = torch.float64,
) -> tuple[Tensor, Tensor]:
    """Fast-mode colour of M items as ``y = A x + K m`` (before the one final clamp).

    ``m`` is the per-channel mean of the un-jittered view: contrast blends with the mean luma of
    the current image, an affine function of ``m`` once the intermediate clamps are dropped. Ops
    compose in ``order`` [M, 4] (they no longer commute exactly: the hue rotation changes luma).
    Returns ``A`` and ``K``, both [M, 3, 3], computed in ``dtype`` (float64 by default; the renderer
    uses float32, twice as fast and far within its tolerances).

    Every op is ``a I + 1 (b g^T + c 1^T) + d X`` (X: cross product with the gray axis over sqrt(3);
    the hue rotation is ``cos I + (1 - cos) / 3 11^T + sin X``), so the composition runs as a few
    elementwise operations over all items at once, with [A | K] held item-last ([3, 6, M]):
    batched matrix calls on 3x3 matrices cost a call per matrix.
    """
    dev = brightness.device
    n = brightness.shape[0]
    one = torch.ones(n, dtype=dtype, device=dev)
    b = torch.where(apply, brightness.to(dtype), one)
    c = torch.where(apply, contrast.to(dtype), one)
    s = torch.where(apply, saturation.to(dtype), one)
    h = torch.where(apply, hue.to(dtype), torch.zeros_like(one))
    g = torch.tensor(GRAY_WEIGHTS, dtype=dtype, device=dev)[:, None, None]
    # coefficients (a, b, c, d) of every op for every item
    zero = torch.zeros_like(one)
    theta = 2.0 * math.pi * h
    cos = torch.cos(theta)
    coef = torch.stack((
        torch.stack((b, zero, zero, zero)),  # brightness: b I
        torch.stack((c, zero, zero, zero)),  # contrast: c I (its offset below)
        torch.stack((s, 1.0 - s, zero, zero)),  # saturation: s I + (1 - s) 1 g^T
        torch.stack((cos, zero, (1.0 - cos) / 3.0, torch.sin(theta) / math.sqrt(3.0))),  # hue: rotation
    ))  # [op, 4, M]
    order = order.long().t()  # [4, M]
    k_all = coef.gather(0, order[:, None, :].expand(4, 4, n))  # [position, 4, M]: each item's op there
    shift = (1.0 - c) * (order == 1)  # [position, M]: contrast's blend weight where it applies
    cross = torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]], dtype=dtype, device=dev)
    proj = torch.cat((cross, g.view(1, 3), torch.ones(1, 3, dtype=dtype, device=dev)))  # [sqrt(3) X; g^T; 1^T]
    AK = torch.zeros(3, 6, n, dtype=dtype, device=dev)  # [A | K]
    AK[:, :3] = torch.eye(3, dtype=dtype, device=dev)[:, :, None]
    for p in range(4):
        k = k_all[p]
        R = (proj @ AK.view(3, -1)).view(5, 6, n)  # sqrt(3) X [A | K], g^T [A | K], 1^T [A | K]
        row = torch.addcmul(k[1] * R[3], k[2], R[4])  # the rank-one terms 1 (b g^T + c 1^T) [A | K]
        row[3:].addcmul_(shift[p], R[3, :3] + R[3, 3:])  # contrast: + (1 - c) 1 g^T (A + K) on K
        AK = torch.addcmul(row, k[0], AK).addcmul_(k[3], R[:3])
    lum = (g * AK).sum(0)  # grayscale: every row becomes g^T [A | K]
    AK = torch.where(to_gray, lum.expand(3, 6, n), AK).permute(2, 0, 1)
    return AK[:, :, :3].contiguous(), AK[:, :, 3:].contiguous()


__all__ = [
    "GRAY_WEIGHTS", "gray", "rgb_to_hsv", "hsv_to_rgb", "adjust_brightness", "adjust_contrast",
    "adjust_saturation", "adjust_hue", "EXACT_OPS", "shift_hue", "hue_rotation_matrices", "fast_color_matrices",
]
