"""Per-axis linear operators shared by every rendering backend: resize weights and blur kernels.

Crop + resize (+ flip) along one axis is a linear map from the source pixels of that axis to the
output pixels: a matrix whose rows (output pixels) have a few non-zero columns. It is computed as
*taps* (for every output pixel, K source columns and their weights, stored tap-major [K, M, n] so
that every elementwise operation runs over all items and pixels at once) and expanded to dense
[M, n, src] matrices for the batched matrix products. For small sources every crop's matrix is
precomputed once (:func:`crop_table`) and looked up. A Gaussian blur (reflect padding) after the
resize is a left factor B (:func:`blur_matrices`); for small kernels it is also available as
pre-blurred basis tables (:func:`blur_basis_table`): B = sum_d t_d (S_d + S_-d). The renderer
looks a crop's blurred matrix up in one weighted lookup of the crop table stacked with its bases
(:func:`crop_bag_table`, ``F.embedding_bag``).

Resize weights follow PIL's / torch's antialiased bilinear resampling (``F.interpolate(...,
mode="bilinear", antialias=True, align_corners=False)``): output pixel ``i`` of a crop of length
``L`` resized to ``n`` has centre ``c = (i + 0.5) * L / n`` in crop coordinates and takes the
crop pixels ``j`` with weight ``max(0, 1 - |j + 0.5 - c| / s)``, ``s = max(L / n, 1)``, normalised
over the crop; crop pixels outside the source image are zero (they count in the normalisation).

Blur kernel sizes (:func:`blur_kernel_size`), one rule for every backend:

- ``"tenth"`` (default; SimCLR's / the paper's rule, as used with torchvision's GaussianBlur): an odd
  size of about a tenth of the output side, ``k = int(0.1 * side)``, plus one if even, at least 3
  (32 -> 3, 96 -> 9, 224 -> 23);
- ``"3sigma"``: ``k = 2 * ceil(3 * sigma) + 1`` (the kernel reaches three standard deviations).

Either way ``k`` is capped at ``2 * side - 1`` so that reflect padding (half = side - 1) is defined.
Each axis gets the size computed from its own output side. Taps follow torchvision's 1-D Gaussian:
``exp(-x^2 / (2 sigma^2))`` at ``x = -(k-1)/2 .. (k-1)/2``, normalised to sum 1.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

BLUR_RULES = ("tenth", "3sigma")


def _check_rule(rule: str) -> None:
    if rule not in BLUR_RULES:
        raise ValueError(f"blur kernel rule must be one of {BLUR_RULES}, got {rule!r}")


def blur_kernel_size(out_side: int, sigma: float | Tensor | None = None, rule: str = "tenth") -> int | Tensor:
    """Odd Gaussian kernel size for an output side of ``out_side`` pixels (see the module docstring).

    Returns an int, or a LongTensor shaped like ``sigma`` when ``sigma`` is a tensor.
    """
    _check_rule(rule)
    side = int(out_side)
    if side < 1:
        raise ValueError(f"out_side must be a positive number of pixels, got {out_side!r}")
    cap = 2 * side - 1
    if rule == "tenth":
        k = int(0.1 * side)
        k = k + 1 if k % 2 == 0 else k
        k = min(max(k, 3), cap)
        if isinstance(sigma, Tensor):
            return torch.full(sigma.shape, k, dtype=torch.int64, device=sigma.device)
        return k
    if sigma is None:
        raise ValueError("blur kernel rule '3sigma' needs sigma")
    if isinstance(sigma, Tensor):
        if sigma.numel() and bool((sigma <= 0).any()):
            raise ValueError(f"blur sigma must be positive, got min {float(sigma.min())}")
        return (2 * torch.ceil(3 * sigma.double()).long() + 1).clamp(max=cap)
    if not sigma > 0:
        raise ValueError(f"blur sigma must be positive, got {sigma!r}")
    return min(2 * math.ceil(3 * float(sigma)) + 1, cap)


def gaussian_kernel1d(ksize: int, sigma: float, dtype: torch.dtype = torch.float32) -> Tensor:
    """Normalised 1-D Gaussian taps of odd length ``ksize`` (torchvision's definition)."""
    if ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"Gaussian kernel size must be odd and positive, got {ksize}")
    if not sigma > 0:
        raise ValueError(f"blur sigma must be positive, got {sigma!r}")
    half = (ksize - 1) / 2
    x = torch.linspace(-half, half, ksize, dtype=torch.float64)
    pdf = torch.exp(-0.5 * (x / float(sigma)) ** 2)
    return (pdf / pdf.sum()).to(dtype)


def gaussian_taps(sigma: Tensor, ksize: Tensor) -> Tensor:
    """[M, Kmax] float64 Gaussian kernels, one per row, centred (zeros pad the shorter ones)."""
    kmax = int(ksize.max()) if ksize.numel() else 1
    half = (kmax - 1) // 2
    x = torch.arange(-half, half + 1, dtype=torch.float64, device=sigma.device)
    s = sigma.double().clamp(min=1e-12)[:, None]
    pdf = torch.exp(-0.5 * (x[None, :] / s) ** 2)
    pdf = pdf * (x[None, :].abs() <= ((ksize[:, None] - 1) // 2))
    return pdf / pdf.sum(dim=1, keepdim=True)


def reflect_rows(n: int, k: int, device: torch.device | str = "cpu") -> Tensor:
    """[k, n] source row of each tap: row ``i + t - (k-1)//2`` reflected into [0, n) (no edge repeat).

    Rows of taps reaching beyond one reflection (only dead, zero-weight taps do) are clamped.
    """
    half = (k - 1) // 2
    r = torch.arange(n, device=device)[None, :] + torch.arange(k, device=device)[:, None] - half
    r = torch.where(r < 0, -r, r)
    return torch.where(r > n - 1, 2 * (n - 1) - r, r).clamp(0, max(n - 1, 0))


def blur_matrices(sigma: Tensor, n: int, rule: str = "tenth", dtype: torch.dtype = torch.float32) -> Tensor:
    """[M, n, n] dense Gaussian blur matrices (reflect padding) for M sigmas on an axis of n pixels."""
    taps = gaussian_taps(sigma, blur_kernel_size(n, sigma, rule)).to(dtype)  # [M, Kb]
    m, kb = taps.shape
    r = reflect_rows(n, kb, sigma.device)  # [Kb, n]
    flat = (torch.arange(m * n, device=sigma.device).view(m, 1, n) * n + r[None]).reshape(-1)
    out = torch.zeros(m * n * n, dtype=dtype, device=sigma.device)
    out.scatter_add_(0, flat, taps[:, :, None].expand(m, kb, n).reshape(-1))
    return out.view(m, n, n)


def _per_item(x: int | Tensor, m: int, device) -> Tensor:
    t = torch.as_tensor(x, device=device).long()
    return t.expand(m) if t.dim() == 0 else t


def resize_taps(
    offset: Tensor, length: Tensor, n_out: int, src_len: int | Tensor, flip: Tensor | None = None,
    clip: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Crop ``[offset, offset + length)`` of a source axis resized to ``n_out`` pixels, as taps.

    ``offset``, ``length``: [M] integers (source pixels); ``src_len``: int or [M]; ``flip``: [M]
    bool, reverses the output; ``clip``: ([M] start, [M] length) of the visible window, source pixels
    outside it are zero like those outside the source (None: the whole source). Returns ``(col, w)``,
    both [K, M, n_out]: source column (int64, clamped into the source) and float32 weight (zero
    where the column lies outside the source or the window).
    """
    device = offset.device
    m = offset.shape[0]
    L = length.long()
    if m and int(L.min()) < 1:
        raise ValueError(f"crop sides must be at least one pixel, got {int(L.min())}")
    src = _per_item(src_len, m, device)
    scale = (L.double() / n_out)[:, None]  # [M, 1]
    support = scale.clamp(min=1.0)
    i = torch.arange(n_out, dtype=torch.float64, device=device).expand(m, n_out)
    if flip is not None:
        i = torch.where(flip[:, None], n_out - 1 - i, i)
    centre = (i + 0.5) * scale  # [M, n], crop coordinates
    # the crop pixels j with a positive weight satisfy c - s - 0.5 < j < c + s - 0.5
    first = torch.floor(centre - support - 0.5) + 1.0
    K = max(1, int(math.ceil(2 * float(support.max()) - 1e-9))) if m else 1
    t = torch.arange(K, dtype=torch.float32, device=device)[:, None, None]
    rel = (first - centre + 0.5).float()  # [M, n]: position of the first tap relative to the centre
    inv = (1.0 / support).float().expand(m, n_out)
    w = (1.0 - (rel[None] + t).abs_().mul_(inv[None])).clamp_(min=0.0)  # [K, M, n]
    j = first.float()[None] + t  # crop coordinates (exact integers in float32)
    w.mul_((j >= 0) & (j < L.float()[None, :, None]))
    w.div_(w.sum(dim=0, keepdim=True))
    col = j.long().add_(offset.long()[None, :, None])
    hi = src[None, :, None]
    w.mul_((col >= 0) & (col < hi))
    if clip is not None:
        c0 = clip[0].long()[None, :, None]
        w.mul_((col >= c0) & (col < c0 + clip[1].long()[None, :, None]))
    col = torch.minimum(col.clamp_(min=0), hi - 1)
    return col, w


def item_major(col: Tensor, w: Tensor, src_len: int | Tensor, with_rows: bool = True,
               transpose: bool = False) -> tuple[Tensor, Tensor]:
    """Taps [..., M, n] re-laid item by item: ``([M, T] positions, [M, T] weights)``.

    A position is ``row * src_len + col`` inside the item's own dense [n, src_len] matrix
    (``col * n + row`` in its transpose [src_len, n] when ``transpose``; just ``col`` when
    ``with_rows`` is false: for column sums). Items are contiguous, so a chunk of items is a
    plain slice.
    """
    m, n = col.shape[-2], col.shape[-1]
    pos = col
    if with_rows and transpose:
        pos = col * n + torch.arange(n, device=col.device)[None, :]
    elif with_rows:
        s = _per_item(src_len, m, col.device).view(m, 1)
        pos = col + torch.arange(n, device=col.device)[None, :] * s
    pos = pos.reshape(-1, m, n).permute(1, 2, 0).reshape(m, -1)
    return pos, w.reshape(-1, m, n).permute(1, 2, 0).reshape(m, -1).float()


def dense_from_taps(pos: Tensor, w: Tensor, n: int, src_len: int) -> Tensor:
    """[k, n, src_len] float32 dense matrices of k items from item-major taps ([k, T] each)."""
    k = pos.shape[0]
    size = n * src_len
    out = torch.zeros(k * size, dtype=torch.float32, device=pos.device)
    flat = pos + (torch.arange(k, device=pos.device) * size)[:, None]
    out.scatter_add_(0, flat.view(-1), w.reshape(-1))
    return out.view(k, n, src_len)


def colsum_from_taps(col: Tensor, w: Tensor, src_len: int) -> Tensor:
    """[k, src_len] column sums of k items' matrices from item-major column taps ([k, T] each)."""
    k = col.shape[0]
    out = torch.zeros(k * src_len, dtype=torch.float32, device=col.device)
    flat = col + (torch.arange(k, device=col.device) * src_len)[:, None]
    out.scatter_add_(0, flat.view(-1), w.reshape(-1))
    return out.view(k, src_len)


#: cached crop + resize tables, keyed by (source length, output length, scale, device)
_TABLES: dict[tuple, tuple[Tensor, Tensor]] = {}
#: largest table kept (bytes); bigger sources use taps
TABLE_BYTES = 32 << 20


def table_fits(src_len: int, n_out: int) -> bool:
    """Whether the crop table of a source axis of ``src_len`` pixels resized to ``n_out`` is small enough."""
    return src_len * (src_len + 1) * n_out * src_len * 4 <= TABLE_BYTES


def crop_index(offset: Tensor, length: Tensor, flip: Tensor | None, src_len: int) -> Tensor:
    """Row of the crop ``[offset, offset + length)`` (inside the source) in :func:`crop_table`."""
    L = length.long()
    start = (L - 1) * (src_len + 1) - (L - 1) * L // 2
    idx = start + offset.long()
    if flip is not None:
        idx = idx + flip.long() * (src_len * (src_len + 1) // 2)
    return idx


def crop_table(src_len: int, n_out: int, scale: float = 1.0, device: torch.device | str = "cpu"
               ) -> tuple[Tensor, Tensor]:
    """Every crop inside a source axis as a precomputed matrix, for lookups instead of construction.

    Returns ``(T, CS)``: ``T[crop_index(x0, L, flip)]`` is the [n_out, S] matrix (times ``scale``)
    of the crop ``[x0, x0 + L)``, ``0 <= x0``, ``x0 + L <= S``, rows reversed when flipped;
    ``CS[crop_index(x0, L, None)]`` its column sums divided by ``n_out``. Cached per size.
    """
    S = int(src_len)
    key = (S, int(n_out), float(scale), str(device))
    if key not in _TABLES:
        x0, L = _crops(S, device)
        mats = []
        for flip in (False, True):
            col, w = resize_taps(x0, L, n_out, S, torch.full_like(L, flip, dtype=torch.bool))
            mats.append(taps_to_dense(col, w, S, scale))  # [S(S+1)/2, n, S]
        if len(_TABLES) > 16:
            _TABLES.clear()
        _TABLES[key] = (torch.cat(mats), mats[0].sum(dim=1) / n_out)
    return _TABLES[key]


def _basis(T: Tensor, n_out: int, d: int) -> Tensor:
    r = reflect_rows(n_out, 2 * d + 1, T.device)  # rows i - d (first) and i + d (last)
    return T[:, r[0]] + T[:, r[-1]]


def blur_basis_table(src_len: int, n_out: int, d: int, scale: float = 1.0,
                     device: torch.device | str = "cpu") -> Tensor:
    """``(S_d + S_-d) @ T`` for the crop table ``T``: rows ``reflect(i + d) + reflect(i - d)``.

    A Gaussian blur with centred taps ``t`` is ``sum_d t_d (S_d + S_-d)`` (``t_0`` alone for
    d = 0), so the blurred matrix of any crop is a weighted sum of these tables' rows.
    """
    T, _ = crop_table(src_len, n_out, scale, device)
    return _basis(T, int(n_out), int(d))


#: cached lookup tables for ``F.embedding_bag`` and column sums, keyed by their arguments
_BAGS: dict[tuple, Tensor] = {}


def _crops(src_len: int, device: torch.device | str) -> tuple[Tensor, Tensor]:
    """Offsets and lengths of every crop inside a source axis of ``src_len`` pixels, in
    :func:`crop_index` order (length-major)."""
    S = int(src_len)
    L = torch.cat([torch.full((S - l + 1,), l, device=device) for l in range(1, S + 1)])
    x0 = torch.cat([torch.arange(S - l + 1, device=device) for l in range(1, S + 1)])
    return x0, L


def crop_bag_table(src_len: int, n_out: int, bases: int = 0, scale: float = 1.0,
                   device: torch.device | str = "cpu", transpose: bool = False, colsum: bool = False) -> Tensor:
    """Every crop's matrix and its first ``bases`` blur bases, one flattened matrix per row, for
    ``F.embedding_bag``: row ``d * E + crop_index(x0, L, flip)`` holds basis ``d`` of the crop
    (:func:`blur_basis_table`; ``d = 0``: the crop's [n_out, S] matrix times ``scale``). ``E``
    counts the crops with their flips when ``transpose`` (the matrices are then stored transposed,
    [S, n_out]), without them otherwise. ``colsum``: each matrix gets an extra row, its column sums
    divided by ``n_out`` (zeros for the bases). Bags ``(1, t_1 / t_0, ..., t_D / t_0)`` then give
    the blurred matrix of a crop divided by its centre tap ``t_0`` in one lookup. Cached per key.
    """
    S, n = int(src_len), int(n_out)
    key = ("bag", S, n, int(bases), float(scale), str(device), bool(transpose), bool(colsum))
    if key not in _BAGS:
        x0, L = _crops(S, device)
        flips = (False, True) if transpose else (False,)
        T = torch.cat([taps_to_dense(*resize_taps(x0, L, n, S, torch.full_like(L, f, dtype=torch.bool)), S, scale)
                       for f in flips])  # [E, n, S]
        mats = [T] + [_basis(T, n, d) for d in range(1, int(bases) + 1)]
        if colsum:
            cs = T.sum(dim=1, keepdim=True) / n
            mats = [torch.cat((m, cs if d == 0 else torch.zeros_like(cs)), dim=1) for d, m in enumerate(mats)]
        if transpose:
            mats = [m.transpose(1, 2) for m in mats]
        if len(_BAGS) > 32:
            _BAGS.clear()
        _BAGS[key] = torch.cat(mats).reshape(len(mats) * T.shape[0], -1).contiguous()
    return _BAGS[key]


def crop_colsum_table(src_len: int, n_out: int, scale: float = 1.0, device: torch.device | str = "cpu") -> Tensor:
    """Row ``crop_index(x0, L, None)``: the column sums, divided by ``n_out``, of the crop's matrix
    (times ``scale``); the ``CS`` of :func:`crop_table` without the matrices. Cached."""
    S, n = int(src_len), int(n_out)
    key = ("colsum", S, n, float(scale), str(device))
    if key not in _BAGS:
        x0, L = _crops(S, device)
        if len(_BAGS) > 32:
            _BAGS.clear()
        _BAGS[key] = taps_to_dense(*resize_taps(x0, L, n, S), S, scale).sum(dim=1) / n
    return _BAGS[key]


def taps_to_dense(col: Tensor, w: Tensor, src_len: int, scale: float = 1.0) -> Tensor:
    """[M, n, src_len] float32 dense matrices from taps [..., M, n] (weights times ``scale``)."""
    pos, ww = item_major(col, w, src_len)
    return dense_from_taps(pos, ww * scale if scale != 1.0 else ww, col.shape[-1], src_len)


__all__ = [
    "BLUR_RULES", "blur_kernel_size", "gaussian_kernel1d", "gaussian_taps", "reflect_rows",
    "blur_matrices", "resize_taps", "item_major", "dense_from_taps", "colsum_from_taps",
    "taps_to_dense", "crop_table", "crop_index", "table_fits", "blur_basis_table", "crop_bag_table",
    "crop_colsum_table",
]
