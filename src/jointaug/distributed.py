"""Small torch.distributed helpers that degrade to no-ops in a single process.

``gather_with_grad`` is the all-gather used for cross-rank negatives: its backward sums the
incoming gradients over ranks and returns this rank's slice, so that with each rank's loss being
the mean over its local anchors, DDP's gradient averaging yields exactly the gradient of the
global-batch loss. :class:`AllReduceBatchNorm` is a synchronised BN that also works on CPU (gloo).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


def is_dist() -> bool:
    """True when torch.distributed is available and a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_dist() else 1


def is_main_process() -> bool:
    """True on rank 0 (and in a single process): the one that logs and writes files."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_dist() and world_size() > 1:
        dist.barrier()


def _all_gather_list(x: Tensor) -> list[Tensor]:
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return parts


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0; backward: all-reduce (sum) the gradient, keep this rank's slice."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.n = x.shape[0]
        return torch.cat(_all_gather_list(x), dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = rank() * ctx.n
        return grad[start:start + ctx.n]


class _AllReduceSumWithGrad(torch.autograd.Function):
    """Sum over the group's ranks; backward: the gradient summed over ranks (all use the same sum)."""

    @staticmethod
    def forward(ctx, x: Tensor, group) -> Tensor:  # type: ignore[override]
        ctx.group = group
        out = x.contiguous().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad, None


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` [n, ...] from every rank (rank order) into [world * n, ...], differentiably.

    Every rank must pass the same shape (use ``drop_last`` in the sampler). Returns ``x`` itself
    in a single process.
    """
    if not is_dist() or world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


def all_reduce_sum_with_grad(x: Tensor) -> Tensor:
    """Sum of ``x`` over ranks, differentiable (``x`` itself in a single process)."""
    if not is_dist() or world_size() == 1:
        return x
    return _AllReduceSumWithGrad.apply(x, None)


@torch.no_grad()
def all_gather_nograd(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every rank along dim 0, without gradient (e.g. features for kNN)."""
    if not is_dist() or world_size() == 1:
        return x.detach()
    return torch.cat(_all_gather_list(x.detach()), dim=0)


@torch.no_grad()
def all_reduce_mean(x: Tensor) -> Tensor:
    """Mean of ``x`` over ranks, without gradient (for logging scalars)."""
    if not is_dist() or world_size() == 1:
        return x.detach()
    out = x.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / world_size()


class AllReduceBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are over the whole process group, on any device.

    Same maths and state_dict as BatchNorm*d; under a process group of size > 1 in training mode
    it computes the global mean and (biased) variance with a differentiable all-reduce (two
    passes: mean, then centred second moment), so gradients equal those of plain BN on the
    concatenated batch. Unlike ``nn.SyncBatchNorm`` it also runs on CPU (gloo), and DDP accepts it
    on CPU; on CUDA prefer ``nn.SyncBatchNorm`` (fused kernels): see :func:`convert_sync_batchnorm`.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, process_group=None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.process_group = process_group

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"AllReduceBatchNorm: expected at least 2-D input, got {input.dim()}-D")

    def _group_size(self) -> int:
        if not is_dist():
            return 1
        return dist.get_world_size(self.process_group) if self.process_group is not None else world_size()

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and self._group_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        x = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input  # statistics in fp32
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        total = _group_sum(count, self.process_group)
        mean = _group_sum(x.sum(dims), self.process_group, grad=True) / total
        centred = x - mean.view(shape)
        var = _group_sum(centred.pow(2).sum(dims), self.process_group, grad=True) / total
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape).to(x.dtype) + self.bias.view(shape).to(x.dtype)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                n = float(total)
                unbiased = var.detach() * (n / max(n - 1.0, 1.0))
                self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
        return out.to(input.dtype)


def _group_sum(x: Tensor, group, grad: bool = False) -> Tensor:
    if grad:
        return _AllReduceSumWithGrad.apply(x, group)
    out = x.contiguous().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
    return out


_NATIVE_SYNC_DEVICES = ("cuda", "xpu", "hpu")


def convert_sync_batchnorm(module: nn.Module, process_group=None, *, native: bool | None = None) -> nn.Module:
    """Replace every BatchNorm*d by a synchronised one, keeping weights and running statistics.

    ``native=True``: ``nn.SyncBatchNorm`` (CUDA and other accelerators only); ``False``:
    :class:`AllReduceBatchNorm` (any device, e.g. CPU with gloo); ``None`` (default): native when
    the module's parameters are on an accelerator. Convert after moving the model to its device.
    """
    if native is None:
        param = next(iter(module.parameters()), None)
        native = param is not None and param.device.type in _NATIVE_SYNC_DEVICES
    if native:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group)
    return _convert_allreduce(module, process_group)


def _convert_allreduce(module: nn.Module, process_group) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, AllReduceBatchNorm):
        out = AllReduceBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                 module.track_running_stats, process_group)
        if module.affine:
            out.weight = module.weight
            out.bias = module.bias
        out.running_mean = module.running_mean
        out.running_var = module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.training = module.training
    for name, child in module.named_children():
        out.add_module(name, _convert_allreduce(child, process_group))
    return out


__all__ = [
    "AllReduceBatchNorm",
    "all_gather_nograd",
    "all_reduce_mean",
    "all_reduce_sum_with_grad",
    "barrier",
    "convert_sync_batchnorm",
    "gather_with_grad",
    "is_dist",
    "is_main_process",
    "rank",
    "world_size",
]
