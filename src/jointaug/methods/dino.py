"""DINO (Caron et al. 2021): self-distillation with no labels. A student (backbone + DINO head) is
trained to match the sharpened, centred output distribution of a teacher, the EMA of the student.

- Head: 3-layer MLP (hidden 2048, GELU, optional BN), bottleneck 256, L2-normalisation, then a
  weight-normalised linear layer to ``out_dim`` (no bias) whose norm ``g`` is fixed to 1 when
  ``norm_last_layer`` (its rows are unit vectors; DINO's default for stability).
- Teacher: a momentum copy of backbone + head, ``m`` from 0.996 to 1 (cosine, per step), updated in
  ``on_train_step_end``. It sees the 2 global views only; the student sees every view (multi-crop:
  2 global + N local views, each run of equal-sized views as one backbone batch).
- Loss (:func:`~jointaug.methods.losses.dino_cross_entropy`): mean over the pairs (teacher global
  view t, student view s != t) of ``H(softmax((t - c) / T_t), softmax(s / T_s))``. Centring ``c``
  (buffer ``center``) is updated after each step from the batch mean of the teacher outputs, all-reduced
  across ranks under torch.distributed, ``c <- mu c + (1 - mu) mean``; sharpening by ``T_t``, linear
  from ``warmup_teacher_temp`` to ``teacher_temp`` over the first ``warmup_teacher_temp_epochs`` epochs
  (per epoch, as the reference code), then constant.
- The last layer takes no gradient step during the first ``freeze_last_layer`` epochs (its gradients
  are dropped in ``on_before_optimizer_step``).

Defaults are DINO's ResNet-50 reference run (the released args of the 800-epoch ResNet-50 model):
out_dim 60000 (the ViT recipes use 65536), BN in the head (ViT: none), teacher temperature
0.04 -> 0.07 over 50 epochs (ViT-S 800 ep: over 30), student 0.1, momentum 0.996, centre momentum
0.9, last layer frozen for 1 epoch, ``norm_last_layer`` true (ViT-S 800 ep: false). Not reproduced:
DINO's weight-decay schedule (ViT: cosine 0.04 -> 0.4; the ResNet-50 run keeps 1e-6 constant): the
trainer applies ``optim.weight_decay`` constantly; gradient clipping is ``optim.grad_clip``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from jointaug import distributed as jdist
from jointaug.methods.base import MomentumMethod, output_std, raise_errors, range_errors
from jointaug.methods.losses import dino_cross_entropy
from jointaug.methods.momentum import MomentumSchedule, momentum_copy, momentum_errors

__all__ = ["DINO", "DINOHead", "WeightNormLinear", "teacher_temperature"]


class WeightNormLinear(nn.Module):
    """``y = x W^T`` with ``W = g * v / ||v||`` row-wise (weight normalisation, no bias).

    ``fixed_norm=True`` fixes ``g = 1`` (a parameter without gradient, as DINO's ``norm_last_layer``)."""

    def __init__(self, in_dim: int, out_dim: int, fixed_norm: bool = True) -> None:
        super().__init__()
        v = nn.Linear(in_dim, out_dim, bias=False).weight.detach().clone()  # PyTorch's default Linear init
        self.weight_v = nn.Parameter(v)
        self.weight_g = nn.Parameter(torch.ones(out_dim, 1), requires_grad=not fixed_norm)

    @property
    def weight(self) -> Tensor:
        return self.weight_g * self.weight_v / self.weight_v.norm(dim=1, keepdim=True)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight)


class DINOHead(nn.Module):
    """MLP (``num_layers`` Linear layers, GELU, optional BN) -> bottleneck -> L2-normalise ->
    weight-normalised ``last_layer`` to ``out_dim`` (DINO's projection head)."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 num_layers: int = 3, use_bn: bool = False, norm_last_layer: bool = True) -> None:
        super().__init__()
        for key, val in (("in_dim", in_dim), ("out_dim", out_dim), ("hidden_dim", hidden_dim),
                         ("bottleneck_dim", bottleneck_dim), ("num_layers", num_layers)):
            if isinstance(val, bool) or int(val) != val or int(val) < 1:
                raise ValueError(f"DINOHead: {key} must be a positive integer, got {val!r}")
        layers: list[nn.Module] = []
        dim = int(in_dim)
        for _ in range(int(num_layers) - 1):
            layers.append(nn.Linear(dim, int(hidden_dim)))
            if use_bn:
                layers.append(nn.BatchNorm1d(int(hidden_dim)))
            layers.append(nn.GELU())
            dim = int(hidden_dim)
        layers.append(nn.Linear(dim, int(bottleneck_dim)))
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp.modules():  # the reference code's init: truncated normal (std 0.02), zero bias
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = WeightNormLinear(int(bottleneck_dim), int(out_dim), fixed_norm=bool(norm_last_layer))

    def forward(self, x: Tensor) -> Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


def teacher_temperature(epoch: int, warmup_temp: float, temp: float, warmup_epochs: int) -> float:
    """DINO's teacher temperature in (0-based) ``epoch``: ``linspace(warmup_temp, temp, warmup_epochs)[epoch]``
    during the warm-up, ``temp`` after it."""
    if epoch >= warmup_epochs:
        return float(temp)
    if warmup_epochs == 1:
        return float(warmup_temp)
    return float(warmup_temp + (temp - warmup_temp) * epoch / (warmup_epochs - 1))


class DINO(MomentumMethod):
    """``DINO(backbone, out_dim=60000, hidden_dim=2048, bottleneck_dim=256, num_layers=3, use_bn_in_head=True,
    norm_last_layer=True, student_temp=0.1, teacher_temp=0.07, warmup_teacher_temp=0.04,
    warmup_teacher_temp_epochs=50, momentum=0.996, momentum_final=1.0, center_momentum=0.9,
    freeze_last_layer=1)``: 2 global views, optionally followed by local views (see the module docstring)."""

    num_views = 2
    multicrop = True

    def __init__(
        self,
        backbone: nn.Module,
        out_dim: int = 60000,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        num_layers: int = 3,
        use_bn_in_head: bool = True,
        norm_last_layer: bool = True,
        student_temp: float = 0.1,
        teacher_temp: float = 0.07,
        warmup_teacher_temp: float = 0.04,
        warmup_teacher_temp_epochs: int = 50,
        momentum: float = 0.996,
        momentum_final: float = 1.0,
        center_momentum: float = 0.9,
        freeze_last_layer: int = 1,
    ) -> None:
        super().__init__(backbone)
        params = dict(out_dim=out_dim, hidden_dim=hidden_dim, bottleneck_dim=bottleneck_dim, num_layers=num_layers,
                      student_temp=student_temp, teacher_temp=teacher_temp, warmup_teacher_temp=warmup_teacher_temp,
                      warmup_teacher_temp_epochs=warmup_teacher_temp_epochs, momentum=momentum,
                      momentum_final=momentum_final, center_momentum=center_momentum,
                      freeze_last_layer=freeze_last_layer)
        raise_errors("DINO", self._param_errors(params), params)
        self.student_temp = float(student_temp)
        self.teacher_temp, self.warmup_teacher_temp = float(teacher_temp), float(warmup_teacher_temp)
        self.warmup_teacher_temp_epochs = int(warmup_teacher_temp_epochs)
        self.center_momentum = float(center_momentum)
        self.freeze_last_layer = int(freeze_last_layer)
        self.momentum = MomentumSchedule(float(momentum), float(momentum_final), "cosine")
        self.head = DINOHead(self.feature_dim, int(out_dim), int(hidden_dim), int(bottleneck_dim), int(num_layers),
                             use_bn=bool(use_bn_in_head), norm_last_layer=bool(norm_last_layer))
        self.teacher_backbone = momentum_copy(self.backbone)
        self.teacher_head = momentum_copy(self.head)
        self.register_buffer("center", torch.zeros(1, int(out_dim)))
        self.current_teacher_temp = teacher_temperature(0, self.warmup_teacher_temp, self.teacher_temp,
                                                        self.warmup_teacher_temp_epochs)
        self._pending_center: Tensor | None = None

    @staticmethod
    def _param_errors(params: dict[str, Any]) -> list[tuple[str, str]]:
        errors = range_errors(params, {
            "student_temp": (0, None, "()"), "teacher_temp": (0, None, "()"), "warmup_teacher_temp": (0, None, "()"),
            "center_momentum": (0, 1, "[)")}) + momentum_errors(params)
        for name, lo in (("out_dim", 1), ("hidden_dim", 1), ("bottleneck_dim", 1), ("num_layers", 1),
                         ("warmup_teacher_temp_epochs", 0), ("freeze_last_layer", 0)):
            v = params.get(name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                errors.append((name, f"must be an integer >= {lo}"))
        return errors

    @classmethod
    def config_errors(cls, params: dict[str, Any], *, batch_size: int, num_views: int | None
                      ) -> list[tuple[str, str]]:
        return cls._param_errors(params)

    # ---------------------------------------------------------------------------------------- step hooks
    def on_train_step_start(self, step: int, total_steps: int, steps_per_epoch: int) -> None:
        """Set the teacher temperature of this step's epoch."""
        epoch = (max(step, 1) - 1) // max(steps_per_epoch, 1)
        self.current_teacher_temp = teacher_temperature(epoch, self.warmup_teacher_temp, self.teacher_temp,
                                                        self.warmup_teacher_temp_epochs)

    def on_before_optimizer_step(self, step: int, total_steps: int, steps_per_epoch: int) -> None:
        """Drop the last layer's gradients during the first ``freeze_last_layer`` epochs (no step, no decay)."""
        epoch = (max(step, 1) - 1) // max(steps_per_epoch, 1)
        if epoch < self.freeze_last_layer:
            for p in self.head.last_layer.parameters():
                p.grad = None

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.teacher_backbone, self.backbone), (self.teacher_head, self.head)]

    @torch.no_grad()
    def on_train_step_end(self, step: int, total_steps: int) -> None:
        """EMA of the teacher, then the centre from this step's teacher outputs (every rank's)."""
        super().on_train_step_end(step, total_steps)
        if self._pending_center is not None:
            self.update_center(self._pending_center)
            self._pending_center = None

    @torch.no_grad()
    def update_center(self, teacher_out: Tensor) -> None:
        """``center <- mu * center + (1 - mu) * mean(teacher_out)``, the mean over the global batch (all ranks)."""
        t = teacher_out.detach().to(self.center.dtype)
        batch_sum = t.sum(dim=0, keepdim=True)
        count = torch.tensor(float(t.shape[0]), dtype=t.dtype, device=t.device)
        if jdist.is_dist() and jdist.world_size() > 1:
            dist.all_reduce(batch_sum)
            dist.all_reduce(count)
        mu = self.center_momentum
        self.center.mul_(mu).add_(batch_sum / count, alpha=1.0 - mu)

    # ---------------------------------------------------------------------------------------- forward
    def teacher_forward(self, global_views: list[Tensor]) -> list[Tensor]:
        """Teacher logits of the global views (one batch per run of equal-sized views), no gradient."""
        with torch.no_grad():
            return self.encode(global_views, lambda x: self.teacher_head(self.teacher_backbone(x)))

    def forward(self, views: list[Tensor]) -> dict[str, Tensor]:
        self.check_views(views)
        n = views[0].shape[0]
        feats = self.encode(views)
        # the head takes every view as one batch (BN over all views), as the reference MultiCropWrapper
        student = list(self.head(torch.cat(feats, dim=0)).split(n))
        teacher = self.teacher_forward(list(views[: self.num_views]))
        t_temp = self.current_teacher_temp
        loss = dino_cross_entropy(student, teacher, self.center, self.student_temp, t_temp)
        t_all = torch.cat(teacher, dim=0)
        if self.training:
            self._pending_center = t_all.detach()
        with torch.no_grad():
            probs = F.softmax((t_all.to(self.center.dtype) - self.center) / t_temp, dim=-1)
            entropy = -(probs * torch.log(probs.clamp_min(1e-30))).sum(dim=-1).mean()
            mean_p = probs.mean(dim=0)
            marginal = -(mean_p * torch.log(mean_p.clamp_min(1e-30))).sum()
        dim_log = math.log(self.center.shape[1]) if self.center.shape[1] > 1 else 1.0  # out_dim 1: entropy 0
        return {
            "loss": loss,
            "out_std": output_std(torch.cat(student[: self.num_views], dim=0)),
            "teacher_temp": torch.tensor(t_temp, device=loss.device),
            # per-image entropy of the teacher's distribution / log(out_dim): 1 = uniform collapse
            "entropy": (entropy / dim_log).detach(),
            # entropy of the batch-mean distribution / log(out_dim): near 0 = every image on one prototype
            "marginal_entropy": (marginal / dim_log).detach(),
        }
