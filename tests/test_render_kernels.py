"""Per-axis operators of the renderer: resize weights, blur kernels and their composition."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jointaug.render.kernels import (
    blur_basis_table,
    blur_kernel_size,
    blur_matrices,
    crop_bag_table,
    crop_colsum_table,
    crop_index,
    crop_table,
    gaussian_kernel1d,
    gaussian_taps,
    resize_taps,
    taps_to_dense,
)
from jointaug.render.reference import crop_zero_padded


def _dense(offset, length, n, src, flip=None):
    col, w = resize_taps(torch.tensor(offset), torch.tensor(length), n, src,
                         None if flip is None else torch.tensor(flip))
    return taps_to_dense(col, w, src).double()


def test_kernel_size_rules():
    assert [blur_kernel_size(s) for s in (32, 96, 224, 100, 20)] == [3, 9, 23, 11, 3]
    assert blur_kernel_size(1) == 1 and blur_kernel_size(2) == 3  # capped at 2 * side - 1
    assert blur_kernel_size(224, 1.0, "3sigma") == 7
    assert blur_kernel_size(224, 0.1, "3sigma") == 3
    assert blur_kernel_size(4, 2.0, "3sigma") == 7  # 2*6+1 = 13 capped at 2*4-1
    t = blur_kernel_size(224, torch.tensor([0.5, 1.0, 2.0]), "3sigma")
    assert t.tolist() == [5, 7, 13]
    assert blur_kernel_size(32, torch.tensor([0.5, 2.0])).tolist() == [3, 3]
    with pytest.raises(ValueError, match="rule"):
        blur_kernel_size(32, 1.0, "fifth")
    with pytest.raises(ValueError, match="sigma"):
        blur_kernel_size(32, None, "3sigma")
    with pytest.raises(ValueError, match="out_side"):
        blur_kernel_size(0)


@pytest.mark.parametrize("length,n", [(32, 32), (10, 32), (32, 7), (57, 24), (17, 96), (1, 5), (3, 1), (300, 40)])
def test_resize_matches_torch_antialias(length, n):
    x = torch.rand(2, 3, 4, length, dtype=torch.float64)
    ref = F.interpolate(x, size=(4, n), mode="bilinear", antialias=True, align_corners=False)
    A = _dense([0], [length], n, length)[0]
    torch.testing.assert_close(x @ A.T, ref, atol=1e-6, rtol=0)


def test_resize_matches_pil_float_resize():
    """An independent implementation: PIL's bilinear resize of a float ('F') image of the crop."""
    from PIL import Image

    rng = np.random.default_rng(0)
    img = rng.random((40, 50)).astype(np.float32)
    cases = [((5, 3, 30, 20), (16, 16)), ((0, 0, 12, 9), (30, 25)), ((10, 8, 40, 32), (32, 32))]
    for (x0, y0, w, h), (oh, ow) in cases:
        crop = Image.fromarray(img[y0:y0 + h, x0:x0 + w], mode="F")
        ref = np.asarray(crop.resize((ow, oh), Image.BILINEAR), dtype=np.float64)
        Ay = _dense([y0], [h], oh, 40)[0].numpy()
        Ax = _dense([x0], [w], ow, 50)[0].numpy()
        out = Ay @ img.astype(np.float64) @ Ax.T
        np.testing.assert_allclose(out, ref, atol=2e-5)


def test_crop_outside_image_is_zero_padded():
    img = torch.rand(1, 7, 20, dtype=torch.float64)
    for x0, w, n in [(-3, 10, 7), (15, 9, 12), (-2, 25, 8)]:
        padded = crop_zero_padded(img, x0, 0, w, 7)
        ref = F.interpolate(padded[None], size=(7, n), mode="bilinear", antialias=True)[0]
        A = _dense([x0], [w], n, 20)[0]
        torch.testing.assert_close(img @ A.T, ref, atol=1e-6, rtol=0)


def test_flip_reverses_rows():
    A = _dense([3, 3], [20, 20], 9, 32, [False, True])
    torch.testing.assert_close(A[1], A[0].flip(0))


def test_blur_matrices_match_reflect_conv():
    n = 32
    sigma = torch.tensor([0.3, 1.0, 2.0])
    for rule in ("tenth", "3sigma"):
        B = blur_matrices(sigma, n, rule, torch.float64)
        x = torch.rand(n, dtype=torch.float64)
        for i, s in enumerate(sigma.tolist()):
            k = blur_kernel_size(n, s, rule)
            g = gaussian_kernel1d(k, s, torch.float64)
            ref = F.conv1d(F.pad(x[None, None], ((k - 1) // 2,) * 2, mode="reflect"), g[None, None])[0, 0]
            torch.testing.assert_close(B[i] @ x, ref, atol=1e-7, rtol=0)
            torch.testing.assert_close(B[i].sum(1), torch.ones(n, dtype=torch.float64))


def test_blur_basis_tables_compose_the_blur():
    S, n = 24, 20
    T, _ = crop_table(S, n)
    sigma = torch.tensor([0.6, 1.5])
    for rule in ("tenth", "3sigma"):
        ks = blur_kernel_size(n, sigma, rule)
        taps = gaussian_taps(sigma.double(), ks)
        half = (taps.shape[1] - 1) // 2
        idx = torch.tensor([5, 100])
        got = T[idx].double() * taps[:, half, None, None]
        for d in range(1, half + 1):
            got += blur_basis_table(S, n, d)[idx].double() * taps[:, half + d, None, None]
        want = blur_matrices(sigma, n, rule, torch.float64) @ T[idx].double()
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_crop_table_lookup_matches_construction():
    S, n = 20, 16
    g = torch.Generator().manual_seed(0)
    L = torch.randint(1, S + 1, (50,), generator=g)
    x0 = (torch.rand(50, generator=g) * (S - L + 1)).long()
    flip = torch.rand(50, generator=g) < 0.5
    T, CS = crop_table(S, n, 0.5)
    got = T[crop_index(x0, L, flip, S)]
    col, w = resize_taps(x0, L, n, S, flip)
    want = taps_to_dense(col, w, S, 0.5)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(CS[crop_index(x0, L, None, S)], want.sum(1) / n, atol=1e-6, rtol=0)


@pytest.mark.parametrize("S,n", [(20, 16), (32, 32), (9, 24)])
def test_crop_bag_table_weighted_lookups_compose_the_blur(S, n):
    """One weighted lookup (bags of the crop and its bases, weights t_d / t_0) of the stacked table
    gives the blurred matrix of any crop divided by t_0 (flipped and transposed for columns; with
    the column-sum row for rows); the column-sum table equals crop_table's."""
    g = torch.Generator().manual_seed(1)
    L = torch.randint(1, S + 1, (40,), generator=g)
    x0 = (torch.rand(40, generator=g) * (S - L + 1)).long()
    flip = torch.rand(40, generator=g) < 0.5
    sigma = torch.rand(40, generator=g, dtype=torch.float64) * 1.0 + 0.3
    ks = blur_kernel_size(n, sigma, "3sigma")  # up to 9 taps: 4 bases
    taps = gaussian_taps(sigma, ks)
    half = (taps.shape[1] - 1) // 2
    ratios = taps[:, half:] / taps[:, half:half + 1]  # [40, D + 1], t_d / t_0 (1 for d = 0)
    T, CS = crop_table(S, n, 0.5)
    blurred = [blur_matrices(sigma[i:i + 1], n, "3sigma").double()[0] for i in range(40)]
    for transpose, f in ((True, flip), (False, None)):
        table = crop_bag_table(S, n, half, 0.5, transpose=transpose, colsum=not transpose)
        crop = crop_index(x0, L, f, S)
        E = table.shape[0] // (half + 1)
        bags = crop[:, None] + E * torch.arange(half + 1)
        got = F.embedding_bag(bags, table, mode="sum", per_sample_weights=ratios.float()).double()
        for i in range(40):
            j = crop_index(x0[i:i + 1], L[i:i + 1], None if f is None else f[i:i + 1], S)
            want = blurred[i] @ T[j][0].double() / taps[i, half]
            if transpose:
                torch.testing.assert_close(got[i].view(S, n), want.T, atol=1e-5, rtol=0)
            else:
                torch.testing.assert_close(got[i].view(n + 1, S)[:n], want, atol=1e-5, rtol=0)
                cs = CS[crop_index(x0[i:i + 1], L[i:i + 1], None, S)][0].double()
                torch.testing.assert_close(got[i].view(n + 1, S)[n], cs, atol=1e-7, rtol=0)
    torch.testing.assert_close(crop_colsum_table(S, n, 0.5), CS)


def test_bad_crop_length_raises():
    with pytest.raises(ValueError, match="one pixel"):
        resize_taps(torch.tensor([0]), torch.tensor([0]), 8, 10)
