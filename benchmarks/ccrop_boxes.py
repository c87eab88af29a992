"""How well ContrastiveCrop's heat-map boxes find the objects of the synthetic set.

The synthetic set knows each object's box (the union of its parts' bounding circles). For the
backbones of the given checkpoints (and the untrained ConvNet-4 of the same seed) this computes the
heat-map boxes of the first ``--n`` training images (``jointaug.train.ccrop.compute_regions``, the
run's normalisation and threshold) and reports their mean relative area, their mean IoU with the true
boxes, and the IoU of the whole image (what RandomCrop's "box" would be) for reference.

    python benchmarks/ccrop_boxes.py runs/X/ccrop/checkpoints/last.pt [more.pt ...] [--threshold 0.1]
"""

from __future__ import annotations

import argparse
import json

import torch

from jointaug.data.synthetic import make_synthetic
from jointaug.eval.checkpoint import load_backbone
from jointaug.models import ConvNet4
from jointaug.train.ccrop import compute_regions


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of relative boxes (x0, y0, x1, y1), row by row."""
    lo, hi = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (hi - lo).clamp(min=0).prod(dim=1)
    area = lambda t: (t[:, 2:] - t[:, :2]).prod(dim=1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="*")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--threshold", type=float, default=None, help="default: each run's aug.ccrop_threshold (0.1)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    images, _, true_px = make_synthetic(5000, 32, 0, return_boxes=True)  # the train split (seed 0)
    images = torch.from_numpy(images[:args.n])
    truth = torch.from_numpy(true_px[:args.n]).float() / 32
    whole = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).expand_as(truth)
    rows = []
    todo = [("untrained ConvNet-4 (width 16, seed 0)", None)] + [(c, c) for c in args.checkpoints]
    for label, path in todo:
        if path is None:
            torch.manual_seed(0)
            net, mean, std, thr = ConvNet4(width=16), [0.5] * 3, [0.25] * 3, 0.1
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net, config = load_backbone(path)
            mean, std = state["mean"], state["std"]
            thr = float(config["aug"].get("ccrop_threshold", 0.1))
        thr = args.threshold if args.threshold is not None else thr
        boxes = compute_regions(net, images, threshold=thr, mean=mean, std=std)
        area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).mean()
        rows.append({"backbone": label, "threshold": thr, "box_area": float(area),
                     "iou_with_object": float(iou(boxes, truth).mean()),
                     "whole_image_iou": float(iou(whole, truth).mean()),
                     "true_box_area": float(((truth[:, 2:] - truth[:, :2]).prod(1)).mean())})
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
