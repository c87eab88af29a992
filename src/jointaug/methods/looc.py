"""LooC, leave-one-out contrastive learning (Xiao, Wang, Efros, Darrell, ICLR 2021), on the MoCo machinery.

Views of one image (``augmentations = (a_1..a_n)``, e.g. colour and rotation; built by the view
policy from :meth:`LooC.policy_options`, see ``make_policy(leave_one_out=...)``): the query ``q``
(view 0), a key ``k_0`` with every augmentation drawn independently (view 1), and for each ``a_i`` a
key ``k_i`` (view ``1 + i``) that shares ``q``'s parameters of ``a_i`` and redraws the rest
(``share="one"``; ``share="all_but_one"`` is the other reading: share every ``a_j`` except ``a_i``).

Spaces: n + 1 projection heads on one backbone (and their momentum copies for the keys). In ``Z_0``
every key ``k_0..k_n`` is a positive of ``q`` (InfoNCE per positive, against the ``Z_0`` queue,
averaged). In ``Z_i`` only ``k_i`` is; the image's other keys are extra negatives, with the ``Z_i``
queue. The loss is the sum over spaces. After each step: EMA of backbone and heads (m = 0.999,
constant, as MoCo), then ``Z_0``'s queue receives the ``k_0`` keys and ``Z_i``'s the ``k_i`` keys.

Evaluation features (:meth:`LooC.features`): ``backbone`` (LooC), ``heads`` (the concatenated hidden
features of every head: LooC++), ``z0`` / ``z<i>`` / ``z_<aug>`` (one space's normalised output).
The spec is a reconstruction from the abstract (``shared/spec/looc.md``); the choices above are ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jointaug.methods.base import MomentumMethod, output_std, raise_errors, range_errors
from jointaug.methods.losses import ContrastiveOutput
from jointaug.methods.momentum import KeyQueue, MomentumSchedule, momentum_copy, momentum_errors
from jointaug.models.heads import ProjectionHead


def looc_space_loss(q: Tensor, keys: list[Tensor], positive: int | None, queue: Tensor,
                    temperature: float) -> ContrastiveOutput:
    """InfoNCE of one LooC space. ``q`` [n, d], ``keys``: the image's keys [n, d] each, ``queue`` [K, d].

    ``positive=None`` (``Z_0``): every key is a positive in turn, the negatives are the queue; the loss is
    the mean over keys. ``positive=i`` (``Z_i``): ``keys[i]`` is the positive, the other keys of the same
    image and the queue are negatives. Everything is L2-normalised here; logits are cosines / T."""
    if not temperature > 0:
        raise ValueError(f"looc_space_loss: temperature must be > 0, got {temperature!r}")
    q = F.normalize(q, dim=1)
    ks = [F.normalize(k, dim=1) for k in keys]
    l_queue = q @ queue.to(q.dtype).t()  # [n, K]
    l_keys = torch.stack([(q * k).sum(dim=1) for k in ks], dim=1)  # [n, m]
    if positive is None:
        losses, logits = [], None
        for j in range(len(ks)):
            lg = torch.cat([l_keys[:, j:j + 1], l_queue], dim=1) / temperature
            losses.append(F.cross_entropy(lg, torch.zeros(q.shape[0], dtype=torch.long, device=q.device)))
            logits = lg if logits is None else logits
        targets = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
        return ContrastiveOutput(loss=torch.stack(losses).mean(), logits=logits, targets=targets)
    order = [positive] + [j for j in range(len(ks)) if j != positive]
    logits = torch.cat([l_keys[:, order], l_queue], dim=1) / temperature
    targets = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return ContrastiveOutput(loss=F.cross_entropy(logits, targets), logits=logits, targets=targets)


class LooC(MomentumMethod):
    """``LooC(backbone, augmentations=("color", "rotation"), share="one", proj_hidden_dim=2048,
    proj_out_dim=128, temperature=0.2, momentum=0.999, queue_size=65536)``: views ``[q, k_0, k_1..k_n]``."""

    num_views = 3  # at least q, k_0 and one leave-one-out key; the exact count is 2 + len(augmentations)
    feature_kinds: ClassVar[tuple[str, ...]] = ("backbone", "heads", "z0")

    def __init__(
        self,
        backbone: nn.Module,
        augmentations: Sequence[str] = ("color", "rotation"),
        share: str = "one",
        proj_hidden_dim: int = 2048,
        proj_out_dim: int = 128,
        temperature: float = 0.2,
        momentum: float = 0.999,
        queue_size: int = 65536,
    ) -> None:
        super().__init__(backbone)
        params = dict(temperature=temperature, momentum=momentum, queue_size=queue_size,
                      augmentations=augmentations, share=share)
        raise_errors("LooC", self._param_errors(params), params)
        self.augmentations = tuple(str(a) for a in augmentations)
        self.share = share
        self.n_views = 2 + len(self.augmentations)
        self.temperature = float(temperature)
        self.momentum = MomentumSchedule(float(momentum), schedule="constant")
        n_spaces = 1 + len(self.augmentations)
        self.heads = nn.ModuleList(ProjectionHead(self.feature_dim, proj_hidden_dim, proj_out_dim, num_layers=2,
                                                  batch_norm=False) for _ in range(n_spaces))
        self.momentum_backbone = momentum_copy(self.backbone)
        self.momentum_heads = momentum_copy(self.heads)
        self.queues = nn.ModuleList(KeyQueue(int(queue_size), int(proj_out_dim)) for _ in range(n_spaces))
        self.feature_kinds = ("backbone", "heads", *(f"z{i}" for i in range(n_spaces)),
                              *(f"z_{a}" for a in self.augmentations))
        self._pending: list[Tensor] = []

    @staticmethod
    def _param_errors(params: dict[str, Any]) -> list[tuple[str, str]]:
        from jointaug.sampling.couplings import GROUPS

        errors = range_errors(params, {"temperature": (0, None, "()"), "queue_size": (1, None, "[)")})
        errors += momentum_errors(params)
        augs = params.get("augmentations")
        if isinstance(augs, str) or not isinstance(augs, Sequence) or not augs:
            errors.append(("augmentations", "must be a non-empty list of augmentation groups, e.g. [color, rotation]"))
        else:
            bad = [a for a in augs if a not in GROUPS or not GROUPS[a]]
            if bad or len(set(augs)) != len(augs):
                errors.append(("augmentations", f"must be distinct names from "
                                                f"{', '.join(k for k, v in GROUPS.items() if v)}"))
        if params.get("share") not in ("one", "all_but_one"):
            errors.append(("share", "must be 'one' or 'all_but_one'"))
        return errors

    @classmethod
    def views_error(cls, n_views: int) -> str | None:
        if n_views >= 3:
            return None  # the exact count (2 + len(augmentations)) is checked in config_errors
        return f"needs q, k_0 and one key per leave-one-out augmentation (at least 3 views, got {n_views})"

    @classmethod
    def config_errors(cls, params: dict[str, Any], *, batch_size: int, num_views: int | None
                      ) -> list[tuple[str, str]]:
        errors = cls._param_errors(params)
        if errors:
            return errors
        if int(params["queue_size"]) % batch_size:
            errors.append(("queue_size", f"must be a multiple of the global batch size optim.batch_size={batch_size}"))
        if num_views is not None and num_views != 2 + len(params["augmentations"]):
            errors.append(("augmentations", f"the view policy gives {num_views} views, LooC needs "
                                            f"2 + {len(params['augmentations'])}"))
        return errors

    @classmethod
    def online_pairs_error(cls, params: dict[str, Any]) -> str | None:
        return "passes only the query view (view 0) through its online backbone; the keys go through the momentum copy"

    @classmethod
    def policy_options(cls, params: dict[str, Any]) -> dict[str, Any]:
        augs = tuple(params.get("augmentations") or ())
        out: dict[str, Any] = {"leave_one_out": augs, "loo_share": params.get("share", "one")}
        if "rotation" in augs:
            out["rotate_p"] = 0.75  # the four quarter turns uniformly (aug.rotate_p overrides)
        return out

    def check_views(self, views: list[Tensor]) -> None:
        if not isinstance(views, (list, tuple)) or len(views) != self.n_views:
            got = len(views) if isinstance(views, (list, tuple)) else type(views).__name__
            raise ValueError(f"LooC with augmentations {list(self.augmentations)} expects {self.n_views} view "
                             f"batches [q, k_0, {', '.join(f'k_{a}' for a in self.augmentations)}], got {got}")
        if len({int(v.shape[0]) for v in views}) != 1:
            raise ValueError("LooC: views have different batch sizes")

    # ---------------------------------------------------------------------------------------- step
    def forward(self, views: list[Tensor]) -> dict[str, Tensor]:
        self.check_views(views)
        n = views[0].shape[0]
        f_q = self.backbone(views[0])
        qs = [h(f_q) for h in self.heads]
        with torch.no_grad():
            f_k = self.momentum_backbone(torch.cat(list(views[1:]), dim=0))
            keys = [h(f_k).split(n) for h in self.momentum_heads]  # keys[space][key view]
        total = qs[0].new_zeros(())
        out: dict[str, Tensor] = {}
        for s in range(len(self.heads)):
            res = looc_space_loss(qs[s], list(keys[s]), None if s == 0 else s, self.queues[s].keys.clone(),
                                  self.temperature)
            total = total + res.loss
            name = "z0" if s == 0 else f"z_{self.augmentations[s - 1]}"
            out[f"loss_{name}"] = res.loss.detach()
            out[f"acc_{name}"] = res.top1()
        if self.training:
            self._pending = [F.normalize(keys[0][0].detach(), dim=1)]
            self._pending += [F.normalize(keys[s][s].detach(), dim=1) for s in range(1, len(self.heads))]
        out.update(loss=total, out_std=output_std(qs[0]))
        return out

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.momentum_backbone, self.backbone), (self.momentum_heads, self.heads)]

    @torch.no_grad()
    def on_train_step_end(self, step: int, total_steps: int) -> None:
        super().on_train_step_end(step, total_steps)
        for queue, keys in zip(self.queues, self._pending):
            queue.push(keys)
        self._pending = []

    # ---------------------------------------------------------------------------------------- evaluation
    def features(self, x: Tensor, kind: str = "backbone") -> Tensor:
        """``backbone``; ``heads`` (LooC++: every head's hidden layer, concatenated); ``z<i>`` / ``z_<aug>``."""
        if kind == "backbone":
            return self.backbone(x)
        f = self.backbone(x)
        if kind == "heads":
            return torch.cat([h.net[:-1](f) for h in self.heads], dim=1)
        names = {f"z{i}": i for i in range(len(self.heads))}
        names.update({f"z_{a}": i + 1 for i, a in enumerate(self.augmentations)})
        if kind not in names:
            raise ValueError(f"LooC: unknown feature kind {kind!r}; choose from {', '.join(self.feature_kinds)}")
        return F.normalize(self.heads[names[kind]](f), dim=1)


__all__ = ["LooC", "looc_space_loss"]
