"""build_dataset: argument validation, clear errors, stratified subsets, and the real CIFAR-10 jpgs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jointaug.data import DATASET_NAMES, build_dataset, dataset_splits, stratified_subset

REAL_CIFAR_JPG = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-jpg.tar.gz"


def test_names_and_splits():
    assert {"synthetic", "cifar10", "cifar100", "stl10", "folder", "imagenette", "tiny-imagenet",
            "imagenet"} <= set(DATASET_NAMES)
    assert "train+unlabeled" in dataset_splits("stl10")


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda c: build_dataset("mnist", "train", cache_dir=c), "unknown data set 'mnist'"),
        (lambda c: build_dataset("cifar10", "val", cache_dir=c), "unknown split 'val'"),
        (lambda c: build_dataset("synthetic", "unlabeled", cache_dir=c), "unknown split 'unlabeled'"),
        (lambda c: build_dataset("synthetic", "train", cache_dir=c, num_trian=5), "num_trian"),
        (lambda c: build_dataset("synthetic", "train", root="/x", cache_dir=c), "root"),
        (lambda c: build_dataset("synthetic", "train", cache_dir=c, limit=0), "limit"),
        (lambda c: build_dataset("synthetic", "train", cache_dir=c, size=3), "size"),
        (lambda c: build_dataset("folder", "train", root=c, on_error="ignore"), "on_error"),
        (lambda c: build_dataset("imagenet", "train", root=c, download=True), "download"),
    ],
)
def test_bad_arguments_name_the_value(tmp_path, call, match):
    with pytest.raises(ValueError, match=match):
        call(str(tmp_path))


def test_stratified_subset():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, -1, -1, -1])
    idx = stratified_subset(labels, 6)
    assert list(idx) == sorted(idx)
    counts = {g: int((labels[idx] == g).sum()) for g in (-1, 0, 1, 2)}
    assert counts == {-1: 2, 0: 2, 1: 1, 2: 1}  # 6 // 4 each, the first two groups one more
    assert list(idx) == [0, 1, 4, 6, 7, 8]  # earliest items of each group
    small = np.array([0] * 5 + [1])
    assert list(stratified_subset(small, 4)) == [0, 1, 2, 5]  # a short group's share goes to the others
    assert list(stratified_subset(labels, 100)) == list(range(10))


@pytest.mark.skipif(not REAL_CIFAR_JPG.is_file(), reason=f"{REAL_CIFAR_JPG} not present")
def test_real_cifar10_jpg_archive_loads(tmp_path):
    ds = build_dataset("folder", "test", root=str(REAL_CIFAR_JPG), limit=200, cache_dir=str(tmp_path))
    assert ds.fixed_size == (32, 32) and len(ds) == 200
    assert ds.classes[:3] == ["airplane", "automobile", "bird"] and len(ds.classes) == 10
    assert ds.labels.bincount().tolist() == [20] * 10
    assert 40 < ds.images.float().mean() < 200
