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
- JPEG at a reduced scale (``min_side``): Pillow's draft mode decodes the DCT at 1/2, 1/4 or 1/8
  scale, the smallest reduction whose shorter side stays >= ``min_side`` (never below it; other
  formats and images already smaller than that decode in full). :func:`decode_min_side` gives
  the side a view needs.
- Multi-frame files (GIF, TIFF): the first frame. EXIF orientation is **not** applied (the stored
  pixel grid is used, as most data-set loaders do).

Anything that cannot be decoded (missing file, unknown format, truncated or corrupt data) raises
:class:`ImageReadError`, a ``ValueError`` whose message names the file.

Safety limits (see "Reliability" in ``docs/data.md``): only regular files are opened (a FIFO,
device or socket named ``x.png`` is an :class:`ImageReadError`, never a hang), and an image whose
header declares more than :func:`max_image_pixels` pixels (default 89,478,485, Pillow's own
threshold; ``$JOINTAUG_MAX_IMAGE_PIXELS`` overrides, ``0`` = no limit) is refused before its
pixels are decoded. :func:`max_member_bytes` bounds the size of one archive member the readers
will decompress (default 256 MiB; ``$JOINTAUG_MAX_MEMBER_BYTES``).
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "DEFAULT_MAX_MEMBER_BYTES",
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "decode_min_side",
    "is_image_name",
    "load_image",
    "max_image_pixels",
    "max_member_bytes",
    "pil_to_rgb_array",
]

#: Default pixel limit per image (width x height): Pillow's own decompression-bomb threshold.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
#: Default size limit of one archive member that a reader decompresses (256 MiB).
DEFAULT_MAX_MEMBER_BYTES = 256 * 1024 * 1024

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


def _env_limit(var: str, default: int) -> int | None:
    """A positive integer limit from ``$var`` (``0`` or ``none``: no limit); a bad value is an error."""
    raw = os.environ.get(var)
    if raw is None or raw.strip() == "":
        return default
    text = raw.strip().replace("_", "")
    if text.lower() in ("0", "none"):
        return None
    if not text.isdigit():
        raise ValueError(f"${var}={raw!r} is not a non-negative integer (0 or 'none' disables the limit)")
    return int(text)


def max_image_pixels() -> int | None:
    """The largest width x height an image may declare (``$JOINTAUG_MAX_IMAGE_PIXELS``; None: no limit)."""
    return _env_limit("JOINTAUG_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS)


def max_member_bytes() -> int | None:
    """The largest archive member a reader decompresses (``$JOINTAUG_MAX_MEMBER_BYTES``; None: no limit)."""
    return _env_limit("JOINTAUG_MAX_MEMBER_BYTES", DEFAULT_MAX_MEMBER_BYTES)


_MESSAGE = re.compile(r"cannot read image (.*?): (.*)")


class ImageReadError(ValueError):
    """An image could not be read or decoded; ``path`` names the file (or archive member).

    Also built from one string (``ImageReadError(message)``), as pickling and PyTorch's DataLoader
    do when a worker's error is re-raised in the main process: the worker's traceback is reduced to
    its last ``cannot read image ...`` line, so the error stays one clear line.
    """

    def __init__(self, path: str, reason: str | None = None) -> None:
        if reason is None:  # rebuilt from a message (DataLoader worker, pickle)
            lines = [ln for ln in str(path).splitlines() if "cannot read image " in ln]
            text = lines[-1] if lines else str(path).strip()
            match = _MESSAGE.search(text)
            path, reason = (match.group(1), match.group(2)) if match else ("<unknown>", text)
        super().__init__(f"cannot read image {path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return type(self), (self.path, self.reason)


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


def _check_pixels(size: tuple[int, int], label: str) -> None:
    """Refuse an image whose declared width x height exceeds :func:`max_image_pixels`."""
    limit = max_image_pixels()
    w, h = int(size[0]), int(size[1])
    if limit is not None and w * h > limit:
        raise ImageReadError(label, f"image is {w} x {h} = {w * h:,} pixels, over the limit of {limit:,} "
                                    "(a decompression bomb? raise $JOINTAUG_MAX_IMAGE_PIXELS to allow it)")


def _open_regular(path: Path, label: str) -> io.BufferedReader:
    """Open ``path`` for reading only if it is a regular file (a FIFO or device would block or stream).

    The file is opened non-blocking and checked with ``fstat`` on the open descriptor, so a file
    swapped for a FIFO after listing cannot hang the reader either.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                    else "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                    else "not a regular file")
            raise ImageReadError(label, f"{kind}, not a regular file (only regular files are read)")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def decode_min_side(out_size: int, min_scale: float, ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> int:
    """The shorter image side a resized crop needs so that it is never upsampled (JPEG draft target).

    A crop covering area fraction ``s >= min_scale`` of an H x W image (H, W >= m, the shorter side)
    with aspect ratio r in ``ratio`` has a shorter side of sqrt(s H W min(r, 1/r)) >= m sqrt(s q),
    q = the smallest min(r, 1/r) allowed. Asking m >= out_size / sqrt(min_scale q) keeps every crop's
    shorter side >= out_size source pixels, so the view only ever shrinks the decoded image.
    """
    if out_size < 1 or not 0 < min_scale <= 1 or not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f"decode_min_side: bad view (size {out_size}, min scale {min_scale}, ratio {ratio})")
    q = min(min(r, 1 / r) for r in ratio)  # min(r, 1/r) is smallest at an end of the range
    return int(math.ceil(out_size / math.sqrt(min_scale * q) - 1e-9))


def load_image(path_or_bytes: str | os.PathLike | bytes | Image.Image, *, name: str | None = None,
               min_side: int | None = None) -> Tensor:
    """Decode an image (path, encoded bytes or Pillow image) to a uint8 tensor [3, H, W] (RGB).

    ``name`` is used in error messages (e.g. ``archive.tar:train/cat/1.jpg`` for bytes from a tar).
    ``min_side``: JPEGs may be decoded at 1/2, 1/4 or 1/8 scale (Pillow's draft mode) as long as the
    shorter side stays >= ``min_side``; None decodes in full.
    """
    label = name
    try:
        if isinstance(path_or_bytes, Image.Image):
            label = label or "<PIL image>"
            _check_pixels(path_or_bytes.size, str(label))
            arr = pil_to_rgb_array(path_or_bytes)
        else:
            if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
                label = label or "<bytes>"
                src: Any = io.BytesIO(bytes(path_or_bytes))
            else:
                label = label or str(Path(path_or_bytes))
                src = _open_regular(Path(path_or_bytes), str(label))
            with src:  # Pillow's own bomb warning/error stay active; our limit is checked on the header
                with Image.open(src) as img:
                    _check_pixels(img.size, str(label))
                    img.seek(0)
                    if min_side is not None and img.format == "JPEG" and min(img.size) >= 2 * min_side:
                        img.draft(None, (int(min_side), int(min_side)))  # largest 1/k with side/k >= min_side
                    img.load()
                    arr = pil_to_rgb_array(img)
    except ImageReadError:
        raise
    except FileNotFoundError as exc:
        raise ImageReadError(str(label), "no such file") from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError(str(label), "not a recognised image format (corrupt or not an image)") from exc
    except Image.DecompressionBombError as exc:
        raise ImageReadError(str(label), f"{exc} (Pillow's PIL.Image.MAX_IMAGE_PIXELS also applies)") from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError, struct.error) as exc:
        raise ImageReadError(str(label), f"{type(exc).__name__}: {exc}") from exc
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageReadError(str(label), f"decoded to an unusable array of shape {arr.shape}")
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())  # own, writable, contiguous memory

