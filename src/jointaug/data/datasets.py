"""One entry point for every data set: :func:`build_dataset` (name + split -> :class:`ImageDataset`).

Names: ``synthetic`` (built in, no download), ``cifar10``, ``cifar100``, ``stl10`` and ``folder``
(ImageNet layout, directory or tar), plus the folder aliases ``imagenette``, ``tiny-imagenet`` and
``imagenet`` (which read split "test" from the ``val`` folder). Reader-specific options are passed
as extra keyword arguments (e.g. ``num_train`` for ``synthetic``, ``labels="coarse"`` for
``cifar100``, ``verify=False`` to skip the MD5 check of a local archive); unknown ones are errors.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .base import FileImageDataset, ImageDataset, TensorImageDataset
from .cifar import build_cifar
from .folder import build_folder
from .stl10 import STL10_SPLITS, build_stl10
from .synthetic import build_synthetic

__all__ = [
    "DATASET_NAMES",
    "FileImageDataset",
    "ImageDataset",
    "TensorImageDataset",
    "build_dataset",
    "dataset_splits",
]

_FOLDER_ALIASES = ("folder", "imagenette", "tiny-imagenet", "imagenet")
#: Every accepted data-set name.
DATASET_NAMES = ("synthetic", "cifar10", "cifar100", "stl10") + _FOLDER_ALIASES


def dataset_splits(name: str) -> tuple[str, ...]:
    """The split names a data set accepts (folder sets: the usual ones; others may exist on disk)."""
    if name == "stl10":
        return STL10_SPLITS
    if name in _FOLDER_ALIASES:
        return ("train", "test", "val")
    if name in DATASET_NAMES:
        return ("train", "test")
    raise ValueError(f"unknown data set {name!r}; choose from {', '.join(DATASET_NAMES)}")


def _call(fn: Callable[..., ImageDataset], name: str, args: dict[str, Any], options: dict[str, Any]) -> ImageDataset:
    """Call a reader with the common arguments it accepts plus validated extra options."""
    params = inspect.signature(fn).parameters
    unknown = sorted(set(options) - set(params))
    if unknown:
        extra = sorted(set(params) - set(args) - {"name", "split"})
        raise ValueError(f"{name}: unknown option(s) {', '.join(unknown)}; accepted: {', '.join(extra) or 'none'}")
    for key, value in args.items():  # on_error/download are harmless no-ops where they do not apply
        if key not in params and key not in ("on_error", "download", "decode_side") and value is not None:
            raise ValueError(f"{name}: option {key}={value!r} does not apply to this data set")
    return fn(**{k: v for k, v in args.items() if k in params}, **options)


def build_dataset(
    name: str,
    split: str,
    *,
    root: str | None = None,
    download: bool = False,
    size: int | None = None,
    on_error: str = "raise",
    cache_dir: str | None = None,
    limit: int | None = None,
    decode_side: int | None = None,
    **options: Any,
) -> ImageDataset:
    """Build data set ``name`` for ``split``; see the module docstring and ``docs/data.md``.

    ``size``: output side in pixels (synthetic: generated at that size; other sets: shorter side
    resized to ``size`` then centre-cropped, making a fixed-size cached set). ``limit``: keep a
    class-stratified subset of that many images (earliest images of each class, see
    :func:`~jointaug.data.base.stratified_subset`). ``on_error``: "raise" or "skip" for
    unreadable images (folder sets). ``cache_dir``: where decoded arrays are cached.
    ``decode_side``: a hint that images need a shorter side of at least this many pixels, so JPEGs
    may decode at a reduced DCT scale (folder sets; ignored by the others). Folder sets also take
    ``max_resolution`` (decoded cache with shorter sides bounded; see ``jointaug.data.folder``).
    """
    key = name.lower()
    splits = dataset_splits(key)
    if key not in _FOLDER_ALIASES and split not in splits:
        raise ValueError(f"{key}: unknown split {split!r}; choose from {', '.join(splits)}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if size is not None and (not isinstance(size, int) or size < 8):
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    args: dict[str, Any] = {"root": root, "download": download, "size": size, "on_error": on_error,
                            "cache_dir": cache_dir, "limit": limit, "decode_side": decode_side}
    if key == "synthetic":
        if root is not None:
            raise ValueError("synthetic: root does not apply (the set is generated, then cached in cache_dir)")
        return _call(build_synthetic, key, dict(args, split=split), options)
    if key in ("cifar10", "cifar100"):
        return _call(build_cifar, key, dict(args, name=key, split=split), options)
    if key == "stl10":
        return _call(build_stl10, key, dict(args, split=split), options)
    if download:
        raise ValueError(f"{key}: download is not available for folder data sets; pass root=<folder or tar>")
    return _call(build_folder, key, dict(args, name=key, split=split, test_is_val=key != "folder",
                                         download=False), options)
