"""Colour operations: HSV against colorsys, the branch-free hue shift, fast-mode colour matrices."""

from __future__ import annotations

import colorsys

import pytest
import torch

from jointaug.render.color import (
    EXACT_OPS,
    GRAY_WEIGHTS,
    adjust_hue,
    fast_color_matrices,
    gray,
    hsv_to_rgb,
    hue_rotation_matrices,
    rgb_to_hsv,
    shift_hue,
)


def _colours(n: int = 400, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, 1, n, generator=g, dtype=torch.float64)
    # ties and grays: the awkward cases of the hue formula
    x[0, :, 0, 0] = 0.5
    x[0, :, 0, 1] = torch.tensor([1.0, 0.0, 0.0])
    x[0, :, 0, 2] = torch.tensor([0.2, 0.9, 0.9])
    x[0, :, 0, 3] = torch.tensor([0.7, 0.7, 0.1])
    x[0, :, 0, 4] = 0.0
    return x


def test_hsv_matches_colorsys_and_round_trips():
    x = _colours()
    hsv = rgb_to_hsv(x)
    want = torch.tensor([colorsys.rgb_to_hsv(*x[0, :, 0, j].tolist()) for j in range(x.shape[-1])],
                        dtype=torch.float64)
    torch.testing.assert_close(hsv[0, :, 0].T, want, atol=1e-12, rtol=0)
    torch.testing.assert_close(hsv_to_rgb(hsv), x, atol=1e-12, rtol=0)


@pytest.mark.parametrize("h", [-0.5, -0.2, -0.03, 0.0, 0.1, 0.37, 0.5])
def test_shift_hue_equals_hsv_round_trip(h):
    x = _colours().float().expand(3, 3, 1, -1).contiguous()
    hh = torch.full((3,), h)
    torch.testing.assert_close(shift_hue(x, hh), adjust_hue(x.clone(), hh), atol=2e-6, rtol=0)
    # colorsys on a few pixels: an independent check of the shift itself
    for j in (1, 2, 3, 10, 200):
        hh_, s, v = colorsys.rgb_to_hsv(*x[0, :, 0, j].double().tolist())
        want = colorsys.hsv_to_rgb((hh_ + h) % 1.0, s, v)
        torch.testing.assert_close(shift_hue(x, hh)[0, :, 0, j].double(), torch.tensor(want, dtype=torch.float64),
                                   atol=2e-6, rtol=0)


def test_exact_ops_identity_factors():
    x = _colours().float()
    one = torch.ones(1)
    for op, f in zip(EXACT_OPS, (one, one, one, torch.zeros(1))):
        torch.testing.assert_close(op(x.clone(), f), x, atol=2e-6, rtol=0)


def _apply(A, K, x):
    m = x.mean(dim=(-2, -1))  # [1, 3]
    return torch.einsum("nij,njhw->nihw", A, x) + (K @ m[..., None])[..., None]


def test_fast_single_ops_match_exact_without_clamping():
    x = 0.25 + 0.5 * _colours().float()  # mid-range: factors near 1 never clamp
    b = torch.tensor([1.2]), torch.tensor([0.7]), torch.tensor([1.3])
    for op in range(3):
        f = [torch.ones(1), torch.ones(1), torch.ones(1), torch.zeros(1)]
        f[op] = b[op]
        A, K = fast_color_matrices(*f, torch.arange(4)[None], torch.tensor([True]), torch.tensor([False]))
        torch.testing.assert_close(_apply(A.float(), K.float(), x), EXACT_OPS[op](x.clone(), b[op]),
                                   atol=1e-6, rtol=0)


def test_fast_gray_and_composition_order():
    x = _colours().float()
    A, K = fast_color_matrices(torch.ones(1), torch.ones(1), torch.ones(1), torch.zeros(1),
                               torch.arange(4)[None], torch.tensor([False]), torch.tensor([True]))
    torch.testing.assert_close(_apply(A.float(), K.float(), x), gray(x).expand_as(x), atol=1e-6, rtol=0)
    # brightness then contrast (contrast sees the brightened mean) = contrast then brightness here
    args = (torch.tensor([1.1, 1.1]), torch.tensor([0.8, 0.8]), torch.ones(2), torch.zeros(2))
    order = torch.tensor([[0, 1, 2, 3], [1, 0, 2, 3]])
    A, K = fast_color_matrices(*args, order, torch.tensor([True, True]), torch.tensor([False, False]))
    torch.testing.assert_close(A[0], A[1])
    torch.testing.assert_close(K[0], K[1])


def test_fast_color_matrices_equal_the_composed_products():
    """The elementwise composition equals the plain one: op matrices multiplied in the sampled order."""
    g = torch.Generator().manual_seed(3)
    m = 64
    b, c, s = (torch.rand(m, generator=g) * 1.6 + 0.2 for _ in range(3))
    h = torch.rand(m, generator=g) * 0.8 - 0.4
    order = torch.argsort(torch.rand(m, 4, generator=g), dim=-1)
    apply, to_gray = torch.rand(m, generator=g) < 0.8, torch.rand(m, generator=g) < 0.3
    A, K = fast_color_matrices(b, c, s, h, order, apply, to_gray)
    luma = torch.tensor(GRAY_WEIGHTS, dtype=torch.float64).expand(3, 3)
    eye = torch.eye(3, dtype=torch.float64)
    for i in range(m):
        a, k = eye.clone(), torch.zeros(3, 3, dtype=torch.float64)
        if apply[i]:
            for op in order[i].tolist():
                bi, ci, si = float(b[i]), float(c[i]), float(s[i])
                P = [bi * eye, ci * eye, si * eye + (1 - si) * luma, hue_rotation_matrices(h[i:i + 1])[0]][op]
                shift = (1 - ci) * luma @ (a + k) if op == 1 else 0.0
                a, k = P @ a, P @ k + shift
        if to_gray[i]:
            a, k = luma @ a, luma @ k
        torch.testing.assert_close(A[i], a, atol=1e-12, rtol=0)
        torch.testing.assert_close(K[i], k, atol=1e-12, rtol=0)


def test_hue_rotation_keeps_grays_and_is_a_rotation():
    R = hue_rotation_matrices(torch.tensor([0.1, -0.3, 0.5]))
    ones = torch.ones(3, dtype=torch.float64)
    torch.testing.assert_close(R @ ones, ones.expand(3, 3))
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(3, 3, 3))
    # the same direction as an HSV shift: pure red moves towards yellow for a small positive shift
    red = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    out = hue_rotation_matrices(torch.tensor([0.05]))[0] @ red
    assert out[1] > out[2]
