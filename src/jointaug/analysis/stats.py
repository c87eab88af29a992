"""``jointaug stats``: how hard are the positive pairs of a crop or blur policy?

Draws pairs from the real samplers (:func:`~jointaug.sampling.recipes.crop_policy` /
:func:`~jointaug.sampling.recipes.blur_policy`) and reports, next to the exact values of the sampled
law, the probability that the two views' area (or sigma) ratio exceeds 2:1 and 3:1 at two levels:

- *law*: the sampled scalars (``params.extra["target_area"]``), before rounding, aspect rejection
  and fallback; this is what the analytic law (JC(beta) or iid uniform) describes;
- *realised*: the boxes actually produced (after rounding, the 10 aspect attempts and the fallback);
  torchvision-style RandomResizedCrop redraws the area on retries, which lowers the figure.

For crops it also reports the mean distance between the two top-left corners (the paper's appendix E),
the mean IoU of the two boxes and the fallback rate. Output: a small table and, with ``--json``, a file.
"""

from __future__ import annotations

import argparse
import json
import math
import textwrap
from pathlib import Path
from typing import Any

import torch

from ..sampling.recipes import blur_policy, crop_policy
from .common import (
    PAPER_BEYOND_2_RANDOM,
    PAPER_CORNER_DISTANCE,
    PAPER_CORNER_SETTING,
    add_seed_argument,
    analytic_beyond,
    box_iou,
    check_image_size,
    check_pairs,
    check_range,
    corner_distance,
    fmt_pct,
    generator,
    misprint_explanation,
    pair_ratio,
    realised_area,
    validate_beta,
)

#: pairs drawn per call of the sampler (bounds memory for very large --pairs)
CHUNK = 250_000
KS = (2.0, 3.0)


class _Acc:
    """Running sums over chunks of pairs."""

    def __init__(self) -> None:
        self.n = 0
        self.sums: dict[str, float] = {}

    def add(self, name: str, values: torch.Tensor) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + float(values.double().sum())

    def mean(self, name: str) -> float:
        return self.sums[name] / self.n


def _chunks(pairs: int) -> list[int]:
    return [min(CHUNK, pairs - s) for s in range(0, pairs, CHUNK)]


def _paper_distance(kind: str, beta: float, image_hw: tuple[int, int], scale: tuple[float, float],
                    ratio: tuple[float, float]) -> float | None:
    """The paper's appendix-E corner distance when the setting is exactly the paper's, else None."""
    s = PAPER_CORNER_SETTING
    same = (tuple(image_hw) == s["image_hw"] and all(math.isclose(a, b) for a, b in zip(scale, s["scale"]))
            and all(math.isclose(a, b) for a, b in zip(ratio, s["ratio"])))
    if not same:
        return None
    return PAPER_CORNER_DISTANCE.get("random" if kind == "random" else float(beta))


def _corner_distance(kind: str, beta: float, scale: tuple[float, float], ratio: tuple[float, float],
                     image_hw: tuple[int, int], pairs: int, seed: int, bound: str,
                     fallback: str) -> tuple[float, float]:
    """(mean, standard error) of the corner distance of a crop policy (same draws as :func:`crop_stats`)."""
    policy = crop_policy(kind, beta=beta, scale=scale, ratio=ratio, size=1, bound=bound, fallback=fallback)
    gen = generator(seed)
    s = s2 = 0.0
    for n in _chunks(pairs):
        d = corner_distance(policy.sample(torch.tensor([image_hw], dtype=torch.int64).expand(n, 2), gen)).double()
        s, s2 = s + float(d.sum()), s2 + float((d * d).sum())
    mean = s / pairs
    return mean, math.sqrt(max(s2 / pairs - mean * mean, 0.0)) / math.sqrt(pairs)


def crop_stats(
    kind: str = "joint",
    beta: float = 0.0,
    *,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    image_hw: tuple[int, int] = (224, 224),
    pairs: int = 200_000,
    seed: int = 0,
    bound: str = "paper",
    fallback: str = "whole",
) -> dict[str, Any]:
    """Difficulty statistics of RandomResizedCrop (``kind="random"``) or J-Crop(beta) (``"joint"``)."""
    beta = validate_beta(beta)
    scale = check_range(scale, "--scale", upper=1.0)
    ratio = check_range(ratio, "--ratio")
    image_hw = check_image_size(image_hw)
    pairs = check_pairs(pairs)
    policy = crop_policy(kind, beta=beta, scale=scale, ratio=ratio, size=1, bound=bound, fallback=fallback)
    gen = generator(seed)
    acc = _Acc()
    for n in _chunks(pairs):
        p = policy.sample(torch.tensor([image_hw], dtype=torch.int64).expand(n, 2), gen)
        acc.n += n
        law_r = pair_ratio(p.extra["target_area"])
        real_r = pair_ratio(realised_area(p))
        for k in KS:
            acc.add(f"law>{k:g}", law_r > k)
            acc.add(f"real>{k:g}", real_r > k)
        d = corner_distance(p)
        acc.add("dist", d)
        acc.add("dist2", d * d)
        acc.add("iou", box_iou(p))
        acc.add("fallback", p.fallback[:, :2].double().mean(dim=1))
    dist = acc.mean("dist")
    dist_std = math.sqrt(max(acc.mean("dist2") - dist * dist, 0.0))
    lo, hi = scale
    paper_d = _paper_distance(kind, beta, image_hw, scale, ratio)
    by_bound = None
    if paper_d is not None and kind == "joint":  # which JC bound reproduces the appendix-E figure
        by_bound = {}
        for b in ("paper", "code"):
            m, sem = ((dist, dist_std / math.sqrt(pairs)) if b == bound else
                      _corner_distance(kind, beta, scale, ratio, image_hw, pairs, seed, b, fallback))
            by_bound[b] = {"mean": m, "sem": sem, "diff": m - paper_d,
                           # the paper rounds to 0.1 px (+-0.05); allow 3 standard errors of sampling noise
                           "consistent": abs(m - paper_d) <= 0.05 + 3 * sem}
        by_bound["closer"] = min(("paper", "code"), key=lambda b: abs(by_bound[b]["diff"]))
    out: dict[str, Any] = {
        "command": "stats", "aug": "crop", "policy": policy.name, "kind": kind, "beta": beta,
        "scale": list(scale), "ratio": list(ratio), "image_hw": list(image_hw), "pairs": pairs, "seed": seed,
        "bound": bound, "fallback": fallback,
        "law": {f"beyond_{k:g}": acc.mean(f"law>{k:g}") for k in KS}
        | {"source": "sampled area fractions (params.extra['target_area']), before rounding/rejection/fallback"},
        "realised": {f"beyond_{k:g}": acc.mean(f"real>{k:g}") for k in KS}
        | {"source": "box areas after rounding, aspect rejection and fallback"},
        "analytic": {f"beyond_{k:g}": analytic_beyond(kind, beta, lo, hi, k, bound) for k in KS}
        | {"law": (f"JC({beta:g}) on [{lo:g}, {hi:g}], bound={bound}" if kind == "joint"
                   else f"iid Uniform[{lo:g}, {hi:g}]")},
        "corner_distance_px": {"mean": dist, "std": dist_std, "sem": dist_std / math.sqrt(pairs)},
        "iou_mean": acc.mean("iou"),
        "fallback_rate": acc.mean("fallback"),
        "paper": {"corner_distance_px": paper_d, "corner_distance_by_bound": by_bound,
                  "beyond_2_text": PAPER_BEYOND_2_RANDOM if kind == "random" else None},
        "misprint": misprint_explanation(),
    }
    return out


def blur_stats(
    kind: str = "joint",
    beta: float = 0.0,
    *,
    sigma: tuple[float, float] = (0.1, 2.0),
    pairs: int = 200_000,
    seed: int = 0,
    bound: str = "paper",
) -> dict[str, Any]:
    """Ratio statistics of the two views' blur sigmas: independent (``"random"``) or J-Blur(beta)."""
    beta = validate_beta(beta)
    sigma = check_range(sigma, "--sigma")
    pairs = check_pairs(pairs)
    policy = blur_policy(kind, beta=beta, sigma=sigma, size=1, bound=bound)
    gen = generator(seed)
    acc = _Acc()
    for n in _chunks(pairs):
        p = policy.sample(torch.ones(n, 2, dtype=torch.int64), gen)
        acc.n += n
        r = pair_ratio(p.blur_sigma)
        for k in KS:
            acc.add(f"law>{k:g}", r > k)
        acc.add("absdiff", (p.blur_sigma[:, 0] - p.blur_sigma[:, 1]).abs())
    lo, hi = sigma
    return {
        "command": "stats", "aug": "blur", "policy": policy.name, "kind": kind, "beta": beta,
        "sigma": list(sigma), "pairs": pairs, "seed": seed, "bound": bound,
        "law": {f"beyond_{k:g}": acc.mean(f"law>{k:g}") for k in KS}
        | {"source": "sampled sigmas (params.blur_sigma); used as drawn, so law = realised"},
        "analytic": {f"beyond_{k:g}": analytic_beyond(kind, beta, lo, hi, k, bound) for k in KS}
        | {"law": (f"JC({beta:g}) on [{lo:g}, {hi:g}], bound={bound}" if kind == "joint"
                   else f"iid Uniform[{lo:g}, {hi:g}]")},
        "sigma_abs_diff_mean": acc.mean("absdiff"),
    }


def format_table(s: dict[str, Any]) -> str:
    """The human-readable table of a ``crop_stats`` / ``blur_stats`` result."""
    what = "area" if s["aug"] == "crop" else "sigma"
    lines = []
    if s["aug"] == "crop":
        h, w = s["image_hw"]
        lines.append(f"{s['policy']} on {h}x{w}, scale ({s['scale'][0]:g}, {s['scale'][1]:g}), aspect "
                     f"({s['ratio'][0]:.4g}, {s['ratio'][1]:.4g}), fallback {s['fallback']}, "
                     f"{s['pairs']} pairs, seed {s['seed']}")
        lines.append(f"{'':28s}{'law (sampled)':>15s}{'realised':>11s}{'analytic':>11s}")
        for k in KS:
            key = f"beyond_{k:g}"
            lines.append(f"{f'P({what} ratio > {k:g}:1)':28s}{fmt_pct(s['law'][key]):>15s}"
                         f"{fmt_pct(s['realised'][key]):>11s}{fmt_pct(s['analytic'][key]):>11s}")
        d = s["corner_distance_px"]
        paper = s["paper"]["corner_distance_px"]
        ref = f"   (paper, appendix E: {paper:g} px)" if paper is not None else ""
        lines.append(f"{'mean corner distance':28s}{d['mean']:>12.2f} px  +- {d['sem']:.2f} (s.e.){ref}")
        by = s["paper"].get("corner_distance_by_bound")
        if by:
            parts = [f"bound={b} {by[b]['mean']:.2f} px ({by[b]['diff']:+.2f}"
                     f"{', consistent' if by[b]['consistent'] else ''})" for b in ("paper", "code")]
            lines.append(f"{'appendix E figure by bound':28s}{' ':>4s}{'; '.join(parts)}; closer: bound={by['closer']}")
        lines.append(f"{'mean IoU of the two boxes':28s}{s['iou_mean']:>15.4f}")
        lines.append(f"{'fallback rate (per view)':28s}{fmt_pct(s['fallback_rate']):>15s}")
        lines.append(f"analytic law: {s['analytic']['law']}")
        lines.extend(textwrap.wrap(s["misprint"]["text"], 100, subsequent_indent="  "))
    else:
        lines.append(f"{s['policy']}, sigma ({s['sigma'][0]:g}, {s['sigma'][1]:g}), {s['pairs']} pairs, "
                     f"seed {s['seed']}")
        lines.append(f"{'':28s}{'sampled':>15s}{'analytic':>11s}")
        for k in KS:
            key = f"beyond_{k:g}"
            lines.append(f"{f'P({what} ratio > {k:g}:1)':28s}{fmt_pct(s['law'][key]):>15s}"
                         f"{fmt_pct(s['analytic'][key]):>11s}")
        lines.append(f"{'mean |sigma1 - sigma2|':28s}{s['sigma_abs_diff_mean']:>15.4f}")
        lines.append(f"analytic law: {s['analytic']['law']}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--aug", choices=("crop", "blur"), default="crop", help="which parameter (default crop)")
    parser.add_argument("--kind", choices=("random", "joint"), default="joint",
                        help="random = independent views (RandomResizedCrop / blur), joint = JC(beta)")
    parser.add_argument("--beta", type=float, default=0.0, help="beta of JC(beta), any finite number (default 0)")
    parser.add_argument("--scale", type=float, nargs=2, default=(0.2, 1.0), metavar=("MIN", "MAX"),
                        help="crop area range as fractions of the image, in (0, 1] (default 0.2 1)")
    parser.add_argument("--ratio", type=float, nargs=2, default=(3 / 4, 4 / 3), metavar=("MIN", "MAX"),
                        help="crop aspect range (default 3/4 4/3)")
    parser.add_argument("--sigma", type=float, nargs=2, default=(0.1, 2.0), metavar=("MIN", "MAX"),
                        help="blur sigma range, positive (default 0.1 2)")
    parser.add_argument("--image-size", type=int, nargs=2, default=(224, 224), metavar=("H", "W"),
                        help="source image size (default 224 224)")
    parser.add_argument("--pairs", type=int, default=200_000, help="number of pairs (default 200000)")
    add_seed_argument(parser)
    parser.add_argument("--bound", choices=("paper", "code"), default="paper",
                        help="JC support: paper ln(max/min), or code ln(max/min - 0.1) (the released code's at "
                             "beta 0; reproduces the paper's appendix-E distances at every beta)")
    parser.add_argument("--fallback", choices=("whole", "center"), default="whole",
                        help="J-Crop view with no valid box in 10 attempts: whole image (default) or centre crop")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures as JSON")


def main(args: argparse.Namespace) -> int:
    if args.aug == "crop":
        s = crop_stats(args.kind, args.beta, scale=tuple(args.scale), ratio=tuple(args.ratio),
                       image_hw=tuple(args.image_size), pairs=args.pairs, seed=args.seed, bound=args.bound,
                       fallback=args.fallback)
    else:
        s = blur_stats(args.kind, args.beta, sigma=tuple(args.sigma), pairs=args.pairs, seed=args.seed,
                       bound=args.bound)
    print(format_table(s))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(s, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
