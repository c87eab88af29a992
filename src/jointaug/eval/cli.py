"""``jointaug eval CHECKPOINT``: kNN and linear evaluation of a trained backbone.

Loads the checkpoint (see :mod:`jointaug.eval.checkpoint`), the data set's train and test splits
(``--data``, default the checkpoint's ``data.name``), extracts clean features once, then runs the
weighted kNN monitor and, on request, the fast linear probe (``--linear``) and/or the augmented
linear protocol (``--linear-augmented``). Prints a summary and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import inspect
import json
import time
from pathlib import Path
from typing import Any

import torch

from jointaug.eval.checkpoint import config_get, load_backbone
from jointaug.eval.features import IMAGENET_MEAN, IMAGENET_STD, extract_features
from jointaug.eval.knn import knn_accuracy
from jointaug.eval.linear import linear_probe, linear_probe_augmented

#: Config keys searched (in order) for the normalisation the model was trained with.
_MEAN_KEYS = ("aug.mean", "data.mean", "render.mean", "mean")
_STD_KEYS = ("aug.std", "data.std", "render.std", "std")
DATASETS = ("cifar10", "cifar100", "stl10", "synthetic", "folder")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``jointaug eval``."""
    parser.add_argument("checkpoint", help="checkpoint file written by jointaug train")
    parser.add_argument("--data", default=None,
                        help=f"data set: {', '.join(DATASETS)} (default: the checkpoint's data.name)")
    parser.add_argument("--data-dir", default=None, help="data root (archive, folder); default: the checkpoint's")
    parser.add_argument("--download", action="store_true", help="download the data set if missing")
    parser.add_argument("--cache-dir", default=None, help="uint8 cache directory")
    parser.add_argument("--limit-train", type=int, default=None, help="use at most N training images (stratified)")
    parser.add_argument("--limit-test", type=int, default=None, help="use at most N test images (stratified)")
    parser.add_argument("--size", type=int, default=None,
                        help="evaluation size (shorter side resized, centre crop); default: native size")
    parser.add_argument("--crop-fraction", type=float, default=1.0,
                        help="resize the shorter side to size/crop_fraction before the centre crop (0.875: ImageNet)")
    parser.add_argument("--mean", type=float, nargs=3, default=None, help="normalisation mean (default: config's)")
    parser.add_argument("--std", type=float, nargs=3, default=None, help="normalisation std (default: config's)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (auto: cuda when available)")
    parser.add_argument("--batch-size", type=int, default=512, help="feature-extraction batch size")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers for variable-size data")
    parser.add_argument("--no-knn", action="store_true", help="skip the kNN evaluation")
    parser.add_argument("--knn-k", type=int, default=200)
    parser.add_argument("--knn-t", type=float, default=0.1, help="kNN temperature")
    parser.add_argument("--linear", action="store_true", help="fast linear probe on precomputed features")
    parser.add_argument("--linear-augmented", action="store_true",
                        help="standard linear protocol (random resized crop + flip, frozen backbone)")
    parser.add_argument("--linear-epochs", type=int, default=100)
    parser.add_argument("--linear-lr", type=float, default=0.1)
    parser.add_argument("--linear-batch-size", type=int, default=256)
    parser.add_argument("--linear-wd", type=float, default=0.0, help="linear-probe weight decay")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the results as JSON here (default: next to the checkpoint)")


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available")
    return dev


def _norm_stats(config: dict[str, Any], args: argparse.Namespace) -> tuple[list[float], list[float], str]:
    mean, std, source = args.mean, args.std, "command line"
    if mean is None or std is None:
        for mk, sk in zip(_MEAN_KEYS, _STD_KEYS):
            m, s = config_get(config, mk, None), config_get(config, sk, None)
            if m is not None and s is not None:
                mean, std, source = (mean or list(m)), (std or list(s)), f"checkpoint config ({mk}, {sk})"
                break
    if mean is None or std is None:
        mean, std, source = (mean or list(IMAGENET_MEAN)), (std or list(IMAGENET_STD)), "ImageNet default"
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"normalisation needs 3 means and 3 positive stds, got mean={mean}, std={std}")
    return [float(x) for x in mean], [float(x) for x in std], source


def build_split(name: str, split: str, *, root: str | None = None, download: bool = False, size: int | None = None,
                cache_dir: str | None = None, limit: int | None = None) -> Any:
    """One split of a data set by name, through ``jointaug.data`` (its ``build_dataset`` when it has one)."""
    import jointaug.data as data

    opts = {"root": root, "download": download, "size": size, "cache_dir": cache_dir, "limit": limit}
    builder = getattr(data, "build_dataset", None)
    if builder is not None:
        accepted = inspect.signature(builder).parameters
        return builder(name, split, **{k: v for k, v in opts.items() if k in accepted})
    if name in ("cifar10", "cifar100"):
        from jointaug.data.cifar import build_cifar
        return build_cifar(name, split, **opts)
    if name == "stl10":
        from jointaug.data.stl10 import build_stl10
        return build_stl10(split, **opts)
    if name == "synthetic":
        from jointaug.data.synthetic import build_synthetic
        return build_synthetic(split, size=size, cache_dir=cache_dir, limit=limit)
    if name == "folder":
        from jointaug.data.folder import build_folder
        return build_folder(name, split, root=root, size=size, cache_dir=cache_dir, limit=limit)
    raise ValueError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")


def _labelled(feats: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    keep = labels >= 0  # STL-10 "unlabeled" images carry -1
    return feats[keep], labels[keep]


def main(args: argparse.Namespace) -> int:
    """Run the evaluation; returns 0."""
    device = _resolve_device(args.device)
    backbone, config = load_backbone(args.checkpoint, map_location=device)
    data_name = args.data or config_get(config, "data.name", None)
    if data_name is None:
        raise ValueError("no data set: pass --data (the checkpoint's config has no data.name)")
    root = args.data_dir or config_get(config, "data.root", None)
    mean, std, norm_source = _norm_stats(config, args)
    results: dict[str, Any] = {
        "checkpoint": str(args.checkpoint), "data": data_name, "device": str(device),
        "backbone": config_get(config, "model.backbone"), "method": config_get(config, "method.name", None),
        "normalisation": {"mean": mean, "std": std, "source": norm_source}, "size": args.size,
    }
    print(f"jointaug eval: {args.checkpoint} ({results['method']}, {results['backbone']}) on {data_name}, "
          f"device {device}; normalisation from {norm_source}")
    common = {"root": root, "download": args.download, "cache_dir": args.cache_dir}
    train_ds = build_split(data_name, "train", limit=args.limit_train, **common)
    test_ds = build_split(data_name, "test", limit=args.limit_test, **common)
    num_classes = getattr(train_ds, "num_classes", None)

    t0 = time.perf_counter()
    feat_kw = dict(batch_size=args.batch_size, device=device, mean=mean, std=std, size=args.size,
                   crop_fraction=args.crop_fraction, num_workers=args.num_workers, return_labels=True)
    xtr, ytr = extract_features(backbone, train_ds, **feat_kw)
    xte, yte = extract_features(backbone, test_ds, **feat_kw)
    if ytr is None or yte is None:
        raise ValueError(f"data set {data_name!r} does not yield (image, label) items")
    xtr, ytr = _labelled(xtr, ytr)
    xte, yte = _labelled(xte, yte)
    results.update(num_train=int(xtr.shape[0]), num_test=int(xte.shape[0]), feature_dim=int(xtr.shape[1]),
                   feature_seconds=round(time.perf_counter() - t0, 2))
    print(f"  features: train {tuple(xtr.shape)}, test {tuple(xte.shape)} in {results['feature_seconds']} s")

    if not args.no_knn:
        acc = knn_accuracy(xtr.to(device), ytr, xte.to(device), yte, k=args.knn_k, temperature=args.knn_t,
                           num_classes=num_classes)
        results["knn"] = {"top1": acc, "k": args.knn_k, "temperature": args.knn_t}
        print(f"  kNN (k={args.knn_k}, T={args.knn_t}): top-1 {acc:.2f}%")
    lin_kw = dict(epochs=args.linear_epochs, lr=args.linear_lr, batch_size=args.linear_batch_size,
                  weight_decay=args.linear_wd, num_classes=num_classes, device=device, seed=args.seed)
    if args.linear:
        res = linear_probe(xtr, ytr, xte, yte, **lin_kw)
        results["linear"] = dict(res, epochs=args.linear_epochs, lr=args.linear_lr)
        print(f"  linear probe (features, {args.linear_epochs} epochs): top-1 {res['top1']:.2f}%, "
              f"top-5 {res['top5']:.2f}%")
    if args.linear_augmented:
        res = linear_probe_augmented(backbone, train_ds, test_ds, mean=mean, std=std, size=args.size,
                                     crop_fraction=args.crop_fraction, num_workers=args.num_workers, **lin_kw)
        results["linear_augmented"] = dict(res, epochs=args.linear_epochs, lr=args.linear_lr)
        print(f"  linear probe (augmented, {args.linear_epochs} epochs): top-1 {res['top1']:.2f}%, "
              f"top-5 {res['top5']:.2f}%")
    out = Path(args.out) if args.out else Path(args.checkpoint).with_suffix(".eval.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"  results: {out}")
    return 0


__all__ = ["DATASETS", "add_arguments", "build_split", "main"]
