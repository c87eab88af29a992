"""Why J-Crop(0) trails RandomCrop on the synthetic set but not on photos: crop statistics and SDF (issue 10, item 5).

The synthetic generator knows every object's parts (positions and radii). For RandomCrop, J-Crop(0) and
J-Crop(-2) under the main job's recipe (``simclr/synthetic``) this draws the views of the 5,000 training
images with the training sampler and measures, per view, the share of the object box it covers and how
many of the object's parts it shows (a part counts when half of its bounding square is inside the crop),
and per positive pair how often one view shows at most one part (ambiguous: every part type occurs in
several classes) while the other shows the whole object. With trained encoders it splits the SDF (paper
Eq. 2; the seed of ``jointaug sdf`` but batches of 500, so its draws, and the SDF in the 4th decimal, differ
from the command's batches of 256) by pair type. It also measures how much class a crop alone carries:
kNN accuracy of single crops of the test images against the clean training images. With a checkpoint
trained on real photos (CIFAR-10 subset, same recipe) it gives the same policies' SDF there for comparison.

    python benchmarks/synthetic_crops.py --synthetic "RandomCrop 25 ep=runs/main/random-crop/checkpoints/last.pt" \
        --photo "CIFAR-10 RandomCrop 10 ep=PATH" --out benchmarks/results/synthetic_crops
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from jointaug.analysis.sdf import compute_sdf, norm_stats, summarize, view_cosines
from jointaug.augment import BatchViews
from jointaug.config import build_policy, load_config
from jointaug.data import synthetic as syn
from jointaug.eval.checkpoint import features_from_checkpoint, load_checkpoint_dict
from jointaug.sampling.policy_names import parse_policies
from jointaug.seeding import derive_seed

POLICIES = "random,jcrop(0),jcrop(-2)"


def object_parts(num: int = 5000, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images' object boxes [N, 4] (x0, y0, x1, y1), part boxes [N, 3, 4] and a part mask [N, 3], as drawn
    by the generator (its own parameter draw replayed; checked against ``make_synthetic``'s boxes)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    labels = rng.permutation(np.arange(num, dtype=np.int64) % len(syn.SYNTHETIC_CLASSES))
    slots, boxes = syn._draw_params(rng, labels, size)
    _, _, ref = syn.make_synthetic(num, size, seed, return_boxes=True)
    assert np.array_equal(boxes, ref), "the replayed parameter draw differs from make_synthetic's"
    parts = slots[-3:]
    pbox = np.stack([np.stack([p.cx - p.r, p.cy - p.r, p.cx + p.r, p.cy + p.r], 1) for p in parts], 1)
    mask = np.stack([p.kind >= 0 for p in parts], 1)
    return boxes, np.clip(pbox, 0, size), mask


def overlap(crop: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Area of crop ∩ box over the area of box; crop [..., 4] as (x0, y0, w, h), box [..., 4] as (x0, y0, x1, y1)."""
    cx0, cy0 = crop[..., 0], crop[..., 1]
    cx1, cy1 = cx0 + crop[..., 2], cy0 + crop[..., 3]
    iw = np.clip(np.minimum(cx1, box[..., 2]) - np.maximum(cx0, box[..., 0]), 0, None)
    ih = np.clip(np.minimum(cy1, box[..., 3]) - np.maximum(cy0, box[..., 1]), 0, None)
    return iw * ih / np.maximum((box[..., 2] - box[..., 0]) * (box[..., 3] - box[..., 1]), 1e-9)


def crop_stats(box: np.ndarray, obj: np.ndarray, pbox: np.ndarray, pmask: np.ndarray) -> tuple[dict, np.ndarray]:
    """Per-policy crop statistics from the drawn boxes [N, 2, 4]; also the per-pair 'part vs whole' flag."""
    cover = overlap(box, obj[:, None, :])  # [N, 2]
    seen = (overlap(box[:, :, None, :], pbox[:, None, :, :]) >= 0.5) & pmask[:, None, :]  # [N, 2, 3]
    n_seen = seen.sum(-1)
    n_parts = pmask.sum(-1)[:, None]
    few = n_seen <= 1
    whole = n_seen == n_parts
    area = box[..., 2] * box[..., 3]
    ratio = area.max(1) / np.maximum(area.min(1), 1)
    part_whole = (few[:, 0] & whole[:, 1]) | (few[:, 1] & whole[:, 0])
    stats = {
        "mean_object_coverage": float(cover.mean()),
        "views_covering_lt_50pct_of_object": float((cover < 0.5).mean()),
        "views_showing_at_most_one_part": float(few.mean()),
        "views_showing_every_part": float(whole.mean()),
        "pairs_with_a_view_showing_at_most_one_part": float(few.any(1).mean()),
        "pairs_part_vs_whole": float(part_whole.mean()),
        "pairs_area_ratio_beyond_2": float((ratio > 2).mean()),
        "mean_view_area_fraction": float((area / (32 * 32)).mean()),
    }
    return stats, few.any(1)


def _split(config: dict, split: str) -> torch.Tensor:
    """uint8 images [N, 3, H, W] and labels of one split of a checkpoint's data set (its limits)."""
    from jointaug.data.datasets import build_dataset
    from jointaug.eval.checkpoint import config_get

    lim = config_get(config, "data.limit" if split == "train" else "data.test_limit", None)
    kw = {k: config_get(config, f"data.{k}", None) for k in ("root", "size", "on_error", "cache_dir")}
    kw = {k: v for k, v in kw.items() if v is not None}
    ds = build_dataset(config_get(config, "data.name"), split, limit=lim, **kw)
    imgs = getattr(ds, "images", None)
    if not isinstance(imgs, torch.Tensor):
        imgs = torch.stack([ds[i][0] for i in range(len(ds))])
    return imgs, torch.as_tensor(ds.labels).long()


def crop_knn(path: str, scales: tuple[float, ...] = (0.2, 0.5), seed: int = 0) -> dict:
    """kNN top-1 (k 200, T 0.1, bank = clean training images) of clean test images and of one random crop of
    each test image at a fixed area fraction (no flip or colour): how much class a crop alone carries."""
    from jointaug.eval.features import extract_features
    from jointaug.eval.knn import knn_accuracy
    from jointaug.sampling import ViewPolicy, ViewSpec

    ckpt = load_checkpoint_dict(path)
    enc = features_from_checkpoint(ckpt, "backbone", path).eval()
    mean, std = norm_stats(ckpt)
    xtr, ytr = _split(ckpt["config"], "train")
    xte, yte = _split(ckpt["config"], "test")
    bank = extract_features(enc, xtr, mean=mean, std=std)
    out = {"whole": knn_accuracy(bank, ytr, extract_features(enc, xte, mean=mean, std=std), yte, k=200,
                                 temperature=0.1)}
    for s in scales:
        pol = ViewPolicy([ViewSpec(size=int(xte.shape[-1]), scale=(s, s), flip_p=0.0, jitter_p=0.0, gray_p=0.0)])
        bv = BatchViews(pol, mean=tuple(mean), std=tuple(std))
        with torch.no_grad():
            views, _ = bv(xte, torch.Generator().manual_seed(derive_seed(seed, "crop-knn", s)))
            f = enc(views[0])
        out[f"crop_{s:g}"] = knn_accuracy(bank, ytr, f, yte, k=200, temperature=0.1)
    out["n_test"] = int(len(yte))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synthetic", action="append", default=[], help="LABEL=CHECKPOINT trained on the synthetic set")
    ap.add_argument("--photo", action="append", default=[], help="LABEL=CHECKPOINT trained on real photos")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", default="benchmarks/results/synthetic_crops")
    args = ap.parse_args()
    t_start = time.perf_counter()
    obj, pbox, pmask = object_parts()
    rel = (obj[:, 2] - obj[:, 0]) * (obj[:, 3] - obj[:, 1]) / 32**2
    centre = np.stack([(obj[:, 0] + obj[:, 2]) / 2, (obj[:, 1] + obj[:, 3]) / 2], 1) / 32 - 0.5
    result: dict = {"objects": {
        "object_box_area_fraction": {q: float(np.quantile(rel, p)) for q, p in
                                     (("p10", 0.1), ("median", 0.5), ("p90", 0.9))} | {"mean": float(rel.mean())},
        "object_centre_offset_mean": float(np.linalg.norm(centre, axis=1).mean()),
        "parts_per_object": {str(k): float((pmask.sum(1) == k).mean()) for k in (2, 3)}}}
    images = torch.from_numpy(syn.make_synthetic(5000, 32, 0)[0])
    pols = parse_policies(POLICIES)
    policies = {label: build_policy(load_config("simclr/synthetic", ovs)) for label, _, ovs in pols}
    result["crops"] = {}
    for label, pol in policies.items():  # the boxes jointaug sdf draws (same generator seed)
        p = pol.sample(torch.tensor([[32, 32]]).expand(len(images), 2),
                       torch.Generator().manual_seed(derive_seed(args.seed, "sdf-views")))
        result["crops"][label], _ = crop_stats(p.box[:, :2].double().numpy(), obj, pbox, pmask)
    result["sdf_synthetic"] = {}
    for spec in args.synthetic:
        name, path = spec.split("=", 1)
        ckpt = load_checkpoint_dict(path)
        enc = features_from_checkpoint(ckpt, "backbone", path).eval()
        mean, std = norm_stats(ckpt)
        rows = {}
        for label, pol in policies.items():
            rec: dict = {}
            cos = view_cosines(enc, images, BatchViews(pol, mean=tuple(mean), std=tuple(std)),
                               seed=derive_seed(args.seed, "sdf-views"), batch_size=500, record=rec)
            box = torch.cat(rec["box"]).double().numpy()
            _, few = crop_stats(box, obj, pbox, pmask)
            few_t = torch.from_numpy(few)
            boot = derive_seed(args.seed, "sdf-bootstrap")
            rows[label] = {"all": summarize(cos, n_boot=args.n_boot, seed=boot),
                           "pairs_with_a_part_view": summarize(cos[few_t], n_boot=args.n_boot, seed=boot),
                           "other_pairs": summarize(cos[~few_t], n_boot=args.n_boot, seed=boot)}
            print(f"{name}: {label}: SDF {rows[label]['all']['sdf']:.4f}", flush=True)
        result["sdf_synthetic"][name] = {"checkpoint": path, "policies": rows}
    result["sdf_photo"] = {}
    for spec in args.photo:
        name, path = spec.split("=", 1)
        res = compute_sdf(path, betas=[0.0, -2.0], curves=("jcrop",), n_boot=args.n_boot, seed=args.seed)
        j = res["jcrop"]
        result["sdf_photo"][name] = {"checkpoint": path, "data": res["data"], "n_images": res["n_images"],
                                     "RandomCrop": j["reference"]["sdf"], "J-Crop(0)": j["sdf"][0],
                                     "J-Crop(-2)": j["sdf"][1], "stderr": [j["reference"]["stderr"], *j["stderr"]]}
        print(f"{name}: {result['sdf_photo'][name]}", flush=True)
    result["crop_knn"] = {}
    for spec in [*args.synthetic, *args.photo]:
        name, path = spec.split("=", 1)
        result["crop_knn"][name] = crop_knn(path, seed=args.seed)
        print(f"{name}: crop kNN {result['crop_knn'][name]}", flush=True)
    result["wall_time_s"] = round(time.perf_counter() - t_start, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result) + "\n")
    print(markdown(result))


def markdown(r: dict) -> str:
    """The tables of the result."""
    o = r["objects"]
    a = o["object_box_area_fraction"]
    lines = ["# Synthetic set: crop statistics and SDF per view policy (issue 10, item 5)", "",
             f"Objects (5,000 training images): object box = {a['mean']:.2f} of the image on average (p10 "
             f"{a['p10']:.2f}, median {a['median']:.2f}, p90 {a['p90']:.2f}); box centre "
             f"{o['object_centre_offset_mean']:.3f} of the side from the image centre on average; parts per object: "
             f"2 in "
             f"{o['parts_per_object']['2']:.0%}, 3 in {o['parts_per_object']['3']:.0%}.", "",
             "| policy | object covered (mean) | views < 50% of object | views with <= 1 part | views with every "
             "part | pairs with a <= 1-part view | part-vs-whole pairs | pairs beyond 2:1 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, s in r["crops"].items():
        lines.append(f"| {label} | {s['mean_object_coverage']:.3f} | {s['views_covering_lt_50pct_of_object']:.1%} | "
                     f"{s['views_showing_at_most_one_part']:.1%} | {s['views_showing_every_part']:.1%} | "
                     f"{s['pairs_with_a_view_showing_at_most_one_part']:.1%} | {s['pairs_part_vs_whole']:.1%} | "
                     f"{s['pairs_area_ratio_beyond_2']:.1%} |")
    for name, d in r["sdf_synthetic"].items():
        lines += ["", f"SDF, synthetic encoder {name} (`{d['checkpoint']}`), 5,000 training images (+- std. error):",
                  "", "| policy | SDF all pairs | pairs with a <= 1-part view | other pairs |", "|---|---:|---:|---:|"]
        for label, x in d["policies"].items():
            lines.append(f"| {label} | {x['all']['sdf']:.4f} +- {x['all']['stderr']:.4f} | "
                         f"{x['pairs_with_a_part_view']['sdf']:.4f} (n={x['pairs_with_a_part_view']['n']}) | "
                         f"{x['other_pairs']['sdf']:.4f} (n={x['other_pairs']['n']}) |")
    if r["sdf_photo"]:
        lines += ["", "SDF on real photos (same recipe, encoder trained on them):", "",
                  "| encoder | images | RandomCrop | J-Crop(0) | J-Crop(-2) |", "|---|---:|---:|---:|---:|"]
        for name, d in r["sdf_photo"].items():
            lines.append(f"| {name} | {d['n_images']} | {d['RandomCrop']:.4f} | {d['J-Crop(0)']:.4f} | "
                         f"{d['J-Crop(-2)']:.4f} |")
    if r.get("crop_knn"):
        lines += ["", "Class information in a crop alone: kNN top-1 (%) of test images, bank = clean training images, "
                  "k 200, T 0.1; one random crop per test image at a fixed area fraction, no flip or colour:", "",
                  "| encoder | whole image | crop 0.5 | crop 0.2 | crop 0.2 / whole |", "|---|---:|---:|---:|---:|"]
        for name, d in r["crop_knn"].items():
            lines.append(f"| {name} | {d['whole']:.2f} | {d['crop_0.5']:.2f} | {d['crop_0.2']:.2f} | "
                         f"{d['crop_0.2'] / d['whole']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
