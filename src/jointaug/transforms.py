"""Per-image transforms for existing pipelines: one image in, its V views out (no torchvision needed).

>>> t = JointViews("simclr", crop="joint", beta=0.0, size=32)
>>> v1, v2 = t(pil_image)            # two [3, 32, 32] float tensors, normalised
>>> views, params = t(pil_image, return_params=True)

Randomness: each process draws from its own ``torch.Generator``. In the main process it is seeded
from ``seed`` (or from torch's global RNG when ``seed`` is None). In a DataLoader worker it is seeded
from ``seed``, the worker seed that the DataLoader assigns (``base_seed + worker_id``, drawn from the
loader's ``generator`` or torch's global RNG at every epoch) and the distributed rank: workers and
ranks get distinct streams, epochs differ, and the same seeds give the same views.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from .augment import IMAGENET_MEAN, IMAGENET_STD, MODES
from .sampling.params import ViewParams
from .sampling.policy import ViewPolicy
from .sampling.recipes import make_policy
from .seeding import ProcessGenerator


def to_rgb_tensor(img: Any) -> Tensor:
    """A PIL image, numpy array or tensor as [3, H, W] (uint8 kept; float must be in [0, 1]).

    Documented conversions: tensors and arrays with 1 channel are repeated to RGB, with 2 or 4 lose
    their alpha; PIL images of any mode follow :func:`jointaug.data.io.load_image` (16-bit and float
    images rescaled to 8 bits, palette and CMYK to RGB, alpha as documented there).
    """
    from PIL import Image

    if isinstance(img, Image.Image):
        from .data.io import load_image

        return load_image(img)
    t = torch.from_numpy(np.ascontiguousarray(img)) if isinstance(img, np.ndarray) else img
    if not isinstance(t, Tensor):
        raise TypeError(f"expected a PIL image, numpy array or tensor, got {type(img).__name__}")
    if isinstance(img, np.ndarray) and t.dim() == 3 and t.shape[-1] in (1, 3, 4) and t.shape[0] not in (1, 3, 4):
        t = t.permute(2, 0, 1)  # numpy arrays are H x W x C
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3:
        raise ValueError(f"image must be [C, H, W] or [H, W], got shape {tuple(t.shape)}")
    c = t.shape[0]
    if c == 1:
        t = t.expand(3, -1, -1)
    elif c == 2 or c == 4:
        t = t[:-1].expand(3, -1, -1) if c == 2 else t[:3]
    elif c != 3:
        raise ValueError(f"image has {c} channels; expected 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA)")
    if t.shape[1] < 1 or t.shape[2] < 1:
        raise ValueError(f"image has size {tuple(t.shape[1:])}: it needs at least one pixel")
    if t.dtype != torch.uint8:
        if not t.is_floating_point():
            raise ValueError(f"integer images must be uint8, got {t.dtype} (convert 16-bit images first)")
        if t.numel() and (float(t.min()) < 0 or float(t.max()) > 1):
            raise ValueError("float images must hold values in [0, 1]")
    return t.contiguous()


class JointViews:
    """Callable transform: image -> list of V view tensors (optionally with their ViewParams).

    ``recipe`` is a framework recipe (simclr, mocov1, mocov2, mocov3, byol, simsiam, dino, small, gcc);
    ``blur``/``color`` are ``"random"`` or ``"joint"``, ``crop`` also ``"fixed"``, ``"gcc"``, ``"cgcc"``,
    ``"mgcc"`` or ``"mcgcc"`` (label-preserving fixed-size crops, not resized unless ``size`` is given:
    ``JointViews("gcc", crop="gcc", crop_size=0.4, alpha=1.5)``); the other keywords (``crop_size``,
    ``alpha``, ``gcc_range``, ``pad``, ``rotate_p``, ...) go to :func:`jointaug.sampling.make_policy`.
    ``mode="exact"`` (default) follows torchvision's colour semantics; ``"fast"`` trades exactness
    for speed. Pass ``policy=`` to use any ViewPolicy.
    """

    def __init__(
        self,
        recipe: str = "simclr",
        *,
        crop: str = "random",
        blur: str = "random",
        color: str = "random",
        beta: float = 0.0,
        size: int | None = None,
        scale: tuple[float, float] | None = None,
        mode: str = "exact",
        normalize: bool = True,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
        seed: int | None = None,
        return_params: bool = False,
        policy: ViewPolicy | None = None,
        **policy_kwargs: Any,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.policy = policy or make_policy(recipe, crop=crop, blur=blur, color=color, beta=beta, size=size,
                                            scale=scale, **policy_kwargs)
        self.mode = mode
        self.mean, self.std = (tuple(mean), tuple(std)) if normalize else (None, None)
        self.seed = seed
        self.return_params = return_params
        self._streams = ProcessGenerator(seed)

    def __repr__(self) -> str:
        return f"JointViews(mode={self.mode!r}, seed={self.seed}, policy={self.policy.name!r})"

    def _generator(self) -> torch.Generator:
        return self._streams.get()

    def __call__(self, img: Any, return_params: bool | None = None) -> list[Tensor] | tuple[list[Tensor], ViewParams]:
        from .render.batched import render_views

        image = to_rgb_tensor(img)
        params = self.policy.sample(torch.tensor([list(image.shape[-2:])]), self._generator())
        views = render_views(image[None], params, mode=self.mode, mean=self.mean, std=self.std)
        views = [v[0] for v in views]
        if self.return_params if return_params is None else return_params:
            return views, params
        return views
