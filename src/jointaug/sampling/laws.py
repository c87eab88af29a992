"""Ratio laws between two views' scalar parameters: JC(beta) and the independent-uniform law.

JC(beta) (spec section 1) is a law on L = ln(x2 / x1) over [-s_b, s_b], s_b = ln(hi / lo):
a truncated normal of standard deviation s_b / beta for beta > 0, uniform for beta = 0, and for
beta < 0 the truncated normal of std s_b / |beta| with each half mirrored onto itself (mass pushed
to the ends: harder pairs). Given L, x1 is uniform on the interval that keeps both values in range.

Every law here has a sampler (from an explicit ``torch.Generator``) and an exact density and CDF of
the log ratio, so the samplers can be tested against the analytic law (Kolmogorov-Smirnov).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

_SQRT2 = math.sqrt(2.0)
_BETA_EPS = 1e-6  # |beta| below this is beta = 0 (the branches meet continuously there)


def _phi(x: np.ndarray | float) -> np.ndarray:
    """Standard normal CDF (vectorised, float64)."""
    return torch.special.ndtr(torch.as_tensor(np.asarray(x, dtype=np.float64))).numpy()


def _npdf(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * np.asarray(x, dtype=np.float64) ** 2) / math.sqrt(2 * math.pi)


def check_range(lo: float, hi: float, what: str = "range") -> None:
    """Raise a ValueError naming the problem unless 0 < lo <= hi are finite numbers."""
    for name, v in (("min", lo), ("max", hi)):
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{what}: {name} must be a finite number, got {v!r}")
    if lo <= 0:
        raise ValueError(f"{what}: a ratio law needs a positive lower bound, got min={lo}")
    if lo > hi:
        raise ValueError(f"{what}: min {lo} > max {hi}")


def check_beta(beta: float) -> float:
    """Return beta as float, or raise naming the value when it is not a finite number."""
    try:
        b = float(beta)
    except (TypeError, ValueError):
        raise ValueError(f"beta must be a finite number, got {beta!r}") from None
    if not math.isfinite(b):
        raise ValueError(f"beta must be a finite number, got {beta!r}")
    return b


@dataclass(frozen=True)
class JCLaw:
    """JC(beta) on [lo, hi] (spec section 1).

    ``bound="paper"`` uses s_b = ln(hi / lo) (the paper's definition). ``bound="code"`` uses the
    authors' shrunk bound s_b = ln(hi / lo - 0.1) at every beta: their released code applies it at
    beta = 0, and the paper's appendix-E corner distances for beta != 0 are reproduced (within 0.1 px)
    only with it, so the appendix was evidently made that way (``jointaug stats`` shows both). Like
    the authors' code, ``"code"`` refuses ranges with hi / lo <= 1.1, where the bound is not positive.
    Everything is checked here, at construction.
    """

    beta: float = 0.0
    lo: float = 0.2
    hi: float = 1.0
    bound: str = "paper"

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", check_beta(self.beta))
        check_range(self.lo, self.hi, "JC(beta) range")
        if self.bound not in ("paper", "code"):
            raise ValueError(f"JC(beta) bound must be 'paper' or 'code', got {self.bound!r}")
        if self.bound == "code" and not self.hi / self.lo - 0.1 > 1.0:
            raise ValueError(f"JC(beta) bound='code' uses ln(hi/lo - 0.1) and needs hi/lo > 1.1, got "
                             f"hi/lo = {self.hi}/{self.lo} = {self.hi / self.lo:.6g}")

    # ------------------------------------------------------------------ geometry of the law
    @property
    def s_b(self) -> float:
        """Half-width of the support of the log ratio."""
        k = self.hi / self.lo
        if self.bound == "code":
            k = k - 0.1
        return math.log(k)

    @property
    def _sigma(self) -> float:
        return self.s_b / abs(self.beta)

    # ------------------------------------------------------------------ sampling
    def sample_log_ratio(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws of L = ln(x2 / x1), float64."""
        s_b = self.s_b
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        if s_b == 0.0:
            return torch.zeros(n, dtype=torch.float64)
        if abs(self.beta) < _BETA_EPS:
            return (2.0 * u - 1.0) * s_b
        # truncated normal on [-s_b, s_b] with std sigma, by inverse CDF: X = sigma * Phi^-1(U')
        b = abs(self.beta)  # = s_b / sigma
        p_lo = 0.5 * math.erfc(b / _SQRT2)  # Phi(-b), accurate for large b
        x = self._sigma * torch.special.ndtri(p_lo + u * (1.0 - 2.0 * p_lo))
        x = x.clamp(-s_b, s_b)
        if self.beta > 0:
            return x
        return torch.where(x < 0, -s_b - x, s_b - x)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """n pairs (x1, x2), float64, both inside [lo, hi], with ln(x2/x1) ~ JC(beta)."""
        log_r = self.sample_log_ratio(n, generator)
        r = log_r.exp()
        a = torch.clamp(self.lo / r, min=self.lo)
        b = torch.clamp(self.hi / r, max=self.hi)
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        x1 = a + u * (b - a)
        x2 = (x1 * r).clamp(self.lo, self.hi)  # clamp only removes rounding at the ends
        return x1, x2

    # ------------------------------------------------------------------ exact law of L
    def _x_cdf(self, x: np.ndarray) -> np.ndarray:
        """CDF of the truncated normal X on [-s_b, s_b] (std sigma)."""
        s_b, sig = self.s_b, self._sigma
        z = np.clip(np.asarray(x, dtype=np.float64), -s_b, s_b) / sig
        lo = _phi(-s_b / sig)
        return (_phi(z) - lo) / (1.0 - 2.0 * lo)

    def _x_pdf(self, x: np.ndarray) -> np.ndarray:
        s_b, sig = self.s_b, self._sigma
        x = np.asarray(x, dtype=np.float64)
        z = 1.0 - 2.0 * _phi(-s_b / sig)
        return np.where(np.abs(x) <= s_b, _npdf(x / sig) / (sig * z), 0.0)

    def log_ratio_pdf(self, l: np.ndarray) -> np.ndarray:
        """Exact density of L = ln(x2/x1)."""
        l = np.asarray(l, dtype=np.float64)
        s_b = self.s_b
        if s_b == 0.0:  # lo == hi: a point mass at L = 0
            return np.where(l == 0.0, np.inf, 0.0)
        inside = np.abs(l) <= s_b
        if abs(self.beta) < _BETA_EPS:
            return np.where(inside, 1.0 / (2.0 * s_b), 0.0)
        if self.beta > 0:
            return self._x_pdf(l)
        mirrored = np.where(l <= 0, -s_b - l, s_b - l)
        return np.where(inside, self._x_pdf(mirrored), 0.0)

    def log_ratio_cdf(self, l: np.ndarray) -> np.ndarray:
        """Exact CDF of L = ln(x2/x1)."""
        s_b = self.s_b
        if s_b == 0.0:  # lo == hi: a point mass at L = 0
            return (np.asarray(l, dtype=np.float64) >= 0.0).astype(np.float64)
        l = np.clip(np.asarray(l, dtype=np.float64), -s_b, s_b)
        if abs(self.beta) < _BETA_EPS:
            return (l + s_b) / (2.0 * s_b)
        if self.beta > 0:
            return self._x_cdf(l)
        neg = 0.5 - self._x_cdf(-s_b - l)  # P(X in [-s_b - l, 0)) for l <= 0
        pos = 1.5 - self._x_cdf(s_b - l)  # 0.5 + P(X >= s_b - l) for l > 0
        return np.clip(np.where(l <= 0, neg, pos), 0.0, 1.0)

    def prob_beyond(self, k: float) -> float:
        """P(max(x1,x2)/min(x1,x2) > k), exactly."""
        if self.s_b == 0.0:  # lo == hi: the ratio is always 1
            return 0.0
        lk = math.log(k)
        p = float(1.0 - (self.log_ratio_cdf(lk) - self.log_ratio_cdf(-lk)))
        return min(1.0, max(0.0, p))  # at k = hi/lo the CDF difference is 1 up to rounding (-2e-16 seen)


@dataclass(frozen=True)
class IndependentUniformLaw:
    """x1, x2 iid Uniform[lo, hi]: the baseline's law, exact (spec section 7, appendix H)."""

    lo: float = 0.2
    hi: float = 1.0

    def __post_init__(self) -> None:
        check_range(self.lo, self.hi, "uniform range")

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        u = torch.rand(2, n, generator=generator, dtype=torch.float64)
        x = self.lo + u * (self.hi - self.lo)
        return x[0], x[1]

    def ratio_cdf(self, x: np.ndarray) -> np.ndarray:
        """CDF of X = x1/x2 on [lo/hi, hi/lo]; for (lo, hi) = (0.2, 1): 25x/32 - 5/16 + 1/(32x) below 1."""
        a, b = self.lo, self.hi
        x = np.clip(np.asarray(x, dtype=np.float64), a / b, b / a)

        def below_one(t: np.ndarray) -> np.ndarray:
            return (b * b * t + a * a / t - 2 * a * b) / (2 * (b - a) ** 2)

        with np.errstate(divide="ignore"):
            return np.where(x <= 1.0, below_one(x), 1.0 - below_one(1.0 / x))

    def ratio_pdf(self, x: np.ndarray) -> np.ndarray:
        """Density of X = x1/x2; for (0.2, 1): 25/32 - 1/(32 x^2) on [0.2, 1]."""
        a, b = self.lo, self.hi
        x = np.asarray(x, dtype=np.float64)
        inside = (x >= a / b) & (x <= b / a)
        with np.errstate(divide="ignore", invalid="ignore"):
            below = (b * b - a * a / (x * x)) / (2 * (b - a) ** 2)
            above = (b * b / (x * x) - a * a) / (2 * (b - a) ** 2)
        return np.where(inside, np.where(x <= 1.0, below, above), 0.0)

    def log_ratio_cdf(self, l: np.ndarray) -> np.ndarray:
        return self.ratio_cdf(np.exp(np.asarray(l, dtype=np.float64)))

    def log_ratio_pdf(self, l: np.ndarray) -> np.ndarray:
        x = np.exp(np.asarray(l, dtype=np.float64))
        return self.ratio_pdf(x) * x  # change of variables: f_L(l) = f_X(e^l) e^l

    def prob_beyond(self, k: float) -> float:
        """P(max/min > k) = 2 F(1/k); 9/32 = 28.125% for k = 2 on [0.2, 1]."""
        return float(2.0 * self.ratio_cdf(1.0 / k))


def make_law(beta: float | None, lo: float, hi: float, bound: str = "paper") -> JCLaw | IndependentUniformLaw:
    """JC(beta) when beta is a number, the independent-uniform law when beta is None."""
    if beta is None:
        return IndependentUniformLaw(lo, hi)
    return JCLaw(beta, lo, hi, bound)
