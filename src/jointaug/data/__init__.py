"""Data sets: image decoding, CIFAR / STL-10 / image-folder readers, the synthetic set, the cache.

Entry point: :func:`build_dataset`. Every data set is an :class:`ImageDataset` yielding
``(uint8 [3, H, W], int label)``; fixed-size ones also expose ``images`` [N, 3, H, W] and
``labels`` [N] so a trainer can batch without decoding. See ``docs/data.md``.
"""

from .base import FileImageDataset, ImageDataset, TensorImageDataset, stratified_subset
from .datasets import DATASET_NAMES, build_dataset, dataset_splits
from .download import ChecksumError
from .io import ImageReadError, load_image
from .synthetic import SYNTHETIC_CLASSES, make_synthetic

__all__ = [
    "DATASET_NAMES",
    "SYNTHETIC_CLASSES",
    "ChecksumError",
    "FileImageDataset",
    "ImageDataset",
    "ImageReadError",
    "TensorImageDataset",
    "build_dataset",
    "dataset_splits",
    "load_image",
    "make_synthetic",
    "stratified_subset",
]
