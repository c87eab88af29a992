"""Couplings: how one scalar parameter of two chosen views is drawn jointly (spec section 5).

A coupling is ``Coupling(param, views, law)``. ``law`` is one of

- :class:`Independent` — each view draws Uniform[lo, hi] on its own (the baseline);
- :class:`RatioLaw` — JC(beta) on ln(x_j / x_i) (J-Crop, J-Blur, J-Color);
- :class:`FixedRatio` — the ratio of the two values fixed (SDF versus area ratio, paper Fig. 2);
- :class:`Same` — view j copies view i (LooC's shared augmentation); for a whole group of
  parameters (``"color"``, ``"crop"``, ``"blur"``...) every field of the group is copied;
- :class:`UserJoint` — any user function ``fn(n, lo, hi, generator) -> (x_i, x_j)``.

Scalar parameters: ``scale`` (crop area fraction), ``sigma`` (blur), ``brightness``, ``contrast``,
``saturation``, ``hue``. Groups for :class:`Same`: see :data:`GROUPS` (``"rotation"``: the quarter
turns; ``"crop_mean"``: the per-image mean of the multi-object Gaussian crops, MGCC / MCGCC).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .laws import IndependentUniformLaw, JCLaw

#: Scalar parameters a ratio law / independent / user law can couple.
SCALAR_PARAMS = ("scale", "sigma", "brightness", "contrast", "saturation", "hue")

#: Groups of ViewParams fields that a Same coupling copies together.
GROUPS: dict[str, tuple[str, ...]] = {
    "crop": ("box", "fallback", "clip"),
    "position": ("box", "clip"),
    "rotation": ("rotation",),
    "flip": ("flip",),
    "color": ("color_apply", "brightness", "contrast", "saturation", "hue", "color_order"),
    "gray": ("gray",),
    "blur": ("blur_sigma", "blur_apply"),
    "solarize": ("solarize",),
    "scale": (),  # handled on the scalar before boxes are drawn
    "crop_mean": (),  # GCC family: the Gaussian's mean, shared before the centres are drawn (MGCC)
    "sigma": ("blur_sigma",),
    "brightness": ("brightness",),
    "contrast": ("contrast",),
    "saturation": ("saturation",),
    "hue": ("hue",),
}


class Law:
    """Base class of a joint law for one scalar parameter of two views."""

    def sample_pair(self, n: int, lo: float, hi: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


@dataclass(frozen=True)
class Independent(Law):
    """x_i, x_j independent Uniform[lo, hi] (what every baseline does)."""

    def sample_pair(self, n, lo, hi, generator):
        if lo == hi:
            v = torch.full((n,), float(lo), dtype=torch.float64)
            return v, v.clone()
        return IndependentUniformLaw(lo, hi).sample(n, generator)


@dataclass(frozen=True)
class RatioLaw(Law):
    """JC(beta) on the log ratio of the two values (spec section 1)."""

    beta: float = 0.0
    bound: str = "paper"

    def __post_init__(self) -> None:
        JCLaw(self.beta, 0.2, 1.0, self.bound)  # validates beta and bound early, with a clear message

    def law(self, lo: float, hi: float) -> JCLaw:
        return JCLaw(self.beta, lo, hi, self.bound)

    def sample_pair(self, n, lo, hi, generator):
        if lo == hi:  # a fixed value: both views get it (JC(beta) itself needs lo < hi for bound="code")
            v = torch.full((n,), float(lo), dtype=torch.float64)
            return v, v.clone()
        return self.law(lo, hi).sample(n, generator)


@dataclass(frozen=True)
class FixedRatio(Law):
    """max(x_i, x_j) / min(x_i, x_j) = ``ratio`` exactly (the paper's Fig. 2 pairs); a fair coin picks
    the larger view and the smaller value is uniform on [lo, hi / ratio], so both stay in range."""

    ratio: float = 1.0

    def __post_init__(self) -> None:
        r = self.ratio
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or r < 1:
            raise ValueError(f"FixedRatio: ratio must be a finite number >= 1 (the larger over the smaller "
                             f"value), got {r!r}")

    def check(self, lo: float, hi: float) -> None:
        """Raise a ValueError naming the range when ``ratio`` does not fit in [lo, hi]."""
        if self.ratio > hi / lo * (1 + 1e-12):
            raise ValueError(f"FixedRatio: ratio {self.ratio:g} does not fit in the range [{lo:g}, {hi:g}] "
                             f"(at most hi/lo = {hi / lo:g})")

    def sample_pair(self, n, lo, hi, generator):
        self.check(lo, hi)
        u, coin = torch.rand(2, n, generator=generator, dtype=torch.float64)
        small = lo + u * (min(hi / self.ratio, hi) - lo)
        big = (small * self.ratio).clamp(lo, hi)  # clamp only removes rounding at the upper end
        first_small = coin < 0.5
        return torch.where(first_small, small, big), torch.where(first_small, big, small)


@dataclass(frozen=True)
class Same(Law):
    """View j gets exactly view i's value (or, for a group, every field of view i)."""

    def sample_pair(self, n, lo, hi, generator):
        v = Independent().sample_pair(n, lo, hi, generator)[0]
        return v, v.clone()


@dataclass(frozen=True)
class UserJoint(Law):
    """A user-supplied joint sampler ``fn(n, lo, hi, generator) -> (x_i, x_j)`` (values are checked)."""

    fn: Callable[[int, float, float, torch.Generator], tuple[Tensor, Tensor]]

    def sample_pair(self, n, lo, hi, generator):
        out = self.fn(n, lo, hi, generator)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ValueError(f"UserJoint function {self.fn!r} must return a pair of tensors, got {type(out)}")
        a, b = (torch.as_tensor(t, dtype=torch.float64).reshape(-1) for t in out)
        if a.numel() != n or b.numel() != n:
            raise ValueError(f"UserJoint function {self.fn!r} returned {a.numel()} and {b.numel()} values, "
                             f"expected {n}")
        return a, b


@dataclass(frozen=True)
class Coupling:
    """Couple parameter ``param`` of views ``views = (i, j)`` with ``law``."""

    param: str
    views: tuple[int, int] = (0, 1)
    law: Law = field(default_factory=RatioLaw)

    def __post_init__(self) -> None:
        if isinstance(self.law, Same):
            if self.param not in GROUPS:
                raise ValueError(f"Same coupling: unknown parameter or group {self.param!r}; "
                                 f"choose from {sorted(GROUPS)}")
        elif self.param not in SCALAR_PARAMS:
            raise ValueError(f"coupling: unknown scalar parameter {self.param!r}; choose from {SCALAR_PARAMS}")
        if not isinstance(self.law, Law):
            raise ValueError(f"coupling law must be a jointaug Law (Independent, RatioLaw, Same, UserJoint), "
                             f"got {self.law!r}")
        i, j = self.views
        if i == j or i < 0 or j < 0:
            raise ValueError(f"coupling views must be two distinct non-negative view indices, got {self.views}")
