"""Label-preserving fixed-size crops (GCC, CGCC, MGCC, MCGCC, fixed RandomCrop) and quarter-turn rotation.

Statistical checks use fixed seeds and thresholds from the laws: KS p-values > 1e-3 and z-scores
< 4.5 (a false alarm has probability ~1e-5 per check). Pixel checks are exact (float inputs that are
multiples of 1/255 pass through 0/1 interpolation weights unchanged) or, against the reference with
photometric ops, bounded by float32 rounding (1e-4, docs/rendering.md).
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from jointaug.render.batched import render_views, render_views_list
from jointaug.render.kernels import blur_kernel_size
from jointaug.render.reference import render_view_reference
from jointaug.sampling import Coupling, Same, ViewParams, ViewPolicy, ViewSpec, make_policy
from jointaug.sampling.couplings import GROUPS

Z = 4.5
P_MIN = 1e-3
MODES = ("gcc", "cgcc", "mgcc", "mcgcc", "fixed")


def _policy(crop: str, *, alpha: float = 1.5, s: float = 0.4, pad: str = "even", rng=(0.25, 0.75),
            share: bool = True, **kw) -> ViewPolicy:
    spec = ViewSpec(size=None, crop=crop, crop_size=s, alpha=alpha, gcc_range=rng, pad=pad, flip_p=0.0,
                    jitter_p=0.0, gray_p=0.0, **kw)
    cs = [Coupling("crop_mean", (0, 1), Same())] if share and crop in ("mgcc", "mcgcc") else []
    return ViewPolicy([spec, ViewSpec(**{**spec.__dict__})], couplings=cs)


def _sample(policy: ViewPolicy, n: int, hw=(32, 32), seed: int = 0) -> ViewParams:
    return policy.sample(torch.tensor([hw]).expand(n, 2), torch.Generator().manual_seed(seed))


def _expected(centre: tuple[float, float], hw: tuple[int, int], s: float, crop: str, pad: str):
    """Independent per-view statement of the spec: (box, clip) from a drawn centre, plain Python."""
    H, W = hw
    size = (math.floor(W * math.sqrt(s) + 1e-9), math.floor(H * math.sqrt(s) + 1e-9))
    box, clip = [], []
    for c, n, L in zip(centre, size, (W, H)):
        x0 = math.floor(c - n / 2 + 0.5)
        if crop in ("cgcc", "mcgcc"):
            x0 = min(max(x0, 0), L - n)
        a, b = min(max(x0, 0), L), min(max(x0 + n, 0), L)
        if pad == "even" and crop in ("gcc", "mgcc"):
            vis = b - a
            box.append(a - (n - vis) // 2 if vis > 0 else x0)
            clip.append((a, vis))
        else:
            box.append(x0)
            clip.append((0, L))
    return (box[0], box[1], size[0], size[1]), (clip[0][0], clip[1][0], clip[0][1], clip[1][1])


# ------------------------------------------------------------------------------------------ the law
@pytest.mark.parametrize("hw", [(32, 32), (24, 40)])
def test_gcc_centres_follow_the_gaussian(hw):
    """Centres ~ N((W/2, H/2), diag(alpha W, alpha H)): mean, variances, no correlation, KS per axis."""
    alpha, n = 1.5, 20000
    p = _sample(_policy("gcc", alpha=alpha), n, hw)
    H, W = hw
    c = p.extra["crop_centre"].double()  # [n, 2 views, (x, y)]
    mu, var = torch.tensor([W / 2, H / 2]), alpha * torch.tensor([W, H], dtype=torch.float64)
    for v in range(2):
        for a in range(2):
            x = c[:, v, a]
            assert abs(float(x.mean() - mu[a])) / math.sqrt(var[a] / n) < Z
            # variance: standard error sigma^2 sqrt(2 / (n - 1)) for a normal sample
            assert abs(float(x.var() - var[a])) / (float(var[a]) * math.sqrt(2 / (n - 1))) < Z
            assert stats.kstest(x.numpy(), "norm", args=(float(mu[a]), math.sqrt(var[a]))).pvalue > P_MIN
        r = float(torch.corrcoef(c[:, v].T)[0, 1])  # x and y independent (diagonal covariance)
        assert abs(r) * math.sqrt(n) < Z
    r = float(torch.corrcoef(torch.stack([c[:, 0, 0], c[:, 1, 0]]))[0, 1])  # the views' centres independent
    assert abs(r) * math.sqrt(n) < Z
    assert torch.equal(p.extra["crop_mean"][:, :, 0], torch.full((n, 2), W / 2))


@pytest.mark.parametrize("crop", ["mgcc", "mcgcc"])
def test_mgcc_mean_uniform_and_offsets_gaussian(crop):
    alpha, n, (a, b), (H, W) = 2.0, 20000, (0.25, 0.75), (24, 40)
    p = _sample(_policy(crop, alpha=alpha, rng=(a, b)), n, (H, W), seed=1)
    m, c = p.extra["crop_mean"].double(), p.extra["crop_centre"].double()
    for ax, side in ((0, W), (1, H)):
        assert stats.kstest(m[:, 0, ax].numpy(), "uniform", args=(a * side, (b - a) * side)).pvalue > P_MIN
        for v in range(2):
            off = c[:, v, ax] - m[:, v, ax]
            assert stats.kstest(off.numpy(), "norm", args=(0.0, math.sqrt(alpha * side))).pvalue > P_MIN


def test_mgcc_views_share_one_mean_per_image_and_no_more():
    n = 20000
    p = _sample(_policy("mgcc"), n, seed=2)
    m, c = p.extra["crop_mean"], p.extra["crop_centre"]
    assert torch.equal(m[:, 0], m[:, 1])  # one mean per image, shared
    assert m[:, 0, 0].unique().numel() > n * 0.99  # ...drawn per image
    # no more: the offsets from the shared mean are independent between views (and between axes)
    off = (c - m).double()
    for a in range(2):
        r = float(torch.corrcoef(torch.stack([off[:, 0, a], off[:, 1, a]]))[0, 1])
        assert abs(r) * math.sqrt(n) < Z
    assert float((p.box[:, 0] == p.box[:, 1]).all(-1).float().mean()) < 0.05
    # the two views' centres correlate only through the shared mean: Cov = Var(mean) = (b-a)^2 W^2 / 12
    cov = float(((c[:, 0, 0] - c[:, 0, 0].mean()) * (c[:, 1, 0] - c[:, 1, 0].mean())).double().mean())
    expect = (0.5 * 32) ** 2 / 12
    sd = math.sqrt(float(c[:, 0, 0].double().var()) * float(c[:, 1, 0].double().var()) / n)
    assert abs(cov - expect) / sd < Z
    # without the coupling every view draws its own mean
    q = _sample(_policy("mgcc", share=False), 1000, seed=2)
    assert not bool((q.extra["crop_mean"][:, 0] == q.extra["crop_mean"][:, 1]).all(-1).any())


def test_make_policy_shares_the_mean_and_keeps_other_families():
    pol = make_policy("small", crop="mgcc", crop_size=0.4, alpha=1.5, gcc_range=(0.25, 0.75))
    assert [c.param for c in pol.couplings] == ["crop_mean"]
    p = _sample(pol, 500, seed=3)
    assert torch.equal(p.extra["crop_mean"][:, 0], p.extra["crop_mean"][:, 1])
    assert p.out_hw == [(20, 20), (20, 20)]
    # paired comparisons: same seed, other crop law -> same flips and colours
    r = _sample(make_policy("small", crop="random"), 500, seed=3)
    assert torch.equal(p.flip, r.flip) and torch.equal(p.brightness, r.brightness)


# ------------------------------------------------------------------------------------------ boxes
def test_expected_helper_on_hand_cases():
    """The test's own statement of the rules, on cases worked out by hand (32 px, s = 0.4 -> 20 px)."""
    # left/top border, even split: box [-10, 10) x [-6, 14) -> visible 10 x 14, zeros 10 = 5 + 5, 6 = 3 + 3
    assert _expected((0.34, 3.71), (32, 32), 0.4, "gcc", "even") == ((-5, -3, 20, 20), (0, 0, 10, 14))
    assert _expected((0.34, 3.71), (32, 32), 0.4, "gcc", "side") == ((-10, -6, 20, 20), (0, 0, 32, 32))
    assert _expected((0.34, 3.71), (32, 32), 0.4, "cgcc", "even") == ((0, 0, 20, 20), (0, 0, 32, 32))
    # right/bottom border: box [23, 43) -> visible [23, 32) = 9, zeros 11 = 5 left + 6 right
    assert _expected((33.2, 33.2), (32, 32), 0.4, "gcc", "even") == ((18, 18, 20, 20), (23, 23, 9, 9))
    assert _expected((33.2, 33.2), (32, 32), 0.4, "mcgcc", "even") == ((12, 12, 20, 20), (0, 0, 32, 32))
    # entirely outside: nothing visible
    assert _expected((-30.0, 16.0), (32, 32), 0.4, "gcc", "even")[1][2] == 0


@pytest.mark.parametrize("crop", ["gcc", "cgcc", "mgcc", "mcgcc"])
@pytest.mark.parametrize("pad", ["even", "side"])
def test_boxes_padding_and_clamping_at_every_border_and_corner(crop, pad):
    """Large alpha puts centres beyond all four borders and corners; every box and window equals
    the independent statement of the rules, crops keep their size, and all 8 border cases occur."""
    hw, s = (24, 40), 0.4
    p = _sample(_policy(crop, alpha=8.0, s=s, pad=pad), 3000, hw, seed=4)
    H, W = hw
    w, h = math.floor(W * math.sqrt(s)), math.floor(H * math.sqrt(s))
    assert p.out_hw == [(h, w), (h, w)]
    assert bool((p.box[..., 2] == w).all() and (p.box[..., 3] == h).all())
    seen = set()
    for i in range(p.num_images):
        for v in range(2):
            cx, cy = p.extra["crop_centre"][i, v].double().tolist()
            box, clip = _expected((cx, cy), hw, s, crop, pad)
            assert tuple(int(t) for t in p.box[i, v].tolist()) == box, (i, v, cx, cy)
            assert tuple(int(t) for t in p.clip[i, v].tolist()) == clip, (i, v, cx, cy)
            x0, y0 = math.floor(cx - w / 2 + 0.5), math.floor(cy - h / 2 + 0.5)
            seen.add(((x0 < 0) - (x0 + w > W), (y0 < 0) - (y0 + h > H)))
    assert seen == {(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)}  # inside, 4 borders, 4 corners
    if crop in ("cgcc", "mcgcc"):
        b = p.box
        assert bool(((b[..., 0] >= 0) & (b[..., 0] + w <= W) & (b[..., 1] >= 0) & (b[..., 1] + h <= H)).all())


def test_cgcc_is_gcc_shifted_inside():
    """Same seed, same centres: CGCC's box is GCC's (side padding) where that lies inside, else clamped."""
    g, c = _sample(_policy("gcc", alpha=4.0, pad="side"), 2000, seed=5), _sample(_policy("cgcc", alpha=4.0), 2000,
                                                                                  seed=5)
    assert torch.equal(g.extra["crop_centre"], c.extra["crop_centre"])
    inside = ((g.box[..., 0] >= 0) & (g.box[..., 0] + 20 <= 32) & (g.box[..., 1] >= 0) & (g.box[..., 1] + 20 <= 32))
    assert 0.1 < float(inside.float().mean()) < 0.9
    assert torch.equal(c.box[inside], g.box[inside])
    assert torch.equal(c.box[..., :2], g.box[..., :2].clamp(0, 12))


def test_fixed_crop_uniform_inside():
    n, hw = 24000, (24, 40)
    p = _sample(_policy("fixed", s=0.5), n, hw, seed=6)
    H, W = hw
    w, h = math.floor(W * math.sqrt(0.5)), math.floor(H * math.sqrt(0.5))
    assert p.out_hw == [(h, w)] * 2
    for ax, span in ((0, W - w + 1), (1, H - h + 1)):
        x = p.box[..., ax].long().flatten()
        assert int(x.min()) == 0 and int(x.max()) == span - 1
        assert stats.chisquare(torch.bincount(x, minlength=span).numpy()).pvalue > P_MIN
    assert torch.equal(p.clip, torch.tensor([0.0, 0.0, W, H]).expand_as(p.clip))


def test_crop_size_rule():
    for hw, s in (((32, 32), 0.2), ((32, 32), 0.8), ((10, 10), 0.64), ((17, 50), 0.3), ((5, 7), 1.0)):
        pol = _policy("gcc", s=s)
        H, W = hw
        exp = (max(1, math.floor(H * math.sqrt(s) + 1e-9)), max(1, math.floor(W * math.sqrt(s) + 1e-9)))
        assert pol.view_hw(hw) == [exp, exp]
    assert _policy("gcc", s=0.64).view_hw((10, 10))[0] == (8, 8)  # 10 * sqrt(0.64) is 8, not 7.999...


def test_native_size_needs_one_crop_size_per_batch():
    pol = _policy("gcc")
    with pytest.raises(ValueError, match="crops of 2 sizes"):
        pol.sample(torch.tensor([[32, 32], [40, 40]]))
    # with an explicit size the crops are resized and any sizes mix
    sized = ViewPolicy([ViewSpec(size=16, crop="gcc", crop_size=0.4)] * 2)
    assert sized.sample(torch.tensor([[32, 32], [40, 40]])).out_hw == [(16, 16)] * 2


# ------------------------------------------------------------------------------------------ pixels
def _float_images(n: int, hw, seed: int = 0) -> torch.Tensor:
    """Float images whose every pixel is a positive multiple of 1/255 (so zeros mean padding)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (n, 3, *hw), generator=g).float() / 255


def _expected_pixels(img: torch.Tensor, box, clip) -> torch.Tensor:
    """The view as plain indexing: zeros, then the image pixels of the box inside image and window."""
    x0, y0, w, h = box
    cx, cy, cw, ch = clip
    H, W = img.shape[-2:]
    out = torch.zeros(3, h, w)
    for yy in range(h):
        for xx in range(w):
            sx, sy = x0 + xx, y0 + yy
            if 0 <= sx < W and 0 <= sy < H and cx <= sx < cx + cw and cy <= sy < cy + ch:
                out[:, yy, xx] = img[:, sy, sx]
    return out


@pytest.mark.parametrize("crop,pad", [("gcc", "even"), ("gcc", "side"), ("mgcc", "even"), ("cgcc", "even"),
                                      ("fixed", "even")])
def test_rendered_pixels_zero_outside_and_equal_to_reference(crop, pad):
    hw, n = (24, 40), 48
    p = _sample(_policy(crop, alpha=8.0, pad=pad), n, hw, seed=7)
    imgs = _float_images(n, hw)
    fast = render_views(imgs, p, mode="fast")
    exact = render_views(imgs, p, mode="exact")
    lst = render_views_list(list(imgs), p, mode="exact")
    u8 = render_views((imgs * 255).round().to(torch.uint8), p, mode="fast")
    zeros = 0
    for i in range(n):
        for v in range(2):
            box = tuple(int(t) for t in p.box[i, v].tolist())
            clip = tuple(int(t) for t in p.clip[i, v].tolist())
            want = _expected_pixels(imgs[i], box, clip)
            for got in (fast[v][i], exact[v][i], lst[v][i], render_view_reference(imgs[i], p, i, v)):
                assert torch.equal(got, want)
            assert torch.equal(u8[v][i] == 0, want == 0)  # uint8 input: the padding is exactly 0 too
            zeros += int((want == 0).sum())
    if crop != "cgcc" and crop != "fixed":
        assert zeros > 0  # some boxes did leave the image


def test_even_padding_centres_the_visible_part():
    """Even split: the visible part sits in the middle (left zeros = floor(pad / 2)); one-sided:
    the zeros are on the crossed side only."""
    hw, n = (32, 32), 400
    pe = _sample(_policy("gcc", alpha=8.0, pad="even"), n, hw, seed=8)
    ps = _sample(_policy("gcc", alpha=8.0, pad="side"), n, hw, seed=8)
    imgs = _float_images(n, hw, seed=1)
    ve, vs = render_views(imgs, pe, mode="exact")[0], render_views(imgs, ps, mode="exact")[0]
    checked = 0
    for i in range(n):
        cols = (ve[i] != 0).any(0).any(0).nonzero().squeeze(1)
        if cols.numel() == 0 or cols.numel() == 20:
            continue
        pad = 20 - cols.numel()
        assert int(cols[0]) == pad // 2 and int(cols[-1]) == 19 - (pad - pad // 2)
        side_cols = (vs[i] != 0).any(0).any(0).nonzero().squeeze(1)
        assert side_cols.numel() == cols.numel() and (int(side_cols[0]) == 0 or int(side_cols[-1]) == 19)
        # the same pixels, moved (rows too)
        rows, side_rows = ((x[i] != 0).any(0).any(1).nonzero().squeeze(1) for x in (ve, vs))
        assert torch.equal(ve[i][:, rows][..., cols], vs[i][:, side_rows][..., side_cols])
        checked += 1
    assert checked > 50


def test_gcc_recipe_blur_is_3x3_at_cifar_crop_sizes():
    pol = make_policy("gcc", crop="gcc", crop_size=0.2)
    assert [s.blur_p for s in pol.views] == [1.0, 1.0] and all(s.jitter_p == 0 and s.gray_p == 0 for s in pol.views)
    for s in (0.2, 0.4, 0.6, 0.8, 1.0):
        side = math.floor(32 * math.sqrt(s))
        assert blur_kernel_size(side, 1.0, "tenth") == 3


def test_joint_views_transform_gcc():
    from jointaug.transforms import JointViews

    t = JointViews("gcc", crop="mcgcc", crop_size=0.6, alpha=1.0, seed=0)
    views, p = t(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8), return_params=True)
    assert [tuple(v.shape) for v in views] == [(3, 24, 24)] * 2
    assert torch.equal(p.extra["crop_mean"][:, 0], p.extra["crop_mean"][:, 1])


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kw,match", [
    (dict(crop_size=0.0), "crop_size.*0.0"), (dict(crop_size=1.5), "crop_size.*1.5"),
    (dict(crop_size=-0.2), "crop_size"), (dict(alpha=0.0), "alpha.*0.0"), (dict(alpha=-1.0), "alpha"),
    (dict(alpha=float("nan")), "alpha.*nan"), (dict(alpha=float("inf")), "alpha.*inf"),
    (dict(gcc_range=(0.8, 0.2)), "gcc_range"), (dict(gcc_range=(-0.1, 0.5)), "gcc_range"),
    (dict(gcc_range=(0.5, 1.2)), "gcc_range"), (dict(pad="left"), "pad.*left"), (dict(crop="gauss"), "crop.*gauss"),
])
def test_bad_values_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        ViewSpec(size=None, **{"crop": "gcc", **kw})


def test_bad_combinations_refused():
    with pytest.raises(ValueError, match="size=None"):
        ViewSpec(size=None)  # a resized crop needs a size
    g = ViewSpec(size=None, crop="gcc")
    with pytest.raises(ValueError, match="coupling scale.*'gcc'"):
        ViewPolicy([g, g], couplings=[Coupling("scale", (0, 1))])
    with pytest.raises(ValueError, match="crop_mean.*'gcc'"):
        ViewPolicy([g, g], couplings=[Coupling("crop_mean", (0, 1), Same())])
    with pytest.raises(ValueError, match="scale"):
        make_policy("small", crop="gcc", scale=(0.2, 1.0))
    with pytest.raises(ValueError, match="crop must be one of"):
        make_policy("small", crop="gaussian")
    with pytest.raises(ValueError, match="crop_size"):
        make_policy("small", crop="gcc", crop_size=2.0)


# ------------------------------------------------------------------------------------------ rotation
def test_rotation_law_and_square_views_only():
    n = 12000
    pol = ViewPolicy([ViewSpec(size=16, rotate_p=0.75), ViewSpec(size=16)])
    p = _sample(pol, n, seed=9)
    assert bool((p.rotation[:, 1] == 0).all())
    counts = torch.bincount(p.rotation[:, 0], minlength=4)
    assert stats.chisquare(counts.numpy()).pvalue > P_MIN  # rotate_p = 3/4: four angles, equal chances
    with pytest.raises(ValueError, match="rotate_p=0.5 needs a square view.*16, 12"):
        ViewSpec(size=(16, 12), rotate_p=0.5)
    native = ViewPolicy([ViewSpec(size=None, crop="gcc", rotate_p=0.5)])
    assert native.sample((32, 32)).out_hw == [(20, 20)]
    with pytest.raises(ValueError, match="rotate_p=0.5 needs square views"):
        native.sample((24, 40))
    q = identity_params(torch.tensor([[8, 8]]), [(4, 6)])
    q.rotation[0, 0] = 1
    with pytest.raises(ValueError, match="view 0 is 4x6"):
        render_views(torch.zeros(1, 3, 8, 8), q)
    q.rotation[0, 0] = 4
    with pytest.raises(ValueError, match="0..3"):
        render_views(torch.zeros(1, 3, 8, 8), q)


def identity_params(hw, out_hw):
    from jointaug.sampling.params import identity_params as ip

    return ip(hw, out_hw)


def _full_policy(rotate_p: float = 0.75) -> ViewPolicy:
    """Every op on: crop, flip, colour jitter, gray, blur, solarize, rotation."""
    spec = ViewSpec(size=12, scale=(0.2, 1.0), jitter=(0.8, 0.8, 0.8, 0.2), jitter_p=0.8, gray_p=0.2, blur_p=0.5,
                    solarize_p=0.2, rotate_p=rotate_p)
    return ViewPolicy([spec, ViewSpec(**{**spec.__dict__})])


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_rotated_render_is_rot90_of_unrotated(mode):
    from jointaug.bench.images import procedural_images

    n = 64
    imgs = torch.from_numpy(__import__("numpy").stack(procedural_images(n, 20, 0))).permute(0, 3, 1, 2).contiguous()
    p = _sample(_full_policy(), n, (20, 20), seed=10)
    assert set(p.rotation.unique().tolist()) == {0, 1, 2, 3}
    flat = ViewParams.from_dict({**p.to_dict(), "rotation": torch.zeros_like(p.rotation).tolist()})
    kw = dict(mode=mode, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    rot, plain = render_views(imgs, p, **kw), render_views(imgs, flat, **kw)
    rot_l, plain_l = render_views_list(list(imgs), p, **kw), render_views_list(list(imgs), flat, **kw)
    for v in range(2):
        for i in range(n):
            k = int(p.rotation[i, v])
            assert torch.equal(rot[v][i], torch.rot90(plain[v][i], k, dims=(1, 2)))
            assert torch.equal(rot_l[v][i], torch.rot90(plain_l[v][i], k, dims=(1, 2)))
    if mode == "exact":  # the reference turns the view before its colour ops and blur: the same map
        err = max(float((render_view_reference(imgs[i].float() / 255, p, i, v, mean=kw["mean"], std=kw["std"])
                         - rot[v][i]).abs().max()) for i in range(n) for v in range(2))
        assert err < 1e-4 / 0.2  # 1e-4 in [0, 1] units, divided by the smallest std


def test_rotation_same_coupling_and_color_same_coupling():
    spec = ViewSpec(size=16, rotate_p=0.75, blur_p=0.5)
    pol = ViewPolicy([spec] * 3, couplings=[Coupling("rotation", (0, 2), Same()), Coupling("color", (0, 1), Same())])
    n = 2000
    p = _sample(pol, n, (24, 24), seed=11)
    assert torch.equal(p.rotation[:, 2], p.rotation[:, 0])
    assert float((p.rotation[:, 1] == p.rotation[:, 0]).float().mean()) < 0.5  # view 1 redraws its rotation
    for name in GROUPS["color"]:  # view 1 shares exactly view 0's colour parameters...
        t = getattr(p, name)
        assert torch.equal(t[:, 1], t[:, 0])
        assert not torch.equal(t[:, 2], t[:, 0])  # ...view 2 does not
    for name in ("box", "flip", "gray", "blur_sigma", "blur_apply"):  # ...and redraws everything else
        t = getattr(p, name)
        assert not torch.equal(t[:, 1], t[:, 0]), name
        assert not torch.equal(t[:, 2], t[:, 0]), name


def test_json_round_trip_keeps_rotation_and_clip():
    pol = ViewPolicy([ViewSpec(size=None, crop="gcc", alpha=8.0, rotate_p=0.75)] * 2)
    p = _sample(pol, 16, seed=12)
    assert bool(p.rotation.any()) and bool((p.clip[..., 2] < 32).any())
    q = ViewParams.from_json(p.to_json())
    assert q == p and q.rotation.dtype == torch.int64
    imgs = _float_images(16, (32, 32))
    for a, b in zip(render_views(imgs, p), render_views(imgs, q)):
        assert torch.equal(a, b)
    old = p.to_dict()  # serialisations from before rotation / clip existed load with their identities
    del old["rotation"], old["clip"]
    r = ViewParams.from_dict(old)
    assert not bool(r.rotation.any()) and torch.equal(r.clip[..., 2:], torch.tensor([32.0, 32.0]).expand(16, 2, 2))


# ------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize("name", ["gcc-cifar10", "gcc-synthetic", "gcc-cifar10-subset"])
def test_gcc_recipes_load(name, tmp_path):
    from jointaug.config import build_policy, load_config

    cfg = load_config(f"simclr/{name}", [f"data.root={tmp_path}"] if name == "gcc-cifar10" else [])
    assert cfg.method.params.temperature == 0.1 and cfg.method.params.proj_layers == 1
    assert cfg.optim.name == "adamw" and cfg.optim.weight_decay == 0 and cfg.optim.lr == 0.01
    pol = build_policy(cfg)
    assert [s.crop for s in pol.views] == ["gcc", "gcc"] and pol.out_hw == [None, None]
    assert pol.view_hw((32, 32)) == [(20, 20)] * 2
    assert all(s.blur_p == 1.0 and s.jitter_p == 0.0 and s.gray_p == 0.0 for s in pol.views)
    over = load_config(f"simclr/{name}", ["aug.crop=mcgcc", "aug.gcc_range=[0.4,0.6]", "aug.crop_size=0.8",
                                          f"data.root={tmp_path}"])
    pol = build_policy(over)
    assert pol.views[0].gcc_range == (0.4, 0.6) and pol.view_hw((32, 32))[0] == (28, 28)
    assert [c.param for c in pol.couplings] == ["crop_mean"]


@pytest.mark.parametrize("override,key,value", [
    ("aug.crop=gaussian", "aug.crop", "'gaussian'"), ("aug.crop_size=0", "aug.crop_size", "0"),
    ("aug.crop_size=1.5", "aug.crop_size", "1.5"), ("aug.alpha=0", "aug.alpha", "0"),
    ("aug.alpha=-2", "aug.alpha", "-2"), ("aug.alpha=nan", "aug.alpha", "nan"), ("aug.alpha=inf", "aug.alpha", "inf"),
    ("aug.gcc_range=[0.8,0.2]", "aug.gcc_range", "[0.8, 0.2]"), ("aug.gcc_range=[-0.1,0.5]", "aug.gcc_range", "-0.1"),
    ("aug.gcc_range=[0.5,1.5]", "aug.gcc_range", "1.5"), ("aug.pad=left", "aug.pad", "'left'"),
    ("aug.rotate_p=2", "aug.rotate_p", "2"),
])
def test_bad_gcc_config_values(override, key, value):
    from jointaug.config import ConfigError, load_config

    with pytest.raises(ConfigError) as info:
        load_config("simclr/gcc-synthetic", [override])
    msg = str(info.value)
    assert msg.startswith(f"{key}=") and value in msg, msg
