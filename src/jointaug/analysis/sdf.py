"""``jointaug sdf CHECKPOINT``: the Statistical Difficulty Factor (paper Eq. 2, spec section 7).

SDF(T) = mean over the images of a data set of cos(f(v1), f(v2)), the two views drawn by the view
policy T and rendered by the training renderer (``BatchViews``), f the checkpoint's frozen backbone
(eval mode; ``--features`` for a method's own feature kind). Lower SDF = harder positive pairs.
Reported with its standard error (std / sqrt(n)) and a seeded percentile-bootstrap 95% interval.

Policies: the checkpoint's own recipe (its config) with the crop, blur and colour laws set to
independent (``aug.crop=random aug.blur=random aug.color=random``, ContrastiveCrop off) is the base;
each curve changes one thing through the names of ``jointaug run --policies``
(:mod:`jointaug.sampling.policy_names`):

- ``ratio``: the two crops' areas in a fixed ratio 1:r (a :class:`~jointaug.sampling.FixedRatio`
  coupling on ``scale``; the paper's Fig. 2), everything else as the base;
- ``jcrop``: J-Crop(beta) over the beta grid (Fig. 4); reference ``RandomCrop`` (the base);
- ``jblur``: J-Blur(beta); reference the base with independent blur. When the recipe has no blur
  (the 32 px small-data recipe) both use ``aug.blur_p=[p, p]`` (``--blur-p``, default 0.5).

Every policy is drawn from the same seed, so the images, colour and flip draws are shared across
policies (common random numbers) and the curves differ only by the law that changes.

Output ``DIR/sdf.json`` (DIR: ``--out``, default ``<run folder of the checkpoint>/sdf/``)::

    {"checkpoint": str, "policy_recipe": str (the base overrides), "n_images": int, "seed": int,
     "backbone": str, "features": str, "data": str, "split": str, "n_boot": int,
     "ratio": {"ratios": [1, 2, 3, 4, 5], "sdf": [...], "stderr": [...], "ci95": [[lo, hi], ...],
               "realised_ratio": [...] (median realised box-area ratio),
               "reference": {"name": "RandomCrop", "sdf": x, "stderr": x, "ci95": [lo, hi]}},
     "jcrop": {"betas": [...], "sdf": [...], "stderr": [...], "ci95": [[lo, hi], ...],
               "reference": {"name": "RandomCrop", ...}},
     "jblur": {same keys as jcrop, "blur_p": [p0, p1], reference name "independent blur"}}

and the figures ``DIR/sdf_ratio.png`` (Fig. 2), ``DIR/sdf_beta_crop.png`` (Fig. 4, J-Crop) and
``DIR/sdf_beta_blur.png`` (J-Blur).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["DEFAULT_BETAS", "DEFAULT_RATIOS", "add_arguments", "base_policy_config", "compute_sdf", "norm_stats",
           "fixed_ratio_policy", "main", "pair_cosines", "plot_sdf", "sdf_of_policy", "summarize", "view_cosines"]

DEFAULT_BETAS = (-4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0)
DEFAULT_RATIOS = (1.0, 2.0, 3.0, 4.0, 5.0)
#: the base: the checkpoint's recipe with every joint law independent and uniform crop centres
CURVES = ("ratio", "jcrop", "jblur")
BASE_OVERRIDES = ["aug.crop=random", "aug.blur=random", "aug.color=random", "aug.ccrop=false"]


# ------------------------------------------------------------------------------------------ pure part
def pair_cosines(fa: Tensor, fb: Tensor, eps: float = 1e-12) -> Tensor:
    """Row-wise cosine similarity of two [N, D] feature tensors, computed in float64."""
    if fa.shape != fb.shape or fa.dim() != 2:
        raise ValueError(f"pair_cosines: need two [N, D] tensors of one shape, got {tuple(fa.shape)} and "
                         f"{tuple(fb.shape)}")
    a, b = fa.double(), fb.double()
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(eps)


def summarize(cos: Tensor, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """SDF = mean of the per-image cosines, its standard error and a seeded percentile-bootstrap interval."""
    cos = cos.double().flatten()
    n = cos.numel()
    if n < 2:
        raise ValueError(f"SDF needs at least 2 images for a standard error, got {n}")
    if not bool(torch.isfinite(cos).all()):
        raise ValueError("SDF: non-finite cosine similarities (features with NaN/inf)")
    g = torch.Generator().manual_seed(int(seed))
    means = []
    for start in range(0, n_boot, 256):  # resample in chunks: n_boot x n indices at once can be large
        k = min(256, n_boot - start)
        means.append(cos[torch.randint(0, n, (k, n), generator=g)].mean(1))
    boot = torch.cat(means) if means else cos.mean()[None]
    alpha = (1.0 - level) / 2
    lo, hi = torch.quantile(boot, torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64)).tolist()
    return {"sdf": float(cos.mean()), "stderr": float(cos.std(unbiased=True) / math.sqrt(n)), "ci95": [lo, hi],
            "n": n}


@torch.no_grad()
def view_cosines(encoder: Callable[[Tensor], Tensor], images: Tensor | Sequence[Tensor], batch_views: Any, *,
                 seed: int = 0, batch_size: int = 256, device: str | torch.device = "cpu",
                 record: dict[str, list[Tensor]] | None = None) -> Tensor:
    """Per-image cos(f(v1), f(v2)) of the first two views ``batch_views`` makes of ``images`` (a uint8
    [N, C, H, W] tensor, or a sequence of [C, H_i, W_i] images), in batches, from one seeded generator.

    ``record``: when given, the drawn boxes [B, V, 4] and fallbacks are appended under ``"box"`` / ``"fallback"``."""
    g = torch.Generator().manual_seed(int(seed))
    out = []
    n = len(images)
    for s in range(0, n, batch_size):
        if isinstance(images, Tensor):
            views, params = batch_views(images[s:s + batch_size].to(device), g)
        else:
            views, params = batch_views.from_list([im.to(device) for im in images[s:s + batch_size]], g)
        if len(views) < 2:
            raise ValueError(f"SDF needs a policy with at least two views, got {len(views)}")
        out.append(pair_cosines(encoder(views[0]).flatten(1), encoder(views[1]).flatten(1)).cpu())
        if record is not None:
            record.setdefault("box", []).append(params.box[:, :2].cpu())
            record.setdefault("fallback", []).append(params.fallback[:, :2].cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def fixed_ratio_policy(policy: Any, ratio: float, views: tuple[int, int] = (0, 1)) -> Any:
    """``policy`` with the crop areas of ``views`` in the fixed ratio 1:``ratio`` (a FixedRatio coupling on
    ``scale`` replacing any other scale coupling of those views); everything else unchanged."""
    from jointaug.sampling import Coupling, FixedRatio

    i, j = views
    if max(i, j) >= policy.num_views:
        raise ValueError(f"fixed ratio: views {views} but the policy has {policy.num_views} views")
    ri, rj = policy.views[i].range_of("scale"), policy.views[j].range_of("scale")
    if ri != rj:
        raise ValueError(f"fixed ratio: views {i} and {j} have different crop-area ranges {ri} and {rj}")
    law = FixedRatio(float(ratio))
    law.check(*ri)
    keep = [c for c in policy.couplings if not (c.param == "scale" and set(c.views) & {i, j})]
    alts = [[c for c in alt if not (c.param == "scale" and set(c.views) & {i, j})] for alt in policy.alternatives]
    return dataclasses.replace(policy, couplings=[*keep, Coupling("scale", (i, j), law)], alternatives=alts,
                               name=f"{policy.name} fixed ratio 1:{ratio:g}")


def base_policy_config(config: dict[str, Any], overrides: Sequence[str] = ()) -> Any:
    """The checkpoint's stored config as a typed ``DictConfig`` with :data:`BASE_OVERRIDES` and ``overrides``
    applied (no file checks: only the view policy is built from it)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from jointaug.config import Config

    cfg = OmegaConf.structured(Config)
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.create(config))
    except OmegaConfBaseException as exc:
        raise ValueError(f"checkpoint config does not fit this version's schema: {str(exc).splitlines()[0]}") from None
    for ov in [*BASE_OVERRIDES, *overrides]:
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([ov]))
        except OmegaConfBaseException as exc:
            raise ValueError(f"policy override {ov!r}: {str(exc).splitlines()[0]}") from None
    return cfg


def sdf_of_policy(encoder: Callable[[Tensor], Tensor], images: Tensor | Sequence[Tensor], policy: Any, *,
                  mean: Sequence[float] | None, std: Sequence[float] | None, mode: str = "fast", seed: int = 0,
                  n_boot: int = 2000, batch_size: int = 256, device: str | torch.device = "cpu"
                  ) -> dict[str, Any]:
    """SDF of one policy (same renderer as training), with standard error, 95% interval and the
    median realised area ratio of the two crops."""
    from jointaug.augment import BatchViews
    from jointaug.seeding import derive_seed

    bv = BatchViews(policy, mode=mode, mean=None if mean is None else tuple(mean),
                    std=None if std is None else tuple(std))
    rec: dict[str, list[Tensor]] = {}
    cos = view_cosines(encoder, images, bv, seed=derive_seed(seed, "sdf-views"), batch_size=batch_size,
                       device=device, record=rec)
    res = summarize(cos, n_boot=n_boot, seed=derive_seed(seed, "sdf-bootstrap"))
    box = torch.cat(rec["box"]).double()
    area = box[..., 2] * box[..., 3]
    res["realised_ratio"] = float((area.max(1).values / area.min(1).values.clamp_min(1)).median())
    res["fallback"] = float(torch.cat(rec["fallback"]).double().mean())
    return res


# ------------------------------------------------------------------------------------------ the command
def _run_folder(checkpoint: Path) -> Path:
    p = checkpoint.resolve().parent
    return p.parent if p.name == "checkpoints" else p


def norm_stats(ckpt: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Training normalisation: the checkpoint's mean/std, else its config's data.*, else ImageNet's."""
    from jointaug.augment import IMAGENET_MEAN, IMAGENET_STD
    from jointaug.eval.checkpoint import config_get

    for m, s in ((ckpt.get("mean"), ckpt.get("std")),
                 (config_get(ckpt["config"], "data.mean", None), config_get(ckpt["config"], "data.std", None))):
        if m is not None and s is not None:
            return [float(x) for x in m], [float(x) for x in s]
    return list(IMAGENET_MEAN), list(IMAGENET_STD)


def _images(config: dict[str, Any], limit: int | None) -> tuple[Tensor | list[Tensor], str, str]:
    """The checkpoint's training images (``data.eval_train_split``, ``data.limit`` unless ``limit``)."""
    from jointaug.data.datasets import build_dataset
    from jointaug.eval.checkpoint import config_get

    name = config_get(config, "data.name", None)
    if name is None:
        raise ValueError("checkpoint config has no data.name: cannot rebuild the data set")
    split = config_get(config, "data.eval_train_split", "train") or "train"
    kw = {k: config_get(config, f"data.{k}", None) for k in ("root", "size", "on_error", "cache_dir")}
    lim = limit if limit is not None else config_get(config, "data.limit", None)
    ds = build_dataset(name, split, limit=lim, **{k: v for k, v in kw.items() if v is not None})
    imgs = getattr(ds, "images", None)
    if isinstance(imgs, Tensor) and getattr(ds, "fixed_size", None) is not None:
        return imgs, name, split
    return [ds[i][0] for i in range(len(ds))], name, split


def compute_sdf(checkpoint: str | Path, *, betas: Sequence[float] = DEFAULT_BETAS,
                ratios: Sequence[float] = DEFAULT_RATIOS, limit: int | None = None, seed: int | None = None,
                device: str = "auto", backbone: str | None = None, features: str = "backbone",
                blur_p: float = 0.5, n_boot: int = 2000, batch_size: int = 256,
                curves: Sequence[str] = CURVES, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The SDF ``curves`` (default all: ratio, jcrop, jblur) of one checkpoint, as the JSON dict of the module
    docstring."""
    bad = [c for c in curves if c not in CURVES]
    if bad or not curves:
        raise ValueError(f"--curves: unknown curve(s) {bad}; choose from {', '.join(CURVES)}")
    from jointaug.config import build_policy
    from jointaug.eval.checkpoint import config_get, features_from_checkpoint, load_checkpoint_dict
    from jointaug.sampling.policy_names import parse_policies

    log = log or (lambda s: None)
    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint_dict(checkpoint, map_location="cpu")
    config = ckpt["config"]
    saved = config_get(config, "model.backbone", None)
    if backbone is not None and backbone != saved:
        raise ValueError(f"checkpoint {checkpoint} holds a {saved!r} backbone, not the requested {backbone!r}")
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       "cpu" if device == "auto" else device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available")
    base = base_policy_config(config)
    size = int(base.aug.size) if base.aug.size is not None else 32
    encoder = features_from_checkpoint(ckpt, features, f"checkpoint {checkpoint}", probe_size=size).to(dev).eval()
    mean, std = norm_stats(ckpt)
    seed = int(seed if seed is not None else config_get(config, "train.seed", 0) or 0)
    mode = str(base.aug.mode)
    images, data_name, split = _images(config, limit)
    for b in betas:
        if not math.isfinite(float(b)):
            raise ValueError(f"--betas: {b!r} is not a finite number")
    run = dict(mean=mean, std=std, mode=mode, seed=seed, n_boot=n_boot, batch_size=batch_size, device=dev)

    def one(label: str, policy: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        r = sdf_of_policy(encoder, images, policy, **run)
        log(f"  {label:<24s} SDF {r['sdf']:.4f} +- {r['stderr']:.4f}  (median area ratio "
            f"{r['realised_ratio']:.2f}, {time.perf_counter() - t0:.1f} s)")
        return r

    def ref(name: str, r: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "sdf": r["sdf"], "stderr": r["stderr"], "ci95": r["ci95"]}

    def curve(key: str, xs: Sequence[float], rs: list[dict[str, Any]]) -> dict[str, Any]:
        return {key: [float(x) for x in xs], "sdf": [r["sdf"] for r in rs], "stderr": [r["stderr"] for r in rs],
                "ci95": [r["ci95"] for r in rs], "realised_ratio": [r["realised_ratio"] for r in rs]}

    def policy_of(name: str, extra: Sequence[str] = ()) -> tuple[str, Any]:
        label, _, ovs = parse_policies(name)[0]
        return label, build_policy(base_policy_config(config, [*ovs, *extra]))

    log(f"jointaug sdf: {checkpoint} ({saved}, {features}) on {data_name}/{split}, {len(images)} images, "
        f"seed {seed}, device {dev}")
    rc_label, random_policy = policy_of("random")
    random_res = one(rc_label, random_policy)
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint), "policy_recipe": " ".join(BASE_OVERRIDES) + f" (recipe {base.name})",
        "n_images": len(images), "seed": seed, "backbone": saved, "features": features, "data": data_name,
        "split": split, "n_boot": n_boot,
    }
    if "ratio" in curves:
        result["ratio"] = curve("ratios", ratios, [one(f"ratio 1:{r:g}", fixed_ratio_policy(random_policy, r))
                                                   for r in ratios])
        result["ratio"]["reference"] = ref(rc_label, random_res)
    if "jcrop" in curves:
        result["jcrop"] = curve("betas", betas, [one(*policy_of(f"jcrop({b:g})")) for b in betas])
        result["jcrop"]["reference"] = ref(rc_label, random_res)
    if "jblur" not in curves:
        return result
    blur_extra: list[str] = []
    if all(v.blur_p == 0 for v in random_policy.views[:2]):
        if not 0 < blur_p <= 1:
            raise ValueError(f"--blur-p {blur_p}: the recipe has no blur, so J-Blur needs a probability in (0, 1]")
        blur_extra = [f"aug.blur_p=[{blur_p},{blur_p}]"]
    blur_ref_policy = build_policy(base_policy_config(config, blur_extra))
    blur_res = [one(*policy_of(f"jblur({b:g})", blur_extra)) for b in betas]
    result["jblur"] = curve("betas", betas, blur_res)
    result["jblur"]["blur_p"] = [float(v.blur_p) for v in blur_ref_policy.views[:2]]
    result["jblur"]["reference"] = ref("independent blur", one("independent blur", blur_ref_policy))
    return result


def plot_sdf(result: dict[str, Any], out: Path) -> list[str]:
    """The three figures (SDF vs fixed area ratio; vs beta for J-Crop and J-Blur, reference line and band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    specs = (("ratio", "ratios", "sdf_ratio.png", "fixed area ratio 1:r", "SDF vs fixed area ratio (Fig. 2)"),
             ("jcrop", "betas", "sdf_beta_crop.png", "J-Crop beta", "SDF of J-Crop(beta) (Fig. 4)"),
             ("jblur", "betas", "sdf_beta_blur.png", "J-Blur beta", "SDF of J-Blur(beta)"))
    for key, xkey, fname, xlabel, title in specs:
        c = result.get(key)
        if not c:
            continue
        xs, ys = c[xkey], c["sdf"]
        lo = [y - ci[0] for y, ci in zip(ys, c["ci95"])]
        hi = [ci[1] - y for y, ci in zip(ys, c["ci95"])]
        fig, ax = plt.subplots(figsize=(4.8, 3.4), dpi=120)
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", ms=4, capsize=3, label="SDF (95% CI)")
        r = c.get("reference")
        if r:
            ax.axhline(r["sdf"], color="gray", ls="--", lw=1, label=r["name"])
            ax.axhspan(r["ci95"][0], r["ci95"][1], color="gray", alpha=0.15, lw=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("SDF (mean cosine of the pair)")
        ax.set_title(f"{title}\n{_run_folder(Path(result['checkpoint'])).name}, n={result['n_images']}",
                     fontsize=8)
        if key == "ratio":
            ax.set_xticks(xs, [f"1:{x:g}" for x in xs])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / fname)
        plt.close(fig)
        written.append(fname)
    return written


def _numbers(values: Sequence[str] | None, flag: str, default: Sequence[float]) -> list[float]:
    if values is None:
        return list(default)
    out = []
    for v in values:
        for t in str(v).split(","):
            if t.strip():
                try:
                    out.append(float(t))
                except ValueError:
                    raise ValueError(f"{flag}: {t!r} is not a number") from None
    if not out:
        raise ValueError(f"{flag}: give at least one number")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``jointaug sdf``."""
    parser.add_argument("checkpoint", help="checkpoint of jointaug train / run (e.g. <run>/checkpoints/last.pt)")
    parser.add_argument("--out", help="output folder (default: <run folder of the checkpoint>/sdf)")
    parser.add_argument("--betas", nargs="+", help="beta grid for J-Crop and J-Blur (default -4 -2 -1 0 1 2 4)")
    parser.add_argument("--ratios", nargs="+", help="fixed area ratios 1:r (default 1 2 3 4 5)")
    parser.add_argument("--limit", type=int, help="at most this many training images (class-stratified)")
    parser.add_argument("--seed", type=int, help="seed of the views and the bootstrap (default: train.seed)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda")
    parser.add_argument("--backbone", help="expected backbone: an error when the checkpoint holds another")
    parser.add_argument("--features", default="backbone", help="backbone (default) or a method's feature kind")
    parser.add_argument("--blur-p", type=float, default=0.5,
                        help="blur probability of both views for the J-Blur curve when the recipe has none")
    parser.add_argument("--curves", default=",".join(CURVES), help="which curves (default ratio,jcrop,jblur)")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--batch-size", type=int, default=256)


def main(args: argparse.Namespace) -> int:
    """Compute every curve, write sdf.json and the figures, print a short table."""
    betas = _numbers(args.betas, "--betas", DEFAULT_BETAS)
    ratios = _numbers(args.ratios, "--ratios", DEFAULT_RATIOS)
    if any(r < 1 for r in ratios):
        raise ValueError(f"--ratios: a fixed area ratio 1:r needs r >= 1, got {ratios}")
    if args.limit is not None and args.limit < 2:
        raise ValueError(f"--limit {args.limit}: SDF needs at least 2 images")
    if args.n_boot < 1:
        raise ValueError(f"--n-boot {args.n_boot}: must be >= 1")
    ckpt = Path(args.checkpoint)
    out = Path(args.out) if args.out else _run_folder(ckpt) / "sdf"
    t0 = time.perf_counter()
    result = compute_sdf(ckpt, betas=betas, ratios=ratios, limit=args.limit, seed=args.seed, device=args.device,
                         backbone=args.backbone, features=args.features, blur_p=args.blur_p, n_boot=args.n_boot,
                         batch_size=args.batch_size, curves=[c.strip() for c in args.curves.split(",") if c.strip()],
                         log=lambda s: print(s, file=sys.stderr, flush=True))
    result["wall_time_s"] = round(time.perf_counter() - t0, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sdf.json").write_text(json.dumps(result, indent=2) + "\n")
    files = plot_sdf(result, out)
    print(f"jointaug sdf: wrote {out / 'sdf.json'} and {', '.join(files)} ({result['wall_time_s']} s)")
    return 0
