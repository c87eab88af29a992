"""The built-in synthetic data set: objects made of parts, where only the whole gives the class.

Every image shows one object built from 2 or 3 parts drawn from six shared part types (disc,
square, triangle, ring, bar, cross). A class is a *configuration*: which parts and how they are
arranged (side by side, nested, in a line of three, in a triangle). Parts recur across classes
(the disc is in five of them; "disc + square" occurs side by side in one class, nested in another
and with a triangle in a third), so a crop holding one part, or even two, is ambiguous while the
whole object is not: the parts-versus-whole situation of the JointCrop paper's elephant.

Nuisance factors, all drawn independently of the class: object position, scale (half-extent 38-46%
of the side, so the parts span most of the frame and a crop still sees parts) and tilt (+-30
degrees around a horizontal layout; flips do the rest); each part's own rotation and size jitter;
the object's colour (dark or light, with a random tint; a nested inner part takes the complement);
mild shading; 0 to 2 faint thin lines behind the object (never a part shape) and per-pixel noise.
The background is low-information and drawn from one shared distribution: a mid-grey base tone
with a slight tint, a gentle linear gradient and faint smooth noise. Nothing in it identifies an
image strongly (version 1 had high-contrast stripes and colour noise that did, and SimCLR learnt
those instead of the objects). The 10 classes are balanced exactly (counts differ by at most one).

Determinism: one ``numpy.random.Generator(PCG64(seed))``; rendering uses only +, -, *, /, sqrt,
floor, min/max and comparisons (no sin/cos/exp, which differ between maths libraries in the
last bit), so the bytes are the same on every machine. Rotations use the rational
parametrisation cos = (1-t^2)/(1+t^2), sin = 2t/(1+t^2): for parts t in [-tan(pi/8), tan(pi/8)]
plus a random quarter turn (angle density uneven by at most 17%), for the object's tilt t in
[-0.27, 0.27] alone. Edges are antialiased analytically
from signed distances (cheaper than rendering at 2x and downsampling).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from .base import TensorImageDataset, stratified_subset
from .cache import ArrayWriter, default_cache_dir, entry_stem, load_entry, load_images_mmap

__all__ = ["PART_TYPES", "SYNTHETIC_CLASSES", "SYNTHETIC_VERSION", "build_synthetic", "make_synthetic"]

#: Bumped whenever the generator's output changes (part of the cache key).
SYNTHETIC_VERSION = 2

PART_TYPES = ("disc", "square", "triangle", "ring", "bar", "cross")
_LINE = 6  # a thin bar, used only for distractors
D, S, T, R, B, X = range(6)

# Object-frame layouts (object half-extent = 1): (part type, x, y, radius, aligned with the axis?)
_PAIR = ((-0.5, 0.0, 0.42), (0.5, 0.0, 0.42))
_NEST = ((0.0, 0.0, 0.66), (0.0, 0.0, 0.32))  # outer part first, inner part drawn on top
_LINE3 = ((-0.74, 0.0, 0.3), (0.0, 0.0, 0.36), (0.74, 0.0, 0.3))
_TRI = ((0.0, 0.58, 0.34), (-0.5, -0.29, 0.34), (0.5, -0.29, 0.34))


@dataclass(frozen=True)
class _ClassSpec:
    name: str
    parts: tuple[int, ...]
    layout: tuple[tuple[float, float, float], ...]
    shuffle: bool = False  # assign parts to layout slots in random order (no chirality cue)


_SPECS = (
    _ClassSpec("disc+square", (D, S), _PAIR, shuffle=True),
    _ClassSpec("disc+triangle", (D, T), _PAIR, shuffle=True),
    _ClassSpec("square+triangle", (S, T), _PAIR, shuffle=True),
    _ClassSpec("disc-in-square", (S, D), _NEST),
    _ClassSpec("triangle-in-ring", (R, T), _NEST),
    _ClassSpec("dumbbell", (D, B, D), _LINE3),
    _ClassSpec("square-bar-triangle", (S, B, T), _LINE3, shuffle=True),
    _ClassSpec("disc-square-triangle", (D, S, T), _TRI, shuffle=True),
    _ClassSpec("ring+cross", (R, X), _PAIR, shuffle=True),
    _ClassSpec("ring-cross-ring", (R, X, R), _LINE3),
)
#: Class names, in label order.
SYNTHETIC_CLASSES = [s.name for s in _SPECS]

# Generator parameters (changing any of them changes the bytes: bump SYNTHETIC_VERSION)
_N_DISTRACT = 2  # distractor slots (faint thin lines), each present with probability _P_DISTRACT
_P_DISTRACT = 0.5
_DISTRACT_CONTRAST = 0.3  # distractor colour: 0.5 +- this / 2 per channel
_SCALE = (0.38, 0.46)  # object half-extent, fraction of the side
_P_STRIPE = 0.0  # striped parts (version 1: 0.3; stripes are per-instance texture noise)
_OBJ_TILT = 0.27  # object tilt: t = tan(angle / 2) in [-0.27, 0.27], about +-30 degrees
_COL_TINT = 0.12  # per-channel tint around the object's dark or light level
_SHADE = 0.1  # linear shading across a part, +- this
_BG_GREY = 0.1  # background base tone 0.5 +- this / 2
_BG_TINT = 0.04  # per-channel background tint
_BG_GRAD = 0.1  # at most this change of level across the image (linear gradient)
_BG_NOISE = 0.04  # smooth 4x4 value noise, +- this / 2
_PIXEL_NOISE = 0.04  # per-pixel noise, +- this / 2
_CHUNK = 256  # images rendered at once (fixed: part of the definition of the random stream)
_TAN_PI8 = 0.41421356237309503
_SQRT3_2 = 0.8660254037844386
_QUARTER = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.float64)  # (cos, sin) of k * 90 deg


def _rotations(rng: np.random.Generator, shape: tuple[int, ...], tilt: float = _TAN_PI8, quarter: bool = True
               ) -> tuple[np.ndarray, np.ndarray]:
    """Random (cos, sin) pairs without trigonometric functions (see module docstring)."""
    t = (rng.random(shape) * 2.0 - 1.0) * tilt
    den = 1.0 + t * t
    c0, s0 = (1.0 - t * t) / den, 2.0 * t / den
    if not quarter:
        return c0, s0
    q = _QUARTER[rng.integers(0, 4, size=shape)]
    return c0 * q[..., 0] - s0 * q[..., 1], s0 * q[..., 0] + c0 * q[..., 1]


def _colours(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random tinted colours, dark or light (so parts stand out from the mid-grey background)."""
    u = rng.random(shape + (1,))
    level = np.where(u < 0.5, 0.1 + u * 0.3, 0.6 + u * 0.3)  # dark [0.1, 0.25) or light [0.75, 0.9]
    return np.clip(level + (rng.random(shape + (3,)) - 0.5) * _COL_TINT, 0.0, 1.0)


def _sdf(kind: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (part radius = 1 units, negative inside) of a part type at local (u, v)."""
    au, av = np.abs(u), np.abs(v)
    if kind == D:
        return np.sqrt(u * u + v * v) - 1.0
    if kind == S:
        return np.maximum(au, av) - 0.8
    if kind == T:
        e0 = -v
        e1 = _SQRT3_2 * u + 0.5 * v
        e2 = -_SQRT3_2 * u + 0.5 * v
        return np.maximum(np.maximum(e0, e1), e2) - 0.5
    if kind == R:
        return np.abs(np.sqrt(u * u + v * v) - 0.72) - 0.28
    if kind == B:
        return np.maximum(au - 1.0, av - 0.3)
    if kind == X:
        return np.minimum(np.maximum(au - 1.0, av - 0.3), np.maximum(au - 0.3, av - 1.0))
    if kind == _LINE:
        return np.maximum(au - 1.0, av - 0.1)
    raise ValueError(kind)


@dataclass
class _Shapes:
    """Per-image parameters of one drawing slot (type -1 = nothing drawn)."""

    kind: np.ndarray  # [n] int
    cx: np.ndarray  # [n] pixels
    cy: np.ndarray
    r: np.ndarray  # [n] pixels
    cos: np.ndarray
    sin: np.ndarray
    colour: np.ndarray  # [n, 3]
    stripes: np.ndarray  # [n] bool
    shade: np.ndarray  # [n] shading strength

    def take(self, idx: slice) -> _Shapes:
        return _Shapes(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


def _draw_params(rng: np.random.Generator, labels: np.ndarray, size: int) -> tuple[list[_Shapes], np.ndarray]:
    """All random shape parameters for the images, in drawing order; also the object boxes."""
    n = labels.shape[0]
    slots: list[_Shapes] = []
    # distractors (behind the object): 0 to _N_DISTRACT short thin lines, low contrast
    present = rng.random((_N_DISTRACT, n)) < _P_DISTRACT
    kinds = np.where(present, _LINE, -1)
    pos = rng.random((_N_DISTRACT, n, 2)) * size
    rad = (0.05 + 0.05 * rng.random((_N_DISTRACT, n))) * size
    dc, ds = _rotations(rng, (_N_DISTRACT, n))
    dcol = 0.5 + (rng.random((_N_DISTRACT, n, 3)) - 0.5) * _DISTRACT_CONTRAST
    nostripe = np.zeros((_N_DISTRACT, n), dtype=bool)
    noshade = np.zeros((_N_DISTRACT, n))
    for j in range(_N_DISTRACT):
        slots.append(_Shapes(kinds[j], pos[j, :, 0], pos[j, :, 1], rad[j], dc[j], ds[j], dcol[j], nostripe[j],
                             noshade[j]))
    # the object
    scale = (_SCALE[0] + (_SCALE[1] - _SCALE[0]) * rng.random(n)) * size  # object half-extent in pixels
    centre = size * 0.5 + (rng.random((n, 2)) * 2.0 - 1.0) * np.maximum(0.5 * size - scale[:, None] * 0.9, 0.04 * size)
    oc, os_ = _rotations(rng, (n,), _OBJ_TILT, quarter=False)
    jitter = (rng.random((3, n, 2)) * 2.0 - 1.0) * 0.05
    rjit = 0.9 + 0.2 * rng.random((3, n))
    pc, ps = _rotations(rng, (3, n))
    pcol = _colours(rng, (3, n))
    pcol[1:] = pcol[:1]  # one colour per object (a nested inner part takes the complement below)
    pstripe = rng.random((3, n)) < _P_STRIPE
    pshade = (rng.random((3, n)) * 2.0 - 1.0) * _SHADE
    order_u = rng.random((n, 3))
    kind = np.full((3, n), -1, dtype=np.int64)
    lx = np.zeros((3, n))
    ly = np.zeros((3, n))
    lr = np.ones((3, n))
    aligned = np.zeros((3, n), dtype=bool)
    for c, spec in enumerate(_SPECS):
        idx = np.flatnonzero(labels == c)
        k = len(spec.parts)
        perm = np.argsort(order_u[idx, :k], axis=1) if spec.shuffle else np.tile(np.arange(k), (idx.size, 1))
        for slot in range(k):
            kind[slot, idx] = np.asarray(spec.parts)[perm[:, slot]]
            lx[slot, idx], ly[slot, idx], lr[slot, idx] = spec.layout[slot]
            if spec.layout is _LINE3 and slot == 1:
                aligned[slot, idx] = True  # the middle bar/part of a line follows the axis
        if spec.layout is _NEST:
            pcol[1, idx] = 1.0 - pcol[0, idx]  # the inner part contrasts with the outer one
            jitter[:, idx] *= 0.3
    boxes = np.zeros((n, 4))
    boxes[:, :2] = np.inf
    boxes[:, 2:] = -np.inf
    for slot in range(3):
        ox = (lx[slot] + jitter[slot, :, 0]) * scale
        oy = (ly[slot] + jitter[slot, :, 1]) * scale
        cx = centre[:, 0] + ox * oc - oy * os_
        cy = centre[:, 1] + ox * os_ + oy * oc
        r = lr[slot] * rjit[slot] * scale
        cos = np.where(aligned[slot], oc, oc * pc[slot] - os_ * ps[slot])
        sin = np.where(aligned[slot], os_, os_ * pc[slot] + oc * ps[slot])
        slots.append(_Shapes(kind[slot], cx, cy, r, cos, sin, pcol[slot], pstripe[slot], pshade[slot]))
        on = kind[slot] >= 0
        boxes[on, 0] = np.minimum(boxes[on, 0], (cx - r)[on])
        boxes[on, 1] = np.minimum(boxes[on, 1], (cy - r)[on])
        boxes[on, 2] = np.maximum(boxes[on, 2], (cx + r)[on])
        boxes[on, 3] = np.maximum(boxes[on, 3], (cy + r)[on])
    return slots, np.clip(boxes, 0, size)


def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of [n, g, g, 3] value noise to [n, size, size, 3] (arithmetic only)."""
    g = grid.shape[1]
    pos = (np.arange(size, dtype=np.float32) + 0.5) * np.float32((g - 1) / size)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, g - 1)
    f = (pos - i0).astype(np.float32)
    rows = grid[:, i0] * (1 - f)[None, :, None, None] + grid[:, i1] * f[None, :, None, None]
    return rows[:, :, i0] * (1 - f)[None, None, :, None] + rows[:, :, i1] * f[None, None, :, None]


def _blend_shapes(canvas: np.ndarray, sh: _Shapes, sel: np.ndarray, kind: int, pad: int) -> None:
    """Blend one part type of one slot onto the padded canvas, inside a window around each shape.

    The window covers the whole shape plus a pixel (every shape lies within 1.15 radii of its
    centre), so the result equals evaluating the whole image; the padding keeps windows unclipped.
    """
    r64 = sh.r[sel]
    w = int(np.ceil(2.3 * float(r64.max()))) + 5
    lim = canvas.shape[1] - w
    x0 = np.clip(np.floor(sh.cx[sel] - 0.5 * w).astype(np.int64) + pad, 0, lim)
    y0 = np.clip(np.floor(sh.cy[sel] - 0.5 * w).astype(np.int64) + pad, 0, lim)
    ar = np.arange(w)
    rows = (y0[:, None] + ar)[:, :, None]
    cols = (x0[:, None] + ar)[:, None, :]
    X = (cols - pad).astype(np.float32) + np.float32(0.5)
    Y = (rows - pad).astype(np.float32) + np.float32(0.5)
    cx = sh.cx[sel, None, None].astype(np.float32)
    cy = sh.cy[sel, None, None].astype(np.float32)
    r = r64[:, None, None].astype(np.float32)
    c = sh.cos[sel, None, None].astype(np.float32)
    s = sh.sin[sel, None, None].astype(np.float32)
    dx, dy = X - cx, Y - cy
    u = (dx * c + dy * s) / r
    v = (dy * c - dx * s) / r
    alpha = np.clip(np.float32(0.5) - _sdf(kind, u, v) * r, 0.0, 1.0)[..., None]
    light = np.float32(1.0) + sh.shade[sel, None, None].astype(np.float32) * v
    band = (u - np.floor(u)) < 0.5
    light = light * np.where(sh.stripes[sel, None, None] & band, np.float32(0.6), np.float32(1.0))
    fill = sh.colour[sel, None, None, :].astype(np.float32) * light[..., None]
    idx = sel[:, None, None]
    patch = canvas[idx, rows, cols]
    canvas[idx, rows, cols] = patch * (np.float32(1.0) - alpha) + fill * alpha


def _render_chunk(rng: np.random.Generator, slots: list[_Shapes], size: int) -> np.ndarray:
    """Render one chunk of images as uint8 [n, 3, size, size]."""
    n = slots[0].kind.shape[0]
    # background: a greyish base tone, a gentle linear gradient and faint smooth noise
    grey = 0.5 + (rng.random((n, 1)) - 0.5) * _BG_GREY
    base = (grey + (rng.random((n, 3)) - 0.5) * _BG_TINT).astype(np.float32)
    gc, gs = _rotations(rng, (n,))
    gamp = (rng.random(n) * _BG_GRAD / size).astype(np.float32)
    px = np.arange(size, dtype=np.float32) + np.float32(0.5) - np.float32(0.5 * size)
    X, Y = px[None, None, :], px[None, :, None]  # pixel centres relative to the image centre
    grad = (X * gc[:, None, None].astype(np.float32) + Y * gs[:, None, None].astype(np.float32)) * gamp[:, None, None]
    coarse = ((rng.random((n, 4, 4, 3)) - 0.5) * _BG_NOISE).astype(np.float32)
    img = base[:, None, None, :] + grad[..., None] + _upsample(coarse, size)
    pad = size // 2 + 2
    canvas = np.zeros((n, size + 2 * pad, size + 2 * pad, 3), dtype=np.float32)
    canvas[:, pad:pad + size, pad:pad + size] = img
    for sh in slots:
        for kind in range(7):
            sel = np.flatnonzero(sh.kind == kind)
            if sel.size:
                _blend_shapes(canvas, sh, sel, kind, pad)
    img = canvas[:, pad:pad + size, pad:pad + size]
    img += ((rng.random(img.shape, dtype=np.float32) - np.float32(0.5)) * np.float32(_PIXEL_NOISE))
    out = np.clip(np.floor(img * np.float32(255.0) + np.float32(0.5)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def make_synthetic(num: int, size: int = 32, seed: int = 0, *, return_boxes: bool = False
                   ) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate ``num`` images: uint8 [N, 3, size, size], int64 labels [N] (balanced classes).

    With ``return_boxes`` also float64 [N, 4] object boxes (x0, y0, x1, y1) in pixels, clipped to
    the image: the union of the parts' bounding circles.
    """
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    rng = np.random.Generator(np.random.PCG64(seed))
    labels = rng.permutation(np.arange(num, dtype=np.int64) % len(_SPECS))
    slots, boxes = _draw_params(rng, labels, size)
    images = np.empty((num, 3, size, size), dtype=np.uint8)
    for s in range(0, num, _CHUNK):
        part = slice(s, min(num, s + _CHUNK))
        images[part] = _render_chunk(rng, [sh.take(part) for sh in slots], size)
    if return_boxes:
        return images, labels, boxes
    return images, labels


#: Default sizes of the splits and the seed offset between them.
SYNTHETIC_DEFAULTS = {"train": 5000, "test": 1000}
_SPLIT_SEED = {"train": 0, "test": 1_000_003}


def build_synthetic(
    split: str,
    *,
    size: int | None = None,
    cache_dir: str | None = None,
    limit: int | None = None,
    num_train: int = SYNTHETIC_DEFAULTS["train"],
    num_test: int = SYNTHETIC_DEFAULTS["test"],
    seed: int = 0,
) -> TensorImageDataset:
    """The synthetic set's ``split`` ("train" or "test"), generated on first use and then cached.

    The test split uses seed ``seed + 1000003``, so the splits never share an image stream.
    """
    if split not in _SPLIT_SEED:
        raise ValueError(f"synthetic: unknown split {split!r}; choose from train, test")
    side = 32 if size is None else int(size)
    num = num_train if split == "train" else num_test
    split_seed = seed + _SPLIT_SEED[split]
    cdir = default_cache_dir(cache_dir)
    stem = entry_stem("synthetic", {"version": SYNTHETIC_VERSION, "num": num, "size": side, "seed": split_seed})
    entry = load_entry(cdir, stem)
    if entry is None:
        images, labels = make_synthetic(num, side, split_seed)
        writer = ArrayWriter(cdir, stem, images.shape)  # type: ignore[arg-type]
        writer.array[...] = images
        meta = {"classes": SYNTHETIC_CLASSES, "source": "synthetic", "name": "synthetic", "split": split,
                "skipped": [], "seed": split_seed, "generator_version": SYNTHETIC_VERSION}
        stored = writer.commit(cdir, stem, meta, labels, count=num)
        if writer.tmp_path is None:
            keep = stratified_subset(labels, limit) if limit is not None else np.arange(num)
            return TensorImageDataset(stored[torch.from_numpy(keep)], labels[keep], SYNTHETIC_CLASSES,
                                      name="synthetic", split=split)
        entry = load_entry(cdir, stem)
        assert entry is not None
    loader = partial(load_images_mmap, entry["images_path"], entry["count"])
    ds = TensorImageDataset(None, entry["labels"], entry["classes"], name="synthetic", split=split, loader=loader,
                            info={"seed": split_seed, "cache": entry["images_path"]})
    if limit is not None:
        keep = stratified_subset(ds.labels, limit)
        return TensorImageDataset(ds.images[torch.from_numpy(keep)].clone(), ds.labels[keep], ds.classes,
                                  name="synthetic", split=split, info=ds.info)
    return ds


def save_example_grid(path: str, per_class: int = 6, size: int = 32, scale: int = 2, seed: int = 0) -> None:
    """Save a PNG grid: one row per class (name on the left), ``per_class`` examples each.

    The sheet is stored with a 256-colour palette to keep the file small.

    Regenerates ``docs/synthetic_examples.png``:
    ``python -c "from jointaug.data.synthetic import save_example_grid as s; s('docs/synthetic_examples.png')"``
    """
    from PIL import Image, ImageDraw

    images, labels = make_synthetic(per_class * len(_SPECS) * 2, size, seed)
    cell, gap, text_w = size * scale, 2, 150
    width = text_w + per_class * (cell + gap)
    height = len(_SPECS) * (cell + gap)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for c, spec in enumerate(_SPECS):
        top = c * (cell + gap)
        parts = "+".join(PART_TYPES[p] for p in spec.parts)
        draw.text((4, top + cell // 2 - 12), f"{c}: {spec.name}", fill=(0, 0, 0))
        draw.text((4, top + cell // 2 + 2), f"({parts})", fill=(90, 90, 90))
        for j, i in enumerate(np.flatnonzero(labels == c)[:per_class]):
            tile = Image.fromarray(images[i].transpose(1, 2, 0)).resize((cell, cell), Image.NEAREST)
            sheet.paste(tile, (text_w + j * (cell + gap), top))
    sheet.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
