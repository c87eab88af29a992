"""Statistical tests of the sampling core against the exact laws and the paper's published figures.

Seeds are fixed, so each test is deterministic; the thresholds (KS p-value 1e-3, 1 point, 2 px) are
loose enough for a correct sampler and tight enough that a wrong law fails (see the power checks).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from jointaug.analysis.common import (
    PAPER_CORNER_DISTANCE,
    appendix_cdf,
    corner_distance,
    misprint_explanation,
    pair_ratio,
    prob_beyond,
    realised_area,
)
from jointaug.sampling import IndependentUniformLaw, JCLaw, crop_policy

BETAS = (-2.0, -1.0, 0.0, 1.0, 2.0)
RANGES = ((0.2, 1.0), (0.1, 2.0), (0.08, 1.0))
P_MIN = 1e-3


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _square(n: int, side: int = 224) -> torch.Tensor:
    return torch.tensor([[side, side]]).expand(n, 2)


# ---------------------------------------------------------------------------------------------- KS tests
@pytest.mark.parametrize("lo,hi", RANGES)
@pytest.mark.parametrize("beta", BETAS)
def test_jc_sampler_matches_exact_cdf(beta, lo, hi):
    law = JCLaw(beta, lo, hi)
    x1, x2 = law.sample(20_000, _gen(1))
    res = stats.kstest(torch.log(x2 / x1).numpy(), law.log_ratio_cdf)
    assert res.pvalue > P_MIN, (beta, lo, hi, res)


@pytest.mark.parametrize("beta", BETAS)
def test_crop_policy_areas_follow_jc(beta):
    """The areas the crop sampler draws (before boxes) follow JC(beta) on the scale range."""
    p = crop_policy("joint", beta=beta, scale=(0.08, 1.0)).sample(_square(10_000), _gen(2))
    s = p.extra["target_area"].double()
    res = stats.kstest(torch.log(s[:, 1] / s[:, 0]).numpy(), JCLaw(beta, 0.08, 1.0).log_ratio_cdf)
    assert res.pvalue > 1e-4, res  # areas are stored as float32: tiny rounding, still far from a wrong law


def test_code_bound_sampler_matches_its_cdf():
    law = JCLaw(0.0, 0.2, 1.0, bound="code")
    x1, x2 = law.sample(20_000, _gen(3))
    l = torch.log(x2 / x1).numpy()
    assert stats.kstest(l, law.log_ratio_cdf).pvalue > P_MIN
    assert np.abs(l).max() <= math.log(4.9) + 1e-9  # the released code's shrunk bound ln(5 - 0.1)


@pytest.mark.parametrize("lo,hi", RANGES)
def test_independent_uniform_law_matches_exact_cdf(lo, hi):
    law = IndependentUniformLaw(lo, hi)
    x1, x2 = law.sample(20_000, _gen(4))
    assert stats.kstest((x1 / x2).numpy(), law.ratio_cdf).pvalue > P_MIN
    assert stats.kstest(torch.log(x2 / x1).numpy(), law.log_ratio_cdf).pvalue > P_MIN


def test_ks_has_power_against_a_wrong_law():
    """The same test rejects samples of a neighbouring law: a broken sampler would fail."""
    x1, x2 = JCLaw(0.0, 0.2, 1.0).sample(20_000, _gen(5))
    l = torch.log(x2 / x1).numpy()
    assert stats.kstest(l, JCLaw(1.0, 0.2, 1.0).log_ratio_cdf).pvalue < P_MIN
    assert stats.kstest(l, JCLaw(-1.0, 0.2, 1.0).log_ratio_cdf).pvalue < P_MIN
    assert stats.kstest(l, IndependentUniformLaw(0.2, 1.0).log_ratio_cdf).pvalue < P_MIN


# ---------------------------------------------------------------------------------------------- support, continuity
@pytest.mark.parametrize("beta", (-50.0, -2.0, -1e-7, 0.0, 1e-7, 1.0, 50.0))
@pytest.mark.parametrize("lo,hi", RANGES)
def test_samples_stay_in_range(beta, lo, hi):
    x1, x2 = JCLaw(beta, lo, hi).sample(5_000, _gen(6))
    for x in (x1, x2):
        assert float(x.min()) >= lo and float(x.max()) <= hi


@pytest.mark.parametrize("beta", (-2.0, 0.0, 2.0))
def test_policy_areas_stay_in_scale(beta):
    p = crop_policy("joint", beta=beta, scale=(0.08, 0.5)).sample(_square(5_000), _gen(7))
    s = p.extra["target_area"]
    assert float(s.min()) >= 0.08 - 1e-6 and float(s.max()) <= 0.5 + 1e-6


def test_continuity_at_beta_zero():
    grid = np.linspace(-math.log(5), math.log(5), 201)
    uniform = JCLaw(0.0, 0.2, 1.0).log_ratio_cdf(grid)
    np.testing.assert_allclose(uniform, (grid + math.log(5)) / (2 * math.log(5)), atol=1e-12)
    for b in (1e-4, -1e-4):
        assert np.abs(JCLaw(b, 0.2, 1.0).log_ratio_cdf(grid) - uniform).max() < 1e-4
        assert np.abs(JCLaw(b, 0.2, 1.0).log_ratio_pdf(grid) - 1 / (2 * math.log(5))).max() < 1e-4


@pytest.mark.parametrize("beta", (-4.0, -1.0, 0.0, 0.5, 3.0))
@pytest.mark.parametrize("lo,hi", RANGES)
def test_jc_density_integrates_to_one(beta, lo, hi):
    law = JCLaw(beta, lo, hi)
    total, _ = integrate.quad(lambda l: float(law.log_ratio_pdf(l)), -law.s_b, law.s_b, points=[0.0], limit=200)
    assert total == pytest.approx(1.0, abs=1e-6)
    # the density is the derivative of the CDF
    l = np.linspace(-law.s_b * 0.99, law.s_b * 0.99, 37)
    h = 1e-6
    np.testing.assert_allclose((law.log_ratio_cdf(l + h) - law.log_ratio_cdf(l - h)) / (2 * h),
                               law.log_ratio_pdf(l), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("lo,hi", RANGES)
def test_independent_densities_integrate_to_one(lo, hi):
    law = IndependentUniformLaw(lo, hi)
    s_b = math.log(hi / lo)
    total_log, _ = integrate.quad(lambda l: float(law.log_ratio_pdf(l)), -s_b, s_b, points=[0.0])
    total_ratio, _ = integrate.quad(lambda x: float(law.ratio_pdf(x)), lo / hi, hi / lo, points=[1.0])
    assert total_log == pytest.approx(1.0, abs=1e-6)
    assert total_ratio == pytest.approx(1.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------- 2:1 figures
def test_exact_beyond_two_figures():
    assert IndependentUniformLaw(0.2, 1.0).prob_beyond(2.0) == pytest.approx(9 / 32, abs=1e-12)
    assert JCLaw(0.0, 0.2, 1.0).prob_beyond(2.0) == pytest.approx(1 - math.log(2) / math.log(5), abs=1e-12)


def test_appendix_formula_and_the_papers_misprint():
    grid = np.linspace(0.2, 1.0, 17)
    ours = IndependentUniformLaw(0.2, 1.0).ratio_cdf(grid)
    appendix = [float(appendix_cdf(Fraction(x).limit_denominator(10_000))) for x in grid]
    np.testing.assert_allclose(ours, appendix, atol=1e-9)
    m = misprint_explanation()
    assert m["paper_value"] == pytest.approx(0.1875, abs=1e-12)  # the seed's 18.75% ...
    assert m["correct_value"] == pytest.approx(0.28125, abs=1e-12)  # ... versus the formula's 9/32
    assert m["correct_fraction"] == "9/32"
    assert "18.75" in m["text"] and "28.125" in m["text"]


def test_beyond_two_on_200k_pairs_law_level():
    """Law level (the sampled areas of the real crop sampler), within 1 point of the exact figures."""
    n = 200_000
    rrc = crop_policy("random", scale=(0.2, 1.0)).sample(_square(n), _gen(8))
    jc0 = crop_policy("joint", beta=0.0, scale=(0.2, 1.0)).sample(_square(n), _gen(9))
    p_rrc = prob_beyond(pair_ratio(rrc.extra["target_area"]), 2.0)
    p_jc0 = prob_beyond(pair_ratio(jc0.extra["target_area"]), 2.0)
    assert abs(p_rrc - 0.28125) < 0.01, p_rrc
    assert abs(p_jc0 - 0.569) < 0.01, p_jc0
    # realised torchvision-style crops (area redrawn on retries) give about 25% on square images
    p_real = prob_beyond(pair_ratio(realised_area(rrc)), 2.0)
    assert 0.24 < p_real < 0.265, p_real
    # J-Crop keeps its sampled area, so its realised figure stays close to the law's
    assert abs(prob_beyond(pair_ratio(realised_area(jc0)), 2.0) - p_jc0) < 0.01


# ---------------------------------------------------------------------------------------------- appendix E
@pytest.mark.parametrize("key", list(PAPER_CORNER_DISTANCE))
def test_corner_distance_reproduces_appendix_e(key):
    """Mean top-left-corner distance, 224x224, scale (0.2, 1): the paper's figures within 2 px."""
    pol = crop_policy("random") if key == "random" else crop_policy("joint", beta=float(key))
    d = float(corner_distance(pol.sample(_square(50_000), _gen(10))).mean())
    assert abs(d - PAPER_CORNER_DISTANCE[key]) < 2.0, (key, d)


# ---------------------------------------------------------------------------------------------- boxes
SIZES = ((1, 1), (2, 3), (1, 500), (500, 3), (10, 1000), (224, 224), (37, 300), (600, 41))


@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("kind,beta,fallback", [("random", 0.0, "whole"), ("joint", 0.0, "whole"),
                                                 ("joint", -3.0, "center"), ("joint", 2.0, "center")])
def test_boxes_inside_the_image(hw, kind, beta, fallback):
    p = crop_policy(kind, beta=beta, scale=(0.08, 1.0), fallback=fallback).sample(
        torch.tensor([hw]).expand(2_000, 2), _gen(11))
    x0, y0, w, h = p.box.unbind(-1)
    H, W = hw
    assert float(x0.min()) >= 0 and float(y0.min()) >= 0
    assert float(w.min()) >= 1 and float(h.min()) >= 1
    assert float((x0 + w).max()) <= W and float((y0 + h).max()) <= H
    assert torch.equal(x0, x0.round()) and torch.equal(w, w.round())  # integer pixel boxes


def test_fallback_whole_vs_center_on_an_elongated_image():
    """10x1000: no box with aspect in [3/4, 4/3] and area >= 20% fits, so every view falls back."""
    hw = torch.tensor([[10, 1000]]).expand(500, 2)
    whole = crop_policy("joint", fallback="whole").sample(hw, _gen(12))
    center = crop_policy("joint", fallback="center").sample(hw, _gen(12))
    rrc = crop_policy("random", fallback="whole").sample(hw, _gen(12))
    assert bool(whole.fallback.all()) and bool(center.fallback.all()) and bool(rrc.fallback.all())
    assert torch.equal(whole.box, torch.tensor([0.0, 0.0, 1000.0, 10.0]).expand(500, 2, 4))
    # torchvision's centre crop clamped to the aspect range: 13 x 10, centred
    assert torch.equal(center.box, torch.tensor([493.0, 0.0, 13.0, 10.0]).expand(500, 2, 4))
    # an uncoupled (RandomResizedCrop) view always uses torchvision's centre fallback
    assert torch.equal(rrc.box, center.box)


def test_fallback_rate_is_small_on_square_images():
    p = crop_policy("joint", beta=0.0).sample(_square(20_000), _gen(13))
    rate = float(p.fallback.double().mean())
    assert 0.0 < rate < 0.08  # only areas near 1 with an aspect away from 1 fail
    fb = p.fallback
    assert bool((p.box[fb] == torch.tensor([0.0, 0.0, 224.0, 224.0])).all())
