"""Contrastive losses.

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


__all__ = ["ContrastiveOutput", "nt_xent", "nt_xent_detailed"]
