"""Losses of the self-supervised methods, as pure functions of tensors (no module state).

``nt_xent`` (SimCLR), ``info_nce_queue`` (MoCo v1/v2, LooC), ``moco_v3_contrastive``,
``normalized_mse`` (BYOL), ``negative_cosine`` (SimSiam), ``dino_cross_entropy`` (DINO). Targets
(momentum keys, teacher outputs) are passed in by the caller, who decides what is detached.

NT-Xent (SimCLR): for N images with two views, each of the 2N projections is an anchor whose
positive is the other view of its image and whose negatives are the other 2N - 2 projections;
logits are cosine similarities / temperature. Under torch.distributed the candidates are gathered
from every rank (with gradient) while each rank keeps only its local anchors, and the per-rank
loss is the mean over local anchors: with equal local batch sizes, DDP's gradient averaging then
gives exactly the gradient of the global-batch loss (see ``jointaug.distributed.gather_with_grad``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from jointaug import distributed as jdist


@dataclass
class ContrastiveOutput:
    """Loss plus what is needed for logging: logits [2n, 2N] (self masked) and positive indices [2n]."""

    loss: Tensor
    logits: Tensor
    targets: Tensor

    @torch.no_grad()
    def top1(self) -> Tensor:
        """Fraction of local anchors whose most similar candidate is their positive."""
        return (self.logits.argmax(dim=1) == self.targets).float().mean()


def nt_xent_detailed(z1: Tensor, z2: Tensor, temperature: float, *, gather: bool = True) -> ContrastiveOutput:
    """NT-Xent with its logits and targets (see :func:`nt_xent`)."""
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"nt_xent: z1 and z2 must be [n, d] of equal shape, got {tuple(z1.shape)}, {tuple(z2.shape)}")
    if not temperature > 0:
        raise ValueError(f"nt_xent: temperature must be > 0, got {temperature!r}")
    n = z1.shape[0]
    if z1.dtype in (torch.float16, torch.bfloat16):  # softmax over 2N candidates in float32 under autocast
        z1, z2 = z1.float(), z2.float()
    z1 = F.normalize(z1, dim=1)
    z2 = F.normalize(z2, dim=1)
    if gather and jdist.is_dist() and jdist.world_size() > 1:
        all1, all2 = jdist.gather_with_grad(z1), jdist.gather_with_grad(z2)
        offset = jdist.rank() * n
    else:
        all1, all2, offset = z1, z2, 0
    total = all1.shape[0]
    anchors = torch.cat([z1, z2], dim=0)  # [2n, d]
    candidates = torch.cat([all1, all2], dim=0)  # [2N, d]: all first views, then all second views
    with torch.autocast(device_type=z1.device.type, enabled=False):  # keep the logits in full precision
        logits = anchors @ candidates.t() / temperature
    local = torch.arange(n, device=z1.device) + offset
    self_idx = torch.cat([local, local + total])
    targets = torch.cat([local + total, local])
    rows = torch.arange(2 * n, device=z1.device)
    minus_inf = torch.tensor(float("-inf"), device=z1.device, dtype=logits.dtype)
    logits = logits.index_put((rows, self_idx), minus_inf)  # an anchor is not its own candidate
    loss = F.cross_entropy(logits, targets)
    return ContrastiveOutput(loss=loss, logits=logits, targets=targets)


def nt_xent(z1: Tensor, z2: Tensor, temperature: float, *, gather: bool = True) -> Tensor:
    """SimCLR NT-Xent loss of two views' projections ``z1``, ``z2`` [n, d] (L2-normalised inside).

    ``gather=True`` uses every rank's projections as candidates when torch.distributed is
    initialised (2N - 2 negatives per anchor for a global batch of N images).
    """
    return nt_xent_detailed(z1, z2, temperature, gather=gather).loss


def _full(x: Tensor) -> Tensor:
    """Half-precision inputs (autocast) are computed in float32; float32/float64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def info_nce_queue(q: Tensor, k: Tensor, queue: Tensor, temperature: float) -> ContrastiveOutput:
    """MoCo's InfoNCE: for each query ``q[i]`` the positive is ``k[i]``, the negatives are the ``queue``
    rows [K, d]; logits ``[q.k, q.queue^T] / T`` (cosines), target index 0. ``q``, ``k`` are normalised here."""
    if q.shape != k.shape or q.dim() != 2 or queue.dim() != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(f"info_nce_queue: q, k must be [n, d] and queue [K, d], got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(queue.shape)}")
    if not temperature > 0:
        raise ValueError(f"info_nce_queue: temperature must be > 0, got {temperature!r}")
    q, k = F.normalize(_full(q), dim=1), F.normalize(_full(k), dim=1)
    with torch.autocast(device_type=q.device.type, enabled=False):
        l_pos = (q * k).sum(dim=1, keepdim=True)
        l_neg = q @ queue.to(q.dtype).t()
        logits = torch.cat([l_pos, l_neg], dim=1) / temperature
    targets = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return ContrastiveOutput(loss=F.cross_entropy(logits, targets), logits=logits, targets=targets)


def moco_v3_contrastive(q: Tensor, k: Tensor, temperature: float, *, gather: bool = True) -> ContrastiveOutput:
    """MoCo v3's loss of one direction: query ``q[i]``'s positive is key ``k[i]``, the negatives are the
    other keys of the (global, when ``gather`` under torch.distributed) batch; cross-entropy x 2T."""
    if q.shape != k.shape or q.dim() != 2:
        raise ValueError(f"moco_v3_contrastive: q and k must be [n, d] of equal shape, got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}")
    if not temperature > 0:
        raise ValueError(f"moco_v3_contrastive: temperature must be > 0, got {temperature!r}")
    q, k = F.normalize(_full(q), dim=1), F.normalize(_full(k), dim=1)
    offset = 0
    if gather and jdist.is_dist() and jdist.world_size() > 1:
        offset = jdist.rank() * q.shape[0]
        k = jdist.all_gather_nograd(k)
    with torch.autocast(device_type=q.device.type, enabled=False):
        logits = q @ k.t() / temperature
    targets = torch.arange(q.shape[0], device=q.device) + offset
    return ContrastiveOutput(loss=F.cross_entropy(logits, targets) * (2 * temperature), logits=logits,
                             targets=targets)


def normalized_mse(p: Tensor, z: Tensor) -> Tensor:
    """BYOL's loss: mean over the batch of ``||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z)``."""
    if p.shape != z.shape or p.dim() != 2:
        raise ValueError(f"normalized_mse: p and z must be [n, d] of equal shape, got {tuple(p.shape)}, "
                         f"{tuple(z.shape)}")
    return (2.0 - 2.0 * F.cosine_similarity(_full(p), _full(z), dim=1)).mean()


def negative_cosine(p: Tensor, z: Tensor) -> Tensor:
    """SimSiam's loss D(p, z): minus the mean cosine similarity of ``p`` and ``z`` [n, d]."""
    if p.shape != z.shape or p.dim() != 2:
        raise ValueError(f"negative_cosine: p and z must be [n, d] of equal shape, got {tuple(p.shape)}, "
                         f"{tuple(z.shape)}")
    return -F.cosine_similarity(_full(p), _full(z), dim=1).mean()


def dino_cross_entropy(student: list[Tensor], teacher: list[Tensor], center: Tensor, student_temp: float,
                       teacher_temp: float) -> Tensor:
    """DINO's loss: the mean over pairs (teacher view t, student view s != t) of the batch mean of
    ``-sum softmax((teacher_t - center) / teacher_temp) * log_softmax(student_s / student_temp)``.

    ``student``: logits of every view (globals first); ``teacher``: logits of the global views.
    """
    if not (student_temp > 0 and teacher_temp > 0):
        raise ValueError(f"dino_cross_entropy: temperatures must be > 0, got {student_temp!r}, {teacher_temp!r}")
    if len(teacher) < 1 or len(student) < 2:
        raise ValueError(f"dino_cross_entropy: needs >= 1 teacher and >= 2 student views, got {len(teacher)}, "
                         f"{len(student)}")
    log_s = [F.log_softmax(_full(s) / student_temp, dim=-1) for s in student]
    probs_t = [F.softmax((_full(t) - center) / teacher_temp, dim=-1) for t in teacher]
    total, pairs = 0.0, 0
    for ti, pt in enumerate(probs_t):
        for si, ls in enumerate(log_s):
            if si == ti:
                continue
            total = total + (-(pt * ls).sum(dim=-1)).mean()
            pairs += 1
    return total / pairs


__all__ = ["ContrastiveOutput", "dino_cross_entropy", "info_nce_queue", "moco_v3_contrastive", "negative_cosine",
           "normalized_mse", "nt_xent", "nt_xent_detailed"]
