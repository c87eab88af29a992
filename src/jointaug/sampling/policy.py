"""View policies: draw the parameters of every view of a batch of images, jointly where asked.

A :class:`ViewPolicy` is a list of :class:`ViewSpec` (one per view: output size, crop scale and
aspect ranges, colour jitter, grayscale, blur, solarize, flip probabilities) plus couplings between
chosen views (:mod:`jointaug.sampling.couplings`). ``policy.sample(image_hw, generator)`` returns a
:class:`~jointaug.sampling.params.ViewParams`; it never touches pixels.

Crop semantics (spec section 2):

- a view whose area is not coupled follows torchvision's RandomResizedCrop: up to 10 attempts, each
  redrawing area and aspect, then a centre crop clamped to the aspect range;
- a view whose area comes from a coupling (J-Crop) keeps its area and redraws only the aspect, up to
  10 times, then falls back on its own: ``fallback="whole"`` (the authors' released code, default)
  takes the whole image, ``fallback="center"`` the torchvision centre crop.

Fixed-size crops (``ViewSpec.crop``, the label-preserving crops of Hassan et al. 2025): the crop
keeps the image's aspect, ``w = floor(W sqrt(s))``, ``h = floor(H sqrt(s))`` for the area fraction
``s = crop_size``, and is not resized (``size=None``: the view's size is the crop's size):

- ``"fixed"``: uniform position fully inside (RandomCrop of that size; the papers' baseline RC);
- ``"gcc"``: centre ~ N(mu, diag(alpha W, alpha H)) with mu the image centre (alpha scales the
  variance); the box ``round(centre -/+ size / 2)`` may leave the image, the missing part is zero;
- ``"cgcc"``: as gcc, then the box is shifted to lie fully inside the image;
- ``"mgcc"`` / ``"mcgcc"``: the mean is drawn per image, mu ~ U(aW, bW) x U(aH, bH)
  (``gcc_range = (a, b)``); views share it through ``Coupling("crop_mean", (i, j), Same())``
  (``make_policy`` adds it), then as gcc / cgcc.

Padding of a box that leaves the image (gcc, mgcc): ``pad="even"`` (default; the authors' code,
torchvision's CenterCrop padding of the visible part) puts the visible part in the middle of the
view, zeros split evenly (the extra pixel right / below): the box is moved and ``clip`` (the
visible window) keeps the pixels the unmoved box saw; ``pad="side"`` keeps the box, zeros on the
side it crosses. The drawn means and centres are in ``extra["crop_mean"]`` / ``extra["crop_centre"]``
([N, V, 2], (x, y) in source pixels).

Region-centred crops (ContrastiveCrop, :mod:`jointaug.sampling.regions`): a resized view with
``centre="region_beta"`` keeps the area and aspect draws above (RandomResizedCrop's, or J-Crop's when
its area is coupled: identical to the ``"uniform"`` twin's for one seed) and places its crop with a
Beta(``region_alpha``, ``region_alpha``) centre per axis inside the image's region, passed as
``sample(..., regions=Tensor[N, 4])`` (relative (x0, y0, x1, y1); None: the whole image); fallback
crops keep their place. ``extra["region"]`` ([N, V, 4]) and ``extra["region_centre"]`` ([N, V, 2],
(x, y) source px, the drawn centre; the box's centre for other views and fallbacks) record it.

Rotation: ``rotate_p`` is the probability of a non-zero rotation; a rotated view turns by 90, 180
or 270 degrees (uniform), so ``rotate_p=0.75`` gives the four angles with equal probability.
Square views only (refused at construction; for ``size=None`` views at sampling).

Each parameter family (crop, flip, colour, gray, blur, solarize, alternative, rotation) draws from its own
generator seeded from ``generator``, so two policies that differ only in, say, the crop law give
the same colours, blurs and flips for the same seed: comparisons are paired.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .couplings import GROUPS, Coupling, Independent, Same
from .params import ViewParams, whole_image_clip
from .regions import CENTRE_LAWS, check_alpha, check_regions, region_starts, sample_beta, whole_regions

MAX_ATTEMPTS = 10
#: appended families keep the earlier families' seeds (torch's prefix-stable randint)
_FAMILIES = ("crop", "flip", "color", "gray", "blur", "solarize", "alternative", "rotation")
#: crop modes of a view: torchvision's RandomResizedCrop (J-Crop when its area is coupled) and the
#: fixed-size, non-resized crops (uniform position, and the Gaussian-centred family)
CROP_MODES = ("resized", "fixed", "gcc", "cgcc", "mgcc", "mcgcc")
PAD_MODES = ("even", "side")


def _prob(name: str, p: float) -> float:
    if not isinstance(p, (int, float)) or not (0.0 <= p <= 1.0):
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)


def _pair(name: str, v: tuple[float, float], *, positive: bool = True, upper: float | None = None) -> tuple:
    try:
        lo, hi = (float(x) for x in v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (min, max), got {v!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name} must be finite, got {v!r}")
    if lo > hi:
        raise ValueError(f"{name}: min {lo} > max {hi}")
    if positive and lo <= 0:
        raise ValueError(f"{name}: values must be positive, got min {lo}")
    if upper is not None and hi > upper:
        raise ValueError(f"{name}: max {hi} is above {upper}")
    return lo, hi


def _integer_hw(image_hw: Tensor | tuple[int, int] | list) -> Tensor:
    """``image_hw`` as int64; non-integer sizes (31.5 px) are an error, never truncated."""
    t = torch.as_tensor(image_hw)
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"image sizes must be integers, got dtype {t.dtype}")
    if t.is_floating_point():
        bad = ~torch.isfinite(t) | (t != t.round())
        if bool(bad.any()):
            raise ValueError(f"image sizes must be whole numbers of pixels, got {t[bad].flatten()[:4].tolist()} "
                             f"in {t.tolist() if t.numel() <= 8 else tuple(t.shape)}")
    return t.to(torch.int64)

@dataclass
class ViewSpec:
    """What one view looks like (its own probabilities and ranges); validated on creation."""

    size: int | tuple[int, int] | None = 224  # None: the crop's own size (fixed-size crop modes)
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    crop: str = "resized"  # one of CROP_MODES
    crop_size: float = 0.4  # fixed-size modes: crop area as a fraction of the image area, in (0, 1]
    alpha: float = 1.0  # gcc family: variance scale (std = sqrt(alpha * side) per axis)
    gcc_range: tuple[float, float] = (0.25, 0.75)  # mgcc / mcgcc: mean ~ U(a * side, b * side)
    pad: str = "even"  # gcc / mgcc boxes leaving the image: "even" (authors) or "side" zero padding
    rotate_p: float = 0.0  # probability of a rotation by 90, 180 or 270 degrees (uniform)
    centre: str = "uniform"  # resized crops: "uniform" position, or "region_beta" (ContrastiveCrop)
    region_alpha: float = 0.6  # region_beta: Beta(alpha, alpha) centre per axis inside the image's region

    def __post_init__(self) -> None:
        if self.crop not in CROP_MODES:
            raise ValueError(f"crop must be one of {CROP_MODES}, got {self.crop!r}")
        if self.centre not in CENTRE_LAWS:
            raise ValueError(f"centre must be one of {CENTRE_LAWS}, got {self.centre!r}")
        if self.centre == "region_beta" and self.crop != "resized":
            raise ValueError(f"centre='region_beta' (ContrastiveCrop) places resized crops; crop={self.crop!r} "
                             "has its own centre law")
        self.region_alpha = check_alpha(self.region_alpha)
        if self.size is None:
            if self.crop == "resized":
                raise ValueError("size=None (the crop's own size) needs a fixed-size crop mode "
                                 f"({CROP_MODES[1:]}), not crop='resized'")
        else:
            size = (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)
            if len(size) != 2 or any((not isinstance(s, int)) or s < 1 for s in size):
                raise ValueError(f"view size must be a positive int or (h, w), got {self.size!r}")
            self.size = size
        cs = self.crop_size
        if isinstance(cs, bool) or not isinstance(cs, (int, float)) or not (0.0 < cs <= 1.0):
            raise ValueError(f"crop_size must be an area fraction in (0, 1], got {cs!r}")
        self.crop_size = float(cs)
        a = self.alpha
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a) or a <= 0:
            raise ValueError(f"alpha must be a finite number > 0, got {a!r}")
        self.alpha = float(a)
        lo, hi = _pair("gcc_range", self.gcc_range, positive=False, upper=1.0)
        if lo < 0:
            raise ValueError(f"gcc_range must satisfy 0 <= a <= b <= 1, got {self.gcc_range!r}")
        self.gcc_range = (lo, hi)
        if self.pad not in PAD_MODES:
            raise ValueError(f"pad must be one of {PAD_MODES}, got {self.pad!r}")
        self.rotate_p = _prob("rotate_p", self.rotate_p)
        if self.rotate_p > 0 and self.size is not None and self.size[0] != self.size[1]:
            raise ValueError(f"rotate_p={self.rotate_p} needs a square view, got size {self.size} "
                             f"(a quarter turn would change the view's shape)")
        self.scale = _pair("scale", self.scale, upper=1.0)
        self.ratio = _pair("aspect ratio", self.ratio)
        self.blur_sigma = _pair("blur sigma", self.blur_sigma)
        for name in ("flip_p", "jitter_p", "gray_p", "blur_p", "solarize_p"):
            setattr(self, name, _prob(name, getattr(self, name)))
        if len(self.jitter) != 4:
            raise ValueError(f"jitter must be (brightness, contrast, saturation, hue), got {self.jitter!r}")
        b, c, s, h = (float(x) for x in self.jitter)
        for n, v in (("brightness", b), ("contrast", c), ("saturation", s), ("hue", h)):
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"jitter {n} strength must be a finite number >= 0, got {v!r}")
        if h > 0.5:
            raise ValueError(f"jitter hue strength must be <= 0.5, got {h}")
        self.jitter = (b, c, s, h)

    def range_of(self, param: str) -> tuple[float, float]:
        """[lo, hi] of a scalar parameter for this view (colour factors as in torchvision)."""
        if param == "scale":
            return self.scale
        if param == "sigma":
            return self.blur_sigma
        if param == "hue":
            return (-self.jitter[3], self.jitter[3])
        k = ("brightness", "contrast", "saturation").index(param)
        f = self.jitter[k]
        return (max(0.0, 1.0 - f), 1.0 + f)


@dataclass
class ViewPolicy:
    """Views plus couplings. ``alternatives``: per image, one coupling set is chosen uniformly
    at random (the paper's J-Crop-or-J-Blur coin); ``couplings`` always apply. ``alternative_p``
    (two alternatives only): probability of the first set instead of 1/2 (None: uniform, as drawn so far)."""

    views: list[ViewSpec]
    couplings: list[Coupling] = field(default_factory=list)
    alternatives: list[list[Coupling]] = field(default_factory=list)
    fallback: str = "whole"
    name: str = "custom"
    alternative_p: float | None = None

    def __post_init__(self) -> None:
        if not self.views:
            raise ValueError("a view policy needs at least one view")
        if self.fallback not in ("whole", "center"):
            raise ValueError(f"crop fallback must be 'whole' or 'center', got {self.fallback!r}")
        if len(self.alternatives) == 1:
            raise ValueError("alternatives needs at least two coupling sets (use couplings for one)")
        if self.alternative_p is not None:
            if len(self.alternatives) != 2:
                raise ValueError(f"alternative_p={self.alternative_p!r} needs exactly two alternatives, the policy "
                                 f"has {len(self.alternatives)}")
            if not 0.0 <= float(self.alternative_p) <= 1.0:
                raise ValueError(f"alternative_p must be a probability in [0, 1], got {self.alternative_p!r}")
        for c in self.all_couplings():
            i, j = c.views
            if max(i, j) >= len(self.views):
                raise ValueError(f"coupling {c.param} names view {max(i, j)} but the policy has "
                                 f"{len(self.views)} views")
            if c.param == "scale" and not isinstance(c.law, Independent):
                bad = [k for k in (i, j) if self.views[k].crop != "resized"]
                if bad:
                    raise ValueError(f"coupling scale between views {i} and {j}: view {bad[0]} has crop "
                                     f"{self.views[bad[0]].crop!r}, whose size is fixed (couple scale of "
                                     f"'resized' views only)")
            if c.param == "crop_mean":
                bad = [k for k in (i, j) if self.views[k].crop not in ("mgcc", "mcgcc")]
                if bad:
                    raise ValueError(f"coupling crop_mean between views {i} and {j}: view {bad[0]} has crop "
                                     f"{self.views[bad[0]].crop!r}; a shared random mean needs mgcc or mcgcc")
            if not isinstance(c.law, (Same, Independent)) and c.param in ("scale", "sigma", "brightness",
                                                                          "contrast", "saturation", "hue"):
                ri, rj = self.views[i].range_of(c.param), self.views[j].range_of(c.param)
                if ri != rj:
                    raise ValueError(f"coupling {c.param} between views {i} and {j}: their ranges differ "
                                     f"({ri} vs {rj}); a ratio law needs one common range")
                if hasattr(c.law, "law") and ri[0] != ri[1]:  # checked here, not at the first sample()
                    try:
                        c.law.law(*ri)
                    except ValueError as exc:
                        raise ValueError(f"coupling {c.param} between views {i} and {j} on {ri}: {exc}") from None

    @property
    def num_views(self) -> int:
        return len(self.views)

    @property
    def out_hw(self) -> list[tuple[int, int] | None]:
        """Output (h, w) of every view; None for a view that keeps its crop's size (see :meth:`view_hw`)."""
        return [None if v.size is None else tuple(v.size) for v in self.views]

    def view_hw(self, image_hw: Tensor | tuple[int, int] | list) -> list[tuple[int, int]]:
        """Output (h, w) of every view for images of sizes ``image_hw`` ([N, 2] or one (H, W)).

        A view of ``size=None`` keeps its crop's size ``(floor(H sqrt(s)), floor(W sqrt(s)))``;
        all images must then give that view one size (a batch holds one tensor per view).
        """
        hw = _integer_hw(image_hw).reshape(-1, 2)
        out = []
        for k, spec in enumerate(self.views):
            if spec.size is not None:
                out.append(tuple(spec.size))
                continue
            sizes = {tuple(t) for t in _fixed_crop_hw(hw, spec.crop_size).tolist()}
            if len(sizes) != 1:
                raise ValueError(f"view {k} keeps its crop's own size (size=None, crop_size={spec.crop_size}) "
                                 f"but these images give crops of {len(sizes)} sizes {sorted(sizes)[:4]}; "
                                 f"give the view a size (crops resized to it) or batch images of one size")
            h, w = sizes.pop()
            if spec.rotate_p > 0 and h != w:
                raise ValueError(f"view {k}: rotate_p={spec.rotate_p} needs square views but its crops are "
                                 f"{h}x{w} (non-square images); give the view a square size")
            out.append((int(h), int(w)))
        return out

    @property
    def uses_regions(self) -> bool:
        """True when some view draws its crop centre inside the images' regions (ContrastiveCrop)."""
        return any(s.centre == "region_beta" for s in self.views)

    def with_centre(self, centre: str) -> ViewPolicy:
        """This policy with every resized view's centre law set to ``centre`` (e.g. the ``"uniform"``
        twin a ContrastiveCrop run uses during its warm-up epochs)."""
        views = [dataclasses.replace(s, centre=centre) if s.crop == "resized" else s for s in self.views]
        return dataclasses.replace(self, views=views)

    def all_couplings(self) -> list[Coupling]:
        return list(self.couplings) + [c for alt in self.alternatives for c in alt]

    def __repr__(self) -> str:
        lines = [f"ViewPolicy {self.name!r}: {self.num_views} views, crop fallback {self.fallback!r}"]
        for k, v in enumerate(self.views):
            lines.append(f"  view {k}: {v}")
        for c in self.couplings:
            lines.append(f"  coupling: {c}")
        for a, alt in enumerate(self.alternatives):
            prob = (1 / len(self.alternatives) if self.alternative_p is None
                    else (self.alternative_p if a == 0 else 1 - self.alternative_p))
            lines.append(f"  alternative {a} (prob {prob:.2f}): {alt}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ sampling
    def sample(self, image_hw: Tensor | tuple[int, int] | list, generator: torch.Generator | None = None,
               regions: Tensor | None = None) -> ViewParams:
        """Draw ViewParams for images of sizes ``image_hw`` ([N, 2] of (H, W), or one (H, W)).

        ``regions``: [N, 4] relative (x0, y0, x1, y1) per image, where ``centre="region_beta"`` views
        draw their crop centres (None: the whole image); only for policies with such views."""
        hw = _integer_hw(image_hw)
        if hw.dim() == 1:
            hw = hw[None]
        if hw.dim() != 2 or hw.shape[1] != 2:
            raise ValueError(f"image_hw must be [N, 2] (H, W), got shape {tuple(hw.shape)}")
        if hw.numel() and int(hw.min()) < 1:
            bad = int((hw.min(dim=1).values < 1).nonzero()[0])
            raise ValueError(f"image {bad} has size {tuple(hw[bad].tolist())}: images need at least one pixel")
        if regions is not None and not self.uses_regions:
            raise ValueError("regions were given but no view of this policy has centre='region_beta'")
        if self.uses_regions:
            regions = whole_regions(hw.shape[0]).double() if regions is None else check_regions(regions, hw.shape[0])
        if generator is None:
            generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
        seeds = torch.randint(0, 2**62, (len(_FAMILIES),), generator=generator).tolist()
        gens = {f: torch.Generator().manual_seed(s) for f, s in zip(_FAMILIES, seeds)}
        n, v = hw.shape[0], self.num_views
        out_hw = self.view_hw(hw) if n else [s or (1, 1) for s in self.out_hw]

        # which alternative coupling set each image uses
        if self.alternative_p is not None:  # first set with probability p (a draw of its own, not randint's)
            alt = (torch.rand(n, generator=gens["alternative"]) >= float(self.alternative_p)).long()
        elif self.alternatives:
            alt = torch.randint(0, len(self.alternatives), (n,), generator=gens["alternative"])
        else:
            alt = torch.zeros(n, dtype=torch.int64)
        active = [(c, None) for c in self.couplings]
        active += [(c, alt == a) for a, cs in enumerate(self.alternatives) for c in cs]

        scalars = {p: self._scalar(p, n, active, gens) for p in ("scale", "sigma", "brightness", "contrast",
                                                                 "saturation", "hue")}
        coupled_area = torch.zeros(n, v, dtype=torch.bool)
        for c, mask in active:
            if c.param == "scale" and not isinstance(c.law, Independent):
                m = torch.ones(n, dtype=torch.bool) if mask is None else mask
                for k in c.views:
                    coupled_area[:, k] |= m
        box, fallback, rcentre = self._boxes(hw, scalars["scale"], coupled_area, gens["crop"], regions)
        clip = whole_image_clip(hw, v)
        fixed = [k for k, s in enumerate(self.views) if s.crop != "resized"]
        if fixed:
            gbox, gclip, centre, mean = self._fixed_boxes(hw, active, gens["crop"])
            box[:, fixed], clip[:, fixed], fallback[:, fixed] = gbox[:, fixed], gclip[:, fixed], False

        g = gens["color"]
        color_apply = torch.rand(n, v, generator=g) < self._per_view("jitter_p")
        color_order = torch.argsort(torch.rand(n, v, 4, generator=g), dim=-1)
        flip = torch.rand(n, v, generator=gens["flip"]) < self._per_view("flip_p")
        gray = torch.rand(n, v, generator=gens["gray"]) < self._per_view("gray_p")
        blur_apply = torch.rand(n, v, generator=gens["blur"]) < self._per_view("blur_p")
        solarize = torch.rand(n, v, generator=gens["solarize"]) < self._per_view("solarize_p")
        g = gens["rotation"]
        turn = torch.rand(n, v, generator=g) < self._per_view("rotate_p")
        rotation = torch.where(turn, torch.randint(1, 4, (n, v), generator=g), 0)

        params = ViewParams(
            image_hw=hw, out_hw=out_hw, box=box, rotation=rotation, clip=clip, fallback=fallback, flip=flip,
            color_apply=color_apply,
            brightness=scalars["brightness"].float(), contrast=scalars["contrast"].float(),
            saturation=scalars["saturation"].float(), hue=scalars["hue"].float(), color_order=color_order,
            gray=gray, blur_sigma=scalars["sigma"].float(), blur_apply=blur_apply, solarize=solarize,
            extra={"target_area": scalars["scale"].float(), "coupled_area": coupled_area},
        )
        if self.alternatives:
            params.extra["alternative"] = alt
        if regions is not None:
            params.extra["region"] = regions.float()[:, None, :].expand(n, v, 4).clone()
            params.extra["region_centre"] = rcentre.float()
        if fixed:
            params.extra["crop_centre"], params.extra["crop_mean"] = centre.float(), mean.float()
        for c, mask in active:  # whole-group copies (LooC's "same augmentation i")
            if isinstance(c.law, Same):
                i, j = c.views
                m = torch.ones(n, dtype=torch.bool) if mask is None else mask
                for name in GROUPS[c.param]:
                    t = getattr(params, name)
                    t[m, j] = t[m, i]
        return params

    def _per_view(self, attr: str) -> Tensor:
        return torch.tensor([getattr(s, attr) for s in self.views])

    def _scalar(self, param: str, n: int, active: list, gens: dict) -> Tensor:
        """[N, V] float64 values of one scalar parameter: independent per view, then couplings."""
        family = {"scale": "crop", "sigma": "blur"}.get(param, "color")
        g = gens[family]
        ranges = torch.tensor([s.range_of(param) for s in self.views], dtype=torch.float64)
        u = torch.rand(n, len(self.views), generator=g, dtype=torch.float64)
        out = ranges[:, 0] + u * (ranges[:, 1] - ranges[:, 0])
        for c, mask in active:
            if c.param != param or isinstance(c.law, Independent):
                continue
            i, j = c.views
            lo, hi = self.views[i].range_of(param)
            if isinstance(c.law, Same):
                xi, xj = out[:, i], out[:, i].clone()
            else:
                xi, xj = c.law.sample_pair(n, lo, hi, g)
            m = torch.ones(n, dtype=torch.bool) if mask is None else mask
            out[:, i] = torch.where(m, xi, out[:, i])
            out[:, j] = torch.where(m, xj, out[:, j])
        return out

    def _boxes(self, hw: Tensor, area_frac: Tensor, coupled: Tensor, g: torch.Generator,
               regions: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Crop boxes [N, V, 4] (x0, y0, w, h), fallback flags and centres [N, V, 2], vectorised over attempts.

        Region views (``centre="region_beta"``) take their Beta draws after every other crop draw, so
        their areas and aspects are those of the uniform twin policy for the same generator."""
        n, v = area_frac.shape
        H = hw[:, 0, None, None].double()
        W = hw[:, 1, None, None].double()
        scale = torch.tensor([s.scale for s in self.views], dtype=torch.float64)  # [V, 2]
        log_ratio = torch.tensor([[math.log(s.ratio[0]), math.log(s.ratio[1])] for s in self.views],
                                 dtype=torch.float64)
        # torchvision redraws the area at every attempt; J-Crop keeps its sampled area
        u_area = torch.rand(n, v, MAX_ATTEMPTS, generator=g, dtype=torch.float64)
        redrawn = scale[None, :, 0, None] + u_area * (scale[None, :, 1, None] - scale[None, :, 0, None])
        frac = torch.where(coupled[..., None], area_frac[..., None], redrawn)
        frac[..., 0] = area_frac  # the first attempt uses the area drawn for the view
        u_ar = torch.rand(n, v, MAX_ATTEMPTS, generator=g, dtype=torch.float64)
        lr_lo, lr_hi = log_ratio[None, :, 0, None], log_ratio[None, :, 1, None]
        aspect = torch.exp(lr_lo + u_ar * (lr_hi - lr_lo))
        area = frac * W * H
        w = torch.round(torch.sqrt(area * aspect))
        h = torch.round(torch.sqrt(area / aspect))
        ok = (w > 0) & (w <= W) & (h > 0) & (h <= H)
        first = torch.argmax(ok.to(torch.int8), dim=-1, keepdim=True)  # first valid attempt (0 if none)
        found = ok.any(dim=-1)
        w = torch.gather(w, -1, first)[..., 0]
        h = torch.gather(h, -1, first)[..., 0]

        # fallbacks: torchvision's centre crop clamped to the aspect range, or the whole image
        Wf, Hf = W[..., 0].expand(n, v), H[..., 0].expand(n, v)
        in_ratio = Wf / Hf
        rmin = torch.tensor([s.ratio[0] for s in self.views], dtype=torch.float64)[None].expand(n, v)
        rmax = torch.tensor([s.ratio[1] for s in self.views], dtype=torch.float64)[None].expand(n, v)
        cw = torch.where(in_ratio < rmin, Wf, torch.where(in_ratio > rmax, torch.round(Hf * rmax), Wf))
        ch = torch.where(in_ratio < rmin, torch.round(Wf / rmin), torch.where(in_ratio > rmax, Hf, Hf))
        cw, ch = cw.clamp(1, None).minimum(Wf), ch.clamp(1, None).minimum(Hf)
        use_whole = coupled & (self.fallback == "whole")
        fw = torch.where(use_whole, Wf, cw)
        fh = torch.where(use_whole, Hf, ch)
        centre = ~use_whole
        w = torch.where(found, w, fw)
        h = torch.where(found, h, fh)

        ux, uy = torch.rand(2, n, v, generator=g, dtype=torch.float64)
        x0 = torch.floor(ux * (Wf - w + 1)).clamp(max=Wf - w)
        y0 = torch.floor(uy * (Hf - h + 1)).clamp(max=Hf - h)
        x0 = torch.where(found, x0, torch.where(centre, torch.floor((Wf - w) / 2), 0.0))
        y0 = torch.where(found, y0, torch.where(centre, torch.floor((Hf - h) / 2), 0.0))
        cx, cy = x0 + w / 2, y0 + h / 2
        region_views = [k for k, s in enumerate(self.views) if s.centre == "region_beta"]
        if region_views:
            r = regions[:, None, :]  # [N, 1, 4]
            u = torch.stack([sample_beta((n, 2), self.views[k].region_alpha, g) for k in region_views], dim=1)
            rv = torch.zeros(v, dtype=torch.bool)
            rv[region_views] = True
            use = found & rv[None]
            bx0, bcx = region_starts(Wf[:, region_views], w[:, region_views], r[..., 0], r[..., 2], u[..., 0])
            by0, bcy = region_starts(Hf[:, region_views], h[:, region_views], r[..., 1], r[..., 3], u[..., 1])
            for src, dst in ((bx0, x0), (by0, y0), (bcx, cx), (bcy, cy)):
                full = dst.clone()
                full[:, region_views] = src
                dst.copy_(torch.where(use, full, dst))
        box = torch.stack([x0, y0, w, h], dim=-1).float()
        return box, ~found, torch.stack([cx, cy], dim=-1)

    def _fixed_boxes(self, hw: Tensor, active: list, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Boxes of the fixed-size crop modes for every view (used where ``crop != "resized"``).

        Returns ``(box [N, V, 4], clip [N, V, 4], centre [N, V, 2], mean [N, V, 2])``; float64
        draws: the per-image means U(a, b) * side, then standard normals for the centres, then the
        uniform positions of ``"fixed"`` (all drawn for every view, so the stream does not depend on
        which views use which mode).
        """
        n, v = hw.shape[0], self.num_views
        side = torch.stack([hw[:, 1], hw[:, 0]], dim=-1).double()[:, None, :].expand(n, v, 2)  # (W, H)
        size = torch.stack([_fixed_crop_hw(hw, s.crop_size).flip(-1) for s in self.views], dim=1).double()
        rng = torch.tensor([s.gcc_range for s in self.views], dtype=torch.float64)  # [V, 2]
        alpha = torch.tensor([s.alpha for s in self.views], dtype=torch.float64)[None, :, None]
        multi = torch.tensor([s.crop in ("mgcc", "mcgcc") for s in self.views])[None, :, None]
        u = torch.rand(n, v, 2, generator=g, dtype=torch.float64)
        mean = torch.where(multi, (rng[None, :, 0, None] + u * (rng[None, :, 1, None] - rng[None, :, 0, None])) * side,
                           side / 2)
        for c, mask in active:  # MGCC: the views share one mean per image
            if c.param == "crop_mean" and isinstance(c.law, Same):
                i, j = c.views
                m = torch.ones(n, dtype=torch.bool) if mask is None else mask
                mean[m, j] = mean[m, i]
        centre = mean + torch.sqrt(alpha * side) * torch.randn(n, v, 2, generator=g, dtype=torch.float64)
        x0 = torch.floor(centre - size / 2 + 0.5)  # the box whose centre is nearest the drawn one
        uf = torch.rand(n, v, 2, generator=g, dtype=torch.float64)
        mode = [s.crop for s in self.views]
        is_fixed = torch.tensor([m == "fixed" for m in mode])[None, :, None]
        inside = torch.tensor([m in ("cgcc", "mcgcc") for m in mode])[None, :, None]
        even = torch.tensor([m in ("gcc", "mgcc") and s.pad == "even" for m, s in zip(mode, self.views)])
        x0 = torch.where(is_fixed, torch.floor(uf * (side - size + 1)).minimum(side - size), x0)
        x0 = torch.where(inside, x0.clamp(min=0).minimum(side - size), x0)
        # even padding: the visible part [a, b) in the middle of the view, zeros split evenly
        a, b = x0.clamp(0, None).minimum(side), (x0 + size).clamp(0, None).minimum(side)
        vis = b - a
        moved = torch.where(vis > 0, a - torch.floor((size - vis) / 2), x0)
        ev = even[None, :, None]
        box = torch.cat([torch.where(ev, moved, x0), size], dim=-1).float()
        clip = whole_image_clip(hw, v)
        clip = torch.where(ev, torch.cat([a, vis], dim=-1).float(), clip)
        return box, clip, centre, mean


def _fixed_crop_hw(hw: Tensor, crop_size: float) -> Tensor:
    """[N, 2] (h, w) of crops of area fraction ``crop_size`` with the images' aspect:
    ``floor(side * sqrt(s))`` (1e-9 absorbs the rounding of sqrt, e.g. 10 * sqrt(0.64)), at least 1."""
    r = math.sqrt(crop_size)
    return torch.floor(hw.double() * r + 1e-9).clamp(min=1).long()
