"""Weighted kNN classifier on frozen features (the InstDisc / MoCo / lightly monitor).

Cosine similarity to the training features; the k nearest vote for their class with weight
exp(sim / T); the class with the largest total wins. Test features are processed in chunks so
memory stays at ``chunk_size x N_train``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _check(train_feats: Tensor, train_labels: Tensor, test_feats: Tensor) -> None:
    if train_feats.dim() != 2 or test_feats.dim() != 2 or train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(
            f"knn: features must be [N, D] with equal D, got {tuple(train_feats.shape)} and {tuple(test_feats.shape)}"
        )
    if train_labels.shape != (train_feats.shape[0],):
        n, got = train_feats.shape[0], tuple(train_labels.shape)
        raise ValueError(f"knn: train_labels must have shape ({n},), got {got}")
    if train_feats.shape[0] == 0:
        raise ValueError("knn: no training features")


@torch.no_grad()
def knn_classify(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> Tensor:
    """Predicted labels [N_test] by similarity-weighted kNN (k clipped to the training-set size)."""
    _check(train_feats, train_labels, test_feats)
    if k < 1 or not temperature > 0:
        raise ValueError(f"knn: need k >= 1 and temperature > 0, got k={k}, temperature={temperature}")
    labels = train_labels.long().to(train_feats.device)
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"knn: labels must lie in [0, {num_classes}), got [{int(labels.min())}, {int(labels.max())}]")
    k = min(k, train_feats.shape[0])
    train = F.normalize(train_feats.float(), dim=1)
    preds = []
    for start in range(0, test_feats.shape[0], chunk_size):
        test = F.normalize(test_feats[start:start + chunk_size].float().to(train.device), dim=1)
        sims, idx = (test @ train.t()).topk(k, dim=1)
        weights = (sims / temperature).exp()
        votes = torch.zeros(test.shape[0], num_classes, device=train.device, dtype=weights.dtype)
        votes.scatter_add_(1, labels[idx], weights)
        preds.append(votes.argmax(dim=1))
    if not preds:
        return torch.empty(0, dtype=torch.long, device=train.device)
    return torch.cat(preds)


def knn_accuracy(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> float:
    """Top-1 accuracy (%) of :func:`knn_classify` on the test set."""
    if test_labels.shape != (test_feats.shape[0],):
        raise ValueError(f"knn: test_labels must have shape ({test_feats.shape[0]},), got {tuple(test_labels.shape)}")
    if num_classes is None:
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    preds = knn_classify(train_feats, train_labels, test_feats, k=k, temperature=temperature,
                         num_classes=num_classes, chunk_size=chunk_size)
    return 100.0 * (preds.cpu() == test_labels.cpu().long()).float().mean().item()


__all__ = ["knn_accuracy", "knn_classify"]
