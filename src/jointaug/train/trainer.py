"""The training loop: one process (CPU or one GPU) or several under ``torchrun`` (DDP), exact resume.

``Trainer(cfg).fit()`` builds the data, the view policy, the method and the optimiser from a
validated config (:func:`jointaug.config.load_config`), resumes from ``<out_dir>/checkpoints/last.pt``
when present, trains, monitors kNN accuracy, evaluates (kNN + linear probe) and returns the summary
(also written to ``<out_dir>/summary.json``).

Timing: a step's *data time* is the wall time from asking for the next batch until its views are
ready on the training device (waiting for workers, indexing, rendering; on CUDA followed by a
synchronisation when ``train.sync_timing``); its *step time* is data time plus forward, backward
and optimiser step until the loss is known on the host (it is read every step, to catch NaN).
The data-wait fraction is total data time / total step time. Images/s counts images (not views)
of the global batch per second of step time.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from jointaug import distributed as jd
from jointaug.augment import IMAGENET_MEAN, IMAGENET_STD
from jointaug.checkpoint import (
    CheckpointError,
    get_rng_state,
    non_finite_tensors,
    remove_stale_temporaries,
    save_checkpoint,
    select_checkpoint,
    set_rng_state,
)
from jointaug.config import aug_schedules, build_policy, config_to_yaml, controller_settings, scaled_lr
from jointaug.train.adaptive import AdaptiveViews, PairProbe, branch_names, breakpoint_policies
from jointaug.train.data import (
    BatchWorkerViews,
    InMemoryViews,
    LoaderViews,
    WorkerViews,
    channel_stats,
    derive_seed,
    views_decode_side,
)
from jointaug.train.logger import MetricsLogger
from jointaug.train.optim import build_optimizer, build_scheduler

__all__ = ["NonFiniteLossError", "NonFiniteStateError", "Trainer", "resolve_device", "train"]

#: 2: checksum, data-set fingerprint and the open logging window added
CHECKPOINT_FORMAT = 2
#: data sets whose official archive is MD5-checked (``data.verify=false`` skips it)
_VERIFIED_ARCHIVES = ("cifar10", "cifar100", "stl10")
#: config keys allowed to differ between a run and the checkpoint it resumes from
_RESUME_FREE = ("train.progress", "train.tensorboard", "train.resume", "train.out_dir", "train.log_every",
                "train.max_steps", "train.ckpt_every", "train.detect_nan", "train.keep_checkpoints",
                "data.verify",
                "train.threads", "train.debug_step_delay", "train.sync_timing", "data.num_workers",
                "data.root", "data.cache_dir", "eval", "name")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite: training stopped, the last good checkpoint is kept."""

    def __init__(self, step: int, epoch: int, loss: float, checkpoint: str | None) -> None:
        self.step, self.epoch, self.loss, self.checkpoint = step, epoch, loss, checkpoint
        kept = (f"the last good checkpoint is kept at {checkpoint}" if checkpoint
                else "no checkpoint had been written yet")
        super().__init__(f"training stopped: loss is {loss} at step {step} (epoch {epoch}); {kept}. "
                         "Lower optim.lr, use warm-up or check the data.")


class NonFiniteStateError(NonFiniteLossError):
    """Weights or buffers (e.g. BatchNorm running statistics) became NaN/inf: no checkpoint of them is written."""

    def __init__(self, step: int, epoch: int, tensors: list[str], checkpoint: str | None) -> None:
        self.step, self.epoch, self.loss, self.checkpoint = step, epoch, float("nan"), checkpoint
        self.tensors = list(tensors)
        kept = (f"the last good checkpoint is kept at {checkpoint}" if checkpoint
                else "no checkpoint had been written yet")
        RuntimeError.__init__(
            self, f"training stopped at step {step} (epoch {epoch}): non-finite values in the model state: "
                  f"{', '.join(self.tensors)}; this state was not saved, {kept}. "
                  "Lower optim.lr, use warm-up or gradient clipping (optim.grad_clip), or check the data.")


def resolve_device(pref: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else CPU; errors for unavailable CUDA."""
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"train.device={pref!r} but CUDA is not available on this machine "
                             "(use train.device=cpu or auto)")
        if pref == "cuda":
            return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(pref)


def _init_distributed(device_pref: str) -> tuple[int, int, int, bool]:
    """(rank, world, local_rank, created_here): joins the torchrun process group when WORLD_SIZE > 1."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if jd.is_dist():
        return dist.get_rank(), dist.get_world_size(), local_rank, False
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0, False
    device = resolve_device(device_pref, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return dist.get_rank(), dist.get_world_size(), local_rank, True


def _json_safe(obj: Any) -> Any:
    """``obj`` with NaN/inf floats replaced by None (JSON has no such numbers)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _seed_everything(seed: int) -> None:
    random.seed(derive_seed(seed, "python"))
    np.random.seed(derive_seed(seed, "numpy") % 2**32)
    torch.manual_seed(derive_seed(seed, "torch"))


class Trainer:
    """Train one config; see the module docstring. ``fit()`` returns the summary dict (rank 0)."""

    def __init__(self, cfg: DictConfig, *, out_dir: str | os.PathLike | None = None) -> None:
        self.cfg = cfg
        self.out_dir = Path(out_dir if out_dir is not None else cfg.train.out_dir)
        self.ckpt_path = self.out_dir / "checkpoints" / "last.pt"
        self.rank, self.world, self.local_rank, self._own_pg = _init_distributed(cfg.train.device)
        self.main = self.rank == 0
        self.device = resolve_device(cfg.train.device, self.local_rank)
        if cfg.train.threads:
            torch.set_num_threads(int(cfg.train.threads))
        self.notes: list[str] = []
        self.amp_dtype: torch.dtype | None = None
        self.dtype = torch.float64 if cfg.train.dtype == "float64" else torch.float32
        if cfg.train.amp and self.device.type == "cuda" and self.dtype == torch.float32:  # GPU-only; CPU: float32
            self.amp_dtype = torch.bfloat16 if cfg.train.precision == "bf16" else torch.float16

    # ------------------------------------------------------------------------------------------ building
    def _build_dataset(self, split: str, limit: int | None):
        from jointaug.data.datasets import build_dataset

        d = self.cfg.data
        extra: dict[str, Any] = {"verify": False} if not d.verify and d.name in _VERIFIED_ARCHIVES else {}
        if d.max_resolution is not None:
            extra["max_resolution"] = int(d.max_resolution)
        return build_dataset(d.name, split, root=d.root, download=d.download, size=d.size, on_error=d.on_error,
                             cache_dir=d.cache_dir, limit=limit, decode_side=self.decode_side(), **extra)

    def decode_side(self) -> int | None:
        """The shorter side JPEGs may be draft-decoded down to (``data.draft``): what the training views need
        (:func:`~jointaug.train.data.views_decode_side`), the evaluation's centre crops and, with the augmented
        linear probe, its RandomResizedCrop (scale 0.08); None: full decode."""
        cfg = self.cfg
        if not cfg.data.draft:
            return None
        policy = build_policy(cfg)
        need = views_decode_side(policy)
        for other in breakpoint_policies(cfg):  # aug.schedule: the side the smallest scheduled crops need
            more = views_decode_side(other)
            need = None if need is None or more is None else max(need, more)
        if need is None:
            return None
        size = max(max(hw) for hw in policy.out_hw if hw is not None)
        need = max(need, math.ceil(size / 0.875))  # evaluation: shorter side resized to size / 0.875
        if cfg.eval.linear and cfg.eval.linear_protocol == "augmented":
            from jointaug.data.io import decode_min_side

            need = max(need, decode_min_side(size, 0.08))
        return need

    def _build_data(self) -> None:
        from jointaug.augment import BatchViews

        cfg = self.cfg
        self.train_set = self._build_dataset(cfg.data.train_split, cfg.data.limit)
        fixed = getattr(self.train_set, "fixed_size", None)
        if cfg.data.mean is not None:
            mean, std = list(cfg.data.mean), list(cfg.data.std)
        elif fixed is not None:
            mean, std = channel_stats(self.train_set.images)
        else:
            mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
        self.mean, self.std = mean, std
        self.policy = build_policy(cfg)
        hw0 = self.policy.out_hw[0]  # None: views keep their crop's size (GCC family): evaluate unresized
        self.view_size = int(hw0[0]) if hw0 is not None else (int(fixed[0]) if fixed is not None else None)
        self.batch_views = BatchViews(self.policy, mode=cfg.aug.mode, mean=tuple(mean), std=tuple(std))
        self.regions = None  # ContrastiveCrop's per-image boxes: state of the run (checkpointed)
        if cfg.aug.ccrop:
            from jointaug.train.ccrop import RegionStore

            self.regions = RegionStore(len(self.train_set), warmup_epochs=int(cfg.aug.ccrop_warmup_epochs),
                                       every=int(cfg.aug.ccrop_every), threshold=float(cfg.aug.ccrop_threshold))
        common = dict(global_batch=int(cfg.optim.batch_size), rank=self.rank, world=self.world,
                      seed=int(cfg.train.seed), device=self.device, regions=self.regions)
        adaptive = bool(aug_schedules(cfg)) or controller_settings(cfg) is not None
        if adaptive and cfg.aug.where != "main":  # load_config refuses it already; a hand-made config too
            from jointaug.config import ConfigError

            raise ConfigError(f"aug.where={cfg.aug.where!r}: aug.schedule / aug.controller need aug.where=main")
        main_path = dict(policy_at=self._policy_at) if adaptive else {}
        if cfg.aug.where == "workers":
            self.data = WorkerViews(self.train_set, self.batch_views, num_workers=cfg.data.num_workers, **common)
        elif cfg.aug.where == "batches":
            self.data = BatchWorkerViews(self.train_set, self.batch_views, num_workers=cfg.data.num_workers,
                                         **common)
        elif fixed is not None:
            self.data = InMemoryViews(self.train_set.images, self.batch_views, to_device=cfg.data.to_device,
                                      **common, **main_path)
        else:
            self.data = LoaderViews(self.train_set, self.batch_views, num_workers=cfg.data.num_workers, **common,
                                    **main_path)
        self.steps_per_epoch = self.data.steps_per_epoch
        self.total_steps = self.steps_per_epoch * int(cfg.optim.epochs)
        # schedules and controller of the view policy's values (issue 13); progress of step i = i / (total_steps - 1)
        self.adaptive = AdaptiveViews(cfg, self.total_steps, self.steps_per_epoch, base_policy=self.policy)
        self.branches = branch_names(self.policy)  # a per-image coin's alternatives (online SDF per branch)
        self._eval_sets: tuple[Any, Any] | None = None
        if cfg.eval.final or cfg.train.knn_every:  # evaluation splits checked before the first step
            from jointaug.data.checks import check_splits

            eval_train, test = self._eval_data()
            check_splits(eval_train, test, on_error=cfg.data.on_error, cache_dir=cfg.data.cache_dir)

    def _build_model(self) -> None:
        from jointaug.methods import build_method
        from jointaug.models import build_backbone

        cfg = self.cfg
        _seed_everything(int(cfg.train.seed))
        backbone = build_backbone(cfg.model.backbone, cifar_stem=bool(cfg.model.cifar_stem),
                                  **OmegaConf.to_container(cfg.model.backbone_kwargs))
        if cfg.aug.ccrop:
            from jointaug.config import ConfigError
            from jointaug.train.ccrop import has_feature_maps

            if not has_feature_maps(backbone):
                raise ConfigError(f"aug.ccrop=True: ContrastiveCrop's heat maps need a backbone with a spatial feature "
                                  f"map (forward_maps); model.backbone={cfg.model.backbone!r} "
                                  f"({type(backbone).__name__}) has none")
        method = build_method(cfg.method.name, backbone, **OmegaConf.to_container(cfg.method.params))
        method = method.to(self.device, self.dtype)
        if self.world > 1 and cfg.model.sync_bn:  # after the move: native SyncBatchNorm on CUDA
            method = jd.convert_sync_batchnorm(method).to(self.device)
        if cfg.train.channels_last:
            method = method.to(memory_format=torch.channels_last)
        self.method = method
        self.probe = PairProbe(method.backbone)  # online SDF: the backbone's outputs during the training forward
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model: nn.Module = nn.parallel.DistributedDataParallel(method, device_ids=ids)
        else:
            self.model = method
        o = cfg.optim
        self.base_lr = scaled_lr(cfg)
        self.optimizer = build_optimizer(method, o.name, self.base_lr, momentum=o.momentum,
                                         weight_decay=o.weight_decay, nesterov=o.nesterov,
                                         betas=tuple(o.betas), lars_eta=o.lars_eta)
        warmup = int(round(float(o.warmup_epochs) * self.steps_per_epoch))
        self.scheduler = build_scheduler(self.optimizer, self.total_steps, warmup, o.schedule, o.min_lr_ratio)
        self.scaler = None
        if self.amp_dtype == torch.float16:
            self.scaler = torch.amp.GradScaler("cuda")

    # ------------------------------------------------------------------------------------------ checkpoints
    def _state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "rng": get_rng_state(),
            # the augmentation generator is re-seeded at every step from (seed, epoch, step):
            # its state is this triple (see jointaug.train.data)
            "aug_generator": {"seed": int(self.cfg.train.seed), "epoch": self.epoch, "step": self.step_in_epoch},
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "epoch_acc": dict(self.epoch_acc),
            "totals": dict(self.totals),
            "knn_history": [list(x) for x in self.knn_history],
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "world_size": self.world,
            "mean": list(self.mean),
            "std": list(self.std),
            "data_fingerprint": dict(self.data_fingerprint),
            # the steps since the last "step" record, so a resumed run logs the same averages
            **({"ccrop": self.regions.state_dict()} if self.regions is not None else {}),
            # schedules are pure functions of the step; the controller's state and the values in force
            "adaptive": {**self.adaptive.state_dict(), "values": self.adaptive.values_at(self.global_step)},
            "log_window": {"n": int(self._window["n"]), "loss": float(self._window["loss"]),
                           "data": float(self._window["data"]), "step": float(self._window["step"]),
                           "extras": {k: torch.as_tensor(v).detach().cpu() for k, v in self._window["extras"].items()},
                           "sdf": {k: list(v) for k, v in self._window["sdf"].items()}},
        }

    def _check_finite_state(self) -> None:
        """Stop (on every rank) when any weight or buffer is NaN/inf, before such a state is saved."""
        bad = non_finite_tensors(self.method.state_dict())
        flag = jd.all_reduce_mean(torch.tensor(1.0 if bad else 0.0, device=self.device))
        if float(flag) > 0:
            epoch = self.epoch + (1 if self.step_in_epoch else 0)
            raise NonFiniteStateError(self.global_step, epoch, bad or ["(found on another rank)"], self.last_good)

    def save(self) -> None:
        """Write the checkpoint (rank 0 only; every rank waits for it), keeping ``train.keep_checkpoints`` files.

        With ``train.detect_nan`` a state holding non-finite weights or buffers is never written:
        :class:`NonFiniteStateError` names the tensors and the last good checkpoint."""
        if self.cfg.train.detect_nan:
            self._check_finite_state()
        if self.main:
            save_checkpoint(self.ckpt_path, self._state(), keep=int(self.cfg.train.keep_checkpoints))
            self.last_good = str(self.ckpt_path)
        jd.barrier()

    def _checkpoint_problem(self, state: dict[str, Any]) -> str | None:
        """Why a (checksum-verified) checkpoint cannot be resumed from, or None."""
        if state.get("format") != CHECKPOINT_FORMAT:
            return (f"has format {state.get('format')!r}, expected {CHECKPOINT_FORMAT} "
                    "(written by another version of jointaug)")
        if self.cfg.train.detect_nan:
            bad = non_finite_tensors(state.get("model", {}))
            if bad:
                return f"holds non-finite weights or buffers: {', '.join(bad)}"
        return None

    def _resume(self) -> bool:
        if not self.cfg.train.resume:
            return False
        try:
            found = select_checkpoint(self.ckpt_path, check=self._checkpoint_problem)
        except CheckpointError as exc:
            listing = "; ".join(f"{p}: {why}" for p, why in exc.rejected)
            raise CheckpointError(self.ckpt_path.parent, f"holds no usable checkpoint, so the run cannot be resumed "
                                                         f"({listing}); move the files away or set "
                                                         "train.resume=false to start over") from None
        if found is None:
            return False
        state, chosen, rejected = found
        for path, why in rejected:
            self.notes.append(f"checkpoint {path} is unusable ({why}); it is moved to {path.name}.bad and the "
                              f"run resumes from {chosen} (step {int(state['global_step'])})")
        self.rejected_checkpoints = [(str(p), why) for p, why in rejected]
        self._check_resume_config(state.get("config", {}), chosen)
        self._check_resume_data(state.get("data_fingerprint"), chosen)
        self.method.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.epoch = int(state["epoch"])
        self.step_in_epoch = int(state["step_in_epoch"])
        self.global_step = int(state["global_step"])
        self.epoch_acc = dict(state.get("epoch_acc", {}))
        self.totals.update(state.get("totals", {}))
        self.knn_history = [tuple(x) for x in state.get("knn_history", [])]
        win = state.get("log_window") or {}
        if win:
            self._window.update(n=int(win["n"]), loss=float(win["loss"]), data=float(win["data"]),
                                step=float(win["step"]),
                                extras={k: v.to(self.device) for k, v in dict(win.get("extras", {})).items()},
                                sdf={k: list(v) for k, v in dict(win.get("sdf", {})).items()})
        self.adaptive.load_state_dict(state.get("adaptive"), str(chosen))
        if self.regions is not None:
            if "ccrop" not in state:
                raise ValueError(f"cannot resume from {chosen}: aug.ccrop=true but the checkpoint holds no "
                                 "ContrastiveCrop boxes")
            self.regions.load_state_dict(state["ccrop"])
        self.last_good = str(chosen)
        if rejected:
            jd.barrier()  # every rank has read its checkpoint before rank 0 moves the bad ones aside
            if self.main:
                for path, _ in rejected:
                    if path.exists():
                        os.replace(path, path.with_name(path.name + ".bad"))
        return True

    def _check_resume_data(self, old: dict[str, Any] | None, path: Path) -> None:
        """Refuse to resume on training data whose content differs from the checkpoint's (names the change)."""
        from jointaug.train.fingerprint import compare_fingerprints

        if not old:
            return
        diffs = compare_fingerprints(old, self.data_fingerprint)
        if diffs:
            raise ValueError(f"cannot resume from {path}: the training data changed ({'; '.join(diffs)}; "
                             f"data.name={self.cfg.data.name!r}, data.root={self.cfg.data.root!r}); "
                             "use the original data, another train.out_dir, or train.resume=false to start over")

    def _check_resume_config(self, old_config: dict[str, Any], path: Path | None = None) -> None:
        if not old_config:
            return
        old = OmegaConf.create(old_config)
        diffs = []
        absent = object()  # a key the checkpoint's config lacks (written before the key existed)
        from jointaug.config import Config

        defaults = OmegaConf.structured(Config)

        def walk(a: Any, b: Any, prefix: str) -> None:
            if any(prefix == k or prefix.startswith(k + ".") for k in _RESUME_FREE):
                return
            if a is absent:  # a newer key at its default value changes nothing (e.g. aug.schedule: {})
                if b == OmegaConf.select(defaults, prefix, default=absent):
                    return
                a = None
            if isinstance(a, DictConfig) and isinstance(b, DictConfig):
                for k in set(a.keys()) | set(b.keys()):
                    walk(a.get(k) if k in a else absent, b.get(k), f"{prefix}.{k}" if prefix else str(k))
            elif a != b:
                diffs.append(f"{prefix}: checkpoint {a!r}, now {b!r}")

        walk(old, self.cfg, "")
        if diffs:
            raise ValueError(f"cannot resume from {path or self.ckpt_path}: the config changed "
                             f"({'; '.join(sorted(diffs))}); "
                             "use another train.out_dir or train.resume=false to start over")

    # ------------------------------------------------------------------------------------------ evaluation
    def _eval_data(self) -> tuple[Any, Any]:
        if self._eval_sets is None:
            d = self.cfg.data
            train = (self.train_set if d.eval_train_split == d.train_split
                     else self._build_dataset(d.eval_train_split, d.limit))
            test = self._build_dataset(d.test_split, d.test_limit)
            self._eval_sets = (train, test)
        return self._eval_sets

    def _features(self, ds: Any, limit: int | None = None) -> tuple[Tensor, Tensor]:
        from jointaug.eval.features import extract_features

        labels = ds.labels
        fixed = getattr(ds, "fixed_size", None)
        keep = None
        if limit is not None and limit < len(ds):
            keep = torch.randperm(len(ds), generator=torch.Generator().manual_seed(
                derive_seed(self.cfg.train.seed, "knn-subset")))[:limit].sort().values
        if fixed is not None:
            images = ds.images
            if isinstance(self.data, InMemoryViews) and ds is self.train_set:
                images = self.data.images  # already on the device
            if keep is not None:
                images, labels = images[keep.to(images.device)], labels[keep]
            size = None if tuple(fixed) == (self.view_size, self.view_size) else self.view_size
            feats = extract_features(self.method.backbone, images, batch_size=self.cfg.eval.batch_size,
                                     mean=self.mean, std=self.std, size=size)
        else:
            subset = ds if keep is None else torch.utils.data.Subset(ds, keep.tolist())
            if keep is not None:
                labels = labels[keep]
            feats = extract_features(self.method.backbone, subset, batch_size=self.cfg.eval.batch_size,
                                     mean=self.mean, std=self.std, size=self.view_size, crop_fraction=0.875,
                                     num_workers=self.cfg.data.num_workers)
        labels = torch.as_tensor(labels).long()
        ok = labels >= 0  # unlabelled images (label -1) cannot vote or be scored
        return feats[ok], labels[ok]

    def knn(self, train_limit: int | None = None) -> tuple[float, tuple[Tensor, Tensor, Tensor, Tensor]]:
        """Weighted kNN top-1 (%) of the current backbone: clean train features vs test features."""
        from jointaug.eval.knn import knn_accuracy

        train_ds, test_ds = self._eval_data()
        tr_f, tr_y = self._features(train_ds, train_limit)
        te_f, te_y = self._features(test_ds)
        n_classes = len(getattr(test_ds, "classes", [])) or None
        acc = knn_accuracy(tr_f.to(self.device), tr_y.to(self.device), te_f.to(self.device), te_y.to(self.device),
                           k=int(self.cfg.eval.knn_k), temperature=float(self.cfg.eval.knn_t),
                           num_classes=n_classes)
        return acc, (tr_f, tr_y, te_f, te_y)

    def final_evaluation(self) -> dict[str, Any]:
        """kNN and linear probe (fast or augmented protocol) of the final backbone (rank 0)."""
        from jointaug.eval.linear import linear_probe, linear_probe_augmented

        e = self.cfg.eval
        t0 = time.perf_counter()
        acc, (tr_f, tr_y, te_f, te_y) = self.knn()
        out: dict[str, Any] = {"knn_top1": acc, "knn_k": int(e.knn_k), "knn_t": float(e.knn_t),
                               "eval_train_images": int(tr_f.shape[0]), "eval_test_images": int(te_f.shape[0])}
        if e.linear:
            n_classes = len(getattr(self._eval_data()[1], "classes", [])) or None
            if e.linear_protocol == "fast":
                res = linear_probe(tr_f, tr_y, te_f, te_y, epochs=int(e.linear_epochs), lr=float(e.linear_lr),
                                   batch_size=int(e.linear_batch_size), weight_decay=float(e.linear_weight_decay),
                                   num_classes=n_classes, device=self.device, seed=int(self.cfg.train.seed))
            else:
                train_ds, test_ds = self._eval_data()
                res = linear_probe_augmented(
                    self.method.backbone, train_ds, test_ds, epochs=int(e.linear_epochs), lr=float(e.linear_lr),
                    batch_size=int(e.linear_batch_size), weight_decay=float(e.linear_weight_decay),
                    size=self.view_size, mean=self.mean, std=self.std, num_classes=n_classes, device=self.device,
                    num_workers=self.cfg.data.num_workers, seed=int(self.cfg.train.seed),
                    crop_fraction=1.0 if getattr(test_ds, "fixed_size", None) else 0.875)
            out.update({"linear_top1": res["top1"], "linear_top5": res["top5"],
                        "linear_protocol": e.linear_protocol})
        out["eval_time_s"] = time.perf_counter() - t0
        return out

    # ------------------------------------------------------------------------------------------ training
    def _policy_at(self, epoch: int, step: int) -> Any:
        """The view policy of a step (the data paths' ``policy_at`` when schedules or a controller are on)."""
        return self.adaptive.policy_at(epoch, step)

    def _train_step(self, views: list[Tensor]) -> tuple[Tensor, dict[str, Tensor], Tensor | None]:
        cfg = self.cfg
        if self.dtype != torch.float32:
            views = [v.to(self.dtype) for v in views]
        if cfg.train.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        step, total, spe = self.global_step + 1, self.total_steps, self.steps_per_epoch
        self.method.on_train_step_start(step, total, spe)
        with self.probe.capture(), torch.autocast(device_type=self.device.type, dtype=self.amp_dtype or torch.float32,
                                                  enabled=self.amp_dtype is not None):
            out = self.model(views)
        cos = self.probe.pair_cosines(int(views[0].shape[0]))  # None: the backbone did not see views 0 and 1
        loss = out["loss"]
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()
        loss_mean = jd.all_reduce_mean(loss.detach().float())
        loss_val = float(loss_mean)  # host sync: needed to stop before a NaN reaches the weights
        if cfg.train.detect_nan and not math.isfinite(loss_val):
            raise NonFiniteLossError(self.global_step + 1, self.epoch + 1, loss_val, self.last_good)
        self.method.on_before_optimizer_step(step, total, spe)
        if cfg.optim.grad_clip:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.method.parameters(), float(cfg.optim.grad_clip))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.method.on_train_step_end(step, total)
        extras = {k: v.detach().float() for k, v in out.items()
                  if k != "loss" and isinstance(v, Tensor) and v.numel() == 1}
        return loss_mean, extras, cos

    def _sdf_sums(self, cos: Tensor | None) -> dict[str, list[float]]:
        """This step's online SDF as ``{name: [sum of cosines, count]}`` over the global batch: ``sdf_online``
        and, under a per-image coin on a main-process path, ``sdf_online_<branch>`` (empty when unavailable)."""
        if cos is None:
            return {}
        names = ["sdf_online"]
        parts = [cos.sum(), cos.new_tensor(float(cos.numel()))]
        params = getattr(self.data, "last_params", None)
        alt = None if params is None else params.extra.get("alternative")
        if self.branches and alt is not None and alt.numel() == cos.numel():
            alt = alt.to(cos.device)
            for i, name in enumerate(self.branches):
                mask = alt == i
                names.append(f"sdf_online_{name}")
                parts += [cos[mask].sum(), mask.sum().to(cos.dtype)]
        vec = jd.all_reduce_mean(torch.stack(parts))  # means over ranks: the ratios are the global ones
        vals = vec.tolist()
        return {n: [vals[2 * i], vals[2 * i + 1]] for i, n in enumerate(names)}

    def _progress(self):
        mode = self.cfg.train.progress
        show = self.main and (sys.stderr.isatty() if mode is None else bool(mode))
        from tqdm import tqdm

        return tqdm(total=self.total_steps if not self.cfg.train.max_steps
                    else min(self.total_steps, int(self.cfg.train.max_steps)),
                    initial=self.global_step, disable=not show, desc=self.cfg.name or "train",
                    unit="step", dynamic_ncols=True, leave=True)

    def fit(self) -> dict[str, Any]:
        """Train (resuming if possible), evaluate, write ``summary.json``; returns the summary on rank 0."""
        try:
            return self._fit()
        finally:
            if self._own_pg and jd.is_dist():
                dist.destroy_process_group()

    def setup(self) -> None:
        """Build data, view policy, model (seeded initial weights), optimiser and schedule."""
        self._build_data()
        self._build_model()

    def _fit(self) -> dict[str, Any]:
        cfg = self.cfg
        t_setup = time.perf_counter()
        self.setup()
        self.epoch = self.step_in_epoch = self.global_step = 0
        self.epoch_acc: dict[str, float] = {}
        self.totals: dict[str, float] = {"step_time": 0.0, "data_time": 0.0, "images": 0.0}
        self.knn_history: list[tuple[int, float]] = []
        self.last_good: str | None = None
        self._window: dict[str, Any] = {"n": 0, "loss": 0.0, "data": 0.0, "step": 0.0, "extras": {}, "sdf": {}}
        self.rejected_checkpoints: list[tuple[str, str]] = []
        from jointaug.train.fingerprint import dataset_fingerprint

        self.data_fingerprint = dataset_fingerprint(self.train_set)
        if self.main:
            for p in remove_stale_temporaries(self.ckpt_path.parent):
                self.notes.append(f"removed {p}, a temporary file left by an interrupted checkpoint write")
        resumed = self._resume()
        if self.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.yaml").write_text(config_to_yaml(cfg))
        self.log = MetricsLogger(self.out_dir, enabled=self.main, tensorboard=cfg.train.tensorboard,
                                 resume_step=self.global_step if resumed else None)
        if self.log.tb_note:
            self.notes.append(self.log.tb_note)
        if self.main:
            for note in self.notes:
                print(f"jointaug train: note: {note}", file=sys.stderr)
        if self.main:
            self.log.log({"type": "event", "event": "resume" if resumed else "start", "step": self.global_step,
                          "epoch": self.epoch, "world_size": self.world, "device": str(self.device),
                          "data_path": self.data.description, "policy": self.policy.name,
                          "lr": self.base_lr, "steps_per_epoch": self.steps_per_epoch,
                          "setup_time": time.perf_counter() - t_setup,
                          **({"aug_schedule": {k: v.describe() for k, v in self.adaptive.schedules.items()}}
                             if self.adaptive.schedules else {}),
                          **({"aug_controller": OmegaConf.to_container(cfg.aug.controller)}
                             if self.adaptive.controller is not None else {}),
                          **({"rejected_checkpoints": [list(x) for x in self.rejected_checkpoints]}
                             if self.rejected_checkpoints else {})})
        try:
            self._loop()
        except NonFiniteLossError as exc:
            if self.main:
                bad = getattr(exc, "tensors", None)
                self.log.log({"type": "event", "event": "non_finite_state" if bad else "non_finite_loss",
                              "step": exc.step, "epoch": exc.epoch, "loss": exc.loss,
                              **({"tensors": bad} if bad else {})})
            self.log.close()
            raise
        summary: dict[str, Any] = {}
        if self.main:
            summary = self._summary()
            if cfg.eval.final:
                res = self.final_evaluation()
                summary.update(res)
                self.log.log({"type": "eval", "step": self.global_step, "epoch": self.epoch, **res})
            import json

            # strict JSON: a non-finite number (possible with train.detect_nan=false) is written as null
            (self.out_dir / "summary.json").write_text(
                json.dumps(_json_safe(summary), indent=2, allow_nan=False) + "\n")
            torch.save(self.method.backbone.state_dict(), self.out_dir / "backbone.pt")
        jd.barrier()
        self.log.close()
        if isinstance(self.data, (LoaderViews, WorkerViews, BatchWorkerViews)):
            self.data.close()
        return summary

    def _summary(self) -> dict[str, Any]:
        t = self.totals
        return {
            "name": self.cfg.name, "policy": self.policy.name, "method": self.cfg.method.name,
            "backbone": self.cfg.model.backbone, "data": self.cfg.data.name, "epochs_done": self.epoch,
            "steps": self.global_step, "final_loss": self.epoch_acc.get("last_epoch_loss"),
            "train_time_s": t["step_time"], "images_per_s": t["images"] / t["step_time"] if t["step_time"] else None,
            "data_wait": t["data_time"] / t["step_time"] if t["step_time"] else None,
            "knn_history": [list(x) for x in self.knn_history], "device": str(self.device),
            "world_size": self.world, "lr": self.base_lr, "batch_size": int(self.cfg.optim.batch_size),
            "data_path": self.data.description, "out_dir": str(self.out_dir),
        }

    def _loop(self) -> None:
        cfg = self.cfg
        epochs = int(cfg.optim.epochs)
        max_steps = cfg.train.max_steps
        sync = self.device.type == "cuda" and cfg.train.sync_timing
        gb = int(cfg.optim.batch_size)
        bar = self._progress()
        window = self._window  # restored from the checkpoint on resume (logged averages stay identical)

        def reset_window() -> None:
            window.update(n=0, loss=0.0, data=0.0, step=0.0, extras={}, sdf={})

        def add_sums(into: dict[str, list[float]], sums: dict[str, list[float]]) -> None:
            for k, (total, count) in sums.items():
                old = into.setdefault(k, [0.0, 0.0])
                old[0] += total
                old[1] += count

        def means(sums: dict[str, list[float]]) -> dict[str, float]:
            return {k: total / count for k, (total, count) in sorted(sums.items()) if count > 0}

        last_postfix = 0.0
        stop = False
        while self.epoch < epochs and not stop:
            self.model.train()
            if self.step_in_epoch == 0:
                self.epoch_acc = {"loss_sum": 0.0, "n": 0, "data": 0.0, "step": 0.0,
                                  "last_epoch_loss": self.epoch_acc.get("last_epoch_loss")}
            it = self.data.epoch(self.epoch, self.step_in_epoch)
            while self.step_in_epoch < self.steps_per_epoch:
                if max_steps is not None and self.global_step >= max_steps:
                    stop = True
                    break
                t0 = time.perf_counter()
                views = next(it)
                if sync:
                    torch.cuda.synchronize(self.device)
                t1 = time.perf_counter()
                in_force = self.adaptive.values_at(self.global_step) if self.adaptive.active else {}
                loss, extras, cos = self._train_step(views)
                loss_val = float(loss)
                sums = self._sdf_sums(cos)
                if "sdf_online" in sums:
                    total, count = sums["sdf_online"]
                    self.adaptive.observe(total / count, self.global_step)  # the controller's beta for the next step
                t2 = time.perf_counter()
                self.step_in_epoch += 1
                self.global_step += 1
                d, s = t1 - t0, t2 - t0
                self.totals["data_time"] += d
                self.totals["step_time"] += s
                self.totals["images"] += gb
                self.epoch_acc["loss_sum"] += loss_val
                self.epoch_acc["n"] += 1
                self.epoch_acc["data"] += d
                self.epoch_acc["step"] += s
                window["n"] += 1
                window["loss"] += loss_val
                window["data"] += d
                window["step"] += s
                for k, v in extras.items():
                    window["extras"][k] = window["extras"].get(k, 0.0) + v
                add_sums(window["sdf"], sums)
                add_sums(self.epoch_acc.setdefault("sdf", {}), sums)
                self.epoch_acc["aug_values"] = in_force
                bar.update(1)
                now = time.perf_counter()
                if now - last_postfix > 0.5:
                    bar.set_postfix(loss=f"{loss_val:.4f}", img_s=f"{gb / s:.0f}", wait=f"{100 * d / s:.0f}%")
                    last_postfix = now
                if self.global_step % cfg.train.log_every == 0:
                    n = window["n"]
                    rec = {"type": "step", "step": self.global_step, "epoch": self.epoch + 1,
                           "loss": window["loss"] / n, "lr": self.scheduler.get_last_lr()[0],
                           "img_per_s": gb * n / window["step"], "data_wait": window["data"] / window["step"]}
                    for k, v in window["extras"].items():
                        rec[k] = float(jd.all_reduce_mean(v / n))
                    rec.update(means(window["sdf"]))
                    rec.update(self.adaptive.log_values(in_force))
                    if self.main:
                        self.log.log(rec)
                    reset_window()
                if cfg.train.debug_step_delay:
                    time.sleep(float(cfg.train.debug_step_delay))
            if self.step_in_epoch >= self.steps_per_epoch:
                self._end_epoch(epochs)
            elif stop and self.step_in_epoch > 0:
                self.save()  # stopped by max_steps inside an epoch: resumable from here
        bar.close()

    def _end_epoch(self, epochs: int) -> None:
        cfg = self.cfg
        acc = self.epoch_acc
        epoch_loss = acc["loss_sum"] / max(1, acc["n"])
        rec: dict[str, Any] = {"type": "epoch", "step": self.global_step, "epoch": self.epoch + 1,
                               "loss": epoch_loss, "lr": self.scheduler.get_last_lr()[0],
                               "img_per_s": cfg.optim.batch_size * acc["n"] / acc["step"] if acc["step"] else None,
                               "data_wait": acc["data"] / acc["step"] if acc["step"] else None,
                               "train_time": acc["step"]}
        for k, (total, count) in sorted(acc.get("sdf", {}).items()):  # online SDF over the epoch's batches
            if count > 0:
                rec[k] = total / count
        # the values in force at the epoch's last step (schedules, controller)
        rec.update(self.adaptive.log_values(acc.get("aug_values", {})))
        if self.adaptive.controller is not None and self.adaptive.controller.sdf_ema is not None:
            rec["controller_sdf_ema"] = float(self.adaptive.controller.sdf_ema)
            rec["controller_target"] = self.adaptive.controller.target_at(
                self.adaptive.progress(self.global_step - 1))
        done = self.epoch + 1
        if cfg.train.knn_every and (done % cfg.train.knn_every == 0 or done == epochs):
            if self.main:
                t0 = time.perf_counter()
                knn, _ = self.knn(cfg.eval.knn_train_limit)
                rec["knn_top1"] = knn
                rec["knn_time"] = time.perf_counter() - t0
                self.knn_history.append((done, knn))
            jd.barrier()
        if self.regions is not None and self.regions.due(done, epochs):
            t0 = time.perf_counter()
            self._refresh_regions(done)
            rec["ccrop_box_area"] = self.regions.mean_area()
            rec["ccrop_time"] = time.perf_counter() - t0
        if self.main:
            self.log.log(rec)
        self.epoch_acc = {"loss_sum": 0.0, "n": 0, "data": 0.0, "step": 0.0, "last_epoch_loss": epoch_loss}
        self.epoch += 1
        self.step_in_epoch = 0
        max_steps = cfg.train.max_steps
        last = self.epoch == epochs or (max_steps is not None and self.global_step >= max_steps)
        if done % cfg.train.ckpt_every == 0 or last:
            self.save()


    def _refresh_regions(self, done: int) -> None:
        """ContrastiveCrop: new boxes of every training image from the online backbone's heat maps
        (every rank computes them; rank 0's are broadcast so the ranks agree bit for bit)."""
        from jointaug.train.ccrop import compute_regions

        fixed = getattr(self.train_set, "fixed_size", None)
        images = self.data.images if isinstance(self.data, InMemoryViews) else (
            self.train_set.images if fixed is not None else self.train_set)
        size = None if fixed is not None and (self.view_size is None or tuple(fixed) == (self.view_size,) * 2) \
            else self.view_size
        boxes = compute_regions(self.method.backbone, images, threshold=self.regions.threshold, mean=self.mean,
                                std=self.std, size=size, batch_size=int(self.cfg.eval.batch_size),
                                num_workers=int(self.cfg.data.num_workers) if fixed is None else 0)
        if jd.is_dist():
            boxes = boxes.to(self.device)
            dist.broadcast(boxes, src=0)
            boxes = boxes.cpu()
        self.regions.update(boxes, done)


def train(cfg: DictConfig, *, out_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train ``cfg`` (see :class:`Trainer`); returns the summary (an empty dict on ranks other than 0)."""
    return Trainer(cfg, out_dir=out_dir).fit()
