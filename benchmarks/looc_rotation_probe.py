"""Does LooC keep the rotation that MoCo learns to ignore? (issue 8's LooC check, spec looc.md)

Trains, on the built-in synthetic set and with the same data, backbone, optimiser, schedule and seed:
LooC with augmentations (colour, rotation) (``configs/looc/synthetic.yaml``) and MoCo v2 with the same
rotations in its views (``configs/mocov2/synthetic.yaml`` + ``aug.rotate_p=0.75``). Then, on held-out
test images turned by 0/90/180/270 degrees, a linear probe on frozen features predicts the turn
(4 classes, chance 25%): LooC's ``z_rotation`` and ``z0`` spaces, LooC's backbone and heads (LooC++),
MoCo's backbone and its projection. Writes ``benchmarks/results/looc_rotation.{json,md}``::

    python benchmarks/looc_rotation_probe.py --epochs 25
    python benchmarks/looc_rotation_probe.py --cifar ../shared/datasets/cifar10-jpg.tar.gz \
        --out benchmarks/results/looc_rotation_cifar      # a 5,000-image CIFAR-10 subset instead
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from jointaug.config import load_config
from jointaug.eval.checkpoint import features_from_checkpoint, load_checkpoint_dict
from jointaug.eval.features import extract_features
from jointaug.eval.linear import linear_probe
from jointaug.train.trainer import train

RESULTS = Path(__file__).resolve().parent / "results"


class _Projection(torch.nn.Module):
    """MoCo's projection output (normalised) as a feature extractor."""

    def __init__(self, method: torch.nn.Module) -> None:
        super().__init__()
        self.method = method
        self.feature_dim = method.projector.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.method.projector(self.method.backbone(x)), dim=1)


def _rotated(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image turned by k quarter turns, k = 0..3; labels k."""
    turns = [torch.rot90(images, k, dims=(2, 3)) for k in range(4)]
    labels = torch.arange(4).repeat_interleave(images.shape[0])
    return torch.cat(turns), labels


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--probe-images", type=int, default=1000, help="test images (x4 turns), half train / half test")
    p.add_argument("--out", default=str(RESULTS / "looc_rotation"))
    p.add_argument("--run-dir", default=None, help="keep the two training runs here (default: a temp folder)")
    p.add_argument("--cifar", default=None, help="CIFAR-10 JPEG archive: train on a 5,000-image subset of it")
    args = p.parse_args()
    t0 = time.perf_counter()
    load0 = list(os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(args.run_dir or tmp)
        common = [f"optim.epochs={args.epochs}", "train.knn_every=0", "eval.linear=false", "train.progress=false",
                  "train.tensorboard=false"]
        if args.cifar:
            common += ["data.name=folder", f"data.root={args.cifar}", "data.limit=5000", "data.test_limit=2000"]
        cfgs = {"looc": load_config("looc/synthetic", [*common, f"train.out_dir={runs / 'looc'}"]),
                "mocov2": load_config("mocov2/synthetic", [*common, "aug.rotate_p=0.75",
                                                           f"train.out_dir={runs / 'mocov2'}"])}
        summaries = {name: train(cfg) for name, cfg in cfgs.items()}
        ckpts = {name: load_checkpoint_dict(runs / name / "checkpoints" / "last.pt") for name in cfgs}
        test = cfgs["looc"]
        from jointaug.data.datasets import build_dataset

        ds = build_dataset(test.data.name, test.data.test_split, root=test.data.root, size=test.data.size,
                           cache_dir=test.data.cache_dir)
        images = ds.images[: args.probe_images]
        x, y = _rotated(images)
        n = images.shape[0] // 2  # probe trained on the turns of the first half, tested on the second half
        idx = torch.arange(x.shape[0]) % images.shape[0]
        tr, te = idx < n, idx >= n
        extractors = {}
        for kind in ("z_rotation", "z_color", "z0", "heads", "backbone"):
            extractors[f"LooC {kind}"] = features_from_checkpoint(ckpts["looc"], kind)
        extractors["MoCo v2 backbone"] = features_from_checkpoint(ckpts["mocov2"], "backbone")
        from jointaug.eval.checkpoint import backbone_from_checkpoint
        from jointaug.methods import build_method

        moco_cfg = ckpts["mocov2"]["config"]
        moco = build_method("mocov2", backbone_from_checkpoint(ckpts["mocov2"]), **moco_cfg["method"]["params"])
        moco.load_state_dict(ckpts["mocov2"]["model"])
        extractors["MoCo v2 projection"] = _Projection(moco.eval())
        mean, std = ckpts["looc"]["mean"], ckpts["looc"]["std"]
        rows = []
        for name, net in extractors.items():
            feats = extract_features(net, x, mean=ckpts["mocov2" if "MoCo" in name else "looc"]["mean"],
                                     std=ckpts["mocov2" if "MoCo" in name else "looc"]["std"])
            res = linear_probe(feats[tr], y[tr], feats[te], y[te], num_classes=4, epochs=100, seed=0)
            rows.append({"features": name, "dim": int(feats.shape[1]), "rotation_top1": res["top1"]})
            print(f"{name:22s} dim {feats.shape[1]:4d}  rotation probe top-1 {res['top1']:.2f}%", flush=True)
    result = {
        "command": "python benchmarks/looc_rotation_probe.py " + " ".join(os.sys.argv[1:]),
        "data": "cifar10-subset" if args.cifar else "synthetic", "epochs": args.epochs,
        "probe_images": int(images.shape[0]), "probe_train": n, "rows": rows,
        "knn_top1": {k: v.get("knn_top1") for k, v in summaries.items()},
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
                    "load_average_at_start": load0},
        "normalisation": {"mean": mean, "std": std}, "wall_s": time.perf_counter() - t0,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# LooC vs MoCo v2: how much rotation is left in the features", "",
             f"Command: `{result['command']}`; {'CIFAR-10 subset (5,000 images)' if args.cifar else 'synthetic set'}, "
             f"ConvNet-4 (width 16), {args.epochs} epochs each, "
             f"same seed; both trained with rotations (p = 0.75 per view). Probe: linear, 4 classes (chance 25%), "
             f"{n} test images x 4 turns to train it, {images.shape[0] - n} x 4 to test. "
             f"Load average at start {load0[0]:.1f}.", "",
             "| features | dim | rotation probe top-1 (%) |", "|---|---:|---:|"]
    lines += [f"| {r['features']} | {r['dim']} | {r['rotation_top1']:.2f} |" for r in rows]
    lines += ["", f"Class kNN top-1 after training ({'CIFAR-10' if args.cifar else 'synthetic'} test set): "
              + ", ".join(f"{k} {v:.2f}%" for k, v in result["knn_top1"].items() if v is not None)]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
