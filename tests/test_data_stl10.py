"""STL-10 reader on a fake binary release (column-major 96x96 images, labels 1..10)."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from jointaug.data import ChecksumError, build_dataset
from jointaug.data.stl10 import STL10_CLASSES

COUNTS = {"train": 4, "test": 3, "unlabeled": 5}


def _images(part: str) -> np.ndarray:
    """Distinct, orientation-revealing images [N, 3, 96, 96] (row-major, as they should load)."""
    n = COUNTS[part]
    seed = {"train": 1, "test": 2, "unlabeled": 3}[part]
    img = np.random.default_rng(seed).integers(0, 256, size=(n, 3, 96, 96), dtype=np.uint8)
    img[:, 0, 0, :] = 255  # the first row of the red channel is white: catches swapped axes
    img[:, 0, 1:, 0] = 0
    return img


def _labels(part: str) -> np.ndarray:
    return (np.arange(COUNTS[part]) * 3 % 10 + 1).astype(np.uint8)  # official 1..10


def _write(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for part in COUNTS:
        # official layout: every channel column-major, i.e. stored as [N, 3, W, H]
        np.ascontiguousarray(_images(part).transpose(0, 1, 3, 2)).tofile(folder / f"{part}_X.bin")
        if part != "unlabeled":
            _labels(part).tofile(folder / f"{part}_y.bin")
    (folder / "class_names.txt").write_text("\n".join(STL10_CLASSES) + "\n")
    return folder


def test_splits_layout_and_labels(tmp_path):
    folder = _write(tmp_path / "stl10_binary")
    cache = str(tmp_path / "c")
    for split in ("train", "test"):
        ds = build_dataset("stl10", split, root=str(tmp_path), cache_dir=cache)
        assert ds.fixed_size == (96, 96) and ds.classes == STL10_CLASSES
        assert np.array_equal(ds.images.numpy(), _images(split))
        assert ds.labels.tolist() == (_labels(split).astype(int) - 1).tolist()
        img, lab = ds[1]
        assert img.shape == (3, 96, 96) and img[0, 0].min() == 255 and lab == int(_labels(split)[1]) - 1
    unl = build_dataset("stl10", "unlabeled", root=str(folder), cache_dir=cache)
    assert len(unl) == 5 and set(unl.labels.tolist()) == {-1}
    assert np.array_equal(unl.images.numpy(), _images("unlabeled"))
    both = build_dataset("stl10", "train+unlabeled", root=str(folder), cache_dir=cache)
    assert len(both) == 9 and both.labels.tolist()[4:] == [-1] * 5
    assert np.array_equal(both.images.numpy(), np.concatenate([_images("train"), _images("unlabeled")]))
    assert both.images.is_contiguous()


def test_memory_mapped_and_picklable(tmp_path):
    folder = _write(tmp_path / "stl10_binary")
    ds = build_dataset("stl10", "unlabeled", root=str(folder), cache_dir=str(tmp_path / "c"))
    assert not ds.images.is_contiguous()  # a transposed view straight into the .bin file, no copy
    blob = pickle.dumps(ds)
    assert len(blob) < ds.images.numel()  # the pixels are re-mapped, not pickled
    assert torch.equal(pickle.loads(blob).images, ds.images)


def test_size_and_limit(tmp_path):
    folder = _write(tmp_path / "stl10_binary")
    ds = build_dataset("stl10", "train", root=str(folder), size=48, limit=2, cache_dir=str(tmp_path / "c"))
    assert ds.images.shape == (2, 3, 48, 48) and len(set(ds.labels.tolist())) == 2


def test_archive_extracted_once_and_checksum(tmp_path):
    folder = _write(tmp_path / "src" / "stl10_binary")
    archive = tmp_path / "stl10_binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(folder, arcname="stl10_binary")
    with pytest.raises(ChecksumError, match="91f7769df0f17e558f3565bffb0c7dfb"):
        build_dataset("stl10", "train", root=str(archive), cache_dir=str(tmp_path / "c"))
    ds = build_dataset("stl10", "test", root=str(archive), cache_dir=str(tmp_path / "c"), verify=False)
    assert np.array_equal(ds.images.numpy(), _images("test"))
    assert len(list((tmp_path / "c").glob("stl10-extract-*/test_X.bin"))) == 1


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown split 'val'"):
        build_dataset("stl10", "val", root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="stl10_binary.tar.gz"):
        build_dataset("stl10", "train", root=str(tmp_path))
    folder = _write(tmp_path / "stl10_binary")
    (folder / "test_X.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="multiple of 27648"):
        build_dataset("stl10", "test", root=str(folder), cache_dir=str(tmp_path / "c"))
