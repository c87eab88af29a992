"""``jointaug eval CHECKPOINT``: kNN and linear evaluation of a trained backbone.

Mirrors the trainer's own final evaluation (``jointaug.train.trainer``) so the figures agree:
data set, splits, reader size and limits from the checkpoint's ``data.*`` config (overridable);
normalisation from the checkpoint's ``mean``/``std`` (what training used); evaluation at the view
size of the training policy: fixed-size sets at their native size when it equals the view size
(else resized), variable-size sets resized (shorter side to size/0.875) and centre-cropped.
Clean features are extracted once; then the weighted kNN monitor and, on request, the fast
linear probe (``--linear``) and/or the augmented protocol (``--linear-augmented``). Prints a
summary and writes JSON (``--out``, default ``<checkpoint>.eval.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from jointaug.eval.checkpoint import config_get, features_from_checkpoint, load_checkpoint_dict
from jointaug.eval.features import IMAGENET_MEAN, IMAGENET_STD, extract_features
from jointaug.eval.knn import knn_accuracy
from jointaug.eval.linear import linear_probe, linear_probe_augmented


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``jointaug eval`` (data options default to the checkpoint's config)."""
    parser.add_argument("checkpoint", help="checkpoint file written by jointaug train (e.g. <run>/checkpoints/last.pt)")
    g = parser.add_argument_group("data (default: as in training)")
    g.add_argument("--data", default=None, help="data-set name (cifar10, stl10, folder ...)")
    g.add_argument("--data-dir", default=None, help="data root (archive or folder)")
    g.add_argument("--download", action="store_true", help="download the data set if missing")
    g.add_argument("--cache-dir", default=None, help="uint8 cache directory")
    g.add_argument("--train-split", default=None, help="labelled split for kNN/linear training")
    g.add_argument("--test-split", default=None, help="evaluation split")
    g.add_argument("--limit-train", type=int, default=None, help="at most N training images (default: data.limit)")
    g.add_argument("--limit-test", type=int, default=None, help="at most N test images (default: data.test_limit)")
    g.add_argument("--size", type=int, default=None, help="evaluation size (default: the training view size)")
    g.add_argument("--crop-fraction", type=float, default=None,
                   help="variable-size images: shorter side to size/crop_fraction, centre crop (default 0.875)")
    g.add_argument("--mean", type=float, nargs=3, default=None, help="normalisation mean (default: training's)")
    g.add_argument("--std", type=float, nargs=3, default=None, help="normalisation std (default: training's)")
    r = parser.add_argument_group("evaluation")
    r.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (auto: cuda when available)")
    r.add_argument("--features", default="backbone",
                   help="features to evaluate: backbone (default) or a method's own kind, e.g. LooC's heads "
                        "(LooC++: the heads' hidden features concatenated), z0, z_rotation")
    r.add_argument("--batch-size", type=int, default=512, help="feature-extraction batch size")
    r.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (variable-size data)")
    r.add_argument("--no-knn", action="store_true", help="skip the kNN evaluation")
    r.add_argument("--knn-k", type=int, default=None, help="default: the config's eval.knn_k, else 200")
    r.add_argument("--knn-t", type=float, default=None, help="kNN temperature (default: eval.knn_t, else 0.1)")
    r.add_argument("--linear", action="store_true", help="fast linear probe on precomputed clean features")
    r.add_argument("--linear-augmented", action="store_true",
                   help="standard linear protocol (random resized crop + flip, frozen backbone)")
    r.add_argument("--linear-epochs", type=int, default=None, help="default: eval.linear_epochs, else 100")
    r.add_argument("--linear-lr", type=float, default=None, help="default: eval.linear_lr, else 0.1")
    r.add_argument("--linear-batch-size", type=int, default=None, help="default: eval.linear_batch_size, else 256")
    r.add_argument("--linear-wd", type=float, default=None, help="default: eval.linear_weight_decay, else 0")
    r.add_argument("--seed", type=int, default=None, help="linear-probe seed (default: train.seed, else 0)")
    r.add_argument("--out", default=None, help="JSON results file (default: <checkpoint>.eval.json)")


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available")
    return dev


def _norm_stats(ckpt: dict[str, Any], args: argparse.Namespace) -> tuple[list[float], list[float], str]:
    """(mean, std, source): the command line's (both or neither), else the checkpoint's, else ImageNet's."""
    if (args.mean is None) != (args.std is None):
        given, missing = ("--mean", "--std") if args.std is None else ("--std", "--mean")
        raise ValueError(f"{given} was given without {missing}: give both (3 numbers each) or neither")
    for flag, vals in (("--mean", args.mean), ("--std", args.std)):
        if vals is not None and not all(math.isfinite(v) for v in vals):
            raise ValueError(f"{flag} {' '.join(map(str, vals))}: must be finite numbers")
    config = ckpt["config"]
    candidates = [
        (args.mean, args.std, "command line"),
        (ckpt.get("mean"), ckpt.get("std"), "checkpoint (training normalisation)"),
        (config_get(config, "data.mean", None), config_get(config, "data.std", None), "checkpoint config data.*"),
        (IMAGENET_MEAN, IMAGENET_STD, "ImageNet default"),
    ]
    mean, std, source = next((m, s, src) for m, s, src in candidates if m is not None and s is not None)
    mean, std = [float(x) for x in mean], [float(x) for x in std]
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0 or not all(map(math.isfinite, mean + std)):
        raise ValueError(f"normalisation needs 3 finite means and 3 positive finite stds, got mean={mean}, "
                         f"std={std} ({source})")
    return mean, std, source


def _view_size(config: dict[str, Any]) -> int | None:
    """The training policy's view size (rebuilt from the config), else ``aug.size``, else None."""
    try:
        from omegaconf import OmegaConf

        from jointaug.config import build_policy

        return int(build_policy(OmegaConf.create(config)).out_hw[0][0])
    except Exception:  # noqa: BLE001 - older/foreign configs: fall back on the explicit size
        size = config_get(config, "aug.size", None)
        return None if size is None else int(size)


def build_split(name: str, split: str, **kw: Any) -> Any:
    """One split of a data set, through ``jointaug.data.datasets.build_dataset`` (None options dropped)."""
    from jointaug.data.datasets import build_dataset

    return build_dataset(name, split, **{k: v for k, v in kw.items() if v is not None})


def _features(backbone: nn.Module, ds: Any, size: int | None, crop_fraction: float | None,
              common: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """Clean features and labels of a data set, as the trainer computes them (unlabelled images dropped)."""
    fixed = getattr(ds, "fixed_size", None)
    images = getattr(ds, "images", None)
    if fixed is not None and isinstance(images, Tensor):
        eval_size = None if size is None or tuple(fixed) == (size, size) else size
        feats = extract_features(backbone, images, size=eval_size, crop_fraction=crop_fraction or 1.0, **common)
        labels = torch.as_tensor(ds.labels).long()
    else:
        feats, labels = extract_features(backbone, ds, size=size, return_labels=True,
                                         crop_fraction=0.875 if crop_fraction is None else crop_fraction, **common)
        if labels is None:
            raise ValueError(f"data set {getattr(ds, 'name', ds)!r} does not yield (image, label) items")
    keep = labels >= 0  # unlabelled images (label -1) cannot vote or be scored
    return feats[keep], labels[keep]


def main(args: argparse.Namespace) -> int:
    """Run the evaluation; returns 0."""
    device = _resolve_device(args.device)
    ckpt = load_checkpoint_dict(args.checkpoint, map_location="cpu")
    config = ckpt["config"]
    kind = getattr(args, "features", "backbone") or "backbone"
    backbone = features_from_checkpoint(ckpt, kind, f"checkpoint {args.checkpoint}",
                                        probe_size=_view_size(config) or 32).to(device)

    def opt(value: Any, key: str, default: Any = None) -> Any:
        return value if value is not None else config_get(config, key, default)

    data_name = opt(args.data, "data.name")
    if data_name is None:
        raise ValueError("no data set: pass --data (the checkpoint's config has no data.name)")
    mean, std, norm_source = _norm_stats(ckpt, args)
    size = args.size if args.size is not None else _view_size(config)
    read = dict(root=opt(args.data_dir, "data.root"), download=args.download or None,
                size=config_get(config, "data.size", None), on_error=config_get(config, "data.on_error", None),
                cache_dir=opt(args.cache_dir, "data.cache_dir"))
    train_split, test_split = opt(args.train_split, "data.eval_train_split", "train"), opt(
        args.test_split, "data.test_split", "test")
    seed = int(opt(args.seed, "train.seed", 0))
    knn_k, knn_t = int(opt(args.knn_k, "eval.knn_k", 200)), float(opt(args.knn_t, "eval.knn_t", 0.1))
    lin = dict(epochs=int(opt(args.linear_epochs, "eval.linear_epochs", 100)),
               lr=float(opt(args.linear_lr, "eval.linear_lr", 0.1)),
               batch_size=int(opt(args.linear_batch_size, "eval.linear_batch_size", 256)),
               weight_decay=float(opt(args.linear_wd, "eval.linear_weight_decay", 0.0)))
    results: dict[str, Any] = {
        "checkpoint": str(args.checkpoint), "data": data_name, "train_split": train_split, "test_split": test_split,
        "device": str(device), "backbone": config_get(config, "model.backbone"),
        "method": config_get(config, "method.name", None), "features": kind, "epoch": ckpt.get("epoch"),
        "eval_size": size,
        "normalisation": {"mean": mean, "std": std, "source": norm_source},
    }
    print(f"jointaug eval: {args.checkpoint} ({results['method']}, {results['backbone']}, epoch {ckpt.get('epoch')}) "
          f"on {data_name} {train_split}/{test_split}, size {size}, device {device}; normalisation: {norm_source}")
    train_ds = build_split(data_name, train_split, limit=opt(args.limit_train, "data.limit"), **read)
    test_ds = build_split(data_name, test_split, limit=opt(args.limit_test, "data.test_limit"), **read)
    num_classes = getattr(train_ds, "num_classes", None)

    t0 = time.perf_counter()
    common = dict(batch_size=args.batch_size, device=device, mean=mean, std=std, num_workers=args.num_workers)
    xtr, ytr = _features(backbone, train_ds, size, args.crop_fraction, common)
    xte, yte = _features(backbone, test_ds, size, args.crop_fraction, common)
    results.update(num_train=int(xtr.shape[0]), num_test=int(xte.shape[0]), feature_dim=int(xtr.shape[1]),
                   feature_seconds=round(time.perf_counter() - t0, 2))
    print(f"  features: train {tuple(xtr.shape)}, test {tuple(xte.shape)} in {results['feature_seconds']} s")

    if not args.no_knn:
        acc = knn_accuracy(xtr.to(device), ytr.to(device), xte.to(device), yte.to(device), k=knn_k,
                           temperature=knn_t, num_classes=num_classes)
        results["knn"] = {"top1": acc, "k": knn_k, "temperature": knn_t}
        print(f"  kNN (k={knn_k}, T={knn_t}): top-1 {acc:.2f}%")
    if args.linear:
        res = linear_probe(xtr, ytr, xte, yte, num_classes=num_classes, device=device, seed=seed, **lin)
        results["linear"] = dict(res, **lin)
        print(f"  linear probe (clean features, {lin['epochs']} epochs): top-1 {res['top1']:.2f}%, "
              f"top-5 {res['top5']:.2f}%")
    if args.linear_augmented:
        crop_fraction = args.crop_fraction or (1.0 if getattr(test_ds, "fixed_size", None) else 0.875)
        res = linear_probe_augmented(backbone, train_ds, test_ds, mean=mean, std=std, size=size,
                                     crop_fraction=crop_fraction, num_workers=args.num_workers,
                                     num_classes=num_classes, device=device, seed=seed, **lin)
        results["linear_augmented"] = dict(res, **lin)
        print(f"  linear probe (augmented, {lin['epochs']} epochs): top-1 {res['top1']:.2f}%, "
              f"top-5 {res['top5']:.2f}%")
    out = Path(args.out) if args.out else Path(args.checkpoint).with_suffix(".eval.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"  results: {out}")
    return 0


__all__ = ["add_arguments", "build_split", "main"]
