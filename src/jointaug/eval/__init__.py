"""Evaluation of frozen backbones: clean features, weighted kNN, linear probes, ``jointaug eval``."""

from __future__ import annotations

from jointaug.eval.features import extract_features
from jointaug.eval.knn import knn_accuracy, knn_classify
from jointaug.eval.linear import RandomResizedCropFlip, linear_probe, linear_probe_augmented

__all__ = [
    "RandomResizedCropFlip",
    "extract_features",
    "knn_accuracy",
    "knn_classify",
    "linear_probe",
    "linear_probe_augmented",
]
