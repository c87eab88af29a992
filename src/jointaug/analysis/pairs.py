"""``jointaug pairs``: a gallery of positive pairs, side by side, under one or more view policies.

Rows are images (a folder, searched recursively, or the built-in sample elephant), column groups are
policies; each pair is annotated with the realised area ratio of its two crops (and the blur sigmas
when a view is blurred). Every policy draws from the same seed, so the columns differ only by the law.

Policies: ``--policies random,joint:0,joint:-2`` (crop-only: RandomResizedCrop and J-Crop(beta)), or a
framework recipe with ``--recipe simclr`` (each token then sets that recipe's crop law; ``--blur`` and
``--color`` choose the blur and colour laws), or ``--recipe simclr --crop joint --beta 0`` for one policy.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..sampling.params import ViewParams
from ..sampling.policy import ViewPolicy
from ..sampling.recipes import crop_policy, make_policy
from .common import add_seed_argument, check_range, generator, realised_area, validate_beta
from .sample_image import sample_image_path

try:  # the project's decoder (any mode -> RGB, errors name the file)
    from ..data.io import IMAGE_EXTENSIONS, load_image
except ImportError:  # pragma: no cover - only while the data layer is missing
    IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
    load_image = None

DEFAULT_POLICIES = "random,joint:0,joint:-2"


# ---------------------------------------------------------------------------------------------- images
def collect_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted, hidden files skipped); errors name the folder."""
    root = Path(folder)
    if not root.exists():
        raise FileNotFoundError(f"image folder not found: {root}")
    if not root.is_dir():
        raise ValueError(f"--images must be a folder, got the file {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    return files


def read_image(path: str | Path) -> Tensor:
    """uint8 [3, H, W] RGB (grayscale, palette, RGBA... converted); a ValueError naming the file otherwise."""
    if load_image is not None:
        return load_image(path)
    from PIL import Image  # fallback decoder: Pillow's own RGB conversion

    try:
        with Image.open(path) as im:
            arr = torch.frombuffer(bytearray(im.convert("RGB").tobytes()), dtype=torch.uint8)
            w, h = im.size
    except Exception as exc:  # any decoder failure is reported with the file's name
        raise ValueError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from exc
    return arr.reshape(h, w, 3).permute(2, 0, 1).contiguous()


# ---------------------------------------------------------------------------------------------- policies
def parse_policies(
    spec: str,
    *,
    recipe: str | None = None,
    blur: str = "random",
    color: str = "random",
    blur_beta: float | None = None,
    scale: tuple[float, float] | None = None,
    size: int = 160,
    bound: str = "paper",
    fallback: str = "whole",
) -> list[ViewPolicy]:
    """Policies from ``"random,joint:0,joint:-2"``: crop law per token (``joint`` alone means beta 0)."""
    tokens = [t.strip() for t in spec.split(",") if t.strip()]
    if not tokens:
        raise ValueError(f"--policies is empty: {spec!r}; give e.g. {DEFAULT_POLICIES}")
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"--size must be a positive integer, got {size!r}")
    policies = []
    for tok in tokens:
        kind, _, b = tok.partition(":")
        kind = kind.strip().lower()
        if kind not in ("random", "joint") or (kind == "random" and b):
            raise ValueError(f"bad policy {tok!r} in --policies; use random, joint or joint:BETA (e.g. joint:-2)")
        try:
            beta = float(b) if b else 0.0
        except ValueError:
            raise ValueError(f"bad beta {b!r} in policy {tok!r}: expected a number") from None
        beta = validate_beta(beta, f"beta of policy {tok!r}")
        if recipe is None:
            pol = crop_policy(kind, beta=beta, scale=scale or (0.2, 1.0), size=size, bound=bound, fallback=fallback)
        else:
            pol = make_policy(recipe, crop=kind, blur=blur, color=color, beta=beta, blur_beta=blur_beta, size=size,
                              scale=scale, bound=bound, fallback=fallback)
        policies.append(pol)
    return policies


# ---------------------------------------------------------------------------------------------- gallery
def render_pairs(
    images: list[Tensor], policy: ViewPolicy, seed: int, mode: str = "exact"
) -> tuple[Tensor, Tensor, ViewParams]:
    """Views 0 and 1 ([N, 3, h, w] float in [0, 1]) of every image under ``policy``, and the params."""
    try:
        from ..render.batched import render_views_list
    except ImportError as exc:
        raise RuntimeError(f"the batched renderer jointaug.render.batched is not available ({exc})") from exc
    hw = torch.tensor([[int(im.shape[-2]), int(im.shape[-1])] for im in images], dtype=torch.int64)
    params = policy.sample(hw, generator(seed))
    views = render_views_list(images, params, mode=mode, mean=None, std=None)
    return views[0].clamp(0, 1), views[1].clamp(0, 1), params


_COUPLED_NAME = {"scale": "J-Crop", "sigma": "J-Blur", "brightness": "J-Color", "contrast": "J-Color",
                 "saturation": "J-Color", "hue": "J-Color"}


def pair_caption(params: ViewParams, i: int, policy: ViewPolicy | None = None) -> str:
    """'area 2.31:1 (45% / 19%)' plus blur sigmas, fallbacks and the coin's choice (crop-or-blur) of pair i."""
    a = realised_area(params)[i, :2].tolist()
    ratio = max(a) / min(a)
    text = f"area {ratio:.2f}:1 ({100 * a[0]:.0f}% / {100 * a[1]:.0f}%)"
    if bool(params.blur_apply[i, :2].any()):
        s = [f"{float(params.blur_sigma[i, v]):.2f}" if bool(params.blur_apply[i, v]) else "-" for v in range(2)]
        text += f"\nblur sigma {s[0]} / {s[1]}"
    fb = [v + 1 for v in range(2) if bool(params.fallback[i, v])]
    if fb:
        text += f"\nfallback: view {', '.join(map(str, fb))}"
    if policy is not None and policy.alternatives and "alternative" in params.extra:
        chosen = policy.alternatives[int(params.extra["alternative"][i])]
        text += "\ncoin: " + "+".join(dict.fromkeys(_COUPLED_NAME.get(c.param, c.param) for c in chosen))
    return text


def make_gallery(
    images: Sequence[Tensor],
    names: Sequence[str],
    policies: Sequence[ViewPolicy],
    out: str | Path,
    *,
    seed: int = 0,
    mode: str = "exact",
) -> Path:
    """Write the gallery PNG: one row per image, source then (view 1 | view 2) per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    imgs = [im if im.dtype == torch.uint8 else (im.clamp(0, 1) * 255).round().to(torch.uint8) for im in images]
    rendered = [render_pairs(imgs, p, seed, mode) for p in policies]
    rows, cols = len(imgs), 1 + 2 * len(policies)
    fig, axes = plt.subplots(rows, cols, figsize=(1.75 * cols, 2.15 * rows), dpi=80, squeeze=False,
                             gridspec_kw={"wspace": 0.05, "hspace": 0.55})
    for r in range(rows):
        ax = axes[r, 0]
        ax.imshow(imgs[r].permute(1, 2, 0).numpy())
        h, w = imgs[r].shape[-2:]
        ax.set_title(f"{names[r]}\n{w}x{h}", fontsize=7)
        for c, (v0, v1, params) in enumerate(rendered):
            a0, a1 = axes[r, 1 + 2 * c], axes[r, 2 + 2 * c]
            a0.imshow(v0[r].permute(1, 2, 0).cpu().numpy())
            a1.imshow(v1[r].permute(1, 2, 0).cpu().numpy())
            a0.text(1.02, -0.04, pair_caption(params, r, policies[c]), transform=a0.transAxes, ha="center",
                    va="top", fontsize=7)
            if r == 0:
                a0.text(1.02, 1.08, policies[c].name, transform=a0.transAxes, ha="center", va="bottom",
                        fontsize=9, fontweight="bold")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    return out


# ---------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=Path, default=None,
                        help="folder of images (recursive, any size/mode); default: the built-in sample image")
    parser.add_argument("--policies", default=DEFAULT_POLICIES,
                        help=f"comma-separated crop laws: random, joint, joint:BETA (default {DEFAULT_POLICIES})")
    parser.add_argument("--recipe", default=None, help="framework recipe (simclr, mocov2, byol, ...): full views")
    parser.add_argument("--crop", choices=("random", "joint"), default=None,
                        help="one policy with this crop law (with --beta), instead of --policies")
    parser.add_argument("--beta", type=float, default=0.0, help="beta for --crop joint (default 0)")
    parser.add_argument("--blur", choices=("random", "joint"), default="random", help="blur law with --recipe")
    parser.add_argument("--blur-beta", type=float, default=None, help="beta of J-Blur (default: --beta)")
    parser.add_argument("--color", choices=("random", "joint"), default="random", help="colour law with --recipe")
    parser.add_argument("--scale", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                        help="crop area range (default 0.2 1 without a recipe, the recipe's own with one)")
    parser.add_argument("--rows", type=int, default=4, help="number of rows (images) (default 4)")
    parser.add_argument("--size", type=int, default=160, help="output side of each view in pixels (default 160)")
    parser.add_argument("--bound", choices=("paper", "code"), default="paper", help="JC support (see jointaug stats)")
    parser.add_argument("--fallback", choices=("whole", "center"), default="whole", help="J-Crop fallback")
    parser.add_argument("--mode", choices=("exact", "fast"), default="exact", help="renderer mode (default exact)")
    parser.add_argument("--out", type=Path, default=Path("pairs.png"), help="output PNG (default pairs.png)")
    add_seed_argument(parser)


def main(args: argparse.Namespace) -> int:
    if args.rows < 1:
        raise ValueError(f"--rows must be a positive integer, got {args.rows}")
    if args.blur_beta is not None:
        validate_beta(args.blur_beta, "--blur-beta")
    scale = check_range(args.scale, "--scale", upper=1.0) if args.scale is not None else None
    spec = f"{args.crop}:{validate_beta(args.beta)}" if args.crop == "joint" else (args.crop or args.policies)
    policies = parse_policies(spec, recipe=args.recipe, blur=args.blur, color=args.color, blur_beta=args.blur_beta,
                              scale=scale, size=args.size, bound=args.bound, fallback=args.fallback)
    paths = collect_images(args.images) if args.images is not None else [sample_image_path()]
    chosen = [paths[k % len(paths)] for k in range(args.rows)]
    decoded = {p: read_image(p) for p in dict.fromkeys(chosen)}  # each file once, in order
    images = [decoded[p] for p in chosen]
    names = [p.name if len(p.name) <= 22 else p.name[:19] + "..." for p in chosen]
    try:
        out = make_gallery(images, names, policies, args.out, seed=args.seed, mode=args.mode)
    except RuntimeError as exc:
        print(f"jointaug pairs: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}: {len(images)} rows x {len(policies)} policies ({', '.join(p.name for p in policies)})")
    return 0
