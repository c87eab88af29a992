"""Joint views inside other people's pipelines: a two-view step that draws the pair's parameters jointly.

:class:`JointTwoCrops` is a drop-in for the ``TwoCropsTransform`` of the J-Crop authors' code (and
MoCo's), for lightly's ``MultiViewTransform`` and for solo-learn's N-crop wrappers: one image in, two
views out, each passed through the user's own per-view transform. What makes it joint is the first
step: the pair's crop boxes (and, where asked, blur sigmas and colour factors) are drawn together by
a jointaug :class:`~jointaug.sampling.ViewPolicy` (J-Crop(beta) by default), then each view is
cropped and resized by jointaug's reference renderer (PIL images come back as PIL images).
No torchvision is needed; where it is installed, its (v1 or v2) transforms can follow.

>>> step = JointTwoCrops(my_view_transform, crop="joint", beta=0.0, size=224)
>>> q, k = step(pil_image)                        # the user's transform applied to each view
>>> (q, k), params = step(pil_image, return_params=True)   # params: a dict of tensors (collatable)

Randomness (the same scheme as :class:`jointaug.transforms.JointViews`): every process draws from
its own ``torch.Generator``; in a DataLoader worker it is seeded from ``seed``, the worker seed the
DataLoader assigns (``base_seed + worker_id``; seed the loader with ``generator=``) and the
distributed rank. Same seeds -> same parameters; workers and epochs differ. The user's own per-view
transform draws from its own RNG (torch's, which the DataLoader also seeds per worker).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .sampling.couplings import Coupling, RatioLaw
from .sampling.params import ViewParams
from .sampling.policy import ViewPolicy, ViewSpec
from .seeding import ProcessGenerator
from .transforms import to_rgb_tensor

_CHOICES = (None, "random", "joint")


def _choice(name: str, value: str | None, allowed: tuple = _CHOICES) -> str | None:
    if value not in allowed:
        raise ValueError(f"JointTwoCrops: {name} must be one of {allowed}, got {value!r}")
    return value


def two_view_policy(
    *,
    crop: str = "joint",
    beta: float = 0.0,
    size: int | tuple[int, int] = 224,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_p: float = 0.0,
    blur: str | None = None,
    blur_p: float = 0.5,
    blur_sigma: tuple[float, float] = (0.1, 2.0),
    color: str | None = None,
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
    jitter_p: float = 0.8,
    color_params: Sequence[str] = ("brightness", "contrast"),
    combine: str = "coin",
    bound: str = "paper",
    fallback: str = "whole",
) -> ViewPolicy:
    """The pair's policy: crops always; flips, blur and colour jitter only when asked (else the user's transform
    does them). ``crop``/``blur``/``color`` = ``"joint"`` couple the pair with JC(``beta``); ``None`` = not drawn."""
    _choice("crop", crop, ("random", "joint"))
    _choice("blur", blur)
    _choice("color", color)
    if combine not in ("coin", "both"):
        raise ValueError(f"JointTwoCrops: combine must be 'coin' or 'both', got {combine!r}")
    spec = ViewSpec(size=size, scale=scale, ratio=ratio, flip_p=flip_p, jitter=jitter,
                    jitter_p=jitter_p if color else 0.0, gray_p=0.0, blur_p=blur_p if blur else 0.0,
                    blur_sigma=blur_sigma)
    crop_c = [Coupling("scale", (0, 1), RatioLaw(beta, bound))] if crop == "joint" else []
    blur_c = [Coupling("sigma", (0, 1), RatioLaw(beta, bound))] if blur == "joint" else []
    color_c = [Coupling(p, (0, 1), RatioLaw(beta, bound)) for p in color_params] if color == "joint" else []
    couplings, alternatives = list(color_c), []
    if crop_c and blur_c and combine == "coin":  # the paper's recommendation: J-Crop or J-Blur per image
        alternatives = [crop_c, blur_c]
    else:
        couplings += crop_c + blur_c
    tags = [t for t, on in (("J-Crop", crop_c), ("J-Blur", blur_c), ("J-Color", color_c)) if on]
    name = f"two views {'+'.join(tags)}({beta:g})" if tags else "two views (independent)"
    return ViewPolicy([spec, dataclasses.replace(spec)],
                      couplings=couplings, alternatives=alternatives, fallback=fallback, name=name)


def pair_params(params: ViewParams) -> dict[str, Tensor]:
    """The drawn parameters of one image's two views as a flat dict of tensors (for logging; collates).

    ``box`` [2, 4] (x0, y0, w, h source pixels), ``area`` [2] realised fraction of the image,
    ``log_area_ratio`` = ln(area[1] / area[0]), ``flip``, ``fallback``, ``blur_apply``, ``blur_sigma``,
    ``color_apply``, ``brightness``, ``contrast``, ``saturation``, ``hue`` [2], ``image_hw`` [2].
    """
    area = params.area[0].double()
    out = {"image_hw": params.image_hw[0], "box": params.box[0], "area": area.float(),
           "log_area_ratio": torch.log(area[1] / area[0]).float()}
    for name in ("flip", "fallback", "blur_apply", "blur_sigma", "color_apply", "brightness", "contrast",
                 "saturation", "hue"):
        out[name] = getattr(params, name)[0]
    return out


def _is_pil(img: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(img, Image.Image)


class JointTwoCrops:
    """Image -> [view_0, view_1]: a jointly drawn pair of crops, each through the user's per-view transform.

    ``view_transform``: one callable for both views, a pair of callables (asymmetric recipes such as
    BYOL's), or None (return the crops). ``policy``: any two-view :class:`ViewPolicy` instead of the
    keywords, which go to :func:`two_view_policy`. Crops come out as the input came in: PIL -> RGB PIL,
    uint8 tensor or array -> uint8 tensor [3, h, w], float tensor -> float [3, h, w] (modes and channel
    counts are converted to RGB as :func:`jointaug.transforms.to_rgb_tensor` documents).
    ``return_params=True`` also returns :func:`pair_params`; ``last_params`` holds the last call's
    full :class:`ViewParams` (in the calling process).
    """

    def __init__(
        self,
        view_transform: Callable | Sequence[Callable] | None = None,
        *,
        policy: ViewPolicy | None = None,
        seed: int | None = None,
        return_params: bool = False,
        **policy_kwargs: Any,
    ) -> None:
        if view_transform is None or callable(view_transform):
            self.view_transforms: list[Callable | None] = [view_transform, view_transform]
        else:
            transforms = list(view_transform)
            if len(transforms) != 2 or not all(callable(t) for t in transforms):
                raise TypeError("JointTwoCrops: view_transform must be a callable, a pair of callables or None, "
                                f"got {view_transform!r:.80}")
            self.view_transforms = transforms
        if policy is not None and policy_kwargs:
            raise ValueError(f"JointTwoCrops: pass either policy= or policy keywords, not both "
                             f"(got {sorted(policy_kwargs)})")
        self.policy = policy if policy is not None else two_view_policy(**policy_kwargs)
        if self.policy.num_views != 2:
            raise ValueError(f"JointTwoCrops: the policy must draw 2 views, {self.policy.name!r} draws "
                             f"{self.policy.num_views}")
        self.seed = seed
        self.return_params = return_params
        self.last_params: ViewParams | None = None
        self._streams = ProcessGenerator(seed)

    def __repr__(self) -> str:
        return f"JointTwoCrops(policy={self.policy.name!r}, seed={self.seed}, view_transforms={self.view_transforms})"

    def __getstate__(self) -> dict[str, Any]:  # generators stay in their process; workers make their own
        state = dict(self.__dict__)
        state["last_params"] = None
        return state

    def _generator(self) -> torch.Generator:
        return self._streams.get()

    def sample(self, image_hw: tuple[int, int]) -> ViewParams:
        """Draw the pair's parameters for an image of size (H, W) from this process's stream."""
        return self.policy.sample(torch.tensor([list(image_hw)]), self._generator())

    def crops(self, img: Any, params: ViewParams) -> list[Any]:
        """The two views of ``img`` under ``params``, before the user's transform (no random numbers).

        Rendered by jointaug's reference renderer (crop, antialiased bilinear resize, flip and the
        photometric ops drawn here), so replaying ``params`` gives the same pixels."""
        from .render.reference import render_view_reference

        image = to_rgb_tensor(img)
        as_uint8 = image.dtype == torch.uint8
        x = image.float() / 255 if as_uint8 else image.float()
        views = [render_view_reference(x, params, 0, v) for v in range(2)]
        if _is_pil(img):
            from PIL import Image

            return [Image.fromarray(self._to_uint8(v).permute(1, 2, 0).numpy()) for v in views]
        if as_uint8:
            return [self._to_uint8(v) for v in views]
        return [v.to(image.dtype) for v in views]

    @staticmethod
    def _to_uint8(x: Tensor) -> Tensor:
        return (x * 255).round().clamp(0, 255).to(torch.uint8)

    def __call__(self, img: Any, return_params: bool | None = None) -> list[Any] | tuple[list[Any], dict[str, Tensor]]:
        if isinstance(img, Tensor) and type(img) is not Tensor:
            img = img.as_subclass(Tensor)  # e.g. torchvision.tv_tensors.Image
        if _is_pil(img):
            hw = (img.height, img.width)
        elif isinstance(img, (Tensor, np.ndarray)):
            hw = tuple(to_rgb_tensor(img).shape[-2:])
        else:
            raise TypeError(f"JointTwoCrops: expected a PIL image, tensor or numpy array, got {type(img).__name__}")
        params = self.sample(hw)
        self.last_params = params
        views = [t(c) if t is not None else c for t, c in zip(self.view_transforms, self.crops(img, params))]
        if self.return_params if return_params is None else return_params:
            return views, pair_params(params)
        return views


__all__ = ["JointTwoCrops", "pair_params", "two_view_policy"]
