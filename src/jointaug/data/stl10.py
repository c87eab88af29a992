"""STL-10 from the official binary release (``stl10_binary.tar.gz`` or the extracted folder).

Each ``*_X.bin`` holds N images of 3 x 96 x 96 bytes, every channel stored column-major (x-major);
``*_y.bin`` holds one byte per image, labels 1..10 (mapped to 0..9 here). The image files are
memory-mapped, never read whole: the 100,000-image unlabeled set costs no memory until used, and
``images`` is a strided view ([N, 3, H, W] with the stored x/y axes swapped back). A split that
needs a copy (``train+unlabeled``, a ``limit`` or a ``size``) is written once to the uint8 cache in
chunks and memory-mapped from there. A ``.tar.gz`` is extracted once into the cache directory
(random access into gzip is slow); ``download=True`` fetches it from the official URL (2.6 GB) and
checks its MD5.
"""

from __future__ import annotations

import os
import tarfile
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .base import TensorImageDataset, resize_square, safe_member_name, stratified_subset
from .cache import (
    ArrayWriter,
    default_cache_dir,
    ensure_free_space,
    entry_stem,
    file_fingerprint,
    load_entry,
    load_images_mmap,
)
from .download import check_md5, download_url
from .io import max_member_bytes

__all__ = ["STL10_CLASSES", "STL10_INFO", "STL10_SPLITS", "build_stl10", "locate_stl10", "stl10_images"]

STL10_INFO = {
    "url": "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",
    "filename": "stl10_binary.tar.gz",
    "md5": "91f7769df0f17e558f3565bffb0c7dfb",
    "folder": "stl10_binary",
}
STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
STL10_SPLITS = ("train", "test", "unlabeled", "train+unlabeled")
_FILES = ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin", "class_names.txt")
_SIDE = 96
_IMAGE_BYTES = 3 * _SIDE * _SIDE
#: The official release's image counts: bound the size of each extracted member (decompression bombs).
_OFFICIAL_COUNTS = {"train": 5_000, "test": 8_000, "unlabeled": 100_000}


def _max_member_size(base: str) -> int:
    """The largest size ``base`` may have: the official file's (``.bin``), else the general member limit."""
    part, _, kind = base.partition("_")
    if part in _OFFICIAL_COUNTS and kind in ("X.bin", "y.bin"):
        return _OFFICIAL_COUNTS[part] * (_IMAGE_BYTES if kind == "X.bin" else 1)
    limit = max_member_bytes()
    return limit if limit is not None else 1 << 62


def _extract(archive: Path, cache_dir: Path) -> Path:
    """Extract the STL-10 binaries of ``archive`` once into the cache; return that folder."""
    dest = cache_dir / entry_stem("stl10-extract", file_fingerprint(archive))
    done = dest / ".complete"
    if done.is_file():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    found = set()
    try:
        with tarfile.open(archive, "r|*") as tf:
            for m in tf:
                if safe_member_name(m, archive) is None:  # links, devices, '..', absolute: an error
                    continue
                base = m.name.rsplit("/", 1)[-1]
                if base not in _FILES:
                    continue
                if m.size > _max_member_size(base):
                    raise ValueError(f"STL-10 archive {archive}: member {m.name!r} is {m.size:,} bytes, more than "
                                     f"the official file's {_max_member_size(base):,}; refused")
                ensure_free_space(dest, m.size, f"extracting {m.name} from {archive}")
                fh = tf.extractfile(m)
                assert fh is not None
                tmp = dest / f"{base}.tmp{os.getpid()}"
                try:
                    with open(tmp, "wb") as out:
                        while block := fh.read(1 << 22):
                            out.write(block)
                    os.replace(tmp, dest / base)
                except BaseException:
                    tmp.unlink(missing_ok=True)
                    raise
                found.add(base)
    except (tarfile.TarError, EOFError) as exc:
        raise ValueError(f"cannot read STL-10 archive {archive}: {exc}") from exc
    if not any(f.endswith("_X.bin") for f in found):
        raise ValueError(f"STL-10 archive {archive} contains no *_X.bin files")
    done.write_text("ok\n")
    return dest


def locate_stl10(root: str | None, download: bool, cache_dir: str | None, verify: bool = True) -> Path:
    """Return the folder holding the STL-10 ``.bin`` files (extracting an archive if needed)."""
    given = root is not None
    base = Path(root).expanduser() if given else default_cache_dir(cache_dir) / "downloads"
    cdir = default_cache_dir(cache_dir)
    archive: Path | None = None
    if base.is_file():
        archive = base
    elif base.is_dir():
        if any((base / f).is_file() for f in _FILES[:5]):
            return base
        if (base / STL10_INFO["folder"]).is_dir():
            return base / STL10_INFO["folder"]
        if (base / STL10_INFO["filename"]).is_file():
            archive = base / STL10_INFO["filename"]
    elif given and not download:
        raise FileNotFoundError(f"STL-10 root {base} does not exist")
    if archive is None:
        dest = base / STL10_INFO["filename"]
        if not download:
            raise FileNotFoundError(
                f"STL-10 not found in {base}: expected {STL10_INFO['filename']} or the extracted folder "
                f"{STL10_INFO['folder']}/ there. Put the official archive at {dest} (from {STL10_INFO['url']}), "
                f"pass root=<archive or folder>, or use download=True."
            )
        archive = download_url(STL10_INFO["url"], dest, STL10_INFO["md5"])
    elif verify and not (cdir / entry_stem("stl10-extract", file_fingerprint(archive)) / ".complete").is_file():
        check_md5(archive, STL10_INFO["md5"], hint="not the official archive? set data.verify=false "
                  "(jointaug train) or pass verify=False to use it anyway")
    return _extract(archive, cdir)


def stl10_images(path: str, count: int) -> Tensor:
    """Memory-map ``*_X.bin`` as uint8 [N, 3, 96, 96] (a transposed view, no copy)."""
    mm = np.memmap(path, dtype=np.uint8, mode="c", shape=(count, 3, _SIDE, _SIDE))
    return torch.from_numpy(mm).transpose(2, 3)


def _count(path: Path) -> int:
    size = path.stat().st_size
    if size % _IMAGE_BYTES:
        raise ValueError(f"{path}: size {size} is not a multiple of {_IMAGE_BYTES} bytes (3 x 96 x 96)")
    return size // _IMAGE_BYTES


def _part(folder: Path, part: str) -> tuple[Tensor, np.ndarray, str]:
    """Images view, labels (0..9, or -1 for unlabeled) and X path of one stored part."""
    xp = folder / f"{part}_X.bin"
    if not xp.is_file():
        raise FileNotFoundError(f"STL-10 folder {folder} lacks {xp.name}")
    n = _count(xp)
    if part == "unlabeled":
        labels = np.full(n, -1, dtype=np.int64)
    else:
        yp = folder / f"{part}_y.bin"
        if not yp.is_file():
            raise FileNotFoundError(f"STL-10 folder {folder} lacks {yp.name}")
        labels = np.fromfile(yp, dtype=np.uint8).astype(np.int64) - 1
        if labels.shape[0] != n:
            raise ValueError(f"{yp}: {labels.shape[0]} labels for {n} images in {xp.name}")
        if n and (labels.min() < 0 or labels.max() > 9):
            raise ValueError(f"{yp}: labels must be 1..10")
    return stl10_images(str(xp), n), labels, str(xp)


def build_stl10(
    split: str,
    *,
    root: str | None = None,
    download: bool = False,
    size: int | None = None,
    cache_dir: str | None = None,
    limit: int | None = None,
    verify: bool = True,
) -> TensorImageDataset:
    """STL-10 ``split``: "train", "test", "unlabeled" or "train+unlabeled" (unlabeled label = -1)."""
    if split not in STL10_SPLITS:
        raise ValueError(f"stl10: unknown split {split!r}; choose from {', '.join(STL10_SPLITS)}")
    folder = locate_stl10(root, download, cache_dir, verify)
    names_file = folder / "class_names.txt"
    if names_file.is_file():
        classes = [c.strip() for c in names_file.read_text().splitlines() if c.strip()]
    else:
        classes = list(STL10_CLASSES)
    parts = [_part(folder, p) for p in split.split("+")]
    labels = np.concatenate([p[1] for p in parts])
    info = {"source": str(folder)}
    if len(parts) == 1 and limit is None and size is None:
        view, _, xp = parts[0]
        return TensorImageDataset(None, labels, classes, name="stl10", split=split,
                                  loader=partial(stl10_images, xp, int(view.shape[0])), info=info)
    keep = stratified_subset(labels, limit) if limit is not None else np.arange(labels.shape[0])
    cdir = default_cache_dir(cache_dir)
    stem = entry_stem("stl10", {"source": [file_fingerprint(p[2]) for p in parts], "split": split,
                                "size": size, "limit": limit})
    entry = load_entry(cdir, stem)
    if entry is None:
        side = size or _SIDE
        writer = ArrayWriter(cdir, stem, (int(keep.shape[0]), 3, side, side))
        offsets = np.cumsum([0] + [int(p[0].shape[0]) for p in parts])
        pos = 0
        meta = {"classes": classes, "source": str(folder), "name": "stl10", "split": split, "skipped": []}
        try:
            for (view, _, _), lo, hi in zip(parts, offsets[:-1], offsets[1:]):
                idx = keep[(keep >= lo) & (keep < hi)] - lo
                for s in range(0, idx.shape[0], 2048):
                    chunk = view[torch.from_numpy(idx[s:s + 2048])]
                    if size is not None:
                        chunk = resize_square(chunk, size)
                    writer.array[pos:pos + chunk.shape[0]] = chunk.numpy()
                    pos += chunk.shape[0]
            stored = writer.commit(cdir, stem, meta, labels[keep], count=pos)
        except BaseException:
            writer.discard()
            raise
        if writer.tmp_path is None:
            return TensorImageDataset(stored, labels[keep], classes, name="stl10", split=split, info=info)
        entry = load_entry(cdir, stem)
        assert entry is not None
    loader = partial(load_images_mmap, entry["images_path"], entry["count"])
    return TensorImageDataset(None, entry["labels"], entry["classes"], name="stl10", split=split,
                              loader=loader, info=dict(info, cache=entry["images_path"]))
