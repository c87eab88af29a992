"""Benchmark images: CIFAR-10 from the shared JPEG archive when present, procedural stand-ins otherwise."""

from __future__ import annotations

import math
import tarfile
from pathlib import Path

import numpy as np
import torch

#: default location of the CIFAR-10 JPEG archive (relative to the project checkout)
CIFAR_CANDIDATES = ("../shared/datasets/cifar10-jpg.tar.gz", "/work/shared/datasets/cifar10-jpg.tar.gz")


def find_cifar(path: str | None = None) -> Path | None:
    """The CIFAR-10 JPEG archive (``path`` or the default locations), or None."""
    for cand in ([path] if path else list(CIFAR_CANDIDATES)):
        if cand and Path(cand).is_file():
            return Path(cand)
    return None


def load_cifar(path: Path, n: int) -> list[np.ndarray]:
    """The first ``n`` images of the archive as uint8 [32, 32, 3] arrays (read directly from the tar)."""
    from PIL import Image

    out: list[np.ndarray] = []
    with tarfile.open(path) as tf:
        for member in tf:
            if member.isfile() and member.name.endswith(".jpg"):
                f = tf.extractfile(member)
                if f is None:
                    continue
                out.append(np.asarray(Image.open(f).convert("RGB")))
                if len(out) >= n:
                    break
    if not out:
        raise ValueError(f"no .jpg images found in {path}")
    return out


def procedural_images(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """Natural-looking stand-ins: smooth luminance and (weaker) colour fields, an edge, some texture.

    The colour fields are muted (natural photos are far from saturated: HSV saturation about 0.3
    on CIFAR-10), so colour statistics, and the fast/exact differences, resemble real images.
    """
    g = torch.Generator().manual_seed(seed)
    up = torch.nn.functional.interpolate
    lum = up(torch.rand(n, 1, 5, 5, generator=g), size=(size, size), mode="bicubic", align_corners=False)
    chroma = up(torch.rand(n, 3, 4, 4, generator=g) - 0.5, size=(size, size), mode="bicubic", align_corners=False)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    ang = torch.rand(n, 1, 1, generator=g) * math.pi
    edge = ((xx * torch.cos(ang) + yy * torch.sin(ang)) > (torch.rand(n, 1, 1, generator=g) - 0.5)).float()
    tint = torch.rand(n, 3, 1, 1, generator=g) - 0.5
    img = (0.15 + 0.6 * lum + 0.35 * chroma + 0.15 * edge[:, None] * tint
           + 0.06 * torch.randn(n, 1, size, size, generator=g))
    img = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    return [a.permute(1, 2, 0).numpy() for a in img]


def benchmark_images(n: int, size: int, cifar: Path | None) -> tuple[list[np.ndarray], str]:
    """``n`` uint8 HWC images of ``size`` pixels: CIFAR-10 (bicubic-upsampled when larger) or procedural."""
    from PIL import Image

    if cifar is None:
        return procedural_images(n, size), "procedural"
    base = load_cifar(cifar, n)
    while len(base) < n:
        base = base + base[: n - len(base)]
    if size == 32:
        return base, "cifar10"
    return [np.asarray(Image.fromarray(a).resize((size, size), Image.BICUBIC)) for a in base], \
        f"cifar10 upsampled to {size}"


__all__ = ["CIFAR_CANDIDATES", "benchmark_images", "find_cifar", "load_cifar", "procedural_images"]
