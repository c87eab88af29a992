"""Decoded uint8 cache: fixed-size data sets are decoded once, saved as ``.npy`` and memory-mapped.

An entry is three files in the cache directory sharing one stem ``<kind>-<hash>``:
``.images.npy`` (uint8 [N, 3, H, W]), ``.labels.npy`` (int64 [N]) and ``.json`` (classes, skipped
files, source description). The hash covers the source path, its size and mtime, the split and
every option that changes the pixels, so an edited source gets a new entry (old entries are left
behind; delete the directory to reclaim space). The ``.json`` is written last and atomically, so a
half-written entry is never read; two processes building the same entry at once both succeed.

Writes never fill the disk blindly: before an array is written the free space is checked
(:func:`ensure_free_space`; the need, the free bytes and the folder are named in the error), the
file's blocks are reserved up front (``posix_fallocate``, so a memory-mapped write cannot die with a
bus error when the disk fills) and every file is written under a temporary name, renamed into
place when complete and removed when anything fails.

Variable-size sets decoded at a bounded resolution (folder ``max_resolution``) are *packed*: the
images lie back to back in ``.packed.bin`` (raw uint8, image i is [3, H_i, W_i] at offset
sum_{j<i} 3 H_j W_j), their sizes in ``.shapes.npy`` (int64 [N, 2]); the file is memory-mapped, so
memory stays bounded by what the pages in use need (:class:`PackedWriter`).

Default directory: ``$JOINTAUG_CACHE_DIR``, else ``$XDG_CACHE_HOME/jointaug``, else
``~/.cache/jointaug``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "CACHE_VERSION",
    "FREE_SPACE_MARGIN",
    "ArrayWriter",
    "PackedWriter",
    "atomic_write_bytes",
    "CacheSpaceError",
    "default_cache_dir",
    "ensure_free_space",
    "entry_stem",
    "file_fingerprint",
    "load_entry",
    "load_images_mmap",
    "load_packed_mmap",
    "save_entry",
]

#: Bumped whenever decoding changes, so stale entries are never reused.
CACHE_VERSION = 1
#: Bytes left free beyond what a write needs, so the cache never fills a file system to the last byte.
FREE_SPACE_MARGIN = 16 * 1024 * 1024


class CacheSpaceError(OSError):
    """Not enough free disk space for a cache or extraction write (``errno`` is ENOSPC)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.errno = errno.ENOSPC


def _space_message(folder: Path, what: str, need: int, free: int | None) -> str:
    have = f"{free:,} bytes free" if free is not None else "the disk is full"
    return (f"not enough disk space in {folder} for {what}: {need:,} bytes needed "
            f"(+{FREE_SPACE_MARGIN:,} kept free), {have}. Free some space or put the cache elsewhere "
            "(cache_dir=..., data.cache_dir=... or $JOINTAUG_CACHE_DIR)")


def ensure_free_space(folder: str | os.PathLike, nbytes: int, what: str) -> None:
    """Raise :class:`CacheSpaceError` (naming the folder and the bytes needed vs free) when ``folder``'s
    file system lacks ``nbytes`` plus :data:`FREE_SPACE_MARGIN`; silent when the space cannot be read."""
    folder = Path(folder)
    try:
        free = int(shutil.disk_usage(folder).free)
    except OSError:
        return
    if free < int(nbytes) + FREE_SPACE_MARGIN:
        raise CacheSpaceError(_space_message(folder, what, int(nbytes), free))


def _reserve(path: Path) -> None:
    """Allocate the blocks of ``path`` up front, so writes through a memory map cannot hit a full disk."""
    if not hasattr(os, "posix_fallocate"):
        return
    with open(path, "r+b") as fh:
        try:
            os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                return  # file system cannot reserve; the free-space check above stands alone
            raise


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Resolve the cache directory (argument, ``$JOINTAUG_CACHE_DIR``, XDG cache, ``~/.cache``)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("JOINTAUG_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "jointaug"


def file_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """Absolute path, byte size and mtime (ns) of a file: what a cache key depends on."""
    p = Path(path).resolve()
    st = p.stat()
    return {"path": str(p), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def entry_stem(kind: str, key: Any) -> str:
    """Stable file stem ``<kind>-<sha1 of key>`` for a JSON-serialisable key."""
    blob = json.dumps({"v": CACHE_VERSION, "key": key}, sort_keys=True, default=str).encode()
    return f"{kind}-{hashlib.sha1(blob).hexdigest()[:20]}"


def _paths(cache_dir: Path, stem: str) -> tuple[Path, Path, Path]:
    return cache_dir / f"{stem}.images.npy", cache_dir / f"{stem}.labels.npy", cache_dir / f"{stem}.json"


def load_images_mmap(path: str | os.PathLike, count: int | None = None) -> Tensor:
    """Memory-map a cached ``.npy`` image array as a uint8 tensor (copy-on-write, file untouched)."""
    arr = np.load(path, mmap_mode="c")
    if count is not None:
        arr = arr[:count]
    return torch.from_numpy(arr)


def load_packed_mmap(path: str | os.PathLike) -> Tensor:
    """Memory-map a packed image file (raw uint8, see the module docstring) as a flat tensor (copy-on-write)."""
    if os.path.getsize(path) == 0:
        return torch.zeros(0, dtype=torch.uint8)
    return torch.from_numpy(np.memmap(path, dtype=np.uint8, mode="c"))


def load_entry(cache_dir: Path, stem: str) -> dict[str, Any] | None:
    """Return a cache entry's metadata (plus ``labels`` and ``images_path``), or None when absent.

    ``images_path`` is None for entries that record a variable-size set (metadata only); packed
    entries (``packed: true``) also get ``shapes`` (int64 [N, 2]).
    """
    images_p, labels_p, meta_p = _paths(cache_dir, stem)
    if not meta_p.is_file():
        return None
    try:
        meta = json.loads(meta_p.read_text())
        if meta.get("version") != CACHE_VERSION:
            return None
        if meta.get("packed", False):
            packed_p, shapes_p = cache_dir / f"{stem}.packed.bin", cache_dir / f"{stem}.shapes.npy"
            if not packed_p.is_file() or not shapes_p.is_file():
                return None
            meta["images_path"] = str(packed_p)
            meta["shapes"] = np.load(shapes_p).astype(np.int64).reshape(-1, 2)
            if int(3 * (meta["shapes"][:, 0] * meta["shapes"][:, 1]).sum()) != packed_p.stat().st_size:
                return None  # truncated or foreign file: rebuild
        elif meta.get("fixed", True):
            if not images_p.is_file():
                return None
            meta["images_path"] = str(images_p)
        else:
            meta["images_path"] = None
        meta["labels"] = torch.from_numpy(np.load(labels_p).astype(np.int64)) if labels_p.is_file() else None
    except (OSError, ValueError) as exc:
        warnings.warn(f"ignoring unreadable cache entry {meta_p}: {exc}", stacklevel=2)
        return None
    return meta


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename; the temporary never survives a failure."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_entry(
    cache_dir: Path,
    stem: str,
    meta: dict[str, Any],
    labels: np.ndarray | Tensor | None,
    images_tmp: Path | None = None,
) -> None:
    """Commit an entry: move ``images_tmp`` into place, write labels, then the metadata last."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    images_p, labels_p, meta_p = _paths(cache_dir, stem)
    if images_tmp is not None:
        os.replace(images_tmp, images_p)
    if labels is not None:
        lab = labels.numpy() if isinstance(labels, Tensor) else np.asarray(labels)
        tmp = labels_p.with_name(f"{labels_p.name}.tmp{os.getpid()}.npy")
        try:
            np.save(tmp, lab.astype(np.int64))
            os.replace(tmp, labels_p)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    body = dict(meta, version=CACHE_VERSION, fixed=images_tmp is not None or meta.get("fixed", False))
    body.pop("labels", None)
    body.pop("images_path", None)
    atomic_write_bytes(meta_p, json.dumps(body, indent=1, sort_keys=True).encode())


class ArrayWriter:
    """A uint8 [N, 3, H, W] array being filled before it is committed to the cache.

    Backed by a temporary ``.npy`` memmap in the cache directory (so a large set never needs to
    fit in memory), or by a plain in-memory array when the directory is not writable.
    """

    def __init__(self, cache_dir: Path, stem: str, shape: tuple[int, int, int, int]) -> None:
        self.shape = shape
        self.tmp_path: Path | None = cache_dir / f"{stem}.images.tmp{os.getpid()}.npy"
        nbytes = int(np.prod(shape, dtype=np.int64)) + 4096  # pixels + .npy header
        what = f"the decoded image cache {stem} (uint8 {list(shape)})"
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._in_memory(cache_dir, exc)
            return
        ensure_free_space(cache_dir, nbytes, what)
        try:
            self.array = np.lib.format.open_memmap(self.tmp_path, mode="w+", dtype=np.uint8, shape=shape)
            _reserve(self.tmp_path)
        except OSError as exc:
            self.array = None  # type: ignore[assignment]
            self.tmp_path.unlink(missing_ok=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise CacheSpaceError(_space_message(cache_dir, what, nbytes, None)) from exc
            self._in_memory(cache_dir, exc)

    def _in_memory(self, cache_dir: Path, exc: OSError) -> None:
        warnings.warn(f"cache directory {cache_dir} is not writable ({exc}); keeping data in memory", stacklevel=3)
        self.tmp_path = None
        self.array = np.zeros(self.shape, dtype=np.uint8)

    def commit(self, cache_dir: Path, stem: str, meta: dict[str, Any], labels: np.ndarray,
               count: int) -> Tensor:
        """Save the entry (when file-backed) and return the images as a tensor (first ``count``)."""
        if self.tmp_path is None:
            return torch.from_numpy(self.array[:count])
        self.array.flush()
        del self.array
        meta = dict(meta, count=int(count))
        try:
            save_entry(cache_dir, stem, meta, labels, images_tmp=self.tmp_path)
        except OSError as exc:
            self.tmp_path.unlink(missing_ok=True)
            raise OSError(f"could not write cache entry {stem} in {cache_dir}: {exc}") from exc
        return load_images_mmap(cache_dir / f"{stem}.images.npy", count)

    def discard(self) -> None:
        """Drop the temporary file (the set turned out not to be fixed-size, or decoding failed)."""
        if self.tmp_path is not None:
            self.array = None  # type: ignore[assignment]
            try:
                self.tmp_path.unlink()
            except OSError:
                pass


class PackedWriter:
    """Variable-size uint8 images [3, H_i, W_i] appended to one flat file, committed as a packed entry.

    Written sequentially under a temporary name (free space checked every 256 images for the next
    256 at ``max_bytes_per_image``); kept in memory when the cache directory is not writable.
    """

    def __init__(self, cache_dir: Path, stem: str, max_bytes_per_image: int) -> None:
        self.cache_dir, self.stem, self.per_image = cache_dir, stem, int(max_bytes_per_image)
        self.shapes: list[tuple[int, int]] = []
        self.tmp_path: Path | None = cache_dir / f"{stem}.packed.tmp{os.getpid()}.bin"
        self._mem: list[bytes] | None = None
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            self._fh: Any = open(self.tmp_path, "wb")
        except OSError as exc:
            warnings.warn(f"cache directory {cache_dir} is not writable ({exc}); keeping data in memory", stacklevel=2)
            self.tmp_path, self._fh, self._mem = None, None, []

    def append(self, image: np.ndarray) -> None:
        """Append one uint8 [3, H, W] image."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"PackedWriter: expected uint8 [3, H, W], got {image.dtype} {image.shape}")
        if self._mem is not None:
            self._mem.append(np.ascontiguousarray(image).tobytes())
        else:
            if len(self.shapes) % 256 == 0:
                ensure_free_space(self.cache_dir, 256 * self.per_image, f"the packed image cache {self.stem}")
            try:
                self._fh.write(np.ascontiguousarray(image).data)
            except OSError as exc:
                self.discard()
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise CacheSpaceError(_space_message(self.cache_dir, f"the packed image cache {self.stem}",
                                                         image.nbytes, None)) from exc
                raise
        self.shapes.append((int(image.shape[1]), int(image.shape[2])))

    def commit(self, meta: dict[str, Any], labels: np.ndarray) -> tuple[Tensor, np.ndarray]:
        """Save the entry (when file-backed); return the flat images (memory-mapped) and the shapes [N, 2]."""
        shapes = np.asarray(self.shapes, dtype=np.int64).reshape(-1, 2)
        if self._mem is not None:
            return torch.frombuffer(bytearray(b"".join(self._mem)), dtype=torch.uint8), shapes
        assert self.tmp_path is not None
        self._fh.close()
        final = self.cache_dir / f"{self.stem}.packed.bin"
        shapes_p = self.cache_dir / f"{self.stem}.shapes.npy"
        tmp_shapes = shapes_p.with_name(f"{shapes_p.name}.tmp{os.getpid()}.npy")
        try:
            np.save(tmp_shapes, shapes)
            os.replace(tmp_shapes, shapes_p)
            os.replace(self.tmp_path, final)
            save_entry(self.cache_dir, self.stem, dict(meta, packed=True, fixed=False, count=len(shapes)), labels)
        except BaseException:
            tmp_shapes.unlink(missing_ok=True)
            self.tmp_path.unlink(missing_ok=True)
            raise
        return load_packed_mmap(final), shapes

    def discard(self) -> None:
        """Drop the temporary file (decoding failed)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self.tmp_path is not None:
            self.tmp_path.unlink(missing_ok=True)
