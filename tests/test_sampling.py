"""View policies, couplings and ViewParams: shapes, ranges, joint laws, replay data, bad input."""

import math

import pytest
import torch

from jointaug.sampling import (
    Coupling,
    Independent,
    JCLaw,
    RatioLaw,
    Same,
    UserJoint,
    ViewParams,
    ViewPolicy,
    ViewSpec,
    crop_policy,
    make_policy,
    recipe_names,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def hw(n, h=224, w=224):
    return torch.tensor([[h, w]]).expand(n, 2)


@pytest.mark.parametrize("recipe", recipe_names())
def test_every_recipe_samples_valid_params(recipe):
    policy = make_policy(recipe, crop="joint", size=32)
    p = policy.sample(torch.tensor([[40, 60], [32, 32], [7, 300]]), gen())
    n, v = 3, policy.num_views
    assert p.box.shape == (n, v, 4) and p.color_order.shape == (n, v, 4)
    assert sorted(p.color_order[0, 0].tolist()) == [0, 1, 2, 3]
    x0, y0, w, h = p.box.unbind(-1)
    assert (x0 >= 0).all() and (y0 >= 0).all() and (w >= 1).all() and (h >= 1).all()
    assert (x0 + w <= p.image_hw[:, 1, None]).all() and (y0 + h <= p.image_hw[:, 0, None]).all()
    assert torch.equal(x0, x0.round()) and torch.equal(w, w.round())
    if recipe == "dino":
        assert v == 8 and p.out_hw[0] == (32, 32) and p.out_hw[2] == (14, 14)


def test_same_seed_same_params_and_different_seed_differs():
    policy = make_policy("simclr", crop="joint", blur="joint", color="joint")
    a, b, c = (policy.sample(hw(64), gen(s)) for s in (1, 1, 2))
    assert a == b
    assert not torch.equal(a.box, c.box)


def test_families_are_paired_across_policies():
    """Changing only the crop law leaves colours, flips and blurs identical for the same seed."""
    rnd = make_policy("simclr").sample(hw(256), gen(5))
    jnt = make_policy("simclr", crop="joint").sample(hw(256), gen(5))
    for name in ("flip", "brightness", "color_order", "gray", "blur_sigma", "blur_apply"):
        assert torch.equal(getattr(rnd, name), getattr(jnt, name)), name
    assert not torch.equal(rnd.box, jnt.box)


def test_joint_crop_areas_follow_the_ratio_law():
    p = crop_policy("joint", beta=0.0, scale=(0.2, 1.0)).sample(hw(50_000), gen())
    s = p.extra["target_area"].double()
    assert (s >= 0.2 - 1e-6).all() and (s <= 1.0 + 1e-6).all()
    r = (s[:, 1] / s[:, 0]).log()
    # law level: J-Crop(0) puts 1 - ln2/ln5 = 56.9% of pairs beyond 2:1
    assert abs((r.abs() > math.log(2)).double().mean().item() - (1 - math.log(2) / math.log(5))) < 0.01
    # realised areas of non-fallback boxes are the target area up to rounding
    ok = ~p.fallback
    rel = (p.area.double()[ok] - s[ok]).abs() / s[ok]
    assert rel.max() < 0.02


def test_fallback_whole_vs_center_on_elongated_images():
    shape = torch.tensor([[10, 400]]).expand(2000, 2)  # aspect 40: few valid boxes of large area
    whole = crop_policy("joint", beta=-4, fallback="whole").sample(shape, gen())
    centre = crop_policy("joint", beta=-4, fallback="center").sample(shape, gen())
    assert whole.fallback.any()
    fb = whole.box[whole.fallback]
    assert (fb[:, 2] == 400).all() and (fb[:, 3] == 10).all() and (fb[:, :2] == 0).all()
    fc = centre.box[centre.fallback]
    assert (fc[:, 3] == 10).all() and (fc[:, 2] == round(10 * 4 / 3)).all()
    assert ((fc[:, 0] - (400 - fc[:, 2]) // 2).abs() < 1).all()


def test_tiny_images_get_valid_boxes():
    p = make_policy("simclr", crop="joint").sample(torch.tensor([[1, 1], [2, 1], [1, 3]]), gen())
    x0, y0, w, h = p.box.unbind(-1)
    assert (w >= 1).all() and (h >= 1).all()
    assert (x0 + w <= p.image_hw[:, 1, None]).all() and (y0 + h <= p.image_hw[:, 0, None]).all()


def test_joint_blur_keeps_each_views_own_coin():
    policy = make_policy("byol", blur="joint")  # blur p = 1.0 / 0.1
    p = policy.sample(hw(20_000), gen())
    assert p.blur_apply[:, 0].all()
    assert abs(p.blur_apply[:, 1].float().mean().item() - 0.1) < 0.01
    s = p.blur_sigma.double()
    assert (s >= 0.1 - 1e-6).all() and (s <= 2.0 + 1e-6).all()
    law = JCLaw(0.0, 0.1, 2.0)
    frac = ((s[:, 1] / s[:, 0]).log().abs() > math.log(2)).double().mean().item()
    assert abs(frac - law.prob_beyond(2)) < 0.015


def test_joint_color_couples_brightness_ratio():
    p = make_policy("mocov2", color="joint", beta=-2).sample(hw(20_000), gen())
    b = p.brightness.double()
    assert (b >= 0.6 - 1e-6).all() and (b <= 1.4 + 1e-6).all()
    law = JCLaw(-2.0, 0.6, 1.4)
    frac = ((b[:, 1] / b[:, 0]).log().abs() > math.log(1.5)).double().mean().item()
    assert abs(frac - law.prob_beyond(1.5)) < 0.015


def test_coin_combination_alternates_per_image():
    p = make_policy("simclr", crop="joint", blur="joint").sample(hw(4000), gen())
    alt = p.extra["alternative"]
    assert 0.45 < alt.float().mean().item() < 0.55
    assert p.extra["coupled_area"][alt == 0].all() and not p.extra["coupled_area"][alt == 1].any()


def test_same_coupling_copies_a_whole_group():
    v = ViewSpec(size=16, jitter_p=0.8)
    policy = ViewPolicy([v, v, v], couplings=[Coupling("color", (0, 2), Same())])
    p = policy.sample(hw(500, 20, 20), gen())
    for name in ("color_apply", "brightness", "contrast", "saturation", "hue", "color_order"):
        assert torch.equal(getattr(p, name)[:, 0], getattr(p, name)[:, 2]), name
    assert not torch.equal(p.brightness[:, 0], p.brightness[:, 1])


def test_user_joint_law_and_independent():
    def anti(n, lo, hi, g):
        x = lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)
        return x, lo + hi - x

    v = ViewSpec(size=8)
    p = ViewPolicy([v, v], couplings=[Coupling("brightness", (0, 1), UserJoint(anti))]).sample(hw(100), gen())
    assert torch.allclose(p.brightness[:, 0] + p.brightness[:, 1], torch.full((100,), 2.0))
    q = ViewPolicy([v, v], couplings=[Coupling("brightness", (0, 1), Independent())]).sample(hw(100), gen())
    assert not torch.allclose(q.brightness[:, 0] + q.brightness[:, 1], torch.full((100,), 2.0))
    bad = ViewPolicy([v, v], couplings=[Coupling("brightness", (0, 1), UserJoint(lambda n, lo, hi, g: 1.0))])
    with pytest.raises(ValueError, match="pair of tensors"):
        bad.sample(hw(4), gen())


def test_params_roundtrip_json_index_and_cat():
    p = make_policy("dino", crop="joint", size=64, n_local=2).sample(torch.tensor([[80, 90], [64, 70]]), gen())
    q = ViewParams.from_json(p.to_json())
    assert q == p
    assert p.index([1]).num_images == 1 and ViewParams.cat([p.index([0]), p.index([1])]) == p
    sub = p.select_views([0, 1])
    assert sub.num_views == 2 and sub.out_hw == p.out_hw[:2]
    assert "ViewParams(N=2, V=4" in repr(p)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(scale=(0.5, 0.2)), "min 0.5 > max 0.2"),
        (dict(scale=(0.0, 1.0)), "positive"),
        (dict(scale=(0.2, 1.5)), "above 1.0"),
        (dict(beta=float("nan"), crop="joint"), "beta must be a finite number"),
        (dict(beta=float("inf"), crop="joint"), "beta must be a finite number"),
        (dict(crop="jointt"), "crop must be one of"),
        (dict(size=0), "size must be a positive integer"),
        (dict(blur="joint", recipe="small"), "applies no blur"),
    ],
)
def test_bad_policy_arguments_name_the_value(kwargs, match):
    recipe = kwargs.pop("recipe", "simclr")
    with pytest.raises(ValueError, match=match):
        make_policy(recipe, **kwargs)


def test_bad_view_spec_and_image_sizes():
    with pytest.raises(ValueError, match="blur sigma: values must be positive"):
        ViewSpec(blur_sigma=(0.0, 2.0))
    with pytest.raises(ValueError, match="flip_p must be a probability"):
        ViewSpec(flip_p=1.5)
    with pytest.raises(ValueError, match="unknown recipe 'simclrr'"):
        make_policy("simclrr")
    with pytest.raises(ValueError, match="at least one pixel"):
        make_policy("simclr").sample(torch.tensor([[0, 5]]), gen())
    with pytest.raises(ValueError, match="ranges differ"):
        ViewPolicy([ViewSpec(scale=(0.2, 1)), ViewSpec(scale=(0.05, 0.4))], couplings=[Coupling("scale")])
    with pytest.raises(ValueError, match="unknown scalar parameter"):
        Coupling("area", (0, 1), RatioLaw())
