"""Framework view recipes (spec section 6) and ``make_policy``: recipe + joint options -> ViewPolicy.

``make_policy("simclr", crop="joint", beta=0)`` is SimCLR's two views with J-Crop(0) on the pair;
``blur="joint"`` couples the blur sigmas (J-Blur), ``color="joint"`` the brightness and/or contrast
factors (J-Color). When both crop and blur are joint, ``combine="coin"`` (default, the paper's
recommendation) flips a fair coin per image: J-Crop + ordinary blur, or ordinary crop + J-Blur;
``combine="both"`` applies both at once; ``coin_p`` makes the coin unfair (probability of J-Crop).

Fixed-size crops (Hassan et al. 2025, label-preserving crops): ``crop="fixed"`` (RandomCrop of that
size, their baseline) and ``crop="gcc" | "cgcc" | "mgcc" | "mcgcc"`` with ``crop_size`` (area
fraction), ``alpha`` (variance scale), ``gcc_range`` (the multi-object mean's range) and ``pad``
(``"even"``, the authors', or ``"side"``); views keep the crop's size unless ``size`` is given
(then crops are resized to it). The ``gcc`` recipe is their protocol's views: flip, Gaussian blur
always (3x3 at views below 40 px, the ``"tenth"`` kernel rule), no colour jitter, no grayscale.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .couplings import GROUPS, Coupling, RatioLaw, Same
from .policy import ViewPolicy, ViewSpec

# per recipe: jitter (b, c, s, h), jitter p, gray p, blur p per view, solarize p per view, crop scale
RECIPES: dict[str, dict] = {
    "simclr": dict(jitter=(0.8, 0.8, 0.8, 0.2), jitter_p=0.8, gray_p=0.2, blur_p=(0.5, 0.5),
                   solarize_p=(0.0, 0.0), scale=(0.08, 1.0), size=224),
    "mocov1": dict(jitter=(0.4, 0.4, 0.4, 0.4), jitter_p=1.0, gray_p=0.2, blur_p=(0.0, 0.0),
                   solarize_p=(0.0, 0.0), scale=(0.2, 1.0), size=224),
    "mocov2": dict(jitter=(0.4, 0.4, 0.4, 0.1), jitter_p=0.8, gray_p=0.2, blur_p=(0.5, 0.5),
                   solarize_p=(0.0, 0.0), scale=(0.2, 1.0), size=224),
    "simsiam": dict(jitter=(0.4, 0.4, 0.4, 0.1), jitter_p=0.8, gray_p=0.2, blur_p=(0.5, 0.5),
                    solarize_p=(0.0, 0.0), scale=(0.2, 1.0), size=224),
    "byol": dict(jitter=(0.4, 0.4, 0.2, 0.1), jitter_p=0.8, gray_p=0.2, blur_p=(1.0, 0.1),
                 solarize_p=(0.0, 0.2), scale=(0.08, 1.0), size=224),
    "mocov3": dict(jitter=(0.4, 0.4, 0.2, 0.1), jitter_p=0.8, gray_p=0.2, blur_p=(1.0, 0.1),
                   solarize_p=(0.0, 0.2), scale=(0.2, 1.0), size=224),
    "dino": dict(jitter=(0.4, 0.4, 0.2, 0.1), jitter_p=0.8, gray_p=0.2, blur_p=(1.0, 0.1),
                 solarize_p=(0.0, 0.2), scale=(0.4, 1.0), size=224,
                 local_scale=(0.05, 0.4), local_size=96, local_blur_p=0.5, n_local=6),
    "small": dict(jitter=(0.4, 0.4, 0.4, 0.1), jitter_p=0.8, gray_p=0.2, blur_p=(0.0, 0.0),
                  solarize_p=(0.0, 0.0), scale=(0.2, 1.0), size=32),
    # Hassan et al. 2025 (label-preserving crops): per-view flip + 3x3 Gaussian blur, nothing else
    "gcc": dict(jitter=(0.0, 0.0, 0.0, 0.0), jitter_p=0.0, gray_p=0.0, blur_p=(1.0, 1.0),
                solarize_p=(0.0, 0.0), scale=(0.2, 1.0), size=32),
}
RECIPE_ALIASES = {"moco": "mocov2", "moco_v1": "mocov1", "moco_v2": "mocov2", "moco_v3": "mocov3",
                  "small-data": "small", "small_data": "small", "cifar": "small"}
CHOICES = ("random", "joint")
#: multi-crop defaults of recipes without their own: local size = round(global size * 96 / 224), area range
LOCAL_SIZE_RATIO = 96 / 224
LOCAL_SCALE = (0.05, 0.4)
#: the modes of :func:`multicrop_pairs` (``aug.joint_pairs``)
JOINT_PAIR_MODES = ("global", "local", "both", "cross")
#: crop choices of make_policy: RandomResizedCrop, J-Crop, and the fixed-size crop modes
CROP_CHOICES = ("random", "joint", "fixed", "gcc", "cgcc", "mgcc", "mcgcc")


def recipe_names() -> list[str]:
    return sorted(RECIPES)


def _choice(name: str, v: str, choices: tuple[str, ...] = CHOICES) -> str:
    if v not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {v!r}")
    return v


def multicrop_pairs(mode: str, n_local: int, n_global: int = 2) -> list[tuple[int, int]]:
    """The view pairs the joint laws couple, for ``n_global`` global views followed by ``n_local`` local ones.

    ``global``: the global pair (0, 1); ``local``: pairs of local views (2, 3), (4, 5) ... (an even
    number >= 2 of them); ``both``: the global pair and the local pairs; ``cross``: each global view
    with one local view, (0, 2), (1, 3) (a joint law of crops then needs one area range for both:
    set ``local_scale`` to ``scale``). No view is in two pairs (a joint law draws a pair at once)."""
    if mode not in JOINT_PAIR_MODES:
        raise ValueError(f"joint pairs must be one of {JOINT_PAIR_MODES}, got {mode!r}")
    if n_global != 2:
        raise ValueError(f"multicrop_pairs: expects 2 global views, got {n_global}")
    local = list(range(n_global, n_global + n_local))
    if mode in ("local", "both") and (n_local < 2 or n_local % 2):
        raise ValueError(f"joint pairs {mode!r} couple pairs of local views: needs an even number >= 2 of "
                         f"local views, got n_local={n_local}")
    if mode == "cross" and n_local < n_global:
        raise ValueError(f"joint pairs 'cross' couple each global view with a local view: needs n_local >= "
                         f"{n_global}, got n_local={n_local}")
    local_pairs = [(local[k], local[k + 1]) for k in range(0, n_local - 1, 2)]
    if mode == "global":
        return [(0, 1)]
    if mode == "local":
        return local_pairs
    if mode == "both":
        return [(0, 1), *local_pairs]
    return [(g, local[g]) for g in range(n_global)]


def make_policy(
    recipe: str = "simclr",
    *,
    crop: str = "random",
    blur: str = "random",
    color: str = "random",
    beta: float = 0.0,
    blur_beta: float | None = None,
    color_beta: float | None = None,
    size: int | None = None,
    scale: tuple[float, float] | None = None,
    blur_p: Sequence[float] | None = None,
    color_params: Sequence[str] = ("brightness", "contrast"),
    combine: str = "coin",
    coin_p: float | None = None,
    bound: str = "paper",
    fallback: str = "whole",
    joint_views: Sequence[tuple[int, int]] | str | None = None,
    n_local: int | None = None,
    local_size: int | None = None,
    local_scale: tuple[float, float] | None = None,
    crop_size: float = 0.4,
    alpha: float = 1.0,
    gcc_range: tuple[float, float] = (0.25, 0.75),
    pad: str = "even",
    rotate_p: float = 0.0,
    leave_one_out: Sequence[str] = (),
    loo_share: str = "one",
    centre: str = "uniform",
    region_alpha: float = 0.6,
) -> ViewPolicy:
    """Build the view policy of a framework recipe with the chosen joint augmentations.

    ``joint_views``: the pairs of views the joint laws couple (default: views 0 and 1, the two
    global views; e.g. ``[(2, 3), (4, 5)]`` couples pairs of local views), or a mode of
    :func:`multicrop_pairs` (``"global" | "local" | "both" | "cross"``). A view is in one pair at most.
    Multi-crop (any recipe with crop=random|joint): ``n_local`` local views (the dino recipe: 6 by
    default, others 0) follow the 2 global views, with the recipe's colour settings, crop area
    ``local_scale`` (recipe's, else (0.05, 0.4)), size ``local_size`` (default round(size * 96 / 224)),
    blur probability the recipe's local one (else the mean of the global views'), no solarisation.
    ``crop`` in ``fixed | gcc | cgcc | mgcc | mcgcc``: the global views take fixed-size crops of
    area fraction ``crop_size`` (see :mod:`jointaug.sampling.policy`), not resized unless ``size``
    is given; mgcc / mcgcc views share one random mean per image (a ``crop_mean`` Same coupling).
    ``rotate_p``: probability of a quarter-turn rotation (90, 180 or 270 degrees) of every view.
    ``leave_one_out`` (LooC): augmentation groups ``a_1..a_n`` (e.g. ``("color", "rotation")``); the policy
    gets views ``[q, k_0, k_1..k_n]``: ``k_i`` (view ``1 + i``) copies ``k_0``'s spec and shares ``q``'s
    parameters of ``a_i`` (``loo_share="one"``, a ``Same`` coupling) or of every ``a_j``, j != i
    (``loo_share="all_but_one"``, the other reading); everything else is drawn independently.
    ``centre="region_beta"`` (ContrastiveCrop, crop=random|joint): every view's crop centre is drawn with a
    Beta(``region_alpha``, ``region_alpha``) law per axis inside the image's region, given to
    ``policy.sample(..., regions=...)`` (see :mod:`jointaug.sampling.regions`).
    """
    key = RECIPE_ALIASES.get(recipe, recipe)
    if key not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose from {recipe_names()}")
    r = RECIPES[key]
    crop = _choice("crop", crop, CROP_CHOICES)
    blur, color = _choice("blur", blur), _choice("color", color)
    if combine not in ("coin", "both"):
        raise ValueError(f"combine must be 'coin' or 'both', got {combine!r}")
    fixed = crop not in CHOICES
    if fixed and scale is not None:
        raise ValueError(f"scale={scale!r} applies to crop=random|joint; crop={crop!r} takes crop_size")
    if fixed and key == "dino":
        raise ValueError(f"crop={crop!r}: fixed-size crops are not defined for the dino multi-crop recipe")
    if size is None and not fixed:
        size = r["size"]
    if size is not None and (not isinstance(size, int) or size < 1):
        raise ValueError(f"size must be a positive integer, got {size!r}")
    blur_ps = tuple(r["blur_p"]) if blur_p is None else tuple(float(p) for p in blur_p)
    if len(blur_ps) != 2:
        raise ValueError(f"blur_p must give one probability per global view (2), got {blur_p!r}")
    base = ViewSpec(size=size if size is not None else r["size"],
                    scale=tuple(scale) if scale is not None else r["scale"], jitter=r["jitter"],
                    jitter_p=r["jitter_p"], gray_p=r["gray_p"], rotate_p=rotate_p if size is not None else 0.0)
    if centre != "uniform":
        if fixed:
            raise ValueError(f"centre={centre!r} (ContrastiveCrop) places resized crops: needs crop=random|joint, "
                             f"not crop={crop!r}")
        base = dataclasses.replace(base, centre=centre, region_alpha=region_alpha)
    if fixed:
        base = dataclasses.replace(base, size=size, crop=crop, crop_size=crop_size, alpha=alpha,
                                   gcc_range=tuple(gcc_range), pad=pad, rotate_p=rotate_p)
    views = [dataclasses.replace(base, blur_p=blur_ps[k], solarize_p=r["solarize_p"][k]) for k in range(2)]
    if n_local is not None and (isinstance(n_local, bool) or not isinstance(n_local, int) or n_local < 0):
        raise ValueError(f"n_local must be an integer >= 0, got {n_local!r}")
    n_loc = r.get("n_local", 0) if n_local is None else n_local
    if n_loc and fixed:
        raise ValueError(f"n_local={n_loc}: local views need crop=random|joint, not crop={crop!r}")
    if not n_loc and (local_size is not None or local_scale is not None):
        raise ValueError(f"local_size={local_size!r} / local_scale={local_scale!r} apply to local views, "
                         f"but the policy has none (n_local={n_loc})")
    if n_loc:
        if local_size is not None and (isinstance(local_size, bool) or not isinstance(local_size, int)
                                       or local_size < 1):
            raise ValueError(f"local_size must be a positive integer, got {local_size!r}")
        lsize = local_size if local_size is not None else max(1, round(size * LOCAL_SIZE_RATIO))
        lscale = tuple(local_scale) if local_scale is not None else r.get("local_scale", LOCAL_SCALE)
        lblur = r.get("local_blur_p", sum(blur_ps) / 2)
        local = dataclasses.replace(base, size=lsize, scale=lscale, blur_p=lblur, solarize_p=0.0)
        views += [dataclasses.replace(local) for _ in range(n_loc)]

    loo = [str(a) for a in leave_one_out]
    loo_c: list[Coupling] = []
    if loo:
        if loo_share not in ("one", "all_but_one"):
            raise ValueError(f"loo_share must be 'one' or 'all_but_one', got {loo_share!r}")
        bad = [a for a in loo if a not in GROUPS or not GROUPS[a]]
        if bad or len(set(loo)) != len(loo):
            raise ValueError(f"leave_one_out: augmentation groups must be distinct names from "
                             f"{', '.join(k for k, v in GROUPS.items() if v)}, got {loo}")
        if n_loc:
            raise ValueError(f"leave_one_out views and multi-crop local views (n_local={n_loc}) cannot be combined")
        if "rotation" in loo and views[0].rotate_p == 0:
            raise ValueError("leave_one_out includes 'rotation' but rotate_p=0: no view would be rotated "
                             "(rotate_p=0.75 gives the four angles uniformly)")
        for i, a in enumerate(loo):
            views.append(dataclasses.replace(views[1]))
            shared = [a] if loo_share == "one" else [b for b in loo if b != a]
            loo_c += [Coupling(b, (0, 2 + i), Same()) for b in shared]

    if isinstance(joint_views, str):
        pairs = multicrop_pairs(joint_views, n_loc)
    else:
        pairs = [tuple(p) for p in (joint_views or [(0, 1)])]
    seen: dict[int, tuple] = {}
    for p in pairs:
        for k in p:
            if k in seen:
                raise ValueError(f"joint_views: view {k} is in two pairs, {seen[k]} and {p}; a joint law draws "
                                 "both values of its pair, so a view can be coupled to one other view only")
            seen[k] = p
    jb = beta if blur_beta is None else blur_beta
    jc = beta if color_beta is None else color_beta
    crop_c = [Coupling("scale", p, RatioLaw(beta, bound)) for p in pairs] if crop == "joint" else []
    mean_c = [Coupling("crop_mean", p, Same()) for p in pairs] if crop in ("mgcc", "mcgcc") else []
    blur_c = [Coupling("sigma", p, RatioLaw(jb, bound)) for p in pairs] if blur == "joint" else []
    if blur == "joint":
        for i, j in pairs:
            if views[i].blur_p == 0 and views[j].blur_p == 0:
                raise ValueError(f"blur='joint' but recipe {key!r} applies no blur to views {i} and {j}; "
                                 f"pass blur_p=(p1, p2) to enable it (small-image recipes run without blur)")
    color_c = []
    if color == "joint":
        bad = [p for p in color_params if p not in ("brightness", "contrast", "saturation")]
        if bad or not color_params:
            raise ValueError(f"color_params must name brightness/contrast/saturation, got {list(color_params)}")
        color_c = [Coupling(p, pair, RatioLaw(jc, bound)) for p in color_params for pair in pairs]

    couplings, alternatives = list(color_c) + mean_c + loo_c, []
    if crop_c and blur_c and combine == "coin":
        alternatives = [crop_c, blur_c]
    else:
        couplings += crop_c + blur_c
    if coin_p is not None and not alternatives:
        raise ValueError(f"coin_p={coin_p!r} is the probability of J-Crop in the J-Crop-or-J-Blur coin: needs "
                         f"crop='joint', blur='joint' and combine='coin' (got crop={crop!r}, blur={blur!r}, "
                         f"combine={combine!r})")
    tag = "+".join(t for t, on in (("J-Crop", crop_c), ("J-Blur", blur_c), ("J-Color", color_c)) if on)
    name = f"{key}" + (f" {tag}({beta:g})" if tag else " (independent)")
    if tag and pairs != [(0, 1)]:
        name += " on " + ",".join(f"{i}-{j}" for i, j in pairs)
    if fixed:
        name += f" {crop.upper()}(s={crop_size:g}" + (f", alpha={alpha:g}" if crop != "fixed" else "") + ")"
    if n_loc:
        name += f" multi-crop 2x{views[0].size[0]}+{n_loc}x{views[2].size[0]}px"
    if centre == "region_beta":
        name += f" CCrop(alpha={region_alpha:g})"
    if loo:
        name += f" LooC[{','.join(loo)}{'' if loo_share == 'one' else ', all but one'}]"
    if coin_p is not None:
        name += f" coin(J-Crop p={float(coin_p):g})"
    return ViewPolicy(views=views, couplings=couplings, alternatives=alternatives, fallback=fallback, name=name,
                      alternative_p=None if coin_p is None else float(coin_p))


def crop_policy(
    kind: str = "random",
    *,
    beta: float = 0.0,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    size: int = 224,
    bound: str = "paper",
    fallback: str = "whole",
) -> ViewPolicy:
    """Two views with crops only (no photometric ops): the object of the analysis tools."""
    kind = _choice("crop", kind)
    v = ViewSpec(size=size, scale=scale, ratio=ratio, flip_p=0.0, jitter_p=0.0, gray_p=0.0)
    couplings = [Coupling("scale", (0, 1), RatioLaw(beta, bound))] if kind == "joint" else []
    name = f"J-Crop({beta:g})" if kind == "joint" else "RandomResizedCrop"
    return ViewPolicy(views=[v, dataclasses.replace(v)], couplings=couplings, fallback=fallback, name=name)


def blur_policy(
    kind: str = "random",
    *,
    beta: float = 0.0,
    sigma: tuple[float, float] = (0.1, 2.0),
    size: int = 224,
    bound: str = "paper",
) -> ViewPolicy:
    """Two views that are always blurred, sigmas independent or J-Blur(beta) (analysis tools)."""
    kind = _choice("blur", kind)
    v = ViewSpec(size=size, scale=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, gray_p=0.0, blur_p=1.0,
                 blur_sigma=sigma)
    couplings = [Coupling("sigma", (0, 1), RatioLaw(beta, bound))] if kind == "joint" else []
    name = f"J-Blur({beta:g})" if kind == "joint" else "GaussianBlur"
    return ViewPolicy(views=[v, dataclasses.replace(v)], couplings=couplings, name=name)
