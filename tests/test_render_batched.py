"""Batched renderer against the per-image reference: per op, whole pipeline, modes, paths, replay.

Tolerances (pixel values in [0, 1]; stated in docs/rendering.md):

- exact mode = reference up to float32 rounding: max |diff| < 1e-4 per op and for the whole
  pipeline (geometry: mean < 1e-6);
- fast mode: geometry, brightness, contrast, saturation, grayscale, blur and solarize alone equal
  the reference (max < 1e-4); its hue (rotation about the gray axis) and its single final clamp
  differ by design: hue alone mean < 6/255 for |h| <= 0.2, the SimCLR pipeline mean < 4/255.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from jointaug.bench.images import procedural_images
from jointaug.render import kernels
from jointaug.render.batched import render_views, render_views_list
from jointaug.render.reference import render_view_reference
from jointaug.sampling import make_policy
from jointaug.sampling.params import ViewParams, identity_params


def _images(n: int, h: int, w: int | None = None, seed: int = 0) -> torch.Tensor:
    """Natural-looking uint8 test images [n, 3, h, w] (smooth fields, edges, texture)."""
    w = w or h
    s = max(h, w)
    arr = np.stack(procedural_images(n, s, seed))[:, :h, :w]
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def _random_params(n: int, hw: tuple[int, int], out_hw, seed: int = 0, inside: bool = True) -> ViewParams:
    """RandomResizedCrop-style boxes and random photometric parameters of every kind."""
    g = torch.Generator().manual_seed(seed)
    v = len(out_hw)
    p = identity_params(torch.tensor([hw]).expand(n, 2), out_hw)
    H, W = hw
    area = torch.empty(n, v).uniform_(0.08, 1.0, generator=g) * H * W
    logr = torch.empty(n, v).uniform_(np.log(3 / 4), np.log(4 / 3), generator=g)
    w = (area * logr.exp()).sqrt().round().clamp(1, W)
    h = (area / logr.exp()).sqrt().round().clamp(1, H)
    x0 = (torch.rand(n, v, generator=g) * (W - w + 1)).floor()
    y0 = (torch.rand(n, v, generator=g) * (H - h + 1)).floor()
    if not inside:  # some boxes reach outside the image (zero padding)
        x0 = x0 - (torch.rand(n, v, generator=g) * w * 0.5).floor()
        y0 = y0 + (torch.rand(n, v, generator=g) * h * 0.3).floor()
    p.box = torch.stack([x0, y0, w, h], dim=-1)
    p.flip = torch.rand(n, v, generator=g) < 0.5
    p.color_apply = torch.rand(n, v, generator=g) < 0.8
    p.brightness = torch.empty(n, v).uniform_(0.2, 1.8, generator=g)
    p.contrast = torch.empty(n, v).uniform_(0.2, 1.8, generator=g)
    p.saturation = torch.empty(n, v).uniform_(0.2, 1.8, generator=g)
    p.hue = torch.empty(n, v).uniform_(-0.2, 0.2, generator=g)
    p.color_order = torch.argsort(torch.rand(n, v, 4, generator=g), dim=-1)
    p.gray = torch.rand(n, v, generator=g) < 0.2
    p.blur_apply = torch.rand(n, v, generator=g) < 0.5
    p.blur_sigma = torch.empty(n, v).uniform_(0.1, 2.0, generator=g)
    p.solarize = torch.rand(n, v, generator=g) < 0.2
    return p


def _only(p: ViewParams, keep: str) -> ViewParams:
    """Copy of p keeping one photometric op (``keep``), geometry always."""
    q = dataclasses.replace(p)
    n, v = p.flip.shape
    false = torch.zeros(n, v, dtype=torch.bool)
    q.color_apply, q.gray, q.blur_apply, q.solarize = false, false, false, false
    ones = torch.ones(n, v)
    q.brightness, q.contrast, q.saturation, q.hue = ones, ones, ones, torch.zeros(n, v)
    if keep in ("brightness", "contrast", "saturation", "hue"):
        q.color_apply = torch.ones(n, v, dtype=torch.bool)
        setattr(q, keep, getattr(p, keep))
    elif keep in ("gray", "solarize"):
        setattr(q, keep, torch.ones(n, v, dtype=torch.bool))
    elif keep == "blur":
        q.blur_apply, q.blur_sigma = torch.ones(n, v, dtype=torch.bool), p.blur_sigma
    return q


def _reference(x: torch.Tensor, p: ViewParams, **kw) -> list[torch.Tensor]:
    xf = x.double() / 255 if x.dtype == torch.uint8 else x.double()
    return [torch.stack([render_view_reference(xf[i], p, i, v, **kw) for i in range(x.shape[0])])
            for v in range(p.num_views)]


def _diff(outs, refs) -> tuple[float, float]:
    d = torch.cat([(a.double() - b).abs().flatten() for a, b in zip(outs, refs)])
    return float(d.mean()), float(d.max())


X = _images(6, 40, 48)
#: every fidelity test runs on both resampling paths (dense matrices, banded taps)
GEOMETRY_PATHS = ("dense", "banded")
P = _random_params(6, (40, 48), [(32, 32), (24, 20)], seed=1)


@pytest.mark.parametrize("op", ["geometry", "brightness", "contrast", "saturation", "hue", "gray", "blur", "solarize"])
@pytest.mark.parametrize("mode", ["exact", "fast"])
@pytest.mark.parametrize("geometry", GEOMETRY_PATHS)
def test_single_op_matches_reference(op, mode, geometry):
    p = _only(P, op)
    mean, mx = _diff(render_views(X, p, mode=mode, geometry=geometry), _reference(X, p))
    if mode == "fast" and op == "hue":
        assert mean < 6 / 255, mean  # rotation about the gray axis instead of the HSV shift
        return
    assert mx < 1e-4, (op, mode, mean, mx)
    if op == "geometry":
        assert mean < 1e-6


@pytest.mark.parametrize("geometry", GEOMETRY_PATHS)
def test_whole_pipeline_exact_matches_reference(geometry):
    mean, mx = _diff(render_views(X, P, mode="exact", geometry=geometry), _reference(X, P))
    assert mean < 1e-6 and mx < 1e-4, (mean, mx)


@pytest.mark.parametrize("geometry", GEOMETRY_PATHS)
def test_whole_pipeline_fast_within_stated_tolerance(geometry):
    p = dataclasses.replace(P, solarize=torch.zeros_like(P.solarize))
    mean, _ = _diff(render_views(X, p, mode="fast", geometry=geometry), _reference(X, p))
    assert mean < 4 / 255, mean


@pytest.mark.parametrize("geometry", GEOMETRY_PATHS)
def test_boxes_outside_the_image_and_3sigma_rule(geometry):
    p = _random_params(4, (40, 48), [(16, 24)], seed=3, inside=False)
    x = X[:4]
    for mode in ("exact", "fast"):
        q = _only(p, "blur")
        mean, mx = _diff(render_views(x, q, mode=mode, blur_kernel="3sigma", geometry=geometry),
                         _reference(x, q, blur_kernel="3sigma"))
        assert mx < 1e-4, (mode, mx)


@pytest.mark.parametrize("sigma_max", [1.3, 2.0])  # 3sigma kernels up to 9 taps (basis tables), up to 13 (products)
def test_table_path_blur_folded_into_the_matrices(sigma_max):
    """Fast mode folds the blur into the looked-up matrices: pre-blurred basis tables weighted per
    view (kernels up to 9 taps) or a product with the blur matrices (longer ones); both equal the
    reference's blur after the resize, as does exact mode's separate blur."""
    p = _only(P, "blur")
    p.blur_sigma = torch.empty_like(p.blur_sigma).uniform_(0.1, sigma_max, generator=torch.Generator().manual_seed(5))
    p.blur_apply = torch.rand(p.blur_apply.shape, generator=torch.Generator().manual_seed(6)) < 0.6
    ref = _reference(X, p, blur_kernel="3sigma")
    for mode in ("fast", "exact"):
        mean, mx = _diff(render_views(X, p, mode=mode, blur_kernel="3sigma"), ref)
        assert mx < 1e-4, (mode, sigma_max, mean, mx)


def test_normalisation_and_float_input():
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    for mode in ("exact", "fast"):
        raw = render_views(X, P, mode=mode)
        normed = render_views(X, P, mode=mode, mean=mean, std=std)
        m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
        for a, b in zip(raw, normed):
            torch.testing.assert_close(b, (a - m) / s, atol=2e-5, rtol=0)
        flt = render_views(X.float() / 255, P, mode=mode)
        for a, b in zip(raw, flt):
            torch.testing.assert_close(a, b, atol=2e-6, rtol=0)


def test_replay_gives_identical_pixels_and_chunking_does_not_matter():
    for mode in ("exact", "fast"):
        a = render_views(X, P, mode=mode)
        b = render_views(X, ViewParams.from_json(P.to_json()), mode=mode)
        c = render_views(X, P, mode=mode, chunk_size=4)
        for u, w, z in zip(a, b, c):
            assert torch.equal(u, w)
            torch.testing.assert_close(u, z, atol=1e-6, rtol=0)


def test_list_path_equals_fixed_path_on_equal_sizes():
    for mode in ("exact", "fast"):
        fixed = render_views(X, P, mode=mode)
        listed = render_views_list(list(X), P, mode=mode)
        for a, b in zip(fixed, listed):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("geometry", GEOMETRY_PATHS)
def test_list_path_with_mixed_sizes_matches_reference(geometry):
    sizes = [(40, 48), (33, 29), (40, 48), (64, 20), (8, 8)]
    imgs = [_images(1, h, w, seed=i)[0] for i, (h, w) in enumerate(sizes)]
    ps = [_random_params(1, hw, [(16, 16), (16, 16), (8, 12)], seed=10 + i) for i, hw in enumerate(sizes)]
    p = ViewParams.cat(ps)
    out = render_views_list(imgs, p, mode="exact", geometry=geometry)
    for i, im in enumerate(imgs):
        for v in range(3):
            ref = render_view_reference(im.double() / 255, p, i, v)
            assert (out[v][i].double() - ref).abs().max() < 1e-4
    fast = render_views_list(imgs, p, mode="fast", geometry=geometry)
    single = [render_views(im[None], p.index([i]), mode="fast", geometry=geometry) for i, im in enumerate(imgs)]
    for v in range(3):
        torch.testing.assert_close(fast[v], torch.cat([s[v] for s in single]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("geometry", GEOMETRY_PATHS)
def test_multi_size_views_and_sampler_params(geometry):
    pol = make_policy("dino", size=32, n_local=2)
    x = _images(4, 48)
    p = pol.sample(torch.tensor([[48, 48]]).expand(4, 2), torch.Generator().manual_seed(0))
    outs = render_views(x, p, mode="exact", geometry=geometry)
    assert [tuple(o.shape) for o in outs] == [(4, 3, *hw) for hw in p.out_hw]
    mean, mx = _diff(outs, _reference(x, p))
    assert mx < 1e-4, mx


def test_gray_and_rgba_inputs():
    gray1 = X[:, :1]
    a = render_views(gray1, P, mode="fast")
    b = render_views(gray1.expand(-1, 3, -1, -1).contiguous(), P, mode="fast")
    for u, w in zip(a, b):
        torch.testing.assert_close(u, w, atol=1e-6, rtol=0)
    rgba = torch.cat([X, torch.full_like(X[:, :1], 7)], dim=1)
    for mode in ("exact", "fast"):
        for u, w in zip(render_views(rgba, P, mode=mode), render_views(X, P, mode=mode)):
            assert torch.equal(u, w)


def test_table_and_tap_paths_agree(monkeypatch):
    x = _images(5, 32)
    p = _random_params(5, (32, 32), [(32, 32), (32, 32)], seed=4)
    with_table = render_views(x, p, mode="fast")
    monkeypatch.setattr(kernels, "TABLE_BYTES", 0)
    without = render_views(x, p, mode="fast")
    for a, b in zip(with_table, without):
        torch.testing.assert_close(a, b, atol=2e-6, rtol=0)


def test_out_dtype_and_empty_batch():
    half = render_views(X, P, mode="fast", out_dtype=torch.float16)
    full = render_views(X, P, mode="fast")
    assert half[0].dtype == torch.float16
    torch.testing.assert_close(half[0].float(), full[0], atol=2e-3, rtol=0)
    empty = render_views(X[:0], P.index(slice(0, 0)))
    assert [tuple(e.shape) for e in empty] == [(0, 3, 32, 32), (0, 3, 24, 20)]


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="image_hw"):
        render_views(X[:, :, :30], P)
    with pytest.raises(ValueError, match="mode"):
        render_views(X, P, mode="approx")
    with pytest.raises(ValueError, match="channels"):
        render_views(X[:, :2], P)
    with pytest.raises(ValueError, match="mean and std"):
        render_views(X, P, mean=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="6 images"):
        render_views(X[:3], P)
    with pytest.raises(ValueError, match="blur_kernel"):
        render_views(X, P, blur_kernel="wide")
    with pytest.raises(ValueError, match="dtype"):
        render_views(X.int(), P)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    for mode in ("exact", "fast"):
        cpu = render_views(X, P, mode=mode, mean=(0.5,) * 3, std=(0.25,) * 3)
        gpu = render_views(X.cuda(), P.to("cuda"), mode=mode, mean=(0.5,) * 3, std=(0.25,) * 3)
        for a, b in zip(cpu, gpu):
            torch.testing.assert_close(a, b.cpu(), atol=1e-4, rtol=0)
        listed = render_views_list([im.cuda() for im in X], P.to("cuda"), mode=mode)
        for a, b in zip(render_views(X, P, mode=mode), listed):
            torch.testing.assert_close(a, b.cpu(), atol=1e-4, rtol=0)
