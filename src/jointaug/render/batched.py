"""Batched view renderer: all views of a batch of images in a few tensor operations, CPU or CUDA.

Per view, crop + resize (+ flip) is a separable linear map: one interpolation matrix per axis (rows:
output pixels, columns: source pixels, antialiased when shrinking; :mod:`jointaug.render.kernels`).
The renderer applies it as two batched matrix products per group of equal-size views and per
channel, the vertical one on all views of an image at once (their matrices stacked), in chunks of
images whose buffers are reused; every product writes its result channel-major, where the next
one reads it. Then the photometric stage:

- ``mode="fast"``: Gaussian blur is folded into the interpolation matrices (blur is linear and, in
  this mode, commutes with the colour map); colour jitter + grayscale + normalisation is one 3x4
  map per view (hue = rotation about the gray axis, contrast's mean from the view's channel means,
  composed in the sampled order), one product per view into the output, then one clamp and
  solarize.
- ``mode="exact"``: torchvision's semantics (see :mod:`jointaug.render.reference`): colour ops in
  the sampled order, HSV hue, a clamp after each op, vectorised by looping over the four order
  positions and applying each op to the views that have it there; grayscale; blur as two matrix
  products on the blurred views; solarize; normalisation.

Inputs: uint8 (0..255) or float (0..1) images. One-channel images are rendered as gray RGB
(the three channels equal); four-channel images lose their alpha channel (like PIL's
``convert("RGB")``, no compositing). Any other channel count is an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..sampling.params import ViewParams
from .color import fast_color_matrices, gray, shift_hue
from .kernels import (
    BLUR_RULES,
    blur_kernel_size,
    blur_matrices,
    colsum_from_taps,
    crop_bag_table,
    crop_colsum_table,
    crop_index,
    dense_from_taps,
    gaussian_taps,
    item_major,
    reflect_rows,
    resize_taps,
    table_fits,
)

MODES = ("fast", "exact")
SOLARIZE_THRESHOLD = 128 / 255 - 1e-5  # the reference's threshold (see reference.py)
#: working-set target of one chunk (bytes): large enough to amortise per-op overheads on CPU (67
#: images at 32 px: measured best between 48 and 96 on a 2 MB-L2 Xeon; exact mode, with many more
#: operations per chunk, 2.5 times as many), much larger on GPU
CPU_CHUNK_BYTES = 4 << 20
EXACT_CHUNK_FACTOR = 2.5
GPU_CHUNK_BYTES = 1 << 30
#: ``geometry=``: "dense" (interpolation matrices, two products per view: work ~ source size),
#: "banded" (per output pixel only the few source pixels under the filter: work ~ output x taps),
#: "auto" (the cheaper by :func:`band_cost_ratio`)
GEOMETRIES = ("auto", "dense", "banded")
#: "auto" takes the banded path (sources too large for the lookup tables) when the dense products
#: would do more than this many multiply-adds per banded operation (:func:`band_cost_ratio`). Set
#: from same-run process CPU times on one core of a 2-core AMD EPYC VM, SimCLR views: banded took
#: 0.47-0.92x the dense time at 64 -> 48, 96 -> 64, 224 -> 32, 224 -> 64 and 500 -> 112 px (ratios
#: 13-45), the lookup tables stayed faster at 32 and 48 px in fast mode
BAND_RATIO = 10.0
#: fast mode on the banded path composes the blur into the taps when its kernel has at least this
#: many taps (224 px views: 23); shorter kernels run as shifted multiply-adds on the views
FOLD_MIN_TAPS = 15


@dataclass
class _Settings:
    mode: str
    mean: Tensor | None  # [1, 3, 1] on the device
    istd: Tensor | None  # 1 / std, [1, 3, 1]
    rule: str
    out_dtype: torch.dtype
    chunk_size: int | None
    geometry: str = "auto"
    lo: tuple[float, ...] = (0.0, 0.0, 0.0)  # the image of [0, 1] per channel (normalised space)
    hi: tuple[float, ...] = (1.0, 1.0, 1.0)


def _settings(mode: str, mean, std, blur_kernel: str, out_dtype, chunk_size, device,
              geometry: str = "auto") -> _Settings:
    if mode not in MODES:
        raise ValueError(f"render mode must be one of {MODES}, got {mode!r}")
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
    if blur_kernel not in BLUR_RULES:
        raise ValueError(f"blur_kernel must be one of {BLUR_RULES}, got {blur_kernel!r}")
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std for normalisation, or neither")
    if not (isinstance(out_dtype, torch.dtype) and out_dtype.is_floating_point):
        raise ValueError(f"out_dtype must be a floating torch dtype, got {out_dtype!r}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    m = istd = None
    if mean is not None:
        mean_t = torch.as_tensor(mean, dtype=torch.float64).flatten()
        std_t = torch.as_tensor(std, dtype=torch.float64).flatten()
        if mean_t.numel() == 1:
            mean_t = mean_t.expand(3)
        if std_t.numel() == 1:
            std_t = std_t.expand(3)
        if mean_t.numel() != 3 or std_t.numel() != 3:
            raise ValueError(f"mean and std need 1 or 3 values, got mean={mean!r} std={std!r}")
        if bool((std_t <= 0).any()):
            raise ValueError(f"normalisation std must be positive, got {std!r}")
        m = mean_t.float().view(1, 3, 1).to(device)
        istd = (1.0 / std_t).float().view(1, 3, 1).to(device)
    st = _Settings(mode, m, istd, blur_kernel, out_dtype, chunk_size, geometry)
    if mean is not None:
        st.lo = tuple((-mean_t / std_t).tolist())
        st.hi = tuple(((1.0 - mean_t) / std_t).tolist())
    return st


def _check_params(params: ViewParams, n: int) -> None:
    if not isinstance(params, ViewParams):
        raise TypeError(f"params must be a ViewParams, got {type(params).__name__}")
    if params.num_images != n:
        raise ValueError(f"params describe {params.num_images} images but {n} images were given")
    if len(params.out_hw) != params.num_views:
        raise ValueError(f"params.out_hw has {len(params.out_hw)} sizes for {params.num_views} views")
    for v, (h, w) in enumerate(params.out_hw):
        if int(h) < 1 or int(w) < 1:
            raise ValueError(f"view {v} has output size {(h, w)}: sides must be positive")
    order = params.color_order
    if order.numel() and not bool(((order >= 0) & (order < 4)).all() and ((1 << order).sum(-1) == 15).all()):
        raise ValueError("params.color_order must hold a permutation of 0..3 for every view")
    if params.box.numel():
        wh = torch.round(params.box[..., 2:]).min()
        if float(wh) < 1:
            raise ValueError(f"crop boxes need width and height >= 1 pixel, got {float(wh)}")
    if tuple(params.clip.shape) != tuple(params.box.shape):
        raise ValueError(f"params.clip must be [N, V, 4] like params.box, got {tuple(params.clip.shape)}")
    if params.clip.numel() and float(params.clip[..., 2:].min()) < 0:
        raise ValueError(f"params.clip windows need sizes >= 0, got {float(params.clip[..., 2:].min())}")
    rot = params.rotation
    if tuple(rot.shape) != (params.num_images, params.num_views):
        raise ValueError(f"params.rotation must be [N, V], got {tuple(rot.shape)}")
    if rot.numel():
        if bool(((rot < 0) | (rot > 3)).any()):
            raise ValueError(f"params.rotation holds quarter turns in 0..3, got {rot.unique().tolist()}")
        for v, (h, w) in enumerate(params.out_hw):
            if int(h) != int(w) and bool((rot[:, v] != 0).any()):
                raise ValueError(f"view {v} is {h}x{w}: rotation by quarter turns needs square views")


def _rotate_(outs: list[Tensor], params: ViewParams) -> None:
    """Turn the views with ``params.rotation`` = k by k quarter turns counter-clockwise, in place.

    Applied to the finished views: every op after the rotation in the semantics (colour jitter,
    grayscale, blur with equal kernels on both axes of a square view, solarize, normalisation)
    commutes with a quarter turn of a square view, so turning last is the same map and the
    rotated view is exactly ``torch.rot90`` of the unrotated one."""
    rot = params.rotation
    if not rot.numel() or not bool(rot.any()):
        return
    for v, out in enumerate(outs):
        for k in (1, 2, 3):
            idx = (rot[:, v] == k).nonzero().squeeze(1).to(out.device)
            if idx.numel():
                out[idx] = torch.rot90(out[idx], k, dims=(2, 3))


def _view_groups(out_hw: list[tuple[int, int]]) -> list[tuple[tuple[int, int], list[int]]]:
    """Views grouped by output size, in first-appearance order."""
    groups: dict[tuple[int, int], list[int]] = {}
    for v, hw in enumerate(out_hw):
        groups.setdefault((int(hw[0]), int(hw[1])), []).append(v)
    return list(groups.items())


def _as_rgb_channels(images: Tensor) -> Tensor:
    """Keep 1 channel (rendered as gray) or 3; drop the alpha of 4-channel images."""
    c = images.shape[-3]
    if c in (1, 3):
        return images
    if c == 4:
        return images[..., :3, :, :]
    raise ValueError(f"images must have 1 (gray), 3 (RGB) or 4 (RGBA) channels, got {c}")


def _check_images_dtype(images: Tensor) -> None:
    if images.dtype != torch.uint8 and not images.dtype.is_floating_point:
        raise ValueError(f"images must be uint8 (0..255) or float (0..1), got dtype {images.dtype}")


# ---------------------------------------------------------------------------------------------- plans
class _Axis:
    """One axis (vertical or horizontal) of a group's crop + resize (+ flip) (+ blur) matrices.

    ``dense`` gives each item's matrix [n, src_len], or its transpose [src_len, n] when
    ``transpose`` (the horizontal axis: the right factor of the second product, laid out so that
    the BLAS reads it without a transposition). ``gain`` ([M] or None): a per-item factor the
    matrices leave out, folded into the colour map.
    """

    gain: Tensor | None = None
    transpose: bool = False

    def dense(self, it: slice | Tensor, src_len: int) -> Tensor:  # [items, n, src_len] (or transposed)
        raise NotImplementedError

    def colsum(self, it: slice | Tensor, src_len: int) -> Tensor:  # [items, src_len], un-blurred, / n
        raise NotImplementedError

    def _blur_dense(self, a: Tensor, sel: Tensor | None, sigma: Tensor) -> Tensor:
        """Left-multiply the items ``sel`` of ``a`` by their blur matrices (right, transposed)."""
        if sel is None:
            return a
        b = blur_matrices(sigma, self.n, self.rule)
        if self.transpose:
            a[sel] = torch.bmm(a[sel], b.transpose(1, 2))
        else:  # rows beyond n (column sums) are not blurred
            a[sel, :self.n] = torch.bmm(b, a[sel, :self.n])
        return a


@dataclass
class _BlurTaps:
    """The blur of an axis of n output pixels, per item: centre taps ``gain`` = t_0 [M], ratios
    t_d / t_0 [M, D] (d = 1..D), and the layout of the lookup bags (the crop's matrix, then its D
    bases for blurred items only): ``keep`` [M, D + 1], ``start`` [M] (and as a list)."""

    gain: Tensor
    ratios: Tensor
    keep: Tensor
    start: Tensor
    start_list: list[int]


def _blur_taps(blur: Tensor, sigma: Tensor, n: int, rule: str) -> _BlurTaps:
    """Centre taps and ratios ``t_d / t_0 = exp(-d^2 / (2 sigma^2))`` (zero beyond each item's
    kernel; 1 and none where not blurred): :func:`~jointaug.render.kernels.gaussian_taps` divided
    by the centre tap; and the lookup bags' layout."""
    s = torch.where(blur, sigma, torch.ones_like(sigma)).double()
    ks = blur_kernel_size(n, s, rule)
    half = (ks - 1) // 2 * blur  # [M]: half-widths, 0 where not blurred
    D = int(half.max())
    d = torch.arange(1, D + 1, dtype=torch.float64, device=s.device)
    ratios = torch.exp((d * d) * (-0.5 / (s * s))[:, None]) * (d <= half[:, None])
    size = 1 + D * blur.long()
    keep = torch.arange(D + 1, device=s.device) < size[:, None]
    start = torch.cumsum(size, 0) - size
    return _BlurTaps((1.0 / (1.0 + 2.0 * ratios.sum(dim=1))).float(), ratios.float(), keep, start,
                     start.tolist() + [int(size.sum())])


class _TableAxis(_Axis):
    """Small sources: each item's matrix is looked up in a cached table of every crop
    (:func:`~jointaug.render.kernels.crop_bag_table`). The blur is a weighted sum of pre-blurred
    basis tables (small kernels: one ``F.embedding_bag`` per chunk, whose bags hold the crop's
    matrix and, for blurred items only, its bases) or one batched product (large ones).

    With basis tables the matrices are left divided by the centre tap ``t_0``; ``gain`` [M] holds
    the factor the caller folds into the colour map (1 where not blurred).
    """

    MAX_BASES = 4  # kernels of up to 2 * 4 + 1 taps use basis tables

    def __init__(self, offset: Tensor, length: Tensor, flip: Tensor | None, n: int, src_len: int, scale: float,
                 blur: Tensor | None, sigma: Tensor, rule: str, transpose: bool = False, colsum: bool = False,
                 taps: _BlurTaps | None = None) -> None:
        dev = offset.device
        self.rows = n + colsum
        self.cindex = crop_index(offset, length, None, src_len)
        self.n, self.src_len, self.scale, self.rule, self.sigma = n, src_len, scale, rule, sigma
        self.transpose = transpose
        self.blur = self.gain = None
        if blur is not None and bool(blur.any()):
            taps = taps if taps is not None else _blur_taps(blur, sigma, n, rule)
            if taps.ratios.shape[1] > self.MAX_BASES:
                self.blur, taps = blur, None
        else:
            taps = None
        bases = taps.ratios.shape[1] if taps is not None else 0
        self.table = crop_bag_table(src_len, n, bases, scale, dev, transpose, colsum)
        crop = crop_index(offset, length, flip if transpose else None, src_len)
        E = self.table.shape[0] // (bases + 1)
        # bags: the crop's matrix (weight 1) and, for blurred items, its bases (weights t_d / t_0)
        self.bag2 = crop[:, None] + E * torch.arange(bases + 1, device=dev)  # [M, D + 1]
        self.w2 = torch.ones(self.bag2.shape, device=dev)
        self.crop = crop
        self.flat = None  # no bases: plain lookups
        if taps is not None:
            self.gain = taps.gain
            self.w2[:, 1:] = taps.ratios
            self.flat, self.flat_w = self.bag2[taps.keep], self.w2[taps.keep]
            self.start, self.start_list = taps.start, taps.start_list  # where each item's bag starts in ``flat``

    def dense(self, it, src_len):
        if self.flat is None:
            a = self.table.index_select(0, self.crop[it])
        elif isinstance(it, slice):
            o0, o1 = self.start_list[it.start], self.start_list[it.stop]
            a = F.embedding_bag(self.flat[o0:o1], self.table, self.start[it] - o0, mode="sum",
                                per_sample_weights=self.flat_w[o0:o1])
        else:
            a = F.embedding_bag(self.bag2[it], self.table, mode="sum", per_sample_weights=self.w2[it])
        a = a.view(-1, *((self.src_len, self.n) if self.transpose else (self.rows, self.src_len)))
        if self.blur is not None:
            a = self._blur_dense(a, _subset(self.blur[it]), self.sigma[it][self.blur[it]])
        return a

    def colsum(self, it, src_len):
        return crop_colsum_table(self.src_len, self.n, self.scale, self.cindex.device).index_select(
            0, self.cindex[it])


class _TapAxis(_Axis):
    """Any source: resize taps of the whole batch (item-major), made dense per chunk; the blur of
    the blurred items is one batched product per chunk."""

    def __init__(self, offset: Tensor, length: Tensor, flip: Tensor | None, n: int, src_len: Tensor,
                 scale: float, blur: Tensor | None, sigma: Tensor, rule: str, want_mean: bool,
                 transpose: bool = False, colsum: bool = False, clip: tuple[Tensor, Tensor] | None = None) -> None:
        col, w = resize_taps(offset, length, n, src_len, flip, clip)
        self.mean = item_major(col, w * (scale / n), src_len, with_rows=False) if want_mean or colsum else None
        self.pos, self.w = item_major(col, w * scale if scale != 1.0 else w, src_len, transpose=transpose)
        self.blur = blur if blur is not None and bool(blur.any()) else None
        self.n, self.sigma, self.rule, self.transpose, self.with_colsum = n, sigma, rule, transpose, colsum

    def dense(self, it, src_len):
        a = dense_from_taps(self.pos[it], self.w[it], self.n, src_len)
        if self.transpose:
            a = a.view(-1, src_len, self.n)
        elif self.with_colsum:
            a = torch.cat((a, self.colsum(it, src_len)[:, None]), dim=1)
        if self.blur is not None:
            a = self._blur_dense(a, _subset(self.blur[it]), self.sigma[it][self.blur[it]])
        return a

    def colsum(self, it, src_len):
        return colsum_from_taps(self.mean[0][it], self.mean[1][it], src_len)


class _BandAxis(_Axis):
    """Banded resampling (no matrices): per item and output pixel the ``K`` source pixels under
    the antialiased filter and their weights, item-major ``idx0`` [M, n, K] (int64, clamped into
    the source) and ``w0`` [M, n, K] (zero outside the source or the visible window). Applied by
    :func:`_band_pass`: work ~ output pixels x K, whatever the source size.

    ``blur`` [M] bool (fast mode): the Gaussian blur of the output axis (reflect padding) is
    composed into the taps of the blurred items, ``B @ R`` kept as a compact band of ``Kb`` taps
    per output pixel (about ``K + (kb - 1) x crop / n``); ``idx``, ``w`` [M, n, max(K, Kb)] then hold
    both kinds and ``klen`` [M] how many taps each item uses (None: all ``K``).
    """

    def __init__(self, offset: Tensor, length: Tensor, flip: Tensor | None, n: int, src_len: int | Tensor,
                 scale: float, clip: tuple[Tensor, Tensor] | None = None, blur: Tensor | None = None,
                 sigma: Tensor | None = None, rule: str = "tenth") -> None:
        col, w = resize_taps(offset, length, n, src_len, flip, clip)  # [K, M, n]
        if scale != 1.0:
            w = w * scale
        self.idx0 = col.permute(1, 2, 0).contiguous()
        self.w0 = w.permute(1, 2, 0).contiguous()
        self.n, self.K = n, col.shape[0]
        self.idx, self.w, self.klen = self.idx0, self.w0, None
        if blur is not None and sigma is not None and bool(blur.any()):
            self._fold_blur(blur, sigma, rule, _per_item_len(src_len, offset.shape[0], offset.device))

    def _fold_blur(self, blur: Tensor, sigma: Tensor, rule: str, src_len: Tensor) -> None:
        """Compose the blur of the items ``blur`` into their taps (see the class docstring)."""
        dev, n, K = self.idx0.device, self.n, self.K
        sel = blur.nonzero().squeeze(1)
        sig = sigma[sel]
        t = gaussian_taps(sig, blur_kernel_size(n, sig, rule)).float()  # [S, kb], centred
        S, kb = t.shape
        r = reflect_rows(n, kb, dev).t().reshape(-1)  # [n * kb]: output row under tap d of output i
        ii = self.idx0[sel].index_select(1, r).view(S, n, kb * K)
        ww = (self.w0[sel].index_select(1, r).view(S, n, kb, K) * t[:, None, :, None]).view(S, n, kb * K)
        lo = ii.min(dim=2, keepdim=True).values
        width = int((ii.max(dim=2, keepdim=True).values - lo).max()) + 1
        band = torch.zeros(S, n, width, device=dev).scatter_add_(2, ii - lo, ww)  # duplicates summed
        bidx = torch.minimum(lo + torch.arange(width, device=dev), (src_len[sel] - 1).view(S, 1, 1))
        kmax = max(K, width)
        M = self.idx0.shape[0]
        self.idx = torch.cat((self.idx0, self.idx0[..., -1:].expand(M, n, kmax - K)), dim=2)
        self.w = torch.cat((self.w0, self.w0.new_zeros(M, n, kmax - K)), dim=2)
        self.idx[sel, :, :width] = bidx
        self.idx[sel, :, width:] = bidx[..., -1:]
        self.w[sel, :, :width] = band
        self.w[sel, :, width:] = 0.0
        self.klen = torch.where(blur, width, K)


def _per_item_len(src_len: int | Tensor, m: int, device) -> Tensor:
    t = torch.as_tensor(src_len, device=device).long()
    return t.expand(m) if t.dim() == 0 else t


def band_cost_ratio(C: int, H: int, W: int, oh: int, ow: int, ky: int, kx: int, vg: int = 1,
                    blur_frac: float = 0.0, kb: tuple[int, int] = (0, 0), exact: bool = False) -> float:
    """Multiply-adds of the dense path per (gather-equivalent) operation of the banded path, for one
    image's ``vg`` views of oh x ow from a C x H x W source with ``ky`` / ``kx`` taps per output
    pixel, ``blur_frac`` of the views blurred with ``kb`` = (vertical, horizontal) taps.

    Dense: per view and channel a vertical product ``(oh + 1) x H x W`` and a horizontal one
    ``oh x W x ow`` (fast mode folds the blur into them; exact mode adds two blur products of
    ``oh x ow x (oh + ow)``). Banded (:func:`_geometry_banded`): per view and channel ``kx``
    gathered taps of ``ow x H`` and ``ky`` of ``oh x ow``; blur as ``kb`` shifted taps per axis (a
    fifth of a gathered tap each); transposing the intermediate and the source (about one each).
    """
    dense = vg * C * ((oh + 1) * H * W + oh * W * ow)
    if exact:
        dense += blur_frac * vg * C * oh * ow * (oh + ow)
    band = (vg * C * (kx * ow * H + ky * oh * ow + blur_frac * (kb[0] + kb[1]) * oh * ow / 5)
            + (vg * C * ow * H + C * H * W) / 1.2)
    return dense / max(band, 1.0)


def _band_pass(src: Tensor, index: Tensor, w: Tensor, out: Tensor | None = None,
               klen: Tensor | None = None) -> Tensor:
    """``out[..., i, :] = sum_t w[..., i, t] * src[index[..., i, t], :]``: rows of ``src`` [R, L]
    (float32) weighted and summed per output row, in one fused ``F.embedding_bag`` (no gathered
    copy per tap). ``index`` [C, M, n, K] int64, ``w`` broadcastable to it; ``klen`` [M]: item m
    uses its first ``klen[m]`` taps only (bags of different lengths). Returns [C, M, n, L]
    (copied into ``out`` when given)."""
    K = index.shape[-1]
    if klen is None or bool((klen == K).all()):
        res = F.embedding_bag(index.reshape(-1, K), src, mode="sum",
                              per_sample_weights=w.expand(index.shape).reshape(-1, K).to(src.dtype))
    else:
        keep = (torch.arange(K, device=index.device) < klen[:, None, None]).expand(index.shape)
        lengths = klen[None, :, None].expand(index.shape[:-1]).reshape(-1)
        res = F.embedding_bag(index.masked_select(keep), src, torch.cumsum(lengths, 0) - lengths, mode="sum",
                              per_sample_weights=w.expand(index.shape).masked_select(keep).to(src.dtype))
    res = res.view(*index.shape[:-1], src.shape[1])
    if out is None:
        return res
    out.copy_(res)
    return out


def _blur_band(z: Tensor, sigma: Tensor, rule: str, item_dim: int = 0) -> Tensor:
    """Gaussian blur (reflect padding, torchvision's taps) of ``z`` [S, P, h, w] (``item_dim=1``:
    [P, S, h, w]), item s with ``sigma[s]``, as shifted multiply-adds: work ~ pixels x taps (the
    dense blur matrices are ~ pixels x side). Returns a new float32 tensor shaped like ``z``."""
    *lead, h, w = z.shape
    S = lead[item_dim]
    shape = [1, 1, 1, 1]
    shape[item_dim] = S
    for axis, n in ((2, h), (3, w)):
        taps = gaussian_taps(sigma, blur_kernel_size(n, sigma, rule)).float()  # [S, Kb], centred
        kb = taps.shape[1]
        half = (kb - 1) // 2
        if half == 0:
            continue
        pad = (0, 0, half, half) if axis == 2 else (half, half, 0, 0)
        zp = F.pad(z.reshape(1, lead[0] * lead[1], h, w), pad, mode="reflect").view(*lead, *(
            (h + 2 * half, w) if axis == 2 else (h, w + 2 * half)))
        acc = None
        for d in range(kb):
            sl = zp.narrow(axis, d, n)
            wd = taps[:, d].view(shape)
            acc = sl * wd if acc is None else acc.addcmul_(sl, wd)
        z = acc
    return z


@dataclass
class _Plan:
    """What one group of equal-size views needs, for all N images (items M = N * Vg, image-major)."""

    views: list[int]
    oh: int
    ow: int
    y: _Axis  # vertical matrices [oh, H] (input scale folded in; fast mode: + a row of column sums / oh)
    x: _Axis  # horizontal matrices, transposed [W, ow] (flip folded in)
    blur: Tensor  # [M] bool
    sigma: Tensor  # [M] float32
    A: Tensor | None  # [M, 3, 3] float32 fast colour map (normalisation and blur gains folded in)
    const: Tensor | None  # [M, 3, 1] float32 fast constant term (normalisation)
    K: Tensor | None  # [M, 3, 3] float32 contrast-offset matrix (times the channel means)
    solarize: Tensor  # [M] bool
    any_solarize: bool
    banded: bool = False  # y, x are _BandAxis: banded resampling, blur applied on the views


def _group_fields(params: ViewParams, names: tuple[str, ...], views: list[int], device) -> dict[str, Tensor]:
    """The fields ``names`` of the group's views, flattened to items (image-major) on ``device``."""
    every = views == list(range(params.num_views))
    out = {}
    for name in names:
        t = getattr(params, name)
        t = t if every else t[:, views]
        out[name] = t.reshape(-1, *t.shape[2:]).to(device)
    return out


def _plan(params: ViewParams, views: list[int], oh: int, ow: int, st: _Settings, device,
          src_hw: tuple[int, int] | None = None, scale: float = 1.0) -> _Plan:
    """Interpolation matrices (and fast-mode colour maps) of every image and view of the group.

    ``src_hw``: the common source size of a fixed-size batch (None: sizes from ``image_hw``);
    ``scale`` multiplies the input (1/255 for uint8) and is folded into the vertical matrices.
    """
    vg = len(views)
    fast = st.mode == "fast"
    names = ("box", "clip", "flip", "blur_apply", "blur_sigma", "solarize")
    if fast:
        names += ("brightness", "contrast", "saturation", "hue", "color_order", "color_apply", "gray")
    g = _group_fields(params, names, views, device)
    box = torch.round(g["box"].double()).long()  # [M, 4]
    clip = torch.round(g["clip"].double()).long()  # [M, 4] visible windows
    hw = params.image_hw.to(device).long().repeat_interleave(vg, dim=0)  # [M, 2]
    blur, sigma, solarize = g["blur_apply"], g["blur_sigma"].float(), g["solarize"]
    sh, sw = (src_hw if src_hw is not None else (None, None))
    banded = _want_band(st, box, oh, ow, vg, (sh, sw) if src_hw is not None else
                        (int(hw[:, 0].max()), int(hw[:, 1].max())) if hw.numel() else (1, 1), device,
                        float(blur.float().mean()) if blur.numel() else 0.0)
    fold = blur if fast and not banded else None  # fast mode folds the blur into the matrices (dense)

    taps: dict[int, _BlurTaps] = {}  # blur taps per output side (shared by the axes)

    def axis(off: Tensor, length: Tensor, f: Tensor | None, n: int, side: int | None, src: Tensor, sc: float,
             transpose: bool, colsum: bool, c0: Tensor, cl: Tensor) -> _Axis:
        # the table holds crops inside the source; a window that hides part of the box needs taps
        seen = (c0 <= off) & (off + length <= c0 + cl)
        if side is not None and table_fits(side, n) and bool(((off >= 0) & (off + length <= side) & seen).all()):
            if fold is not None and n not in taps and bool(fold.any()):
                taps[n] = _blur_taps(fold, sigma, n, st.rule)
            return _TableAxis(off, length, f, n, side, sc, fold, sigma, st.rule, transpose, colsum, taps.get(n))
        window = None if bool(seen.all()) else (c0, cl)
        return _TapAxis(off, length, f, n, src, sc, fold, sigma, st.rule, fast, transpose, colsum, window)

    if banded:
        def window(off: Tensor, length: Tensor, c0: Tensor, cl: Tensor) -> tuple[Tensor, Tensor] | None:
            return None if bool(((c0 <= off) & (off + length <= c0 + cl)).all()) else (c0, cl)

        # fast mode, long kernels: the blur composed into the taps (short ones: shifted multiply-adds
        # on the views are cheaper than the wider bags and their construction)
        smax = sigma[blur].max() if bool(blur.any()) else None
        bfold = blur if fast and smax is not None and int(blur_kernel_size(min(oh, ow), smax, st.rule)) \
            >= FOLD_MIN_TAPS else None
        y = _BandAxis(box[:, 1], box[:, 3], None, oh, sh if sh is not None else hw[:, 0], scale,
                      window(box[:, 1], box[:, 3], clip[:, 1], clip[:, 3]), bfold, sigma, st.rule)
        x = _BandAxis(box[:, 0], box[:, 2], g["flip"], ow, sw if sw is not None else hw[:, 1], 1.0,
                      window(box[:, 0], box[:, 2], clip[:, 0], clip[:, 2]), bfold, sigma, st.rule)
    else:
        # fast mode: the vertical matrices carry an extra row, their column sums (for the channel means)
        y = axis(box[:, 1], box[:, 3], None, oh, sh, hw[:, 0], scale, False, fast, clip[:, 1], clip[:, 3])
        x = axis(box[:, 0], box[:, 2], g["flip"], ow, sw, hw[:, 1], 1.0, True, False, clip[:, 0], clip[:, 2])
    A = K = const = None
    if fast:
        A, K = fast_color_matrices(g["brightness"], g["contrast"], g["saturation"], g["hue"],
                                   g["color_order"], g["color_apply"], g["gray"], torch.float32)
        const = torch.zeros(A.shape[0], 3, 1, device=device)
        rows = torch.ones(1, 3, 1, device=device)  # per-row factors of the colour map
        if st.mean is not None:  # fold the normalisation into the colour map
            rows = st.istd.view(1, 3, 1)
            K = K * rows
            const = const - (st.mean * st.istd).view(1, 3, 1)
        for ax in (y, x):  # factors the matrices leave out (blur centre taps)
            if ax.gain is not None:
                rows = rows * ax.gain[:, None, None]
        A = A * rows
    return _Plan(views, oh, ow, y, x, blur, sigma, A, const, K, solarize, bool(solarize.any()), banded)


def _want_band(st: _Settings, box: Tensor, oh: int, ow: int, vg: int, src_hw: tuple[int, int], device,
               blur_frac: float = 0.0) -> bool:
    """Banded or dense resampling for a group: the override ``st.geometry``, else (``"auto"``) banded
    on CPU when :func:`band_cost_ratio` exceeds ``BAND_RATIO`` (CUDA keeps the dense products)."""
    if st.geometry != "auto":
        return st.geometry == "banded"
    if torch.device(device).type != "cpu" or not box.numel():
        return False
    if table_fits(src_hw[0], oh) and table_fits(src_hw[1], ow):  # small sources: the lookup tables win
        return False
    ky = math.ceil(2 * max(1.0, float(box[:, 3].max()) / oh))
    kx = math.ceil(2 * max(1.0, float(box[:, 2].max()) / ow))
    kb = (int(blur_kernel_size(oh, 2.0, st.rule)), int(blur_kernel_size(ow, 2.0, st.rule)))  # sigma: SimCLR's max
    return band_cost_ratio(3, src_hw[0], src_hw[1], oh, ow, ky, kx, vg, blur_frac, kb, st.mode == "exact") > BAND_RATIO


def _items(rows: slice | Tensor, vg: int) -> slice | Tensor:
    """Item indices (image-major, view-minor) of the images ``rows`` (a slice or an index tensor)."""
    if isinstance(rows, slice):
        return slice(rows.start * vg, rows.stop * vg)
    return (rows[:, None] * vg + torch.arange(vg, device=rows.device)).reshape(-1)


def _subset(mask: Tensor) -> Tensor | None:
    """Indices where ``mask`` holds (None when nowhere)."""
    idx = mask.nonzero().squeeze(1)
    return idx if idx.numel() else None


class _Work:
    """Buffers of one view group for chunks of ``k`` images of C channels, reused chunk after chunk
    (no allocation per chunk), and the per-channel views of them the products write into.

    One channel at a time (they stay in cache), the float input ``x`` [k, H, W] and the vertical
    products ``t`` [k, Vg * rows, W] (``rows`` = oh, + 1 in fast mode: the column-sum row, giving
    the channel means ``m`` [C, k * Vg]); the views ``y`` [C (+ 1), k * Vg, oh * ow] are channel-major, so
    every product writes its result where the next one reads it (no permuting copy). In fast mode
    ``y`` has a last channel of ones (the colour map's constant column rides in its product).
    ``geometry=False``: only ``y`` (list path).
    """

    def __init__(self, k: int, C: int, H: int, W: int, plan: _Plan, fast: bool, device,
                 geometry: bool = True, like: _Work | None = None) -> None:
        vg, oh, ow = len(plan.views), plan.oh, plan.ow
        self.k, self.C, self.H, self.W, self.plan, self.fast, self.device = k, C, H, W, plan, fast, device
        self.rows = oh + fast
        self.geometry = geometry
        if like is None:  # the storage (views of it serve smaller chunks)
            f32 = dict(dtype=torch.float32, device=device)
            self._x = torch.empty(k * H * W, **f32) if geometry else None
            self._t = torch.empty(k * vg * self.rows * W, **f32) if geometry else None
            self._m = torch.empty(k * vg * C, **f32) if geometry and fast else None
            self._y = torch.empty(C + fast, k * vg * oh * ow, **f32)
            if fast:
                self._y[C].fill_(1.0)
        else:
            self._x, self._t, self._m, self._y = like._x, like._t, like._m, like._y
        if geometry:  # one channel at a time: these stay in cache
            self.x = self._x[:k * H * W].view(k, H, W)
            self.t = self._t[:k * vg * self.rows * W].view(k, vg * self.rows, W)
            self.t_rows = self.t.view(k * vg, self.rows, W)[:, :oh]  # the views' rows
            if fast:
                self.q = self.t.view(k * vg, self.rows, W)[:, oh]  # the column-sum rows of t
                self.m = self._m[:C * k * vg].view(C, k * vg)
        self.y = self._y[:, :k * vg * oh * ow].view(C + fast, k * vg, oh * ow)
        self.y_c = [self.y[c].view(k * vg, oh, ow) for c in range(C)]
        if fast:
            src = self.y.transpose(0, 1).view(k, vg, C + 1, oh * ow)
            self.src_v = [src[:, v] for v in range(vg)]  # [k, C + 1, P]: the colour map's right operands
        self._smaller: dict[int, _Work] = {}

    def for_chunk(self, k: int) -> _Work:
        """The buffers for a chunk of ``k`` images (views of the same storage for a smaller one)."""
        if k == self.k:
            return self
        if k not in self._smaller:
            self._smaller[k] = _Work(k, self.C, self.H, self.W, self.plan, self.fast, self.device,
                                     self.geometry, like=self)
        return self._smaller[k]


# ---------------------------------------------------------------------------------------------- geometry
def _geometry(x: Tensor, plan: _Plan, rows: slice | Tensor, scale: float, st: _Settings,
              work: _Work | None = None, blur_views: bool = True) -> tuple[Tensor, Tensor | None]:
    """Crop + resize (+ flip, + blur in fast mode) of images ``x`` [k, C, H, W] for the plan's views.

    ``rows`` selects the plan's images. Returns the views channel-major, [C, k * Vg, oh * ow]
    (fast mode: [C + 1, ...], the last channel ones; ``work.y``) and, in fast mode, the channel
    means [k * Vg, C, 1] of the un-blurred views. ``scale`` multiplies the input on top of what the
    plan folded in (list path: 1/255 for uint8). ``work``: buffers for this chunk (None: fresh).
    """
    if plan.banded:
        return _geometry_banded(x, plan, rows, scale, st, work, blur_views)
    k, C, H, W = x.shape
    vg = len(plan.views)
    fast = st.mode == "fast"
    it = _items(rows, vg)
    if work is None:
        work = _Work(k, C, H, W, plan, fast, x.device)
    ay = plan.y.dense(it, H)  # [k*vg, oh (+ 1: column sums in fast mode), H]
    if scale != 1.0:
        ay = ay * scale
    axt = plan.x.dense(it, W)  # [k*vg, W, ow]
    ay = ay.view(k, vg * work.rows, H)
    csx = plan.x.colsum(it, W) if fast else None  # [k*vg, W]
    for c in range(C):  # per channel: the products write channel-major results, no permuting copy
        work.x.copy_(x[:, c])  # float32
        torch.bmm(ay, work.x, out=work.t)  # [k, vg*rows, W]: the rows of every view
        torch.bmm(work.t_rows, axt, out=work.y_c[c])  # [k*vg, oh, ow]
        if fast:  # channel mean csy^T X_c csx: the column-sum row of t times the column sums of x
            torch.linalg.vecdot(work.q, csx, out=work.m[c])
    return work.y, (work.m.t().unsqueeze(2) if fast else None)



def _geometry_banded(x: Tensor, plan: _Plan, rows: slice | Tensor, scale: float, st: _Settings,
                     work: _Work | None = None, blur_views: bool = True) -> tuple[Tensor, Tensor | None]:
    """:func:`_geometry` by banded resampling (``plan.banded``): the same outputs, work ~ output x taps.

    The source is converted to float32 transposed once per image, the horizontal pass sums its
    rows (source columns) under each output column's taps for every view (one ``embedding_bag``),
    the vertical pass the rows of the transposed intermediate, writing the views channel-major
    into ``work.y``. Fast mode: the blur rides in the taps (:class:`_BandAxis`, as the dense path
    folds it into the matrices; blur is linear and commutes with the colour map), and the channel
    means of the un-blurred views come from the taps' column sums. Short kernels are applied to
    the views here, or by the caller when ``blur_views`` is false (:func:`_blur_views_`).
    """
    k, C, H, W = x.shape
    vg, oh, ow = len(plan.views), plan.oh, plan.ow
    M = k * vg
    fast = st.mode == "fast"
    dev = x.device
    it = _items(rows, vg)
    if work is None:
        work = _Work(k, C, 0, 0, plan, fast, dev, geometry=False)
    iy, wy = plan.y.idx[it], plan.y.w[it]  # [M, oh, Ky]
    ix, wx = plan.x.idx[it], plan.x.w[it]  # [M, ow, Kx]
    ky = plan.y.klen[it] if plan.y.klen is not None else None
    kx = plan.x.klen[it] if plan.x.klen is not None else None
    if scale != 1.0:
        wy = wy * scale
    iy0, ix0 = plan.y.idx0[it], plan.x.idx0[it]
    # only the source rectangle the chunk's taps touch is converted and swept (a chunk of one
    # image, as in the list path, then costs its crops, not the whole image)
    y0, y1 = int(torch.minimum(iy.min(), iy0.min())), int(torch.maximum(iy.max(), iy0.max())) + 1
    x0, x1 = int(torch.minimum(ix.min(), ix0.min())), int(torch.maximum(ix.max(), ix0.max())) + 1
    if (y0, y1, x0, x1) != (0, H, 0, W):
        x = x[:, :, y0:y1, x0:x1]
        H, W = y1 - y0, x1 - x0
        iy, iy0, ix, ix0 = iy - y0, iy0 - y0, ix - x0, ix0 - x0
    planes = torch.arange(C * M, device=dev).view(C, M)  # channel-major planes (c, item)
    img = torch.arange(M, device=dev) // vg
    src_plane = img[None, :] * C + torch.arange(C, device=dev)[:, None]  # [C, M]: plane of x
    # rows: source columns, float32 (one transposing conversion of the source; converting the
    # gathered taps instead would convert every source pixel K x (views) times)
    xt = torch.empty(k * C * W, H, dtype=torch.float32, device=dev)
    xt.view(k, C, W, H).copy_(x.transpose(2, 3))
    h = _band_pass(xt, (src_plane * W)[:, :, None, None] + ix[None], wx[None], klen=kx)  # [C, M, ow, H]
    ht = h.transpose(2, 3).contiguous().view(C * M * H, ow)  # rows: source rows of the resized columns
    y = work.y[:C].view(C, M, oh, ow)
    _band_pass(ht, (planes * H)[:, :, None, None] + iy[None], wy[None], out=y, klen=ky)
    m = None
    if fast and plan.y.klen is None and plan.x.klen is None:  # blur not in the taps: mean, then blur
        m = y.view(C, M, oh * ow).mean(dim=2).t().unsqueeze(2)  # [M, C, 1], un-blurred views
        if blur_views:
            _blur_views_(y, plan, it, st)
    elif fast:  # channel means of the un-blurred views: a^T X b, a / b the column sums of the taps / n
        a = torch.zeros(M, H, device=dev).scatter_add_(1, iy0.reshape(M, -1),
                                                        plan.y.w0[it].reshape(M, -1)).mul_(scale / oh)
        b = torch.zeros(M, W, device=dev).scatter_add_(1, ix0.reshape(M, -1), plan.x.w0[it].reshape(M, -1)).div_(ow)
        v = torch.bmm(xt.view(k, C * W, H), a.view(k, vg, H).transpose(1, 2)).view(k, C, W, vg)
        m = torch.linalg.vecdot(v.permute(0, 3, 1, 2), b.view(k, vg, 1, W)).reshape(M, C, 1)
    return work.y, m


def _blur_views_(y: Tensor, plan: _Plan, it: slice | Tensor, st: _Settings) -> None:
    """Fast mode, banded plan without the blur in its taps: blur the views ``y`` [C, M, oh, ow]
    (items ``it`` of the plan) that have it, in place."""
    if st.mode != "fast" or not plan.banded or plan.y.klen is not None or plan.x.klen is not None:
        return
    sel = _subset(plan.blur[it])
    if sel is not None:
        y[:, sel] = _blur_band(y[:, sel], plan.sigma[it][sel], st.rule, item_dim=1)


# ---------------------------------------------------------------------------------------------- photometric
def _clamp_(y: Tensor, st: _Settings) -> None:
    """Clamp ``y`` [k, 3, P] in place to the image of [0, 1] (per channel when normalising)."""
    if st.mean is None:
        y.clamp_(0.0, 1.0)
        return
    for c in range(3):
        y[:, c].clamp_(st.lo[c], st.hi[c])


def _solarize_(y: Tensor, sel: Tensor | None, st: _Settings) -> None:
    """Solarize the items ``sel`` of ``y`` [k, 3, P] (values >= 128/255 -> 1 - value), in the
    normalised space when normalising; branch-free (``floor`` gives the 0/1 step)."""
    if sel is None:
        return
    sub = y[sel]
    if st.mean is None:
        raw = sub
    else:
        raw = sub * (1.0 / st.istd) + st.mean  # back to [0, 1]
    step = torch.floor(raw - SOLARIZE_THRESHOLD + 1.0).clamp_(0.0, 1.0)  # 1 where raw >= threshold
    raw = raw + step * (1.0 - 2.0 * raw)
    y[sel] = raw if st.mean is None else (raw - st.mean) * st.istd


def _photometric_fast(work: _Work, m: Tensor, plan: _Plan, rows: slice, outs: list[Tensor],
                      st: _Settings) -> None:
    """One 3x4 map per view (colour, grayscale, contrast offset, normalisation), one product per
    view (``work.y``, last channel ones) straight into the output, then clamp (in place, while
    the chunk's output is in cache) and solarize."""
    C, vg, k = work.C, len(plan.views), work.k
    it = _items(rows, vg)
    bias = torch.baddbmm(plan.const[it], plan.K[it], m.expand(k * vg, 3, 1) if C == 1 else m)  # [k*vg, 3, 1]
    amap = plan.A[it]
    if C == 1:  # gray input: the three channels are equal
        amap = amap.sum(dim=2, keepdim=True)
    amap = torch.cat((amap, bias), dim=2).view(k, vg, 3, C + 1)
    sol = plan.solarize[it].view(k, vg) if plan.any_solarize else None
    for v, out in enumerate(outs):
        res = out.view(k, 3, -1)
        torch.bmm(amap[:, v], work.src_v[v], out=res)
        _clamp_(res, st)
        if sol is not None:
            _solarize_(res, _subset(sol[:, v]), st)


def _normalize_(y: Tensor, st: _Settings) -> None:
    if st.mean is not None:
        y.sub_(st.mean).mul_(st.istd)


def _jitter_block_(x: Tensor, op: int, f: Tensor) -> None:
    """Exact colour op ``op`` (COLOR_OPS order) with per-item factors ``f``, in place on x [c, 3, H, W]."""
    f = f.view(-1, 1, 1, 1)
    if op == 0:  # brightness
        x.mul_(f)
    elif op == 1:  # contrast: blend with the mean luma
        mean = gray(x).mean(dim=(1, 2, 3), keepdim=True)
        x.mul_(f).add_(mean * (1.0 - f))
    elif op == 2:  # saturation: blend with the luma image
        g = gray(x).mul_(1.0 - f)
        x.mul_(f).add_(g)
    else:  # hue
        x.copy_(shift_hue(x, f.view(-1)))
    x.clamp_(0.0, 1.0)


def _color_jitter_exact_(work: Tensor, apply: Tensor, order: Tensor, factors: list[Tensor]) -> Tensor:
    """Colour jitter of every item in its own op order, each op clamped (torchvision semantics).

    Vectorised over the four order positions: at each position the items are regrouped by the op
    they apply there (one gather), and each op runs once on its contiguous block. Returns the
    items in their original order.
    """
    m = work.shape[0]
    dev = work.device
    code = torch.where(apply[:, None], order, torch.full_like(order, 4))  # 4: no jitter
    cur = torch.arange(m, device=dev)  # item held in each row of ``work``
    for pos in range(4):
        ops = code[cur, pos]
        perm = torch.argsort(ops, stable=True)
        counts = torch.bincount(ops, minlength=5).tolist()
        if counts[4] == m:
            break
        work = work.index_select(0, perm)
        cur = cur[perm]
        start = 0
        for op in range(4):
            c = counts[op]
            if c:
                _jitter_block_(work[start:start + c], op, factors[op][cur[start:start + c]])
            start += c
    return work.index_select(0, torch.argsort(cur))


def _photometric_exact(y: Tensor, plan: _Plan, params: ViewParams, rows: slice, outs: list[Tensor],
                       st: _Settings) -> None:
    vg, oh, ow = len(plan.views), plan.oh, plan.ow
    k = y.shape[1] // vg
    dev = y.device
    it = _items(rows, vg)
    work = torch.empty(k, vg, 3, oh, ow, dtype=torch.float32, device=dev)
    work.copy_(y.view(-1, k, vg, oh, ow).permute(1, 2, 0, 3, 4).expand(k, vg, 3, oh, ow))
    work = work.view(k * vg, 3, oh, ow)

    def field(name: str) -> Tensor:
        t = getattr(params, name)[rows][:, plan.views]
        return t.reshape(k * vg, *t.shape[2:]).to(dev)

    apply = field("color_apply")
    if bool(apply.any()):
        factors = [field(n).float() for n in ("brightness", "contrast", "saturation", "hue")]
        work = _color_jitter_exact_(work, apply, field("color_order"), factors)
    sel = _subset(field("gray"))
    if sel is not None:
        work[sel] = gray(work[sel]).expand(-1, 3, oh, ow)
    sel = _subset(plan.blur[it])
    if sel is not None and plan.banded:
        work[sel] = _blur_band(work[sel], plan.sigma[it][sel], st.rule)
    elif sel is not None:
        sigma = plan.sigma[it][sel]
        by = blur_matrices(sigma, oh, st.rule)
        bxt = blur_matrices(sigma, ow, st.rule).transpose(1, 2)
        sub = torch.bmm(work[sel].view(-1, 3 * oh, ow), bxt).view(-1, 3, oh, ow)
        work[sel] = torch.matmul(by.unsqueeze(1), sub)
    work = work.view(k, vg, 3, oh * ow)
    sol = plan.solarize[it].view(k, vg) if plan.any_solarize else None
    for v, out in enumerate(outs):
        res = out.view(k, 3, oh * ow)
        res.copy_(work[:, v])
        if sol is not None:
            _solarize_(res, _subset(sol[:, v]), _Settings("exact", None, None, st.rule, st.out_dtype, None))
        _normalize_(res, st)


def _photometric(work: _Work, m: Tensor | None, plan: _Plan, params: ViewParams, rows: slice,
                 outs: list[Tensor], st: _Settings) -> None:
    """Colour, grayscale, (exact: blur), solarize and normalise the views ``work.y`` (channel-major,
    see :func:`_geometry`) of images ``rows``."""
    o = [outs[v][rows] for v in plan.views]
    tmp = [t if t.dtype == torch.float32 else torch.empty(t.shape, device=t.device) for t in o]
    if st.mode == "fast":
        _photometric_fast(work, m, plan, rows, tmp, st)
    else:
        _photometric_exact(work.y, plan, params, rows, tmp, st)
    for t, dst in zip(tmp, o):
        if t is not dst:
            dst.copy_(t)


# ---------------------------------------------------------------------------------------------- public API
def _chunk_size(st: _Settings, C: int, H: int, W: int, out_hw: list[tuple[int, int]], device) -> int:
    """Images per chunk: the working set of one chunk (input, products, views, matrices) about
    ``CPU_CHUNK_BYTES`` (``GPU_CHUNK_BYTES`` on CUDA; times ``EXACT_CHUNK_FACTOR`` in exact mode)."""
    if st.chunk_size is not None:
        return st.chunk_size
    # one input channel, and per view: one channel's vertical products, views (+ ones), matrices (floats)
    per_view = sum((h + 1) * W + (C + 1) * h * w + (h + 1) * H + W * w for h, w in out_hw)
    per_image = 4 * (H * W + per_view)
    budget = GPU_CHUNK_BYTES if torch.device(device).type == "cuda" else CPU_CHUNK_BYTES
    if st.mode == "exact":
        budget = int(budget * EXACT_CHUNK_FACTOR)
    return max(4, min(4096, budget // max(per_image, 1)))


def _alloc_outputs(n: int, out_hw, st: _Settings, device) -> list[Tensor]:
    return [torch.empty(n, 3, int(h), int(w), dtype=st.out_dtype, device=device) for h, w in out_hw]


def render_views(
    images: Tensor,
    params: ViewParams,
    *,
    mode: str = "fast",
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    blur_kernel: str = "tenth",
    out_dtype: torch.dtype = torch.float32,
    chunk_size: int | None = None,
    geometry: str = "auto",
) -> list[Tensor]:
    """Render every view of ``images`` [N, C, H, W] (uint8 or float in [0, 1], CPU or CUDA).

    Returns one tensor [N, 3, h_v, w_v] per view (``params.out_hw[v]``), normalised with
    ``mean``/``std`` when given. ``chunk_size`` images are processed at a time (default: sized
    to the cache on CPU, large on GPU). ``geometry``: ``"auto"`` (default: banded resampling where
    it is cheaper than the dense products, see :func:`band_cost_ratio`), ``"dense"`` or
    ``"banded"`` (the same pixels to float32 rounding). No random numbers are drawn: same params,
    same pixels.
    """
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a tensor [N, C, H, W], got {getattr(images, 'shape', type(images))}")
    _check_images_dtype(images)
    images = _as_rgb_channels(images)
    n, c, H, W = images.shape
    if n and (H < 1 or W < 1):
        raise ValueError(f"images must have at least one pixel, got {H}x{W}")
    _check_params(params, n)
    hw = params.image_hw.to("cpu")
    if n and not bool(((hw[:, 0] == H) & (hw[:, 1] == W)).all()):
        bad = int((~((hw[:, 0] == H) & (hw[:, 1] == W))).nonzero()[0])
        raise ValueError(f"params.image_hw[{bad}] = {tuple(hw[bad].tolist())} but the images are {H}x{W}; "
                         f"use render_views_list for images of different sizes")
    device = images.device
    st = _settings(mode, mean, std, blur_kernel, out_dtype, chunk_size, device, geometry)
    outs = _alloc_outputs(n, params.out_hw, st, device)
    if n == 0:
        return outs
    scale = 1.0 / 255.0 if images.dtype == torch.uint8 else 1.0
    plans = [_plan(params, views, oh, ow, st, device, (H, W), scale)
             for (oh, ow), views in _view_groups(params.out_hw)]
    step = min(n, _chunk_size(st, c, H, W, params.out_hw, device))
    step = -(-n // -(-n // step))  # balanced chunks: e.g. 512 images in 8 chunks of 64, not 7 x 67 + 43
    works = [_Work(step, c, H, W, plan, st.mode == "fast", device, geometry=not plan.banded) for plan in plans]
    for s in range(0, n, step):
        rows = slice(s, min(n, s + step))
        x = images[rows]
        for plan, work in zip(plans, works):
            work = work.for_chunk(rows.stop - rows.start)
            _, m = _geometry(x, plan, rows, 1.0, st, work)
            _photometric(work, m, plan, params, rows, outs, st)
    _rotate_(outs, params)
    return outs


def render_views_list(
    images: list[Tensor],
    params: ViewParams,
    *,
    mode: str = "fast",
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    blur_kernel: str = "tenth",
    out_dtype: torch.dtype = torch.float32,
    chunk_size: int | None = None,
    geometry: str = "auto",
) -> list[Tensor]:
    """Render views of images of different sizes (a list of [C, H_i, W_i], uint8 or float).

    Images of one size are rendered together (the same batched path as :func:`render_views`, so
    crop semantics are identical); with all sizes distinct this is a per-image crop + resize
    stage followed by the batched photometric stage. ``geometry`` as in :func:`render_views`
    (``"auto"`` decides from the largest image).
    """
    if not isinstance(images, (list, tuple)):
        raise ValueError(f"images must be a list of [C, H, W] tensors, got {type(images).__name__}")
    for i, im in enumerate(images):
        if not isinstance(im, Tensor) or im.dim() != 3:
            raise ValueError(f"images[{i}] must be a tensor [C, H, W], got {getattr(im, 'shape', type(im))}")
        _check_images_dtype(im)
        _as_rgb_channels(im)
    n = len(images)
    _check_params(params, n)
    device = images[0].device if n else torch.device("cpu")
    st = _settings(mode, mean, std, blur_kernel, out_dtype, chunk_size, device, geometry)
    outs = _alloc_outputs(n, params.out_hw, st, device)
    hw = params.image_hw.to("cpu")
    for i, im in enumerate(images):
        if (int(hw[i, 0]), int(hw[i, 1])) != (int(im.shape[-2]), int(im.shape[-1])):
            raise ValueError(f"params.image_hw[{i}] = {tuple(hw[i].tolist())} but images[{i}] is "
                             f"{im.shape[-2]}x{im.shape[-1]}")
    if n == 0:
        return outs
    plans = [_plan(params, views, oh, ow, st, device) for (oh, ow), views in _view_groups(params.out_hw)]
    big = max(int(im.shape[-2]) * int(im.shape[-1]) for im in images)
    step = _chunk_size(st, 3, big, 1, params.out_hw, device)
    for s in range(0, n, step):
        rows = slice(s, min(n, s + step))
        k = rows.stop - rows.start
        # per-size crop + resize stage: images of one size together
        sizes: dict[tuple, list[int]] = {}
        for i in range(rows.start, rows.stop):
            im = images[i]
            if im.device != device:
                raise ValueError(f"all images must be on one device, got {device} and {im.device} (images[{i}])")
            sizes.setdefault((tuple(im.shape[-2:]), _as_rgb_channels(im).shape[0], im.dtype), []).append(i)
        stacks = []
        for (_, _, dtype), idx in sizes.items():
            gi = torch.tensor(idx, device=device)
            x = torch.stack([_as_rgb_channels(images[i]) for i in idx])
            stacks.append((x, gi, gi - rows.start, 1.0 / 255.0 if dtype == torch.uint8 else 1.0))
        for plan in plans:
            vg, oh, ow = len(plan.views), plan.oh, plan.ow
            fast = st.mode == "fast"
            work = _Work(k, 3, 0, 0, plan, fast, device, geometry=False)
            y = work.y.view(-1, k, vg, oh, ow)
            m = torch.empty(k * vg, 3, 1, dtype=torch.float32, device=device) if fast else None
            for x, gi, local, scale in stacks:
                y_g, m_g = _geometry(x, plan, gi, scale, st, blur_views=False)
                c = x.shape[1]
                y[:3].index_copy_(1, local, y_g[:c].view(c, -1, vg, oh, ow).expand(3, -1, -1, -1, -1))
                if m is not None:
                    m.view(k, vg, 3).index_copy_(0, local, m_g.view(-1, vg, c).expand(-1, -1, 3))
            _blur_views_(y[:3].view(3, k * vg, oh, ow), plan, _items(rows, vg), st)  # one blur for the chunk
            # batched photometric stage over the chunk
            _photometric(work, m, plan, params, rows, outs, st)
    _rotate_(outs, params)
    return outs


__all__ = ["MODES", "SOLARIZE_THRESHOLD", "render_views", "render_views_list"]
