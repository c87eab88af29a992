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

Each parameter family (crop, flip, colour, gray, blur, solarize, alternative) draws from its own
generator seeded from ``generator``, so two policies that differ only in, say, the crop law give
the same colours, blurs and flips for the same seed: comparisons are paired.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .couplings import GROUPS, Coupling, Independent, Same
from .params import ViewParams

MAX_ATTEMPTS = 10
_FAMILIES = ("crop", "flip", "color", "gray", "blur", "solarize", "alternative")


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


@dataclass
class ViewSpec:
    """What one view looks like (its own probabilities and ranges); validated on creation."""

    size: int | tuple[int, int] = 224
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0

    def __post_init__(self) -> None:
        size = (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)
        if len(size) != 2 or any((not isinstance(s, int)) or s < 1 for s in size):
            raise ValueError(f"view size must be a positive int or (h, w), got {self.size!r}")
        self.size = size
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
    at random (the paper's J-Crop-or-J-Blur coin); ``couplings`` always apply."""

    views: list[ViewSpec]
    couplings: list[Coupling] = field(default_factory=list)
    alternatives: list[list[Coupling]] = field(default_factory=list)
    fallback: str = "whole"
    name: str = "custom"

    def __post_init__(self) -> None:
        if not self.views:
            raise ValueError("a view policy needs at least one view")
        if self.fallback not in ("whole", "center"):
            raise ValueError(f"crop fallback must be 'whole' or 'center', got {self.fallback!r}")
        if len(self.alternatives) == 1:
            raise ValueError("alternatives needs at least two coupling sets (use couplings for one)")
        for c in self.all_couplings():
            i, j = c.views
            if max(i, j) >= len(self.views):
                raise ValueError(f"coupling {c.param} names view {max(i, j)} but the policy has "
                                 f"{len(self.views)} views")
            if not isinstance(c.law, (Same, Independent)) and c.param in ("scale", "sigma", "brightness",
                                                                          "contrast", "saturation", "hue"):
                ri, rj = self.views[i].range_of(c.param), self.views[j].range_of(c.param)
                if ri != rj:
                    raise ValueError(f"coupling {c.param} between views {i} and {j}: their ranges differ "
                                     f"({ri} vs {rj}); a ratio law needs one common range")

    @property
    def num_views(self) -> int:
        return len(self.views)

    @property
    def out_hw(self) -> list[tuple[int, int]]:
        return [tuple(v.size) for v in self.views]

    def all_couplings(self) -> list[Coupling]:
        return list(self.couplings) + [c for alt in self.alternatives for c in alt]

    def __repr__(self) -> str:
        lines = [f"ViewPolicy {self.name!r}: {self.num_views} views, crop fallback {self.fallback!r}"]
        for k, v in enumerate(self.views):
            lines.append(f"  view {k}: {v}")
        for c in self.couplings:
            lines.append(f"  coupling: {c}")
        for a, alt in enumerate(self.alternatives):
            lines.append(f"  alternative {a} (prob {1 / len(self.alternatives):.2f}): {alt}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ sampling
    def sample(self, image_hw: Tensor | tuple[int, int] | list, generator: torch.Generator | None = None) -> ViewParams:
        """Draw ViewParams for images of sizes ``image_hw`` ([N, 2] of (H, W), or one (H, W))."""
        hw = torch.as_tensor(image_hw, dtype=torch.int64)
        if hw.dim() == 1:
            hw = hw[None]
        if hw.dim() != 2 or hw.shape[1] != 2:
            raise ValueError(f"image_hw must be [N, 2] (H, W), got shape {tuple(hw.shape)}")
        if hw.numel() and int(hw.min()) < 1:
            bad = int((hw.min(dim=1).values < 1).nonzero()[0])
            raise ValueError(f"image {bad} has size {tuple(hw[bad].tolist())}: images need at least one pixel")
        if generator is None:
            generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
        seeds = torch.randint(0, 2**62, (len(_FAMILIES),), generator=generator).tolist()
        gens = {f: torch.Generator().manual_seed(s) for f, s in zip(_FAMILIES, seeds)}
        n, v = hw.shape[0], self.num_views

        # which alternative coupling set each image uses
        alt = (torch.randint(0, len(self.alternatives), (n,), generator=gens["alternative"])
               if self.alternatives else torch.zeros(n, dtype=torch.int64))
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
        box, fallback = self._boxes(hw, scalars["scale"], coupled_area, gens["crop"])

        g = gens["color"]
        color_apply = torch.rand(n, v, generator=g) < self._per_view("jitter_p")
        color_order = torch.argsort(torch.rand(n, v, 4, generator=g), dim=-1)
        flip = torch.rand(n, v, generator=gens["flip"]) < self._per_view("flip_p")
        gray = torch.rand(n, v, generator=gens["gray"]) < self._per_view("gray_p")
        blur_apply = torch.rand(n, v, generator=gens["blur"]) < self._per_view("blur_p")
        solarize = torch.rand(n, v, generator=gens["solarize"]) < self._per_view("solarize_p")

        params = ViewParams(
            image_hw=hw, out_hw=self.out_hw, box=box, fallback=fallback, flip=flip, color_apply=color_apply,
            brightness=scalars["brightness"].float(), contrast=scalars["contrast"].float(),
            saturation=scalars["saturation"].float(), hue=scalars["hue"].float(), color_order=color_order,
            gray=gray, blur_sigma=scalars["sigma"].float(), blur_apply=blur_apply, solarize=solarize,
            extra={"target_area": scalars["scale"].float(), "coupled_area": coupled_area},
        )
        if self.alternatives:
            params.extra["alternative"] = alt
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

    def _boxes(self, hw: Tensor, area_frac: Tensor, coupled: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        """Crop boxes [N, V, 4] (x0, y0, w, h) and fallback flags, vectorised over attempts."""
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
        box = torch.stack([x0, y0, w, h], dim=-1).float()
        return box, ~found
