"""Checks of a training split and its evaluation split, run before the first training step.

Problems of the evaluation split (a missing ``val/`` folder, a class absent from ``train/``, a corrupt
validation image) would otherwise surface only after training, when the evaluation reads them.
:func:`check_splits` finds them in seconds instead: the splits must agree on their classes, every
evaluation label must be a class of the training split, and every image of a variable-size
evaluation set (decoded lazily otherwise) is decoded once. A successful full decode is remembered by
a small marker file in the cache directory keyed by the files' names, sizes and modification times,
so later runs on unchanged files skip it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .base import DirSource, FileImageDataset, ImageDataset, TarSource
from .cache import default_cache_dir
from .io import ImageReadError

__all__ = ["check_splits"]


def _describe(ds: ImageDataset) -> str:
    return f"{getattr(ds, 'name', '?')} split {getattr(ds, 'split', '?')!r}"


def _verify_key(ds: FileImageDataset) -> str | None:
    """A key over the files' names, sizes and mtimes (None when a file cannot be stat'ed)."""
    src = ds.source
    parts: list[Any] = [type(src).__name__]
    try:
        if isinstance(src, DirSource):
            root = Path(src.root)
            parts.append(str(root.resolve()))
            for f in ds.files:
                st = os.stat(root / f)
                parts.append((f, st.st_size, st.st_mtime_ns))
        elif isinstance(src, TarSource):
            st = os.stat(src.tar_path)
            parts.append((str(Path(src.tar_path).resolve()), st.st_size, st.st_mtime_ns, list(ds.files)))
        else:
            return None
    except OSError:
        return None
    return hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()[:20]


def _decode_all(ds: FileImageDataset, cache_dir: str | os.PathLike | None) -> int:
    """Decode every image of ``ds`` once (raising the first ImageReadError); cached when it succeeds."""
    key = _verify_key(ds)
    marker = default_cache_dir(cache_dir) / f"verified-{key}" if key else None
    if marker is not None and marker.is_file():
        return 0
    for i in range(len(ds.files)):
        ds.source.load(ds.files[i])
    if marker is not None:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(f"{len(ds.files)} images of {_describe(ds)} decoded\n")
        except OSError:
            pass  # only a speed-up for the next run
    return len(ds.files)


def check_splits(train: ImageDataset, test: ImageDataset, *, on_error: str = "raise",
                 cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Check that ``test`` can evaluate a model trained on ``train``; a ``ValueError`` names the problem.

    Checks: the evaluation split is not empty; both splits list the same classes (when both are
    labelled); every evaluation label is one of the training classes; with ``on_error="raise"``
    every image of a variable-size evaluation set decodes (fixed-size sets were fully decoded when
    built, and ``on_error="skip"`` sets were checked then too). Returns what was checked.
    """
    where = f"evaluation split ({_describe(test)})"
    n = len(test)
    if n == 0:
        raise ValueError(f"{where} has no images")
    test_labels = np.asarray(test.labels).reshape(-1)
    labelled = test_labels[test_labels >= 0]
    train_classes, test_classes = list(getattr(train, "classes", [])), list(getattr(test, "classes", []))
    if labelled.size:
        if train_classes and test_classes and train_classes != test_classes:
            extra = sorted(set(test_classes) - set(train_classes))
            missing = sorted(set(train_classes) - set(test_classes))
            detail = "; ".join(x for x in (
                f"not in training: {', '.join(extra[:10])}" if extra else "",
                f"only in training: {', '.join(missing[:10])}" if missing else "",
                "same names in another order" if not extra and not missing else "") if x)
            raise ValueError(f"{where}: its classes differ from those of the training split "
                             f"({_describe(train)}): {detail}; labels would not match")
        k = len(train_classes) or len(test_classes)
        if k and int(labelled.max()) >= k:
            raise ValueError(f"{where}: label {int(labelled.max())} is outside the {k} classes of the training "
                             f"split ({_describe(train)})")
    decoded = 0
    if isinstance(test, FileImageDataset) and on_error == "raise":
        try:
            decoded = _decode_all(test, cache_dir)
        except ImageReadError as exc:
            raise ImageReadError(exc.path, f"{exc.reason} (found while checking the {where} before "
                                           "training; fix or remove the file, or set data.on_error=skip)") from exc
    return {"test_images": n, "classes": len(train_classes or test_classes), "decoded": decoded}
