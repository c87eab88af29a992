"""Per-image reference renderer: the semantics of a view, written for clarity, not speed.

torchvision's semantics on a float image in [0, 1] (one image, one view):

1. crop ``box`` = (x0, y0, w, h) (rounded to whole pixels; pixels outside the image, or outside
   the visible window ``clip``, are zero);
2. resize to ``out_hw[v]`` with ``F.interpolate(mode="bilinear", antialias=True)`` (what
   torchvision's tensor ``resize`` does; PIL's bilinear resize of the crop computes the same
   weights; skipped when the crop already has that size), then horizontal flip, then ``rotation``
   (k quarter turns counter-clockwise, ``torch.rot90``; square views);
3. colour jitter when ``color_apply``, ops in ``color_order``, each followed by a clamp to [0, 1]:
   brightness ``x * b``; contrast: blend with the mean luma of the image; saturation: blend with
   the luma image; hue: HSV hue shift by ``h`` turns;
4. grayscale: ITU-R 601 luma (0.299, 0.587, 0.114) copied to the three channels;
5. Gaussian blur, reflect padding, kernel size per axis from
   :func:`jointaug.render.kernels.blur_kernel_size` (the same rule as every backend);
6. solarize: values >= 128/255 become 1 - value (threshold lowered by 1e-5 against rounding);
7. optional normalisation ``(x - mean) / std``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..sampling.params import ViewParams
from .color import EXACT_OPS, gray
from .kernels import blur_kernel_size, gaussian_kernel1d

#: solarize threshold, lowered by 1e-5 so that pixels equal to 128/255 up to float rounding (flat
#: uint8 regions after resampling) are solarized by every backend alike
SOLARIZE_THRESHOLD = 128 / 255 - 1e-5


def crop_zero_padded(image: Tensor, x0: int, y0: int, w: int, h: int,
                     clip: tuple[int, int, int, int] | None = None) -> Tensor:
    """The box (x0, y0, w, h) of ``image`` [C, H, W]; pixels outside the image, or outside the
    window ``clip`` = (x0, y0, w, h) when given, are zero."""
    c, H, W = image.shape
    out = image.new_zeros(c, h, w)
    cx, cy, cw, ch = clip if clip is not None else (0, 0, W, H)
    xa, xb = max(x0, 0, cx), min(x0 + w, W, cx + cw)
    ya, yb = max(y0, 0, cy), min(y0 + h, H, cy + ch)
    if xa < xb and ya < yb:
        out[:, ya - y0:yb - y0, xa - x0:xb - x0] = image[:, ya:yb, xa:xb]
    return out


def gaussian_blur(image: Tensor, sigma: float, rule: str = "tenth") -> Tensor:
    """Separable Gaussian blur of ``image`` [C, h, w] with reflect padding (kernel size per axis)."""
    _, h, w = image.shape
    ky, kx = blur_kernel_size(h, sigma, rule), blur_kernel_size(w, sigma, rule)
    gy = gaussian_kernel1d(ky, sigma, image.dtype).to(image.device)
    gx = gaussian_kernel1d(kx, sigma, image.dtype).to(image.device)
    kernel = torch.outer(gy, gx).expand(image.shape[0], 1, ky, kx)
    padded = F.pad(image[None], ((kx - 1) // 2, (kx - 1) // 2, (ky - 1) // 2, (ky - 1) // 2), mode="reflect")
    return F.conv2d(padded, kernel, groups=image.shape[0])[0]


def render_view_reference(
    image: Tensor,
    params: ViewParams,
    i: int,
    v: int,
    *,
    blur_kernel: str = "tenth",
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> Tensor:
    """View ``v`` of image ``i`` ([3, H, W] float in [0, 1]) under ``params`` -> [3, h, w]."""
    if image.dim() != 3 or image.shape[0] != 3 or not image.dtype.is_floating_point:
        raise ValueError(f"reference renderer takes one float RGB image [3, H, W], got {tuple(image.shape)} "
                         f"{image.dtype}")
    x0, y0, w, h = (int(round(float(t))) for t in params.box[i, v])
    oh, ow = (int(s) for s in params.out_hw[v])

    clip = tuple(int(round(float(t))) for t in params.clip[i, v])
    x = crop_zero_padded(image, x0, y0, w, h, clip)
    if (h, w) != (oh, ow):
        x = F.interpolate(x[None], size=(oh, ow), mode="bilinear", align_corners=False, antialias=True)[0]
    if bool(params.flip[i, v]):
        x = x.flip(-1)
    k = int(params.rotation[i, v])
    if k:
        if oh != ow:
            raise ValueError(f"view {v} is {oh}x{ow}: rotation by quarter turns needs square views")
        x = torch.rot90(x, k, dims=(1, 2))

    if bool(params.color_apply[i, v]):
        factors = (params.brightness, params.contrast, params.saturation, params.hue)
        for op in params.color_order[i, v].tolist():
            x = EXACT_OPS[op](x[None], factors[op][i, v].reshape(1))[0]
    if bool(params.gray[i, v]):
        x = gray(x).expand(3, oh, ow).clone()
    if bool(params.blur_apply[i, v]):
        x = gaussian_blur(x, float(params.blur_sigma[i, v]), blur_kernel)
    if bool(params.solarize[i, v]):
        x = torch.where(x >= SOLARIZE_THRESHOLD, 1.0 - x, x)
    if mean is not None and std is not None:
        m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        x = (x - m) / s
    return x


__all__ = ["render_view_reference", "crop_zero_padded", "gaussian_blur", "SOLARIZE_THRESHOLD"]
