"""A data set's fingerprint, stored in checkpoints so a resume refuses different training data.

The fingerprint describes the *content*, not where it lives (``data.root`` may change when a folder
moves): the number of images, the class names, a hash of the labels and a hash of the images
(in-memory sets: SHA-256 of the uint8 image tensor; file-backed sets: SHA-256 of the relative file
names and their sizes in bytes, from the tar index or one ``stat`` per file).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np
import torch

__all__ = ["compare_fingerprints", "dataset_fingerprint"]

_CHUNK = 1 << 24  # images hashed in slices of about this many bytes (memory-mapped caches stay mapped)


def _hash_tensor(t: torch.Tensor) -> str:
    h = hashlib.sha256()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    n = int(t.shape[0]) if t.ndim else 1
    per = max(1, _CHUNK // max(1, t[0].numel() * t.element_size())) if t.ndim and n else 1
    for i in range(0, n, per):
        part = t[i:i + per].detach().cpu().contiguous()
        h.update(part.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _file_sizes(ds: Any) -> list[int]:
    source = getattr(ds, "source", None)
    offsets = getattr(source, "offsets", None)
    if isinstance(offsets, dict):
        return [int(offsets[f][1]) if f in offsets else -1 for f in ds.files]
    root = getattr(source, "root", None)
    if root is not None:
        sizes = []
        for f in ds.files:
            try:
                sizes.append(os.stat(os.path.join(root, f)).st_size)
            except OSError:
                sizes.append(-1)
        return sizes
    return []


def dataset_fingerprint(ds: Any) -> dict[str, Any]:
    """Count, class names, label hash and image-content hash of ``ds`` (plain values, for a checkpoint)."""
    labels = torch.as_tensor(np.asarray(ds.labels)).to(torch.int64)
    fp: dict[str, Any] = {
        "name": str(getattr(ds, "name", "")),
        "split": str(getattr(ds, "split", "")),
        "count": int(len(ds)),
        "classes": hashlib.sha256("\n".join(map(str, getattr(ds, "classes", []))).encode()).hexdigest(),
        "labels": _hash_tensor(labels),
    }
    fixed = getattr(ds, "fixed_size", None)
    if fixed is not None and hasattr(ds, "images"):
        fp["images"] = "sha256 of uint8 images " + _hash_tensor(ds.images)
    elif hasattr(ds, "files"):
        h = hashlib.sha256()
        for name, size in zip(ds.files, _file_sizes(ds) or [-1] * len(ds.files)):
            h.update(f"{name}\0{size}\n".encode("utf-8", "surrogateescape"))
        fp["images"] = "sha256 of file names and sizes " + h.hexdigest()
    return fp


_WHAT = {"name": "data set name", "split": "split", "count": "number of images", "classes": "class names",
         "labels": "labels", "images": "image content"}


def compare_fingerprints(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints, one phrase per field (empty when they match)."""
    diffs = []
    for key in _WHAT:
        if key in old and key in new and old[key] != new[key]:
            if key in ("count", "name", "split"):
                diffs.append(f"{_WHAT[key]}: checkpoint {old[key]!r}, now {new[key]!r}")
            else:
                diffs.append(f"{_WHAT[key]} differ")
    return diffs
