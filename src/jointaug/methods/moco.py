"""MoCo v1 (He et al. 2020) and MoCo v2 (Chen et al. 2020): a query encoder, a momentum key encoder
and a queue of negatives.

Query ``q = g(f(x1))``, key ``k = g_m(f_m(x2))`` from the momentum copy (no gradient), loss InfoNCE
of ``q`` against ``k`` and the queue (:func:`~jointaug.methods.losses.info_nce_queue`). After each
optimiser step the copy moves by EMA (m = 0.999, constant) and this step's keys (of every rank)
enter the queue. ``symmetric=True`` adds the loss with the views swapped (a common CIFAR variant).

v1: a linear 128-d head, temperature 0.07, MoCo v1's view recipe; v2: a 2-layer MLP head (2048,
ReLU, no BN), temperature 0.2, the v2 view recipe and a cosine lr schedule (in the YAML recipes).
Defaults: queue 65,536 (ImageNet); the CIFAR-size recipes use 4,096.

Batch norm and the key encoder (MoCo's "shuffling BN"): BN statistics over a batch would let a
query find its key through the batch statistics. Under DDP with unsynchronised BN, the keys are
computed on a batch shuffled across ranks (gathered, permuted by a permutation drawn on rank 0,
encoded per rank, unshuffled), as in the reference code. With synchronised BN (jointaug's DDP
default ``model.sync_bn=true``) BN is global, the shuffle changes nothing and is skipped. In one
process, ``bn_splits=k`` emulates k ranks of unsynchronised BN: queries are encoded in k groups
and keys in k groups of a shuffled batch (so CPU runs can use shuffled BN too).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from jointaug import distributed as jdist
from jointaug.methods.base import MomentumMethod, output_std, raise_errors, range_errors
from jointaug.methods.losses import info_nce_queue
from jointaug.methods.momentum import KeyQueue, MomentumSchedule, momentum_copy, momentum_errors
from jointaug.models.heads import ProjectionHead


def _has_sync_bn(module: nn.Module) -> bool:
    return any(isinstance(m, (nn.SyncBatchNorm, jdist.AllReduceBatchNorm)) for m in module.modules())


class MoCo(MomentumMethod):
    """MoCo v2 defaults; :class:`MoCoV1` changes the head and temperature (see the module docstring)."""

    num_views = 2

    def __init__(
        self,
        backbone: nn.Module,
        proj_hidden_dim: int = 2048,
        proj_out_dim: int = 128,
        proj_layers: int = 2,
        temperature: float = 0.2,
        momentum: float = 0.999,
        queue_size: int = 65536,
        symmetric: bool = False,
        shuffle_bn: bool = True,
        bn_splits: int = 1,
    ) -> None:
        super().__init__(backbone)
        params = dict(temperature=temperature, momentum=momentum, queue_size=queue_size, bn_splits=bn_splits)
        raise_errors(type(self).__name__, self._param_errors(params), params)
        self.temperature, self.symmetric = float(temperature), bool(symmetric)
        self.shuffle_bn, self.bn_splits = bool(shuffle_bn), int(bn_splits)
        self.momentum = MomentumSchedule(float(momentum), schedule="constant")
        self.projector = ProjectionHead(self.feature_dim, proj_hidden_dim, proj_out_dim, num_layers=proj_layers,
                                        batch_norm=False)
        self.momentum_backbone = momentum_copy(self.backbone)
        self.momentum_projector = momentum_copy(self.projector)
        self.queue = KeyQueue(int(queue_size), int(proj_out_dim))
        self._pending: list[Tensor] = []

    @staticmethod
    def _param_errors(params: dict[str, Any]) -> list[tuple[str, str]]:
        return range_errors(params, {"temperature": (0, None, "()"), "queue_size": (1, None, "[)"),
                                     "bn_splits": (1, None, "[)")}) + momentum_errors(params)

    @classmethod
    def online_pairs_error(cls, params: dict[str, Any]) -> str | None:
        if params.get("symmetric"):
            return None
        return ("passes only view 0 through its online backbone without symmetric=true (view 1 goes through the "
                "momentum copy); set method.params.symmetric=true")

    @classmethod
    def config_errors(cls, params: dict[str, Any], *, batch_size: int, num_views: int | None
                      ) -> list[tuple[str, str]]:
        errors = cls._param_errors(params)
        if not errors and int(params["queue_size"]) % batch_size:
            errors.append(("queue_size", f"must be a multiple of the global batch size optim.batch_size={batch_size}"))
        if not errors and batch_size % int(params["bn_splits"]):
            errors.append(("bn_splits", f"must divide the global batch size optim.batch_size={batch_size}"))
        return errors

    # ---------------------------------------------------------------------------------------- encoders
    def _query(self, x: Tensor) -> Tensor:
        if self.bn_splits > 1:
            return torch.cat([self.projector(self.backbone(c)) for c in x.chunk(self.bn_splits)])
        return self.projector(self.backbone(x))

    def _key_net(self, x: Tensor) -> Tensor:
        return self.momentum_projector(self.momentum_backbone(x))

    @torch.no_grad()
    def _keys(self, x: Tensor) -> Tensor:
        world = jdist.world_size()
        if world > 1 and self.shuffle_bn and not _has_sync_bn(self.momentum_backbone):
            n = x.shape[0]
            everything = jdist.all_gather_nograd(x)
            perm = torch.randperm(everything.shape[0], device=x.device)
            dist.broadcast(perm, src=0)
            mine = perm[jdist.rank() * n:(jdist.rank() + 1) * n]
            keys = jdist.all_gather_nograd(self._key_net(everything[mine]))
            unshuffled = torch.empty_like(keys)
            unshuffled[perm] = keys
            return unshuffled[jdist.rank() * n:(jdist.rank() + 1) * n]
        if self.bn_splits > 1 and self.shuffle_bn:
            perm = torch.randperm(x.shape[0], device=x.device)
            keys = torch.cat([self._key_net(c) for c in x[perm].chunk(self.bn_splits)])
            out = torch.empty_like(keys)
            out[perm] = keys
            return out
        return self._key_net(x)

    # ---------------------------------------------------------------------------------------- step
    def forward(self, views: list[Tensor]) -> dict[str, Tensor]:
        self.check_views(views)
        x1, x2 = views
        queue = self.queue.keys.clone().detach()
        q1 = self._query(x1)
        k2 = self._keys(x2)
        out = info_nce_queue(q1, k2, queue, self.temperature)
        loss, keys = out.loss, [k2]
        if self.symmetric:
            q2, k1 = self._query(x2), self._keys(x1)
            loss = 0.5 * (loss + info_nce_queue(q2, k1, queue, self.temperature).loss)
            keys.append(k1)
        if self.training:
            self._pending = [nn.functional.normalize(k.detach(), dim=1) for k in keys]
        return {"loss": loss, "acc": out.top1(), "out_std": output_std(q1),
                "pos_sim": nn.functional.cosine_similarity(q1.detach().float(), k2.float(), dim=1).mean()}

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.momentum_backbone, self.backbone), (self.momentum_projector, self.projector)]

    @torch.no_grad()
    def on_train_step_end(self, step: int, total_steps: int) -> None:
        super().on_train_step_end(step, total_steps)
        for keys in self._pending:
            self.queue.push(keys)
        self._pending = []


class MoCoV1(MoCo):
    """MoCo v1: ``MoCoV1(backbone, proj_out_dim=128, temperature=0.07, momentum=0.999, queue_size=65536)``,
    a linear head (``proj_layers=1``)."""

    def __init__(
        self,
        backbone: nn.Module,
        proj_hidden_dim: int = 2048,
        proj_out_dim: int = 128,
        proj_layers: int = 1,
        temperature: float = 0.07,
        momentum: float = 0.999,
        queue_size: int = 65536,
        symmetric: bool = False,
        shuffle_bn: bool = True,
        bn_splits: int = 1,
    ) -> None:
        super().__init__(backbone, proj_hidden_dim, proj_out_dim, proj_layers, temperature, momentum, queue_size,
                         symmetric, shuffle_bn, bn_splits)


__all__ = ["MoCo", "MoCoV1"]
