"""Sampled view parameters: plain data (a dataclass of tensors) shared by samplers and renderers.

Sampling fills a :class:`ViewParams` for a batch of N images and V views; a renderer turns images
plus a ViewParams into pixels and never draws random numbers. Replaying the same ViewParams gives
the same pixels. Every tensor field has leading shape [N, V].

Semantics of one view (the order a renderer applies them in):

1. crop ``box`` = (x0, y0, w, h) in source pixels (integers stored as float; pixels outside the
   source image, and outside the visible window ``clip`` = (x0, y0, w, h), are zero), resized to
   ``out_hw[v]`` (bilinear, antialiased when shrinking; no resize when the sizes agree);
2. horizontal ``flip``;
2b. ``rotation``: k quarter turns counter-clockwise (``torch.rot90(view, k, dims=(-2, -1))``), square
   views only (the photometric ops below commute with it: a renderer may apply it last);
3. colour jitter when ``color_apply``: brightness, contrast, saturation (multiplicative factors,
   1 = identity) and hue (shift in turns, 0 = identity) applied in the order ``color_order``
   (a permutation of 0=brightness, 1=contrast, 2=saturation, 3=hue);
4. ``gray``: ITU-R 601 luma copied to the three channels;
5. Gaussian blur with standard deviation ``blur_sigma`` (output pixels) when ``blur_apply``;
6. ``solarize``: values >= 128/255 become 1 - value;
7. normalisation (a renderer setting, not a parameter).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

#: Names of the colour operations, indexed as in ``ViewParams.color_order``.
COLOR_OPS = ("brightness", "contrast", "saturation", "hue")

_TENSOR_FIELDS = (
    "image_hw",
    "box",
    "fallback",
    "flip",
    "color_apply",
    "brightness",
    "contrast",
    "saturation",
    "hue",
    "color_order",
    "gray",
    "blur_sigma",
    "blur_apply",
    "solarize",
    "rotation",
    "clip",
)
#: fields that older serialisations may lack (filled with their identity value)
_OPTIONAL_FIELDS = ("rotation", "clip")


@dataclass
class ViewParams:
    """Parameters of V views for each of N images (see the module docstring for semantics)."""

    image_hw: Tensor  # [N, 2] int64: source (H, W) of every image
    out_hw: list[tuple[int, int]]  # V entries: output (h, w) of every view
    box: Tensor  # [N, V, 4] float32: (x0, y0, w, h) in source pixels
    fallback: Tensor  # [N, V] bool: the crop sampler fell back (no valid box in 10 attempts)
    flip: Tensor  # [N, V] bool
    color_apply: Tensor  # [N, V] bool
    brightness: Tensor  # [N, V] float32, 1 = identity
    contrast: Tensor  # [N, V] float32, 1 = identity
    saturation: Tensor  # [N, V] float32, 1 = identity
    hue: Tensor  # [N, V] float32 in [-0.5, 0.5], 0 = identity
    color_order: Tensor  # [N, V, 4] int64 permutation of 0..3 (COLOR_OPS)
    gray: Tensor  # [N, V] bool
    blur_sigma: Tensor  # [N, V] float32 (meaningful where blur_apply)
    blur_apply: Tensor  # [N, V] bool
    solarize: Tensor  # [N, V] bool
    rotation: Tensor | None = None  # [N, V] int64 in 0..3: quarter turns counter-clockwise (None: zeros)
    clip: Tensor | None = None  # [N, V, 4] float32 visible window (x0, y0, w, h) (None: the whole image)
    extra: dict[str, Tensor] = field(default_factory=dict)  # policy-specific extras (e.g. "joint_crop")

    def __post_init__(self) -> None:
        n, v = self.box.shape[0], self.box.shape[1]
        if self.rotation is None:
            self.rotation = torch.zeros(n, v, dtype=torch.int64, device=self.box.device)
        if self.clip is None:
            self.clip = whole_image_clip(self.image_hw, v).to(self.box.device)

    # ------------------------------------------------------------------ shape helpers
    @property
    def num_images(self) -> int:
        return int(self.box.shape[0])

    @property
    def num_views(self) -> int:
        return int(self.box.shape[1])

    @property
    def area(self) -> Tensor:
        """[N, V] crop area as a fraction of the source image area."""
        hw = self.image_hw.to(torch.float64)
        return (self.box[..., 2].double() * self.box[..., 3].double() / (hw[:, 0] * hw[:, 1])[:, None]).float()

    # ------------------------------------------------------------------ slicing and moving
    def _map(self, fn) -> ViewParams:
        kw = {name: fn(getattr(self, name)) for name in _TENSOR_FIELDS}
        kw["extra"] = {k: fn(v) for k, v in self.extra.items()}
        return ViewParams(out_hw=list(self.out_hw), **kw)

    def to(self, device: torch.device | str) -> ViewParams:
        """The same parameters on another device."""
        return self._map(lambda t: t.to(device))

    def index(self, idx: Any) -> ViewParams:
        """The parameters of a subset of images (``idx`` indexes the image axis)."""
        return self._map(lambda t: t[idx])

    def select_views(self, views: list[int]) -> ViewParams:
        """The parameters of a subset of views, in the given order."""
        out = ViewParams(
            out_hw=[self.out_hw[v] for v in views],
            **{
                name: (getattr(self, name) if name == "image_hw" else getattr(self, name)[:, views])
                for name in _TENSOR_FIELDS
            },
        )
        out.extra = {k: (v[:, views] if v.dim() >= 2 and v.shape[1] == self.num_views else v)
                     for k, v in self.extra.items()}
        return out

    @staticmethod
    def cat(parts: list[ViewParams]) -> ViewParams:
        """Concatenate parameters of several image batches (same views)."""
        first = parts[0]
        for p in parts[1:]:
            if p.out_hw != first.out_hw:
                raise ValueError(f"cannot concatenate ViewParams with out_hw {first.out_hw} and {p.out_hw}")
        kw = {name: torch.cat([getattr(p, name) for p in parts]) for name in _TENSOR_FIELDS}
        extra = {k: torch.cat([p.extra[k] for p in parts]) for k in first.extra if all(k in p.extra for p in parts)}
        return ViewParams(out_hw=list(first.out_hw), extra=extra, **kw)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Nested lists and numbers only: JSON-serialisable, readable, replayable."""
        d: dict[str, Any] = {name: getattr(self, name).tolist() for name in _TENSOR_FIELDS}
        d["out_hw"] = [list(hw) for hw in self.out_hw]
        d["extra"] = {k: v.tolist() for k, v in self.extra.items()}
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> ViewParams:
        """Inverse of :meth:`to_dict`."""
        dtypes = {
            "image_hw": torch.int64, "color_order": torch.int64,
            "fallback": torch.bool, "flip": torch.bool, "color_apply": torch.bool, "gray": torch.bool,
            "blur_apply": torch.bool, "solarize": torch.bool,
        }
        dtypes["rotation"] = torch.int64
        missing = [k for k in (*_TENSOR_FIELDS, "out_hw") if k not in d and k not in _OPTIONAL_FIELDS]
        if missing:
            raise KeyError(f"ViewParams.from_dict: missing keys {missing}")
        kw = {name: torch.tensor(d[name], dtype=dtypes.get(name, torch.float32))
              for name in _TENSOR_FIELDS if name in d}
        extra = {k: torch.tensor(v) for k, v in d.get("extra", {}).items()}
        return ViewParams(out_hw=[tuple(int(x) for x in hw) for hw in d["out_hw"]], extra=extra, **kw)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @staticmethod
    def from_json(s: str) -> ViewParams:
        return ViewParams.from_dict(json.loads(s))

    def __repr__(self) -> str:  # short, printable summary; full data via to_dict()
        n, v = self.num_images, self.num_views
        lines = [f"ViewParams(N={n}, V={v}, out_hw={self.out_hw})"]
        for i in range(min(n, 4)):
            for j in range(v):
                x0, y0, w, h = (int(t) for t in self.box[i, j].tolist())
                lines.append(
                    f"  img {i} view {j}: box=({x0},{y0},{w}x{h}) area={self.area[i, j]:.3f}"
                    f" flip={bool(self.flip[i, j])} color={bool(self.color_apply[i, j])}"
                    f"(b={self.brightness[i, j]:.2f},c={self.contrast[i, j]:.2f},"
                    f"s={self.saturation[i, j]:.2f},h={self.hue[i, j]:+.2f},"
                    f"order={self.color_order[i, j].tolist()}) gray={bool(self.gray[i, j])}"
                    f" blur={float(self.blur_sigma[i, j]) if self.blur_apply[i, j] else 0:.2f}"
                    f" solarize={bool(self.solarize[i, j])}"
                    + (f" rot={int(self.rotation[i, j]) * 90}" if int(self.rotation[i, j]) else "")
                )
        if n > 4:
            lines.append(f"  ... {n - 4} more images")
        return "\n".join(lines)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ViewParams):
            return NotImplemented
        return self.out_hw == other.out_hw and all(
            torch.equal(getattr(self, k), getattr(other, k)) for k in _TENSOR_FIELDS
        )


def whole_image_clip(image_hw: Tensor, num_views: int) -> Tensor:
    """[N, V, 4] visible windows (0, 0, W, H): every source pixel visible (the default ``clip``)."""
    hw = torch.as_tensor(image_hw).to(torch.float32)
    clip = torch.zeros(hw.shape[0], num_views, 4)
    clip[..., 2] = hw[:, 1, None]
    clip[..., 3] = hw[:, 0, None]
    return clip


def identity_params(image_hw: Tensor, out_hw: list[tuple[int, int]]) -> ViewParams:
    """Parameters that render each whole image, resized, with no photometric change (for tests/eval)."""
    n, v = image_hw.shape[0], len(out_hw)
    box = torch.zeros(n, v, 4)
    box[..., 2] = image_hw[:, 1, None].float()
    box[..., 3] = image_hw[:, 0, None].float()
    false = torch.zeros(n, v, dtype=torch.bool)
    ones = torch.ones(n, v)
    return ViewParams(
        image_hw=image_hw.long(), out_hw=list(out_hw), box=box, fallback=false.clone(), flip=false.clone(),
        color_apply=false.clone(), brightness=ones.clone(), contrast=ones.clone(), saturation=ones.clone(),
        hue=torch.zeros(n, v), color_order=torch.arange(4).expand(n, v, 4).clone(), gray=false.clone(),
        blur_sigma=torch.zeros(n, v), blur_apply=false.clone(), solarize=false.clone(),
    )


def fields() -> tuple[str, ...]:
    """Names of the tensor fields of ViewParams."""
    return _TENSOR_FIELDS


__all__ = ["COLOR_OPS", "ViewParams", "identity_params", "whole_image_clip", "fields"]
