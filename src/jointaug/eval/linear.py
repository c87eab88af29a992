"""Linear evaluation of frozen features.

``linear_probe``: the fast path, a softmax classifier trained with SGD on precomputed features
(standardised with the training set's mean/std by default). ``linear_probe_augmented``: the
standard protocol, frozen backbone (eval mode) and a linear classifier trained on randomly
resized-cropped and flipped images, tested on clean centre images; the augmentation is a callable
so the trainer can pass jointaug's own renderer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from jointaug.eval.features import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Images,
    _module_device,
    _unwrap,
    collate_images,
    extract_features,
    normalize,
)

#: ``augment(images_uint8, generator) -> float [B, 3, h, w]`` ready for the backbone (normalised).
#: ``images_uint8`` is a [B, 3, H, W] uint8 tensor, or a list of [3, H_i, W_i] ones for variable sizes.
Augment = Callable[[Images, torch.Generator], Tensor]


def _check_feats(feats: Tensor, labels: Tensor, what: str) -> None:
    if feats.dim() != 2:
        raise ValueError(f"linear_probe: {what} features must be [N, D], got {tuple(feats.shape)}")
    if labels.shape != (feats.shape[0],):
        raise ValueError(f"linear_probe: {what} labels must have shape ({feats.shape[0]},), got {tuple(labels.shape)}")


@torch.no_grad()
def _topk_accuracy(logits: Tensor, labels: Tensor) -> dict[str, float]:
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hit = top == labels[:, None]
    return {"top1": 100.0 * hit[:, 0].float().mean().item(), "top5": 100.0 * hit.any(dim=1).float().mean().item()}


def _cosine_lr(base: float, step: int, total: int) -> float:
    return 0.5 * base * (1.0 + math.cos(math.pi * step / max(1, total)))


def linear_probe(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    *,
    epochs: int = 100,
    lr: float = 0.1,
    batch_size: int = 256,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    standardize: bool = True,
    num_classes: int | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> dict[str, float]:
    """Train a linear classifier on precomputed features; returns test ``top1``/``top5`` and ``train_top1`` (%).

    SGD with Nesterov momentum and a per-step cosine schedule, zero-initialised weights, shuffling
    from ``seed`` (deterministic on CPU).
    """
    _check_feats(train_feats, train_labels, "train")
    _check_feats(test_feats, test_labels, "test")
    if train_feats.shape[1] != test_feats.shape[1]:
        d_train, d_test = train_feats.shape[1], test_feats.shape[1]
        raise ValueError(f"linear_probe: train/test feature dims differ: {d_train} vs {d_test}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"linear_probe: need epochs >= 1 and batch_size >= 1, got {epochs}, {batch_size}")
    x_train = train_feats.float().to(device)
    x_test = test_feats.float().to(device)
    y_train = train_labels.long().to(device)
    y_test = test_labels.long().to(device)
    if num_classes is None:
        num_classes = int(max(y_train.max(), y_test.max())) + 1
    if standardize:
        mu, sd = x_train.mean(0, keepdim=True), x_train.std(0, keepdim=True).clamp_min(1e-6)
        x_train, x_test = (x_train - mu) / sd, (x_test - mu) / sd
    clf = nn.Linear(x_train.shape[1], num_classes).to(device)
    nn.init.zeros_(clf.weight)
    nn.init.zeros_(clf.bias)
    opt = torch.optim.SGD(clf.parameters(), lr=lr, momentum=momentum, nesterov=momentum > 0,
                          weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    n = x_train.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    total, step = epochs * steps_per_epoch, 0
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen).to(device)
        for start in range(0, n, batch_size):
            idx = perm[start:start + batch_size]
            for group in opt.param_groups:
                group["lr"] = _cosine_lr(lr, step, total)
            loss = F.cross_entropy(clf(x_train[idx]), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    with torch.no_grad():
        result = _topk_accuracy(clf(x_test), y_test)
        result["train_top1"] = _topk_accuracy(clf(x_train), y_train)["top1"]
    return result


class RandomResizedCropFlip:
    """Default training augmentation of the augmented probe: random resized crop + horizontal flip.

    Area fraction uniform in ``scale``, aspect log-uniform in ``ratio``, up to 10 attempts, then the
    whole image; bilinear antialiased resize to ``size``; flip with probability 1/2; normalised.
    """

    def __init__(
        self,
        size: int,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"RandomResizedCropFlip: scale must satisfy 0 < lo <= hi <= 1, got {scale}")
        self.size, self.scale, self.ratio, self.mean, self.std = int(size), scale, ratio, mean, std

    def _box(self, h: int, w: int, gen: torch.Generator) -> tuple[int, int, int, int]:
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            u = torch.rand(4, generator=gen).tolist()
            area = h * w * (self.scale[0] + (self.scale[1] - self.scale[0]) * u[0])
            aspect = math.exp(log_lo + (log_hi - log_lo) * u[1])
            cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                return int(u[2] * (h - ch + 1)), int(u[3] * (w - cw + 1)), ch, cw
        return 0, 0, h, w

    def __call__(self, images: Images, generator: torch.Generator) -> Tensor:
        out = []
        for img in images:
            top, left, ch, cw = self._box(int(img.shape[-2]), int(img.shape[-1]), generator)
            x = img[None, :, top:top + ch, left:left + cw].float() / 255.0
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
            if bool(torch.rand(1, generator=generator) < 0.5):
                x = x.flip(-1)
            out.append(x)
        return normalize(torch.cat(out), self.mean, self.std)


def _as_dataset(data: Dataset | tuple[Tensor, Tensor], what: str) -> Dataset:
    if isinstance(data, tuple):
        if len(data) != 2 or not all(isinstance(t, Tensor) for t in data):
            raise ValueError(f"linear_probe_augmented: {what} must be a Dataset or (images uint8, labels)")
        images, labels = data
        if images.dim() != 4 or labels.shape != (images.shape[0],):
            raise ValueError(
                f"linear_probe_augmented: {what} images {tuple(images.shape)} / labels {tuple(labels.shape)} mismatch"
            )
        return torch.utils.data.TensorDataset(images, labels)
    return data


def linear_probe_augmented(
    backbone: nn.Module,
    train_dataset: Dataset | tuple[Tensor, Tensor],
    test_dataset: Dataset | tuple[Tensor, Tensor],
    *,
    epochs: int = 100,
    lr: float = 0.1,
    batch_size: int = 256,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    feature_bn: bool = True,
    size: int | None = None,
    scale: tuple[float, float] = (0.08, 1.0),
    augment: Augment | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    crop_fraction: float = 1.0,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    seed: int = 0,
) -> dict[str, float]:
    """The augmented linear protocol on a frozen backbone; returns test ``top1``/``top5`` (%).

    Data sets yield ``(image, label)`` (or pass ``(uint8 images [N,3,H,W], labels)``). ``augment``
    defaults to :class:`RandomResizedCropFlip` at ``size`` (default: the first training image's
    height). ``feature_bn`` puts an affine-free BatchNorm on the features before the classifier
    (as in MAE's probe; makes ``lr`` insensitive to the feature scale). The paper's protocol,
    plain SGD with lr 10 on raw features, is ``feature_bn=False, lr=10``.
    """
    train_ds, test_ds = _as_dataset(train_dataset, "train_dataset"), _as_dataset(test_dataset, "test_dataset")
    if len(train_ds) == 0 or len(test_ds) == 0:
        raise ValueError("linear_probe_augmented: empty train or test data set")
    net = _unwrap(backbone)
    device = _module_device(net) if device is None else torch.device(device)
    net.to(device)
    if size is None:
        size = int(collate_images([train_ds[0]])[0][0].shape[-2])
    augment = augment or RandomResizedCropFlip(size, scale=scale, mean=mean, std=std)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(train_ds, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_images,
                        sampler=torch.utils.data.RandomSampler(train_ds, generator=gen), drop_last=False,
                        persistent_workers=num_workers > 0)  # workers start once, not every epoch
    dim = int(getattr(net, "feature_dim", 0)) or None
    if num_classes is None:
        num_classes = _count_classes(train_ds, test_ds)
    if dim is None:
        with torch.no_grad():
            dim = int(net.eval()(augment(collate_images([train_ds[0]])[0], gen).to(device)).shape[1])
    # frozen features: a cumulative average (momentum=None) is the right running estimate for the BN
    norm = nn.BatchNorm1d(dim, affine=False, momentum=None) if feature_bn else nn.Identity()
    clf = nn.Sequential(norm, nn.Linear(dim, num_classes)).to(device)
    nn.init.zeros_(clf[1].weight)
    nn.init.zeros_(clf[1].bias)
    opt = torch.optim.SGD(clf.parameters(), lr=lr, momentum=momentum, nesterov=momentum > 0,
                          weight_decay=weight_decay)
    was_training = net.training
    net.eval()
    total, step = epochs * len(loader), 0
    try:
        for _ in range(epochs):
            clf.train()
            for imgs, labels in loader:
                if labels is None:
                    raise ValueError("linear_probe_augmented: training items must be (image, label)")
                x = augment(imgs if isinstance(imgs, list) else imgs.to(device), gen).to(device)
                with torch.no_grad():
                    feats = net(x).float()
                for group in opt.param_groups:
                    group["lr"] = _cosine_lr(lr, step, total)
                loss = F.cross_entropy(clf(feats), labels.to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
        test_feats, test_labels = extract_features(net, test_ds, batch_size=batch_size, device=device, mean=mean,
                                                   std=std, size=size, crop_fraction=crop_fraction,
                                                   num_workers=num_workers, return_labels=True)
    finally:
        net.train(was_training)
    if test_labels is None:
        raise ValueError("linear_probe_augmented: test items must be (image, label)")
    clf.eval()
    with torch.no_grad():
        return _topk_accuracy(clf(test_feats.to(device)), test_labels.to(device))


def _count_classes(*datasets: Dataset) -> int:
    for ds in datasets:
        if isinstance(ds, torch.utils.data.TensorDataset):
            continue
        for attr in ("num_classes", "classes"):
            val = getattr(ds, attr, None)
            if val is not None:
                return int(val) if isinstance(val, int) else len(val)
    top = -1
    for ds in datasets:
        if isinstance(ds, torch.utils.data.TensorDataset):
            top = max(top, int(ds.tensors[1].max()))
        else:
            top = max(top, max(int(ds[i][1]) for i in range(len(ds))))
    return top + 1


__all__ = ["Augment", "RandomResizedCropFlip", "linear_probe", "linear_probe_augmented"]
