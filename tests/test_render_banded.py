"""Banded resampling (work ~ output pixels x taps) against the dense matrices, and the path choice.

The two paths apply the same taps (``kernels.resize_taps``) and blur kernels; they differ only in
the order of float32 sums. Tolerances follow from that: a resampled value is a sum of at most
``ky * kx`` weighted source values (weights >= 0, summing to at most 1, values in [0, 1]), so each
path's rounding error is below ``(ky + kx + 2) * eps`` (each of the two passes adds one rounding
per tap); a Gaussian blur adds ``(kb_y + kb_x) * eps``. Two paths: twice that. The photometric
stage then maps both results with the same code: its Lipschitz bound (max norm) is at most
brightness 1.8 x contrast 2.6 x saturation 2.6 x hue 2 (HSV round trip) / min std.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from jointaug.bench.images import procedural_images
from jointaug.render import batched
from jointaug.render.batched import BAND_RATIO, band_cost_ratio, render_views, render_views_list
from jointaug.render.kernels import blur_kernel_size, blur_matrices
from jointaug.sampling import make_policy
from jointaug.sampling.params import identity_params

EPS = float(torch.finfo(torch.float32).eps)


def _images(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    arr = np.stack(procedural_images(n, max(h, w), seed))[:, :h, :w]
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def _params(n: int, hw: tuple[int, int], out_hw, seed: int, inside: bool = True, window: bool = False,
            colour: bool = True):
    """Random crops (some outside the image / behind a visible window), flips, blur, colour ops."""
    g = torch.Generator().manual_seed(seed)
    v = len(out_hw)
    H, W = hw
    p = identity_params(torch.tensor([hw]).expand(n, 2), out_hw)
    area = torch.empty(n, v).uniform_(0.08, 1.0, generator=g) * H * W
    logr = torch.empty(n, v).uniform_(math.log(3 / 4), math.log(4 / 3), generator=g)
    w = (area * logr.exp()).sqrt().round().clamp(1, W)
    h = (area / logr.exp()).sqrt().round().clamp(1, H)
    x0 = (torch.rand(n, v, generator=g) * (W - w + 1)).floor()
    y0 = (torch.rand(n, v, generator=g) * (H - h + 1)).floor()
    if not inside:
        x0 = x0 - (torch.rand(n, v, generator=g) * w * 0.5).floor()
        y0 = y0 + (torch.rand(n, v, generator=g) * h * 0.3).floor()
    p.box = torch.stack([x0, y0, w, h], dim=-1)
    if window:  # a visible window hiding part of the image (zeros outside it)
        p.clip = torch.tensor([[W * 0.1, H * 0.2, W * 0.7, H * 0.6]]).round().expand(n, v, 4).clone()
    p.flip = torch.rand(n, v, generator=g) < 0.5
    p.blur_apply = torch.rand(n, v, generator=g) < 0.6
    p.blur_sigma = torch.empty(n, v).uniform_(0.1, 2.0, generator=g)
    if colour:
        p.color_apply = torch.rand(n, v, generator=g) < 0.8
        p.brightness = torch.empty(n, v).uniform_(0.2, 1.8, generator=g)
        p.contrast = torch.empty(n, v).uniform_(0.2, 1.8, generator=g)
        p.saturation = torch.empty(n, v).uniform_(0.2, 1.8, generator=g)
        p.hue = torch.empty(n, v).uniform_(-0.2, 0.2, generator=g)
        p.color_order = torch.argsort(torch.rand(n, v, 4, generator=g), dim=-1)
        p.gray = torch.rand(n, v, generator=g) < 0.2
    return p


def _tolerance(p, src_hw, rule: str = "tenth", colour: bool = False, std: float = 1.0) -> float:
    """Float32 bound on |banded - dense| from the taps of the widest view (see the module docstring)."""
    tol = 0.0
    for v, (oh, ow) in enumerate(p.out_hw):
        box = p.box[:, v]
        ky = math.ceil(2 * max(1.0, float(box[:, 3].max()) / oh)) + 1
        kx = math.ceil(2 * max(1.0, float(box[:, 2].max()) / ow)) + 1
        s = p.blur_sigma[:, v].max()
        kb = int(blur_kernel_size(oh, s, rule)) + int(blur_kernel_size(ow, s, rule))
        tol = max(tol, 2 * (ky + kx + 2 + kb) * EPS)
    return tol * (1.8 * 2.6 * 2.6 * 2 if colour else 1.0) / std


CASES = [  # (source h, w), views' sizes: downscaling, upscaling, mixed, non-square
    ((40, 48), [(32, 32), (24, 20)]),
    ((96, 80), [(40, 40)]),
    ((30, 36), [(64, 48), (17, 23)]),
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_banded_equals_dense_geometry_and_blur(case, mode):
    hw, out_hw = CASES[case]
    x = _images(5, *hw, seed=case)
    for inside, window, rule in ((True, False, "tenth"), (False, True, "3sigma")):
        p = _params(5, hw, out_hw, seed=case, inside=inside, window=window, colour=False)
        dense = render_views(x, p, mode=mode, geometry="dense", blur_kernel=rule)
        band = render_views(x, p, mode=mode, geometry="banded", blur_kernel=rule)
        tol = _tolerance(p, hw, rule)
        for a, b in zip(dense, band):
            assert a.shape == b.shape
            assert float((a - b).abs().max()) <= tol, (case, mode, inside, window, float((a - b).abs().max()), tol)


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_banded_equals_dense_whole_pipeline_fixed_and_list(mode):
    hw, out_hw = CASES[0]
    x = _images(6, *hw, seed=7)
    p = _params(6, hw, out_hw, seed=7)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    tol = _tolerance(p, hw, colour=True, std=min(std))
    dense = render_views(x, p, mode=mode, geometry="dense", mean=mean, std=std)
    for band in (render_views(x, p, mode=mode, geometry="banded", mean=mean, std=std),
                 render_views_list(list(x), p, mode=mode, geometry="banded", mean=mean, std=std),
                 render_views(x.float() / 255, p, mode=mode, geometry="banded", mean=mean, std=std),
                 render_views(x, p, mode=mode, geometry="banded", mean=mean, std=std, chunk_size=4)):
        for a, b in zip(dense, band):
            assert float((a - b).abs().max()) <= tol, (mode, float((a - b).abs().max()), tol)


def test_banded_list_path_mixed_sizes_and_gray_input():
    sizes = [(40, 48), (33, 29), (64, 20)]
    imgs = [_images(1, h, w, seed=i)[0] for i, (h, w) in enumerate(sizes)]
    from jointaug.sampling.params import ViewParams

    ps = [_params(1, hw, [(16, 16), (12, 20)], seed=20 + i) for i, hw in enumerate(sizes)]
    p = ViewParams.cat(ps)
    for mode in ("fast", "exact"):
        dense = render_views_list(imgs, p, mode=mode, geometry="dense")
        band = render_views_list(imgs, p, mode=mode, geometry="banded")
        tol = max(_tolerance(q, s, colour=True) for q, s in zip(ps, sizes))
        for a, b in zip(dense, band):
            assert float((a - b).abs().max()) <= tol
    gray = _images(3, 40, 48)[:, :1]
    q = _params(3, (40, 48), [(24, 24)], seed=5)
    a = render_views(gray, q, mode="fast", geometry="banded")
    b = render_views(gray.expand(-1, 3, -1, -1).contiguous(), q, mode="fast", geometry="banded")
    torch.testing.assert_close(a[0], b[0], atol=_tolerance(q, (40, 48), colour=True), rtol=0)


def test_blur_band_equals_blur_matrices():
    g = torch.Generator().manual_seed(0)
    z = torch.rand(4, 3, 23, 17, generator=g)
    sigma = torch.tensor([0.1, 0.7, 1.5, 2.0])
    for rule in ("tenth", "3sigma"):
        dense = torch.matmul(blur_matrices(sigma, 23, rule)[:, None],
                             torch.matmul(z, blur_matrices(sigma, 17, rule).transpose(1, 2)[:, None]))
        kb = int(blur_kernel_size(23, sigma.max(), rule)) + int(blur_kernel_size(17, sigma.max(), rule))
        assert float((batched._blur_band(z, sigma, rule) - dense).abs().max()) <= 2 * (kb + 23 + 17) * EPS


def test_auto_choice_follows_the_cost_estimate():
    def plan(src: int, out: int, geometry: str = "auto"):
        p = make_policy("simclr", size=out).sample(torch.tensor([[src, src]]).expand(4, 2),
                                                   torch.Generator().manual_seed(0))
        st = batched._settings("fast", None, None, "tenth", torch.float32, None, "cpu", geometry)
        return batched._plan(p, [0, 1], out, out, st, "cpu", (src, src), 1 / 255)

    assert not plan(32, 32).banded  # small sources keep the lookup tables / dense products
    assert plan(256, 224).banded and plan(500, 224).banded and plan(224, 32).banded  # large sources
    assert not plan(48, 40).banded  # sources small enough for the lookup tables keep them
    assert plan(256, 224, "dense").banded is False and plan(32, 32, "banded").banded is True
    assert BAND_RATIO < band_cost_ratio(3, 224, 224, 32, 32, 14, 14, 2) < band_cost_ratio(3, 256, 256, 224, 224, 3, 3)
    # the larger the source for one output size, the more the banded path saves
    assert band_cost_ratio(3, 1024, 1024, 64, 64, 2, 2) > band_cost_ratio(3, 256, 256, 64, 64, 2, 2) > BAND_RATIO


def test_bad_geometry_is_a_clear_error():
    x = _images(1, 16, 16)
    p = _params(1, (16, 16), [(8, 8)], seed=0)
    with pytest.raises(ValueError, match="geometry must be one of"):
        render_views(x, p, geometry="sparse")
    with pytest.raises(ValueError, match="geometry must be one of"):
        render_views_list(list(x), p, geometry="Dense")


@pytest.mark.parametrize("case", range(len(CASES)))
def test_blur_composed_into_the_taps_equals_dense(case, monkeypatch):
    """Fast mode folds long blur kernels into the banded taps (224 px views); force it at small sizes."""
    monkeypatch.setattr(batched, "FOLD_MIN_TAPS", 1)
    hw, out_hw = CASES[case]
    x = _images(5, *hw, seed=case)
    for inside, window, rule in ((True, False, "tenth"), (False, True, "3sigma")):
        p = _params(5, hw, out_hw, seed=case, inside=inside, window=window)
        st = batched._settings("fast", None, None, rule, torch.float32, None, "cpu", "banded")
        plan = batched._plan(p, [0], *out_hw[0], st, "cpu", hw, 1 / 255)
        assert plan.y.klen is not None and bool((plan.y.klen > plan.y.K).any())  # the fold is exercised
        dense = render_views(x, p, mode="fast", geometry="dense", blur_kernel=rule)
        band = render_views(x, p, mode="fast", geometry="banded", blur_kernel=rule)
        listed = render_views_list(list(x), p, mode="fast", geometry="banded", blur_kernel=rule)
        tol = _tolerance(p, hw, rule, colour=True)
        for a, b, c in zip(dense, band, listed):
            assert float((a - b).abs().max()) <= tol and float((a - c).abs().max()) <= tol
