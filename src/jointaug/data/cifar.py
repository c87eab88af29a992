"""CIFAR-10 / CIFAR-100 from the official "python version" archives (pickled batches).

``root`` may be the archive itself (``cifar-10-python.tar.gz``), a directory holding it, the
extracted folder (``cifar-10-batches-py``) or a directory holding that folder. With no ``root`` the
default is ``<cache_dir>/downloads``. ``download=True`` fetches the archive from the official URL
when it is missing and verifies its MD5; a local archive's MD5 is verified too on first use
(``verify=False`` skips that for re-packed archives). Decoded arrays go to the uint8 cache, so later
loads memory-map them. Pickles are read with a restricted unpickler that only rebuilds numpy
arrays, lists, dicts and strings, so a tampered archive cannot run code.
"""

from __future__ import annotations

import importlib
import io
import pickle
import tarfile
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import TensorImageDataset, member_too_big, resize_square, safe_member_name, stratified_subset
from .cache import ArrayWriter, default_cache_dir, entry_stem, file_fingerprint, load_entry, load_images_mmap
from .download import check_md5, download_url

__all__ = ["CIFAR_INFO", "build_cifar", "locate_cifar", "read_cifar_arrays"]

#: Official archives (URL, file name, MD5, folder inside, batch files, label keys).
CIFAR_INFO: dict[str, dict[str, Any]] = {
    "cifar10": {
        "title": "CIFAR-10",
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "filename": "cifar-10-python.tar.gz",
        "md5": "c58f30108f718f92721af3b95e74349a",
        "folder": "cifar-10-batches-py",
        "batches": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
        "meta": "batches.meta",
        "labels": {"fine": ("labels", "label_names")},
    },
    "cifar100": {
        "title": "CIFAR-100",
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "filename": "cifar-100-python.tar.gz",
        "md5": "eb9058c3a382ffc7106e2df69ed93a6e",
        "folder": "cifar-100-python",
        "batches": {"train": ["train"], "test": ["test"]},
        "meta": "meta",
        "labels": {"fine": ("fine_labels", "fine_label_names"),
                   "coarse": ("coarse_labels", "coarse_label_names")},
    },
}


def _numpy_multiarray() -> Any:
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return importlib.import_module(mod)
        except ImportError:
            continue
    raise ImportError("numpy multiarray module not found")


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the few globals a CIFAR batch needs (numpy arrays, bytes)."""

    def __init__(self, fh: Any, source: str) -> None:
        super().__init__(fh, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
            return getattr(_numpy_multiarray(), name)
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module == "_codecs" and name == "encode":
            import codecs

            return codecs.encode
        raise pickle.UnpicklingError(f"{self.source}: refusing to load {module}.{name} (not a CIFAR batch)")


def _unpickle(data: bytes, source: str) -> dict[str, Any]:
    """Load one CIFAR pickle and normalise its keys to ``str``."""
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), source).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"cannot read CIFAR batch {source}: {exc}") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"cannot read CIFAR batch {source}: expected a dict, got {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def locate_cifar(name: str, root: str | None, download: bool, cache_dir: str | None) -> tuple[str, Path]:
    """Find the archive or extracted folder: ``("archive", path)`` or ``("dir", path)``."""
    info = CIFAR_INFO[name]
    given = root is not None
    base = Path(root).expanduser() if given else default_cache_dir(cache_dir) / "downloads"
    if base.is_file():
        return "archive", base
    if base.is_dir():
        if (base / info["meta"]).is_file():
            return "dir", base
        if (base / info["folder"] / info["meta"]).is_file():
            return "dir", base / info["folder"]
        if (base / info["filename"]).is_file():
            return "archive", base / info["filename"]
    elif given and not download:
        raise FileNotFoundError(f"{info['title']} root {base} does not exist")
    dest = base / info["filename"]
    if download:
        return "archive", download_url(info["url"], dest, info["md5"])
    raise FileNotFoundError(
        f"{info['title']} not found in {base}: expected {info['filename']} or the extracted folder "
        f"{info['folder']}/ there. Put the official archive at {dest} (from {info['url']}), pass "
        f"root=<archive or folder>, or use download=True."
    )


def read_cifar_arrays(kind: str, path: Path, name: str, split: str, label_kind: str = "fine"
                      ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read one split: images uint8 [N, 3, 32, 32], labels int64 [N], class names."""
    info = CIFAR_INFO[name]
    label_key, names_key = info["labels"][label_kind]
    wanted = list(info["batches"][split]) + [info["meta"]]
    blobs: dict[str, bytes] = {}
    if kind == "dir":
        for f in wanted:
            p = path / f
            if not p.is_file():
                raise FileNotFoundError(f"{info['title']} folder {path} lacks {f}")
            blobs[f] = p.read_bytes()
        where = {f: str(path / f) for f in wanted}
    else:
        try:
            with tarfile.open(path, "r:*") as tf:
                for m in tf:
                    if safe_member_name(m, path) is None:  # links, devices, '..', absolute: an error
                        continue
                    base = m.name.rsplit("/", 1)[-1]
                    if base in wanted and base not in blobs:
                        too_big = member_too_big(m)
                        if too_big:
                            raise ValueError(f"{path}:{m.name}: {too_big}")
                        fh = tf.extractfile(m)
                        assert fh is not None
                        blobs[base] = fh.read()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ValueError(f"cannot read {info['title']} archive {path}: {exc}") from exc
        missing = [f for f in wanted if f not in blobs]
        if missing:
            raise ValueError(f"{info['title']} archive {path} lacks {', '.join(missing)}")
        where = {f: f"{path}:{f}" for f in wanted}
    meta = _unpickle(blobs[info["meta"]], where[info["meta"]])
    if names_key not in meta:
        raise ValueError(f"{where[info['meta']]} has no key {names_key!r}")
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta[names_key]]
    images, labels = [], []
    for f in info["batches"][split]:
        d = _unpickle(blobs[f], where[f])
        for key in ("data", label_key):
            if key not in d:
                raise ValueError(f"{where[f]} has no key {key!r} (keys: {sorted(d)})")
        data = np.asarray(d["data"])
        lab = np.asarray(d[label_key], dtype=np.int64).reshape(-1)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise ValueError(f"{where[f]}: 'data' must be uint8 [N, 3072], got {data.dtype} {data.shape}")
        if lab.shape[0] != data.shape[0]:
            raise ValueError(f"{where[f]}: {data.shape[0]} images but {lab.shape[0]} labels")
        if lab.size and (lab.min() < 0 or lab.max() >= len(classes)):
            raise ValueError(f"{where[f]}: labels outside 0..{len(classes) - 1}")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    return np.concatenate(images), np.concatenate(labels), classes


def build_cifar(
    name: str,
    split: str,
    *,
    root: str | None = None,
    download: bool = False,
    size: int | None = None,
    cache_dir: str | None = None,
    limit: int | None = None,
    verify: bool = True,
    labels: str = "fine",
) -> TensorImageDataset:
    """CIFAR-10/100 ``split`` ("train" or "test") as a fixed-size set backed by the uint8 cache.

    ``labels``: "fine" (default) or, for CIFAR-100, "coarse" (the 20 super-classes).
    """
    info = CIFAR_INFO[name]
    if labels not in info["labels"]:
        raise ValueError(f"{name}: unknown labels={labels!r}; choose from {sorted(info['labels'])}")
    kind, path = locate_cifar(name, root, download, cache_dir)
    if kind == "archive":
        fp: Any = file_fingerprint(path)
    else:
        fp = [file_fingerprint(path / f) for f in info["batches"][split] + [info["meta"]] if (path / f).exists()]
    cdir = default_cache_dir(cache_dir)
    stem = entry_stem(name, {"source": fp, "split": split, "size": size, "limit": limit, "labels": labels})
    entry = load_entry(cdir, stem)
    if entry is not None:
        loader = partial(load_images_mmap, entry["images_path"], entry["count"])
        return TensorImageDataset(None, entry["labels"], entry["classes"], name=name, split=split,
                                  loader=loader, info={"source": str(path), "cache": entry["images_path"]})
    if kind == "archive" and verify:
        check_md5(path, info["md5"], hint=f"not the official {info['filename']}? set data.verify=false "
                  "(jointaug train) or pass verify=False to use it anyway")
    images, lab, classes = read_cifar_arrays(kind, path, name, split, labels)
    if limit is not None:
        keep = stratified_subset(lab, limit)
        images, lab = images[keep], lab[keep]
    tens = torch.from_numpy(images)
    if size is not None:
        tens = resize_square(tens, size)
    writer = ArrayWriter(cdir, stem, tuple(tens.shape))  # type: ignore[arg-type]
    meta = {"classes": classes, "source": str(path), "name": name, "split": split, "skipped": []}
    try:
        writer.array[...] = tens.numpy()
        stored = writer.commit(cdir, stem, meta, lab, count=int(tens.shape[0]))
    except BaseException:
        writer.discard()
        raise
    loader = partial(load_images_mmap, str(cdir / f"{stem}.images.npy"), int(tens.shape[0]))
    return TensorImageDataset(stored, lab, classes, name=name, split=split,
                              loader=loader if writer.tmp_path is not None else None,
                              info={"source": str(path)})
