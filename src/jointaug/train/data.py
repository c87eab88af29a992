"""Training batches of views: seeded, sharded over ranks, resumable at any step.

Four paths, chosen from the data set and ``aug.where``:

- :class:`InMemoryViews` (fixed-size data sets, ``where=main``): the uint8 images stay in memory,
  on the GPU when training there; each step indexes its batch and renders the views in the main
  process with the batched renderer. No DataLoader, no decoding.
- :class:`LoaderViews` (variable-size data sets, ``where=main``): DataLoader workers decode images
  (uint8 tensors of different sizes, collated into a list); the main process renders the views
  with ``BatchViews.from_list``.
- :class:`WorkerViews` (``where=workers``): each worker renders its images' views one by one
  (the per-image path); batches arrive ready.
- :class:`BatchWorkerViews` (``where=batches``): each worker builds a whole step's batch and renders
  it with the batched renderer, drawing exactly what :class:`InMemoryViews` (fixed-size sets) or
  :class:`LoaderViews` (variable-size sets) would draw in the main process, so the views are the
  same; only where the work happens differs (the main process trains while workers prepare the
  next batches: no data wait when they keep up).

Randomness (one seed fixes everything): epoch ``e`` visits the images in the order
``randperm(N)`` drawn from ``derive_seed(seed, "shuffle", e)``; step ``s`` of that epoch uses the
global batch ``perm[s*B:(s+1)*B]`` and rank ``r`` of ``W`` takes its slice ``[r*B/W, (r+1)*B/W)``
(the tail that does not fill a global batch is dropped). The view parameters of a step come from
a generator seeded with ``derive_seed(seed, "aug", e, s)``: on the in-memory path they are drawn
for the whole global batch on every rank and each rank renders its slice, so the views do not
depend on the number of ranks; on the loader path each rank draws for its own images (seed also
includes the rank), on the worker path each image gets ``derive_seed(seed, "aug", e, index)``.
Because every generator is derived from (seed, epoch, step), resuming at a saved (epoch, step)
reproduces the uninterrupted run exactly: nothing else needs saving, except ContrastiveCrop's boxes.

Adaptive difficulty (``policy_at``, main-process paths only): a callable ``(epoch, step) -> policy`` the
trainer gives when ``aug.schedule`` or ``aug.controller`` moves the policy's values; the step's draws use
that policy (called when the step's batch is requested, so a controller's update after the previous
step is in force). The generator seeding is unchanged. ``last_params`` holds the draws of the batch last
yielded (this rank's rows), for per-branch logging of a coin.

ContrastiveCrop (``regions``, a :class:`jointaug.train.ccrop.RegionStore`): the policy's views draw
their centres inside per-image regions; every path looks up the regions of the images its policy
call covers (the global batch in memory, the rank's batch on the loader path, the image in a
worker) and passes them to ``policy.sample(..., regions=...)``. Epochs before the warm-up ends use
the policy's ``"uniform"`` twin (same draws otherwise), i.e. ordinary crops.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from jointaug.data.base import one_thread
from jointaug.seeding import derive_seed

__all__ = [
    "BatchWorkerViews",
    "InMemoryViews",
    "LoaderViews",
    "ShardedBatchSampler",
    "WorkerViews",
    "channel_stats",
    "derive_seed",
    "views_decode_side",
    "epoch_permutation",
]


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The order in which epoch ``epoch`` visits ``n`` images (same on every rank)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, "shuffle", epoch)))


def channel_stats(images: Tensor, max_images: int = 10000, chunk_bytes: int = 1 << 24
                  ) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (in [0, 1] units) of uint8 images [N, 3, H, W] (first ``max_images``).

    Streaming and exact: each channel's histogram of the 256 byte values is accumulated over slices
    of about ``chunk_bytes`` (no float copy of the set: a memory-mapped 750 MB set stays mapped), and
    mean / variance come from the integer counts in float64, so the result equals the two-pass
    float64 statistics up to float64 rounding.
    """
    x = images[:max_images]
    if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"channel_stats: expected uint8 [N, 3, H, W], got {x.dtype} {tuple(x.shape)}")
    counts = torch.zeros(3, 256, dtype=torch.int64)
    per = max(1, chunk_bytes // max(1, x[0].numel())) if x.shape[0] else 1
    for s in range(0, x.shape[0], per):
        chunk = x[s:s + per]
        for c in range(3):
            counts[c] += torch.bincount(chunk[:, c].reshape(-1), minlength=256)
    values = torch.arange(256, dtype=torch.float64) / 255.0
    n = counts.sum(dim=1).clamp_min(1).to(torch.float64)
    mean = (counts.to(torch.float64) * values).sum(dim=1) / n
    var = (counts.to(torch.float64) * (values - mean[:, None]) ** 2).sum(dim=1) / n  # two-pass: no cancellation
    std = var.clamp_min(1e-12).sqrt()
    return [round(float(m), 6) for m in mean], [round(max(float(s), 1e-3), 6) for s in std]


def views_decode_side(policy: Any) -> int | None:
    """The shorter image side every view of ``policy`` needs (:func:`jointaug.data.io.decode_min_side`,
    the largest over views); None when a view keeps its crop's size or is not a resized crop (full decode)."""
    from jointaug.data.io import decode_min_side

    need = 0
    for v in policy.views:
        if v.size is None or v.crop != "resized":
            return None
        size = max(v.size) if isinstance(v.size, (tuple, list)) else int(v.size)
        need = max(need, decode_min_side(int(size), float(v.scale[0]), tuple(v.ratio)))
    return need or None


class _Shard:
    """Global-batch arithmetic shared by every path."""

    def __init__(self, n: int, global_batch: int, rank: int, world: int, seed: int) -> None:
        if global_batch % world:
            raise ValueError(f"optim.batch_size={global_batch} is not divisible by the number of processes ({world})")
        if n < global_batch:
            raise ValueError(f"optim.batch_size={global_batch} is larger than the training set ({n} images); "
                             "lower optim.batch_size or raise data.limit")
        self.n, self.global_batch, self.rank, self.world, self.seed = n, global_batch, rank, world, seed
        self.local_batch = global_batch // world
        self.steps_per_epoch = n // global_batch

    def local_indices(self, perm: Tensor, step: int) -> Tensor:
        start = step * self.global_batch + self.rank * self.local_batch
        return perm[start:start + self.local_batch]


class ShardedBatchSampler(Sampler):
    """Batches of this rank's indices for one epoch, from ``start_step`` (see the module docstring).

    ``with_keys``: yield ``(index, epoch)`` pairs, so per-image augmentation in workers can seed
    from them. Call :meth:`set_epoch` before iterating.
    """

    def __init__(self, n: int, global_batch: int, rank: int, world: int, seed: int, *, with_keys: bool = False):
        self.shard = _Shard(n, global_batch, rank, world, seed)
        self.with_keys = with_keys
        self.epoch, self.start_step = 0, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = int(epoch), int(start_step)

    def __len__(self) -> int:
        return self.shard.steps_per_epoch - self.start_step

    def __iter__(self) -> Iterator[list]:
        perm = epoch_permutation(self.shard.n, self.shard.seed, self.epoch)
        for step in range(self.start_step, self.shard.steps_per_epoch):
            idx = self.shard.local_indices(perm, step).tolist()
            yield [(i, self.epoch) for i in idx] if self.with_keys else idx


def _policies(batch_views: Any, regions: Any) -> tuple[Any, Any]:
    """(policy after the ContrastiveCrop warm-up, policy during it) of a data path."""
    policy = batch_views.policy
    if regions is None:
        return policy, policy
    if not policy.uses_regions:
        raise ValueError("a region store was given but no view of the policy has centre='region_beta'")
    return policy, policy.with_centre("uniform")


def _policy_for(policies: tuple[Any, Any], regions: Any, epoch: int, indices: Tensor) -> tuple[Any, Tensor | None]:
    """The policy of ``epoch`` and the regions of ``indices`` to pass to it (None outside ContrastiveCrop)."""
    if regions is None or not regions.active(epoch):
        return policies[1], None
    return policies[0], regions.lookup(indices)


def _check_policy_at(policy_at: Callable[[int, int], Any] | None, regions: Any) -> Callable[[int, int], Any] | None:
    if policy_at is not None and regions is not None:
        raise ValueError("a per-step policy (aug.schedule / aug.controller) and ContrastiveCrop regions cannot be "
                         "combined")
    return policy_at


class InMemoryViews:
    """Fixed-size uint8 images held in memory (on ``device`` when ``to_device``), views rendered per step."""

    def __init__(self, images: Tensor, batch_views: Any, *, global_batch: int, rank: int, world: int, seed: int,
                 device: torch.device, to_device: bool = True, regions: Any = None,
                 policy_at: Callable[[int, int], Any] | None = None) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"InMemoryViews: images must be uint8 [N, 3, H, W], got {images.dtype} "
                             f"{tuple(images.shape)}")
        self.shard = _Shard(int(images.shape[0]), global_batch, rank, world, seed)
        self.device = torch.device(device)
        if to_device and self.device.type != "cpu":
            images = images.to(self.device)
        elif self.device.type == "cuda":
            images = images.contiguous().pin_memory()
        self.images = images
        self.batch_views = batch_views
        self.regions, self.policies = regions, _policies(batch_views, regions)
        self.policy_at, self.last_params = _check_policy_at(policy_at, regions), None
        self.hw = torch.tensor([[int(images.shape[2]), int(images.shape[3])]], dtype=torch.int64)
        self.steps_per_epoch = self.shard.steps_per_epoch
        self.description = f"in-memory uint8 images on {self.images.device}, views rendered in the main process"

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[list[Tensor]]:
        """The view batches of this rank for steps ``start_step ..`` of ``epoch``."""
        sh = self.shard
        perm = epoch_permutation(sh.n, sh.seed, epoch)
        lo, hi = sh.rank * sh.local_batch, (sh.rank + 1) * sh.local_batch
        for step in range(start_step, sh.steps_per_epoch):
            idx = sh.local_indices(perm, step)
            gen = torch.Generator().manual_seed(derive_seed(sh.seed, "aug", epoch, step))
            if self.policy_at is not None:  # schedules / controller: the policy in force at this step
                policy, regions = self.policy_at(epoch, step), None
            else:
                policy, regions = _policy_for(self.policies, self.regions, epoch,
                                              perm[step * sh.global_batch:(step + 1) * sh.global_batch])
            params = policy.sample(self.hw.expand(sh.global_batch, 2), gen, regions=regions)
            if sh.world > 1:
                params = params.index(slice(lo, hi))
            batch = self.images[idx.to(self.images.device)]
            if batch.device != self.device:
                batch = batch.to(self.device, non_blocking=True)
            self.last_params = params  # this rank's draws of the step being yielded (per-branch logging)
            yield self.batch_views.replay(batch, params)

    def close(self) -> None:
        """Nothing to release."""


def _collate_list(items: list[tuple[Tensor, int]]) -> list[Tensor]:
    return [img for img, _ in items]


class LoaderViews:
    """Variable-size images decoded by DataLoader workers; views rendered in the main process."""

    def __init__(self, dataset: Dataset, batch_views: Any, *, global_batch: int, rank: int, world: int, seed: int,
                 device: torch.device, num_workers: int = 2, regions: Any = None,
                 policy_at: Callable[[int, int], Any] | None = None) -> None:
        self.sampler = ShardedBatchSampler(len(dataset), global_batch, rank, world, seed)
        self.shard = self.sampler.shard
        self.batch_views = batch_views
        self.regions, self.policies = regions, _policies(batch_views, regions)
        self.policy_at, self.last_params = _check_policy_at(policy_at, regions), None
        self.device = torch.device(device)
        self.steps_per_epoch = self.shard.steps_per_epoch
        self.loader = DataLoader(dataset, batch_sampler=self.sampler, num_workers=num_workers,
                                 collate_fn=_collate_list, pin_memory=self.device.type == "cuda",
                                 persistent_workers=num_workers > 0)
        self.description = f"DataLoader decoding with {num_workers} workers, views rendered in the main process"

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[list[Tensor]]:
        self.sampler.set_epoch(epoch, start_step)
        step = start_step
        perm = epoch_permutation(self.shard.n, self.shard.seed, epoch) if self.regions is not None else None
        for images in self.loader:
            images = [im.to(self.device, non_blocking=True) for im in images]
            gen = torch.Generator().manual_seed(derive_seed(self.shard.seed, "aug", epoch, step, self.shard.rank))
            policy, regions = None, None
            if self.regions is None:
                policy = self.policy_at(epoch, step) if self.policy_at is not None else None
            else:  # the sampler's indices of this step (same arithmetic as ShardedBatchSampler)
                policy, regions = _policy_for(self.policies, self.regions, epoch,
                                              self.shard.local_indices(perm, step))
            with one_thread():  # the per-image crop stage: small ops, threads only add overhead (3x measured)
                views, params = self.batch_views.from_list(images, gen, policy=policy, regions=regions)
            step += 1
            self.last_params = params
            yield views

    def close(self) -> None:
        """Shut the workers down."""
        self.loader = None  # type: ignore[assignment]


class _PerImageViews(Dataset):
    """``ds[(index, epoch)] -> list of V view tensors`` rendered with a per-image seeded generator."""

    def __init__(self, base: Dataset, policy: Any, render_kwargs: dict, seed: int, regions: Any = None) -> None:
        self.base, self.policy, self.render_kwargs, self.seed = base, policy, render_kwargs, seed
        warm = policy.with_centre("uniform") if regions is not None else policy
        self.regions, self.policies = regions, (policy, warm)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> list[Tensor]:
        from jointaug.render.batched import render_views

        index, epoch = key
        img, _ = self.base[index]
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "aug", epoch, index))
        policy, regions = _policy_for(self.policies, self.regions, epoch, torch.tensor([index]))
        params = policy.sample(torch.tensor([[int(img.shape[-2]), int(img.shape[-1])]]), gen, regions=regions)
        return [v[0] for v in render_views(img[None], params, **self.render_kwargs)]


def _collate_views(items: list[list[Tensor]]) -> list[Tensor]:
    return [torch.stack([it[v] for it in items]) for v in range(len(items[0]))]


class WorkerViews:
    """Views rendered image by image inside DataLoader workers (``aug.where=workers``)."""

    def __init__(self, dataset: Dataset, batch_views: Any, *, global_batch: int, rank: int, world: int, seed: int,
                 device: torch.device, num_workers: int = 2, regions: Any = None) -> None:
        self.sampler = ShardedBatchSampler(len(dataset), global_batch, rank, world, seed, with_keys=True)
        self.shard = self.sampler.shard
        self.device = torch.device(device)
        self.steps_per_epoch = self.shard.steps_per_epoch
        render_kwargs = dict(mode=batch_views.mode, mean=batch_views.mean, std=batch_views.std,
                             blur_kernel=batch_views.blur_kernel)
        _policies(batch_views, regions)  # checks the policy draws region-centred crops when a store is given
        wrapped = _PerImageViews(dataset, batch_views.policy, render_kwargs, seed, regions)
        self.loader = DataLoader(wrapped, batch_sampler=self.sampler, num_workers=num_workers,
                                 collate_fn=_collate_views, pin_memory=self.device.type == "cuda",
                                 persistent_workers=num_workers > 0)
        self.description = f"views rendered per image in {num_workers} DataLoader workers"

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[list[Tensor]]:
        self.sampler.set_epoch(epoch, start_step)
        for views in self.loader:
            yield [v.to(self.device, non_blocking=True) for v in views]

    def close(self) -> None:
        """Shut the workers down."""
        self.loader = None  # type: ignore[assignment]


class _StepSampler(Sampler):
    """Yields ``(epoch, step)`` keys (one per batch) from ``(epoch, start_step)`` on, running on into the
    following epochs, so the workers prepare the next epoch's first batches while this one ends."""

    def __init__(self, steps_per_epoch: int) -> None:
        self.steps_per_epoch, self.epoch, self.start_step = steps_per_epoch, 0, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = int(epoch), int(start_step)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        e, s = self.epoch, self.start_step
        while True:
            yield e, s
            e, s = (e, s + 1) if s + 1 < self.steps_per_epoch else (e + 1, 0)


class _StepViews(Dataset):
    """``ds[(epoch, step)] -> list of V view batches`` of this rank: InMemoryViews' draws for fixed-size
    sets, LoaderViews' draws for variable-size ones (see :class:`BatchWorkerViews`)."""

    def __init__(self, base: Dataset, batch_views: Any, shard: _Shard, regions: Any) -> None:
        self.base, self.batch_views, self.shard = base, batch_views, shard
        self.regions, self.policies = regions, _policies(batch_views, regions)
        fixed = getattr(base, "fixed_size", None)
        self.hw = None if fixed is None else torch.tensor([[int(fixed[0]), int(fixed[1])]], dtype=torch.int64)
        self._perm: tuple[int, Tensor] | None = None

    def __len__(self) -> int:
        return self.shard.steps_per_epoch

    def _epoch_perm(self, epoch: int) -> Tensor:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, epoch_permutation(self.shard.n, self.shard.seed, epoch))
        return self._perm[1]

    def __getitem__(self, key: tuple[int, int]) -> list[Tensor]:
        epoch, step = key
        sh = self.shard
        perm = self._epoch_perm(epoch)
        idx = sh.local_indices(perm, step)
        images = [self.base[i][0] for i in idx.tolist()]
        if self.hw is not None:  # as InMemoryViews: the global batch's draws, this rank's slice
            gen = torch.Generator().manual_seed(derive_seed(sh.seed, "aug", epoch, step))
            policy, regions = _policy_for(self.policies, self.regions, epoch,
                                          perm[step * sh.global_batch:(step + 1) * sh.global_batch])
            params = policy.sample(self.hw.expand(sh.global_batch, 2), gen, regions=regions)
            if sh.world > 1:
                params = params.index(slice(sh.rank * sh.local_batch, (sh.rank + 1) * sh.local_batch))
            return self.batch_views.replay(torch.stack(images), params)
        gen = torch.Generator().manual_seed(derive_seed(sh.seed, "aug", epoch, step, sh.rank))
        policy, regions = _policy_for(self.policies, self.regions, epoch, idx) if self.regions is not None else (
            self.batch_views.policy, None)
        with one_thread():  # a per-image crop stage: threads only add overhead (workers have one anyway)
            return self.batch_views.from_list(images, gen, policy=policy, regions=regions)[0]


class BatchWorkerViews:
    """Whole batches rendered by DataLoader workers with the batched renderer (``aug.where=batches``)."""

    def __init__(self, dataset: Dataset, batch_views: Any, *, global_batch: int, rank: int, world: int, seed: int,
                 device: torch.device, num_workers: int = 2, regions: Any = None) -> None:
        self.shard = _Shard(len(dataset), global_batch, rank, world, seed)  # type: ignore[arg-type]
        self.device = torch.device(device)
        self.steps_per_epoch = self.shard.steps_per_epoch
        self.sampler = _StepSampler(self.steps_per_epoch)
        self.loader = DataLoader(_StepViews(dataset, batch_views, self.shard, regions), sampler=self.sampler,
                                 batch_size=None, num_workers=num_workers, pin_memory=self.device.type == "cuda",
                                 persistent_workers=num_workers > 0)
        self.description = f"batches rendered by {num_workers} DataLoader workers (batched renderer)"
        self._it: Iterator[list[Tensor]] | None = None
        self._next: tuple[int, int] | None = None  # the key the running stream yields next

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[list[Tensor]]:
        """The view batches of steps ``start_step ..`` of ``epoch``: one stream continues across epochs
        (no wait for the first batches of an epoch); any other start (resume, a jump) restarts it."""
        if self._it is None or self._next != (epoch, start_step):
            self.sampler.set_epoch(epoch, start_step)
            self._it = iter(self.loader)
        for step in range(start_step, self.steps_per_epoch):
            views = next(self._it)
            self._next = (epoch, step + 1) if step + 1 < self.steps_per_epoch else (epoch + 1, 0)
            yield [v.to(self.device, non_blocking=True) for v in views]

    def close(self) -> None:
        """Shut the workers down."""
        self._it = None
        self.loader = None  # type: ignore[assignment]
