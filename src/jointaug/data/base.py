"""Data-set classes shared by every reader: the :class:`ImageDataset` contract and its two forms.

- :class:`TensorImageDataset`: every image has one size; ``images`` (uint8 [N, 3, H, W], usually a
  memory-mapped cache) and ``labels`` (int64 [N]) let a trainer batch without decoding.
- :class:`FileImageDataset`: images of varying size, decoded per item from a folder or a tar file.
- :class:`PackedImageDataset`: images of varying size already decoded (at a bounded resolution),
  back to back in one memory-mapped uint8 file.

Both are picklable and safe in DataLoader workers: memory maps and tar file handles are (re)opened
lazily in whichever process uses them, never carried through pickling.
"""

from __future__ import annotations

import contextlib
import os
import tarfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from .io import ImageReadError, load_image, max_member_bytes

__all__ = [
    "DirSource",
    "FileImageDataset",
    "ImageDataset",
    "PackedImageDataset",
    "TarSource",
    "TensorImageDataset",
    "bound_resize",
    "clean_member_name",
    "member_too_big",
    "one_thread",
    "safe_member_name",
    "resize_square",
    "stratified_subset",
]


class ImageDataset(Dataset):
    """Labelled RGB images: ``ds[i] -> (uint8 [3, H, W], int label)`` (label -1 = unlabelled).

    Attributes: ``name``, ``split``, ``classes`` (label -> class name), ``labels`` (int64 [N]),
    ``fixed_size`` ((H, W) when every image has that size, else None), ``skipped`` (files left out
    because they could not be decoded, with ``on_error="skip"``).
    """

    name: str
    split: str
    classes: list[str]
    labels: Tensor
    fixed_size: tuple[int, int] | None
    skipped: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, int]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``)."""
        return len(self.classes)

    def __repr__(self) -> str:
        size = "x".join(map(str, self.fixed_size)) if self.fixed_size else "variable"
        extra = f", skipped={len(self.skipped)}" if self.skipped else ""
        return (f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, n={len(self)}, "
                f"classes={self.num_classes}, size={size}{extra})")


class TensorImageDataset(ImageDataset):
    """Fixed-size images held as one uint8 tensor [N, 3, H, W] (in memory or memory-mapped).

    Pass either ``images`` or ``loader`` (a picklable zero-argument callable returning the tensor,
    e.g. a ``functools.partial`` that memory-maps a cache file); with a loader, pickling carries the
    loader instead of the pixels, so DataLoader workers re-map the file instead of copying it.
    """

    def __init__(
        self,
        images: Tensor | None,
        labels: Tensor | np.ndarray | Sequence[int],
        classes: Sequence[str],
        *,
        name: str,
        split: str,
        loader: Callable[[], Tensor] | None = None,
        skipped: Sequence[str] = (),
        info: dict[str, Any] | None = None,
    ) -> None:
        if images is None and loader is None:
            raise ValueError("TensorImageDataset needs images or a loader")
        self._images = images
        self._loader = loader
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64).reshape(-1)
        self.classes = list(classes)
        self.name, self.split = name, split
        self.skipped = list(skipped)
        self.info = dict(info or {})
        imgs = self.images
        if imgs.dtype != torch.uint8 or imgs.ndim != 4 or imgs.shape[1] != 3:
            raise ValueError(f"{name}/{split}: images must be uint8 [N, 3, H, W], got {imgs.dtype} "
                             f"{tuple(imgs.shape)}")
        if imgs.shape[0] != self.labels.shape[0]:
            raise ValueError(f"{name}/{split}: {imgs.shape[0]} images but {self.labels.shape[0]} labels")
        self.fixed_size = (int(imgs.shape[2]), int(imgs.shape[3]))

    @property
    def images(self) -> Tensor:
        """All images, uint8 [N, 3, H, W] (memory-mapped when loaded from the cache)."""
        if self._images is None:
            assert self._loader is not None
            self._images = self._loader()
        return self._images

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self._loader is not None:
            state["_images"] = None
        return state


class DirSource:
    """Image files under a directory, addressed by POSIX paths relative to it.

    ``min_side``: JPEGs decode at a reduced DCT scale keeping the shorter side >= this (None: full)."""

    def __init__(self, root: str | os.PathLike, min_side: int | None = None) -> None:
        self.root = Path(root)
        self.min_side = min_side

    def describe(self, rel: str) -> str:
        return str(self.root / rel)

    def load(self, rel: str) -> Tensor:
        return load_image(self.root / rel, name=self.describe(rel), min_side=self.min_side)


class TarSource:
    """Members of an uncompressed tar file, read directly at their byte offsets.

    The file is opened lazily and once per process (DataLoader workers each get their own
    handle); pickling drops the handle.
    """

    def __init__(self, tar_path: str | os.PathLike, offsets: dict[str, tuple[int, int]],
                 min_side: int | None = None) -> None:
        self.tar_path = str(tar_path)
        self.offsets = offsets  # member name -> (data offset, size)
        self.min_side = min_side  # JPEG draft target (see DirSource)
        self._fh: Any = None
        self._pid = -1

    def describe(self, rel: str) -> str:
        return f"{self.tar_path}:{rel}"

    def read_bytes(self, rel: str) -> bytes:
        if self._fh is None or self._pid != os.getpid():
            self._fh = open(self.tar_path, "rb")  # kept open: one handle per process
            self._pid = os.getpid()
        offset, size = self.offsets[rel]
        limit = max_member_bytes()
        if limit is not None and size > limit:
            raise ImageReadError(self.describe(rel), f"archive member is {size:,} bytes, over the limit of {limit:,} "
                                                     "(raise $JOINTAUG_MAX_MEMBER_BYTES to allow it)")
        self._fh.seek(offset)
        data = self._fh.read(size)
        if len(data) != size:
            raise ImageReadError(self.describe(rel), f"tar file ended early ({len(data)} of {size} bytes)")
        return data

    def load(self, rel: str) -> Tensor:
        return load_image(self.read_bytes(rel), name=self.describe(rel), min_side=self.min_side)

    def close(self) -> None:
        """Close this process's handle (reopened on the next read)."""
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing to do
            pass

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fh"], state["_pid"] = None, -1
        return state

    @staticmethod
    def index(tar_path: str | os.PathLike) -> dict[str, tuple[int, int]]:
        """Map every regular member of an uncompressed tar to (data offset, size).

        Every member is checked with :func:`safe_member_name` (no links, devices, ``..`` or
        absolute names); an unsafe one is a ``ValueError`` naming it.
        """
        out: dict[str, tuple[int, int]] = {}
        with tarfile.open(tar_path, "r:") as tf:
            for m in tf.getmembers():
                name = safe_member_name(m, tar_path)
                if name is not None:
                    out[name] = (m.offset_data, m.size)
        return out


def clean_member_name(name: str) -> str:
    """Normalise a tar member name to a relative POSIX path (drops ``./`` and empty components)."""
    return "/".join(p for p in name.split("/") if p not in ("", "."))


def safe_member_name(member: tarfile.TarInfo, archive: str | os.PathLike) -> str | None:
    """The relative POSIX name of a regular-file member, None for a directory; else a ``ValueError``.

    Data archives may hold only regular files and folders with relative names that stay inside the
    extraction folder: a ``..`` component, an absolute name, a symbolic or hard link, a device, a
    FIFO or any other special member is refused with an error naming the archive and the member,
    whether or not the member would be used (an archive built that way is not trusted).
    """
    raw = member.name
    where = f"{archive}: archive member {raw!r}"
    if member.issym() or member.islnk():
        kind = "a symbolic link" if member.issym() else "a hard link"
        raise ValueError(f"{where} is {kind} (to {member.linkname!r}); links are refused in data archives")
    if member.ischr() or member.isblk():
        raise ValueError(f"{where} is a device file; refused in data archives")
    if member.isfifo():
        raise ValueError(f"{where} is a FIFO; refused in data archives")
    if not (member.isfile() or member.isdir()):
        raise ValueError(f"{where} is not a regular file or folder (tar type {member.type!r}); refused")
    if raw.startswith(("/", "\\")) or (len(raw) > 1 and raw[0].isalpha() and raw[1] == ":"):
        raise ValueError(f"{where} has an absolute path; refused (members must stay inside the extraction folder)")
    parts = raw.replace("\\", "/").split("/")
    if ".." in parts:
        raise ValueError(f"{where} contains '..'; refused (members must stay inside the extraction folder)")
    if "\x00" in raw:
        raise ValueError(f"{where} contains a NUL byte; refused")
    if member.isdir():
        return None
    name = clean_member_name(raw)
    if not name:
        raise ValueError(f"{where} has an empty name; refused")
    return name


def member_too_big(member: tarfile.TarInfo) -> str | None:
    """Why a member is over :func:`~jointaug.data.io.max_member_bytes` (a reason), or None when it fits."""
    limit = max_member_bytes()
    if limit is not None and member.size > limit:
        return (f"archive member is {member.size:,} bytes, over the limit of {limit:,} "
                "(raise $JOINTAUG_MAX_MEMBER_BYTES to allow it)")
    return None


class FileImageDataset(ImageDataset):
    """Images of varying size, decoded per item (``fixed_size`` is None, no ``images`` tensor)."""

    def __init__(
        self,
        source: DirSource | TarSource,
        files: Sequence[str],
        labels: Tensor | np.ndarray | Sequence[int],
        classes: Sequence[str],
        *,
        name: str,
        split: str,
        skipped: Sequence[str] = (),
        info: dict[str, Any] | None = None,
    ) -> None:
        self.source = source
        self.files = list(files)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64).reshape(-1)
        if len(self.files) != self.labels.shape[0]:
            raise ValueError(f"{name}/{split}: {len(self.files)} files but {self.labels.shape[0]} labels")
        self.classes = list(classes)
        self.name, self.split = name, split
        self.skipped = list(skipped)
        self.info = dict(info or {})
        self.fixed_size = None

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.source.load(self.files[index]), int(self.labels[index])


class PackedImageDataset(ImageDataset):
    """Decoded images of varying size, back to back in one flat uint8 tensor (usually memory-mapped).

    ``shapes`` (int64 [N, 2]) gives each image's (H, W); image i is ``flat[o_i:o_i + 3 H_i W_i]``
    viewed as [3, H_i, W_i]. Pass ``flat`` or a picklable ``loader`` returning it (workers re-map the
    file instead of receiving the pixels). ``files`` names the source images (fingerprints, errors).
    """

    def __init__(self, flat: Tensor | None, shapes: np.ndarray | Tensor, labels: Tensor | np.ndarray | Sequence[int],
                 classes: Sequence[str], *, name: str, split: str, loader: Callable[[], Tensor] | None = None,
                 files: Sequence[str] = (), skipped: Sequence[str] = (), info: dict[str, Any] | None = None) -> None:
        if flat is None and loader is None:
            raise ValueError("PackedImageDataset needs flat images or a loader")
        self._flat, self._loader = flat, loader
        self.shapes = np.asarray(shapes, dtype=np.int64).reshape(-1, 2)
        self.offsets = np.concatenate([[0], np.cumsum(3 * self.shapes[:, 0] * self.shapes[:, 1])]).astype(np.int64)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64).reshape(-1)
        if self.shapes.shape[0] != self.labels.shape[0]:
            raise ValueError(f"{name}/{split}: {self.shapes.shape[0]} images but {self.labels.shape[0]} labels")
        self.classes = list(classes)
        self.name, self.split = name, split
        self.files = list(files)
        self.skipped = list(skipped)
        self.info = dict(info or {})
        self.fixed_size = None
        if flat is not None and int(flat.numel()) != int(self.offsets[-1]):
            raise ValueError(f"{name}/{split}: packed images hold {flat.numel()} bytes, shapes need {self.offsets[-1]}")

    @property
    def flat(self) -> Tensor:
        """All images' bytes, uint8 [sum 3 H_i W_i]."""
        if self._flat is None:
            assert self._loader is not None
            self._flat = self._loader()
            if int(self._flat.numel()) != int(self.offsets[-1]):
                raise ValueError(f"{self.name}/{self.split}: packed cache {self.info.get('cache')} holds "
                                 f"{self._flat.numel()} bytes, its shapes need {self.offsets[-1]}; clear the cache")
        return self._flat

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        h, w = (int(v) for v in self.shapes[index])
        o = int(self.offsets[index])
        return self.flat[o:o + 3 * h * w].view(3, h, w), int(self.labels[index])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self._loader is not None:
            state["_flat"] = None
        return state


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread inside the block (per-image resizes: threads only add overhead, and
    oversubscribe a busy machine: 38 ms instead of 1 ms per 500 x 375 image measured on 2 cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def bound_resize(image: Tensor, max_side: int) -> Tensor:
    """Shrink a uint8 image [3, H, W] so its shorter side is ``max_side`` (aspect kept); smaller ones unchanged.

    Bilinear with antialiasing (torch ``interpolate``, as :func:`resize_square`); the longer side is
    rounded to the nearest pixel. Used for the bounded-resolution cache (folder ``max_resolution``).
    """
    if max_side <= 0:
        raise ValueError(f"max_side must be positive, got {max_side}")
    h, w = int(image.shape[-2]), int(image.shape[-1])
    if min(h, w) <= max_side:
        return image
    nh, nw = (max_side, max(max_side, round(w * max_side / h))) if h <= w else \
        (max(max_side, round(h * max_side / w)), max_side)
    x = F.interpolate(image[None].to(torch.float32), size=(nh, nw), mode="bilinear", align_corners=False,
                      antialias=True)
    return x[0].round_().clamp_(0, 255).to(torch.uint8)


def stratified_subset(labels: np.ndarray | Tensor, limit: int) -> np.ndarray:
    """Indices of a class-stratified subset of size ``limit``, in original order.

    Each label value (unlabelled -1 counts as one group) gets ``limit // groups`` items, the first
    ``limit % groups`` groups (in sorted label order) one more; within a group the earliest items
    are kept, so the result is deterministic. Groups smaller than their share give the rest to the
    others, so exactly ``min(limit, N)`` indices come back.
    """
    lab = np.asarray(labels).reshape(-1)
    n = lab.shape[0]
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if limit >= n:
        return np.arange(n)
    groups, counts = np.unique(lab, return_counts=True)
    quota = np.zeros(len(groups), dtype=np.int64)
    remaining = limit
    open_ = np.ones(len(groups), dtype=bool)
    while remaining > 0 and open_.any():
        idx = np.flatnonzero(open_)
        share, extra = divmod(remaining, len(idx))
        for j, g in enumerate(idx):
            want = share + (1 if j < extra else 0)
            take = min(want, counts[g] - quota[g])
            quota[g] += take
            remaining -= take
            if quota[g] >= counts[g]:
                open_[g] = False
    keep = np.zeros(n, dtype=bool)
    for g, q in zip(groups, quota):
        members = np.flatnonzero(lab == g)[:q]
        keep[members] = True
    return np.flatnonzero(keep)


def resize_square(images: Tensor, size: int) -> Tensor:
    """Resize uint8 images [N, 3, H, W] so the shorter side is ``size``, then centre-crop square.

    Bilinear with antialiasing when shrinking (torch ``interpolate``); identity when already
    ``size`` x ``size``. Used for the ``size`` option of every reader, so all agree on pixels.
    """
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    n, c, h, w = images.shape
    if h == size and w == size:
        return images
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    out = torch.empty((n, c, size, size), dtype=torch.uint8)
    top, left = (nh - size) // 2, (nw - size) // 2
    for s in range(0, n, 256):
        x = images[s:s + 256].to(torch.float32)
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
        x = x[:, :, top:top + size, left:left + size]
        out[s:s + 256] = x.round_().clamp_(0, 255).to(torch.uint8)
    return out
