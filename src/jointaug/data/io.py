"""Decoding one image file into a uint8 ``[3, H, W]`` RGB tensor, with documented mode conversions.

Every data set decodes through :func:`load_image`, so all of them agree on how unusual files become
RGB. Conversions (Pillow mode -> RGB):

- ``1``, ``L``: grey copied to the three channels (``1`` becomes 0 / 255).
- ``I;16`` (and ``I;16L``, ``I;16B``, ``I;16N``): 16-bit grey scaled by 255 / 65535 with rounding
  (65535 -> 255, 32768 -> 128), never clipped.
- ``I`` (32-bit signed integer): read as 16-bit data when every value lies in [0, 65535] (this is
  how Pillow often opens 16-bit PNG/TIFF files); otherwise scaled linearly from [min, max] to
  [0, 255].
- ``F`` (32-bit float): values within [0, 1] are scaled by 255; otherwise scaled linearly from
  [min, max] to [0, 255]. NaN becomes 0, +-inf are clamped to the finite range.
- ``P`` (palette): expanded to RGB, or to RGBA when the file declares a transparent colour, then
  treated as RGBA.
- ``LA``, ``La``, ``PA``, ``RGBA``, ``RGBa``: alpha is **composited onto black**
  (``rgb * alpha / 255``, rounded); a fully transparent pixel becomes black, an opaque one keeps
  its colour.
- ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, ``RGBX``: Pillow's own conversion to RGB.
- Multi-frame files (GIF, TIFF): the first frame. EXIF orientation is **not** applied (the stored
  pixel grid is used, as most data-set loaders do).

Anything that cannot be decoded (missing file, unknown format, truncated or corrupt data) raises
:class:`ImageReadError`, a ``ValueError`` whose message names the file.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

__all__ = ["IMAGE_EXTENSIONS", "ImageReadError", "load_image", "pil_to_rgb_array", "is_image_name"]

#: File-name suffixes (lower case) treated as images by the folder reader.
IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
    ".pbm",
    ".pnm",
)

_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


class ImageReadError(ValueError):
    """An image could not be read or decoded; ``path`` names the file (or archive member)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot read image {path}: {reason}")
        self.path = path
        self.reason = reason


def is_image_name(name: str) -> bool:
    """True when ``name`` has an image suffix and is not a hidden file (``.x``, macOS ``._x``)."""
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and base.lower().endswith(IMAGE_EXTENSIONS)


def _scale_to_uint8(arr: np.ndarray, *, sixteen_bit: bool) -> np.ndarray:
    """Map a 2-D integer/float grey array to uint8 (16-bit range or min-max), never clipping."""
    a = np.asarray(arr, dtype=np.float64)
    if sixteen_bit:
        out = a * (255.0 / 65535.0)
    else:
        lo, hi = float(a.min()), float(a.max())
        out = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return np.floor(out + 0.5).astype(np.uint8)


def _grey_to_uint8(img: Image.Image) -> np.ndarray:
    """Convert a single-channel Pillow image of any depth to an [H, W] uint8 array."""
    mode = img.mode
    if mode in ("1", "L"):
        return np.asarray(img.convert("L"), dtype=np.uint8)
    if mode in _SIXTEEN_BIT:
        return _scale_to_uint8(np.asarray(img), sixteen_bit=True)
    if mode == "I":
        a = np.asarray(img)
        in_16 = a.size == 0 or (int(a.min()) >= 0 and int(a.max()) <= 65535)
        return _scale_to_uint8(a, sixteen_bit=in_16)
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        finite = np.isfinite(a)
        vals = a[finite]
        if vals.size == 0 or (vals.min() >= 0.0 and vals.max() <= 1.0):
            a = np.where(finite, a, np.where(np.isposinf(a), 1.0, 0.0))
            return np.floor(a * 255.0 + 0.5).astype(np.uint8)
        lo, hi = float(vals.min()), float(vals.max())
        a = np.where(finite, a, np.where(np.isposinf(a), hi, lo))
        out = _scale_to_uint8(a, sixteen_bit=False)
        out[np.isnan(np.asarray(img, dtype=np.float64))] = 0
        return out
    raise ValueError(f"not a grey mode: {mode}")


def pil_to_rgb_array(img: Image.Image) -> np.ndarray:
    """Convert an opened Pillow image to an [H, W, 3] uint8 RGB array (module docstring rules)."""
    mode = img.mode
    if mode in ("1", "L", "F", "I") or mode in _SIXTEEN_BIT:
        g = _grey_to_uint8(img)
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in _ALPHA_MODES:
        if mode == "RGBa":  # already premultiplied, i.e. already composited onto black
            return np.ascontiguousarray(np.asarray(img, dtype=np.uint8)[:, :, :3])
        rgba = np.asarray(img.convert("RGBA"), dtype=np.uint16)
        rgb = (rgba[:, :, :3] * rgba[:, :, 3:4] + 127) // 255
        return rgb.astype(np.uint8)
    if mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def load_image(path_or_bytes: str | os.PathLike | bytes | Image.Image, *, name: str | None = None) -> Tensor:
    """Decode an image (path, encoded bytes or Pillow image) to a uint8 tensor [3, H, W] (RGB).

    ``name`` is used in error messages (e.g. ``archive.tar:train/cat/1.jpg`` for bytes from a tar).
    """
    label = name
    try:
        if isinstance(path_or_bytes, Image.Image):
            label = label or "<PIL image>"
            arr = pil_to_rgb_array(path_or_bytes)
        else:
            if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
                label = label or "<bytes>"
                src: io.BytesIO | Path = io.BytesIO(bytes(path_or_bytes))
            else:
                src = Path(path_or_bytes)
                label = label or str(src)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(src) as img:
                    img.seek(0)
                    img.load()
                    arr = pil_to_rgb_array(img)
    except ImageReadError:
        raise
    except FileNotFoundError as exc:
        raise ImageReadError(str(label), "no such file") from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError(str(label), "not a recognised image format (corrupt or not an image)") from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError, struct.error,
            Image.DecompressionBombError) as exc:
        raise ImageReadError(str(label), f"{type(exc).__name__}: {exc}") from exc
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageReadError(str(label), f"decoded to an unusable array of shape {arr.shape}")
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())  # own, writable, contiguous memory

