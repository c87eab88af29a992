"""Shared pieces of the analysis commands: pair statistics, argument checks, the paper's reference figures.

Everything here works on :class:`~jointaug.sampling.params.ViewParams` drawn by the real samplers, so the
figures the commands print are measured, never copied; the paper's published numbers live in
``PAPER_*`` constants and are only shown next to the measurements.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from fractions import Fraction

import torch
from torch import Tensor

from ..sampling.laws import IndependentUniformLaw, JCLaw, check_beta
from ..sampling.params import ViewParams

#: Appendix E of the paper: mean distance (px) between the two crops' top-left corners, 224x224 image,
#: scale (0.2, 1), aspect (3/4, 4/3). Key "random" is RandomResizedCrop, numbers are J-Crop(beta).
PAPER_CORNER_DISTANCE: dict[str | float, float] = {
    "random": 46.0, -4.0: 79.0, -2.0: 67.8, -1.0: 61.7, 0.0: 59.2, 1.0: 56.5, 2.0: 50.3, 4.0: 40.5,
}
#: The setting of appendix E (image H, W; scale; aspect range).
PAPER_CORNER_SETTING = {"image_hw": (224, 224), "scale": (0.2, 1.0), "ratio": (3 / 4, 4 / 3)}
#: The paper's text: P(area ratio beyond 2:1) for RandomCrop with scale (0.2, 1) (see ``misprint_explanation``).
PAPER_BEYOND_2_RANDOM = 0.1875


# ---------------------------------------------------------------------------------------------- statistics
def pair_ratio(x: Tensor) -> Tensor:
    """max / min of the first two views' values ([N, V] -> [N], float64): the pair's ratio, either way."""
    x = x[:, :2].double()
    return x.max(dim=1).values / x.min(dim=1).values


def prob_beyond(ratio: Tensor, k: float) -> float:
    """Fraction of pairs whose ratio (max/min) exceeds k."""
    return float((ratio > k).double().mean())


def realised_area(params: ViewParams) -> Tensor:
    """[N, V] float64 area fractions of the sampled boxes (after rounding, aspect rejection, fallback)."""
    hw = params.image_hw.double()
    return params.box[..., 2].double() * params.box[..., 3].double() / (hw[:, 0] * hw[:, 1])[:, None]


def corner_distance(params: ViewParams) -> Tensor:
    """[N] Euclidean distance (px) between the top-left corners of views 0 and 1."""
    b = params.box.double()
    return (b[:, 0, :2] - b[:, 1, :2]).norm(dim=-1)


def box_iou(params: ViewParams) -> Tensor:
    """[N] intersection over union of the boxes of views 0 and 1."""
    b = params.box.double()
    x0, y0 = b[..., 0], b[..., 1]
    x1, y1 = x0 + b[..., 2], y0 + b[..., 3]
    iw = (torch.minimum(x1[:, 0], x1[:, 1]) - torch.maximum(x0[:, 0], x0[:, 1])).clamp(min=0)
    ih = (torch.minimum(y1[:, 0], y1[:, 1]) - torch.maximum(y0[:, 0], y0[:, 1])).clamp(min=0)
    inter = iw * ih
    area = b[..., 2] * b[..., 3]
    return inter / (area[:, 0] + area[:, 1] - inter)


def analytic_beyond(kind: str, beta: float, lo: float, hi: float, k: float, bound: str = "paper") -> float:
    """Exact P(ratio > k) of the sampled law: JC(beta) for ``kind="joint"``, iid uniform for ``"random"``."""
    if lo == hi:
        return 0.0  # a one-point range: every pair has ratio 1
    law = JCLaw(beta, lo, hi, bound) if kind == "joint" else IndependentUniformLaw(lo, hi)
    return law.prob_beyond(k)


# ---------------------------------------------------------------------------------------------- 18.75 %
def appendix_cdf(x: Fraction, x_last: Fraction | None = None) -> Fraction:
    """The appendix-H CDF of s1/s2 for iid U[0.2, 1]: F(x) = 25x/32 - 5/16 + 1/(32 x), x in [0.2, 1].

    ``x_last`` replaces x in the last term only (to reproduce the paper's slip); exact rational arithmetic.
    """
    x_last = x if x_last is None else x_last
    return Fraction(25, 32) * x - Fraction(5, 16) + 1 / (32 * x_last)


def misprint_explanation() -> dict[str, float | str]:
    """Where the paper's "18.75%" comes from, computed from the appendix formula (not hard-coded)."""
    half, two = Fraction(1, 2), Fraction(2)
    wrong = 2 * appendix_cdf(half, x_last=two)
    right = 2 * appendix_cdf(half)
    exact = IndependentUniformLaw(0.2, 1.0).prob_beyond(2.0)  # independent check from the law itself
    text = (f'paper\'s "18.75%" = 2*(25/64 - 5/16 + 1/64) = {float(wrong):.4%}: the appendix CDF '
            f"F(x) = 25x/32 - 5/16 + 1/(32x) with x = 2 in the last term instead of x = 1/2; "
            f"the correct P(beyond 2:1) for iid U[0.2, 1] is 2*F(1/2) = {right} = {float(right):.4%} "
            f"(law: {exact:.4%})")
    return {"paper_value": float(wrong), "correct_value": float(right), "correct_fraction": str(right),
            "law_value": exact, "text": text}


# ---------------------------------------------------------------------------------------------- arguments
def check_pairs(n: int, what: str = "--pairs") -> int:
    """A positive number of pairs, or a ValueError naming the value."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{what} must be a positive integer, got {n!r}")
    return n


def check_image_size(hw: Sequence[int], what: str = "--image-size") -> tuple[int, int]:
    """(H, W) with both sides >= 1, or a ValueError naming the value."""
    h, w = (int(v) for v in hw)
    if h < 1 or w < 1:
        raise ValueError(f"{what} must be two positive integers H W, got {h} {w}: an image needs at least one pixel")
    return h, w


def check_range(pair: Sequence[float], what: str, *, upper: float | None = None) -> tuple[float, float]:
    """A finite (min, max) range with 0 < min <= max (<= upper), or a ValueError naming the value."""
    lo, hi = (float(v) for v in pair)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{what} must be finite, got {lo} {hi}")
    if lo > hi:
        raise ValueError(f"{what}: min {lo} > max {hi}")
    if lo <= 0:
        raise ValueError(f"{what}: values must be positive, got min {lo}")
    if upper is not None and hi > upper:
        raise ValueError(f"{what}: max {hi} is above {upper} (outside (0, {upper:g}])")
    return lo, hi


def validate_beta(beta: float, what: str = "--beta") -> float:
    """beta as a float, or a ValueError naming the value when it is nan or infinite."""
    try:
        return check_beta(beta)
    except ValueError:
        raise ValueError(f"{what} must be a finite number, got {beta!r}") from None


def add_seed_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="seed of the torch.Generator (default 0)")


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (the samplers run on CPU)."""
    return torch.Generator().manual_seed(int(seed))


def fmt_pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


__all__ = [
    "PAPER_CORNER_DISTANCE", "PAPER_CORNER_SETTING", "PAPER_BEYOND_2_RANDOM", "pair_ratio", "prob_beyond",
    "realised_area", "corner_distance", "box_iou", "analytic_beyond", "appendix_cdf", "misprint_explanation",
    "check_pairs", "check_image_size", "check_range", "validate_beta", "generator",
]
