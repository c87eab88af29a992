"""``jointaug plot``: the paper's Fig. 3 (log area-ratio densities) and appendix Fig. 7 (corner distance).

- ``fig3_log_ratio_density.png``: density of ln(s2 / s1) for RandomCrop (iid uniform areas) and
  J-Crop(beta) for each ``--betas``: histograms of the areas drawn by the real sampler (law level, and
  the realised box areas as thin outlines) over the exact density of the law.
- ``fig7_corner_distance.png``: mean distance between the two crops' top-left corners versus beta
  (224x224, scale (0.2, 1), aspect (3/4, 4/3)), with the RandomResizedCrop level and the paper's
  appendix-E figures as labelled reference markers.
- ``plots.json``: every plotted number.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..sampling.laws import IndependentUniformLaw, JCLaw
from ..sampling.recipes import crop_policy
from .common import (
    PAPER_CORNER_DISTANCE,
    PAPER_CORNER_SETTING,
    add_seed_argument,
    check_pairs,
    check_range,
    corner_distance,
    generator,
    realised_area,
    validate_beta,
)

DEFAULT_BETAS = (-2.0, -1.0, 0.0, 1.0, 2.0)
DEFAULT_DISTANCE_BETAS = tuple(float(b) for b in np.arange(-4.0, 4.0001, 0.5))


def _round(x: Any, nd: int = 6) -> Any:
    """Floats (also inside lists) rounded for a compact JSON."""
    if isinstance(x, float):
        return round(x, nd)
    if isinstance(x, (list, tuple)):
        return [_round(v, nd) for v in x]
    if isinstance(x, dict):
        return {k: _round(v, nd) for k, v in x.items()}
    return x


def _sample(kind: str, beta: float, scale: tuple[float, float], image_hw: tuple[int, int], pairs: int,
            seed: int, ratio: tuple[float, float] = (3 / 4, 4 / 3)):
    policy = crop_policy(kind, beta=beta, scale=scale, ratio=ratio, size=1)
    hw = torch.tensor([image_hw], dtype=torch.int64).expand(pairs, 2)
    return policy.sample(hw, generator(seed))


def log_ratio_density_data(
    betas: tuple[float, ...] = DEFAULT_BETAS,
    *,
    scale: tuple[float, float] = (0.2, 1.0),
    image_hw: tuple[int, int] = (224, 224),
    pairs: int = 100_000,
    seed: int = 0,
    bins: int = 60,
) -> dict[str, Any]:
    """Histograms of ln(s2/s1) (law and realised) and the exact densities, per law (RandomCrop first)."""
    betas = tuple(validate_beta(b, "--betas") for b in betas)
    scale = check_range(scale, "--scale", upper=1.0)
    check_pairs(pairs)
    lo, hi = scale
    s_b = math.log(hi / lo) if hi > lo else 1e-3
    edges = np.linspace(-s_b, s_b, bins + 1)
    grid = np.linspace(-s_b, s_b, 401)
    laws = []
    for kind, beta in [("random", 0.0)] + [("joint", b) for b in betas]:
        p = _sample(kind, beta, scale, image_hw, pairs, seed)
        law_l = torch.log(p.extra["target_area"][:, 1].double() / p.extra["target_area"][:, 0].double()).numpy()
        a = realised_area(p)
        real_l = torch.log(a[:, 1] / a[:, 0]).numpy()
        law_h, _ = np.histogram(law_l, bins=edges, density=True)
        real_h, _ = np.histogram(np.clip(real_l, -s_b, s_b), bins=edges, density=True)
        if hi > lo:
            law = IndependentUniformLaw(lo, hi) if kind == "random" else JCLaw(beta, lo, hi)
            pdf, beyond = law.log_ratio_pdf(grid), law.prob_beyond(2.0)
        else:
            pdf, beyond = np.zeros_like(grid), 0.0
        laws.append({
            "name": "RandomCrop (iid uniform)" if kind == "random" else f"J-Crop({beta:g})",
            "kind": kind, "beta": beta,
            "analytic_beyond_2": beyond,
            "law_beyond_2": float(np.mean(np.abs(law_l) > math.log(2.0))),
            "realised_beyond_2": float(np.mean(np.abs(real_l) > math.log(2.0))),
            "law_density": law_h.tolist(), "realised_density": real_h.tolist(), "analytic_pdf": pdf.tolist(),
        })
    return {"scale": list(scale), "image_hw": list(image_hw), "pairs": pairs, "seed": seed,
            "bin_edges": edges.tolist(), "grid": grid.tolist(), "laws": laws}


def corner_distance_data(
    betas: tuple[float, ...] = DEFAULT_DISTANCE_BETAS,
    *,
    pairs: int = 100_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean corner distance (px) of J-Crop(beta) per beta and of RandomResizedCrop, in appendix E's setting."""
    betas = tuple(validate_beta(b, "--distance-betas") for b in betas)
    check_pairs(pairs)
    s = PAPER_CORNER_SETTING
    out: dict[str, Any] = {"setting": {k: list(v) for k, v in s.items()}, "pairs": pairs, "seed": seed,
                           "betas": list(betas), "mean": [], "sem": []}
    for kind, beta in [("random", 0.0)] + [("joint", b) for b in betas]:
        d = corner_distance(_sample(kind, beta, s["scale"], s["image_hw"], pairs, seed, s["ratio"]))
        mean, sem = float(d.mean()), float(d.std() / math.sqrt(pairs))
        if kind == "random":
            out["random"] = {"mean": mean, "sem": sem}
        else:
            out["mean"].append(mean)
            out["sem"].append(sem)
    out["paper"] = {"random": PAPER_CORNER_DISTANCE["random"],
                    "betas": [k for k in PAPER_CORNER_DISTANCE if k != "random"],
                    "mean": [v for k, v in PAPER_CORNER_DISTANCE.items() if k != "random"]}
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_log_ratio_density(data: dict[str, Any], path: Path) -> Path:
    """Fig. 3: all laws overlaid (top) and one panel per law with its histograms (bottom)."""
    plt = _pyplot()
    laws = data["laws"]
    edges, grid = np.asarray(data["bin_edges"]), np.asarray(data["grid"])
    fig = plt.figure(figsize=(2.3 * len(laws), 6.4), dpi=80)
    gs = fig.add_gridspec(2, len(laws), height_ratios=(1.3, 1.0), hspace=0.55, wspace=0.3)
    top = fig.add_subplot(gs[0, :])
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, max(len(laws) - 1, 1)))
    for n, law in enumerate(laws):
        c = "tab:green" if law["kind"] == "random" else colors[n - 1]
        ls = ":" if law["kind"] == "random" else "-"
        label = f"{law['name']}: P(>2:1) = {100 * law['analytic_beyond_2']:.1f}%"
        top.plot(grid, law["analytic_pdf"], ls, color=c, lw=2, label=label)
        top.stairs(law["law_density"], edges, color=c, alpha=0.5, lw=0.8)
    lo, hi = data["scale"]
    top.set_title(f"density of ln(s2/s1), scale ({lo:g}, {hi:g}): exact law (lines) and "
                  f"{data['pairs']} sampled pairs (steps)")
    top.set_xlabel("ln(s2 / s1)")
    top.set_ylabel("density")
    top.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for n, law in enumerate(laws):
        ax = fig.add_subplot(gs[1, n])
        ax.stairs(law["law_density"], edges, fill=True, color="0.75", label="sampled areas")
        ax.stairs(law["realised_density"], edges, color="tab:red", lw=0.8, label="realised boxes")
        ax.plot(grid, law["analytic_pdf"], color="k", lw=1.2, label="exact law")
        ax.set_title(f"{law['name'].split(' (')[0]}\n> 2:1: law {100 * law['law_beyond_2']:.1f}%\n"
                     f"realised {100 * law['realised_beyond_2']:.1f}%", fontsize=8)
        ax.tick_params(labelsize=7)
        if n == len(laws) - 1:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.05, 1.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_corner_distance(data: dict[str, Any], path: Path) -> Path:
    """Appendix Fig. 7: mean top-left-corner distance versus beta, RandomResizedCrop as a horizontal line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=80)
    ax.errorbar(data["betas"], data["mean"], yerr=data["sem"], fmt="o-", ms=4, color="tab:blue",
                label=f"J-Crop(beta), measured ({data['pairs']} pairs)")
    ax.axhline(data["random"]["mean"], color="tab:green", ls="--",
               label=f"RandomResizedCrop, measured: {data['random']['mean']:.1f} px")
    ax.plot(data["paper"]["betas"], data["paper"]["mean"], "x", color="tab:red", ms=8, mew=2,
            label="paper, appendix E (published figures)")
    ax.axhline(data["paper"]["random"], color="tab:red", ls=":", lw=1,
               label=f"paper: RandomResizedCrop ~{data['paper']['random']:g} px")
    h, w = data["setting"]["image_hw"]
    ax.set_title(f"mean distance between the two crops' top-left corners ({h}x{w}, scale (0.2, 1))", fontsize=9)
    ax.set_xlabel("beta")
    ax.set_ylabel("mean corner distance (px)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("jointaug_plots"),
                        help="output folder (default jointaug_plots/)")
    parser.add_argument("--betas", type=float, nargs="+", default=list(DEFAULT_BETAS),
                        help="J-Crop betas of the density figure (default -2 -1 0 1 2)")
    parser.add_argument("--distance-betas", type=float, nargs="+", default=list(DEFAULT_DISTANCE_BETAS),
                        help="betas of the corner-distance figure (default -4 to 4 by 0.5)")
    parser.add_argument("--scale", type=float, nargs=2, default=(0.2, 1.0), metavar=("MIN", "MAX"),
                        help="area range of the density figure (default 0.2 1)")
    parser.add_argument("--pairs", type=int, default=100_000, help="pairs per law (default 100000)")
    parser.add_argument("--bins", type=int, default=60, help="histogram bins of the density figure (default 60)")
    add_seed_argument(parser)


def main(args: argparse.Namespace) -> int:
    if args.bins < 1:
        raise ValueError(f"--bins must be a positive integer, got {args.bins}")
    dens = log_ratio_density_data(tuple(args.betas), scale=tuple(args.scale), pairs=args.pairs, seed=args.seed,
                                  bins=args.bins)
    dist = corner_distance_data(tuple(args.distance_betas), pairs=args.pairs, seed=args.seed)
    out: Path = args.out
    f3 = plot_log_ratio_density(dens, out / "fig3_log_ratio_density.png")
    f7 = plot_corner_distance(dist, out / "fig7_corner_distance.png")
    js = out / "plots.json"
    js.write_text(json.dumps(_round({"fig3": dens, "fig7": dist}), indent=1) + "\n")
    for law in dens["laws"]:
        print(f"{law['name']:26s} P(area ratio > 2:1): exact {100 * law['analytic_beyond_2']:6.2f}%  "
              f"sampled {100 * law['law_beyond_2']:6.2f}%  realised {100 * law['realised_beyond_2']:6.2f}%")
    paper = {k: v for k, v in PAPER_CORNER_DISTANCE.items() if k != "random"}
    print(f"{'RandomResizedCrop':26s} mean corner distance {dist['random']['mean']:6.2f} px "
          f"(paper {PAPER_CORNER_DISTANCE['random']:g})")
    for b, m in zip(dist["betas"], dist["mean"]):
        ref = f" (paper {paper[b]:g})" if b in paper else ""
        print(f"{f'J-Crop({b:g})':26s} mean corner distance {m:6.2f} px{ref}")
    print(f"wrote {f3}, {f7}, {js}")
    return 0
