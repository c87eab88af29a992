"""Evaluation: clean feature extraction, weighted kNN, linear probes (fast and augmented) on toy data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from jointaug.eval.features import extract_features, normalize, resize_center_crop
from jointaug.eval.knn import knn_accuracy, knn_classify
from jointaug.eval.linear import RandomResizedCropFlip, linear_probe, linear_probe_augmented
from jointaug.models import build_backbone


def _blobs(n: int, num_classes: int = 4, dim: int = 16, seed: int = 0, spread: float = 3.0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(123)) * spread
    y = torch.randint(0, num_classes, (n,), generator=g)
    return centres[y] + torch.randn(n, dim, generator=g), y


# ----------------------------------------------------------------------------- kNN
def _knn_reference(train, labels, test, k, t, c):
    preds = []
    tn = train / train.norm(dim=1, keepdim=True)
    for q in test:
        sims = tn @ (q / q.norm())
        order = sorted(range(len(sims)), key=lambda i: -float(sims[i]))[:k]
        votes = [0.0] * c
        for i in order:
            votes[int(labels[i])] += float(torch.exp(sims[i] / t))
        preds.append(max(range(c), key=lambda j: votes[j]))
    return torch.tensor(preds)


def test_knn_matches_reference_and_chunking():
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(60, 5, generator=g), torch.randn(23, 5, generator=g)
    labels = torch.randint(0, 3, (60,), generator=g)
    preds = knn_classify(train, labels, test, k=7, temperature=0.1, num_classes=3, chunk_size=4)
    torch.testing.assert_close(preds, _knn_reference(train, labels, test, 7, 0.1, 3))
    # k larger than the training set is clipped
    assert knn_classify(train[:5], labels[:5], test, k=200).shape == (23,)


def test_knn_weighting_beats_majority():
    # one very close neighbour of class 1 vs two far ones of class 0: weights exp(sim/T) decide
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.05, 1.0]])
    labels = torch.tensor([1, 0, 0])
    test = torch.tensor([[1.0, 0.02]])
    assert knn_classify(train, labels, test, k=3, temperature=0.1).item() == 1
    assert knn_classify(train, labels, test, k=3, temperature=100.0).item() == 0  # ~uniform weights


def test_knn_accuracy_on_separable_blobs():
    xtr, ytr = _blobs(300, seed=1)
    xte, yte = _blobs(100, seed=2)
    assert knn_accuracy(xtr, ytr, xte, yte, k=20) == 100.0
    shuffled = ytr[torch.randperm(300, generator=torch.Generator().manual_seed(0))]
    assert knn_accuracy(xtr, shuffled, xte, yte, k=20) < 60.0
    with pytest.raises(ValueError, match="train_labels"):
        knn_classify(xtr, ytr[:10], xte)
    with pytest.raises(ValueError, match="equal D"):
        knn_classify(xtr, ytr, xte[:, :3])


# ----------------------------------------------------------------------------- linear probe (features)
def test_linear_probe_on_separable_blobs_and_determinism():
    xtr, ytr = _blobs(400, num_classes=6, seed=3)
    xte, yte = _blobs(200, num_classes=6, seed=4)
    res = linear_probe(xtr, ytr, xte, yte, epochs=15, batch_size=64)
    assert res["top1"] >= 98.0 and res["top5"] == 100.0 and res["train_top1"] >= 98.0
    assert linear_probe(xtr, ytr, xte, yte, epochs=15, batch_size=64) == res  # same seed, same result
    noise = linear_probe(torch.randn(400, 16), ytr, torch.randn(200, 16), yte, epochs=5, batch_size=64)
    assert noise["top1"] < 40.0
    with pytest.raises(ValueError, match="feature dims differ"):
        linear_probe(xtr, ytr, xte[:, :4], yte)
    with pytest.raises(ValueError, match="test labels"):
        linear_probe(xtr, ytr, xte, yte[:5])


# ----------------------------------------------------------------------------- feature extraction
class _ImageDataset(Dataset):
    def __init__(self, images, labels, as_numpy: bool = False):
        self.images, self.labels, self.as_numpy = images, labels, as_numpy

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        img = self.images[i]
        return (img.permute(1, 2, 0).numpy() if self.as_numpy else img), int(self.labels[i])


def _tiny_backbone() -> nn.Module:
    torch.manual_seed(0)
    return build_backbone("convnet4", width=4)


def test_extract_features_matches_manual_and_restores_mode():
    net = _tiny_backbone()
    imgs = torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    net.train()
    feats = extract_features(net, imgs, batch_size=4, mean=mean, std=std)
    assert net.training  # mode restored
    assert feats.shape == (10, 32) and feats.dtype == torch.float32 and not feats.requires_grad
    net.eval()
    with torch.no_grad():
        ref = net(normalize(imgs.float() / 255, mean, std))
    torch.testing.assert_close(feats, ref)
    labels = torch.arange(10) % 3
    ds_feats, ds_labels = extract_features(net, _ImageDataset(imgs, labels, as_numpy=True), batch_size=3,
                                           mean=mean, std=std, return_labels=True)
    torch.testing.assert_close(ds_feats, ref)
    assert ds_labels.tolist() == labels.tolist()


def test_extract_features_resizes_and_handles_variable_sizes():
    net = _tiny_backbone()
    sizes = [(20, 30), (24, 24), (40, 18)]
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8) for h, w in sizes]
    ds = _ImageDataset(images, [0, 1, 2])
    feats = extract_features(net, ds, size=16, batch_size=2)
    assert feats.shape == (3, 32)
    # the same as resizing each image alone (shorter side -> 16, centre crop)
    one = extract_features(net, images[2][None], size=16)
    torch.testing.assert_close(feats[2:], one)
    with pytest.raises(ValueError, match="different sizes"):
        extract_features(net, ds, batch_size=3)
    x = torch.rand(2, 3, 20, 30)
    assert resize_center_crop(x, 16).shape == (2, 3, 16, 16)
    assert resize_center_crop(x, 16, crop_fraction=0.5).shape == (2, 3, 16, 16)
    # a centre crop of an image whose shorter side already fits is exact slicing
    torch.testing.assert_close(resize_center_crop(x, 20), x[..., :, 5:25])


# ----------------------------------------------------------------------------- augmented linear probe
def _colour_images(n: int, seed: int):
    """Two classes told apart by the mean of the red channel (survives crop and flip)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randint(0, 100, (n, 3, 16, 16), generator=g, dtype=torch.uint8)
    x[y == 1, 0] += 140
    return x, y


def test_linear_probe_augmented_on_separable_images_and_custom_augment():
    net = _tiny_backbone()
    train, test = _colour_images(96, 0), _colour_images(48, 1)
    res = linear_probe_augmented(net, train, test, epochs=4, batch_size=32, lr=0.1)
    assert res["top1"] >= 90.0 and res["top5"] == 100.0

    calls = []

    def augment(images, generator):
        assert isinstance(generator, torch.Generator) and images.dtype == torch.uint8
        calls.append(images.shape[0])
        return normalize(images.float() / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

    res2 = linear_probe_augmented(net, _ImageDataset(*train), test, epochs=2, batch_size=32, augment=augment)
    assert sum(calls) == 2 * 96 and res2["top1"] >= 90.0


def test_random_resized_crop_flip_is_seeded():
    aug = RandomResizedCropFlip(12, scale=(0.2, 1.0))
    imgs = torch.randint(0, 256, (4, 3, 20, 16), dtype=torch.uint8)
    a = aug(imgs, torch.Generator().manual_seed(5))
    b = aug(imgs, torch.Generator().manual_seed(5))
    c = aug(imgs, torch.Generator().manual_seed(6))
    assert a.shape == (4, 3, 12, 12)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    with pytest.raises(ValueError, match="scale"):
        RandomResizedCropFlip(12, scale=(0.0, 1.0))
    assert np.isfinite(a.numpy()).all()
