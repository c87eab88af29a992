"""Training configuration: typed sections (OmegaConf structured dataclasses), YAML recipes, overrides.

A recipe is a YAML file (``configs/<method>/<dataset>.yaml``) holding only what differs from the
defaults below; ``key=value`` overrides from the command line are merged on top. Everything is
checked by :func:`load_config` before any work starts: an unknown key, a value of the wrong type or
a bad value (negative learning rate, unknown method, backbone, recipe or data set, non-finite beta,
missing data directory ...) raises :class:`ConfigError` naming the key, the value and its source.

Learning rates are given per 256 images: the optimiser uses ``optim.lr * batch_size / 256``
(``optim.lr_scaling: linear``; ``sqrt`` and ``none`` are the alternatives).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

__all__ = [
    "CONTROLLER_DEFAULTS",
    "SCHEDULABLE",
    "AugConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "MethodConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "config_dirs",
    "config_to_yaml",
    "find_config",
    "load_config",
    "scaled_lr",
    "validate",
    "aug_schedules",
    "build_policy",
    "controller_settings",
    "policy_kwargs",
    "with_aug_values",
]

#: data-set names accepted when the data package does not list its own
_FALLBACK_DATASETS = ("synthetic", "cifar10", "cifar100", "stl10", "folder", "imagenette", "tiny-imagenet",
                      "imagenet")
#: image-folder data sets (JPEG draft decoding, ``data.max_resolution``)
_FOLDER_SETS = ("folder", "imagenette", "tiny-imagenet", "imagenet")
#: data sets that need no ``data.root``
_NO_ROOT = ("synthetic",)
#: image and view sizes (px) accepted for ``data.size`` / ``aug.size``: below 8 px the renderer and the
#: backbones' strides fail, above 2048 px one batch of views would not fit in any memory
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 2048
#: ``train.seed`` must fit a 64-bit generator seed
MAX_SEED = 2**63 - 1


def _param_type_error(value: Any, default: Any) -> str | None:
    """Why ``value`` cannot replace a method hyperparameter whose default is ``default`` (None if it can).

    The type of the constructor's default decides: bool -> true/false, int -> an integer (64.5 is not
    truncated), float -> a finite number, str -> a string; a None default accepts anything.
    """
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be an integer"
        return None
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "must be a number"
        return None if math.isfinite(value) else "must be a finite number"
    if isinstance(default, str):
        return None if isinstance(value, str) else "must be a string"
    return None


class ConfigError(ValueError):
    """A bad configuration: names the key, the offending value and where it came from."""


# --------------------------------------------------------------------------------------------- sections
@dataclass
class DataConfig:
    """What to train on (``jointaug.data.datasets.build_dataset`` arguments) and how to load it."""

    name: str = "synthetic"
    root: str | None = None  # folder, archive or file; None for the synthetic set or a download
    download: bool = False
    size: int | None = None  # image size the reader produces (None: the data set's own)
    limit: int | None = None  # class-stratified subset of the training split (tests, quick runs)
    test_limit: int | None = None  # subset of the evaluation splits
    num_workers: int = 2  # DataLoader workers (variable-size sets, or aug.where=workers)
    cache_dir: str | None = None  # decoded uint8 cache (None: the data package's default)
    on_error: str = "raise"  # raise | skip (corrupt images)
    train_split: str = "train"  # pretraining split (stl10: train+unlabeled)
    eval_train_split: str = "train"  # labelled split whose clean features train kNN / linear
    test_split: str = "test"
    mean: list[float] | None = None  # normalisation; None: computed from the images (fixed-size) or ImageNet's
    std: list[float] | None = None
    to_device: bool = True  # fixed-size sets: keep the uint8 images on the training device (GPU)
    verify: bool = True  # check the MD5 of official archives (cifar10/100, stl10); false for re-packed ones
    draft: bool = True  # folder sets: decode JPEGs at 1/2-1/8 scale when every view keeps >= 1 source px per px
    max_resolution: int | None = None  # folder sets: decoded cache, shorter side shrunk to <= this (None: off)


@dataclass
class ModelConfig:
    """The backbone (``jointaug.models.build_backbone``)."""

    backbone: str = "resnet18"
    cifar_stem: bool = False
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)  # constructor keywords, e.g. {width: 32}
    sync_bn: bool = True  # convert BatchNorm to SyncBatchNorm under DDP


@dataclass
class MethodConfig:
    """The self-supervised method (``jointaug.methods.build_method``) and its hyperparameters."""

    name: str = "simclr"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class AugConfig:
    """The view policy (``jointaug.sampling.make_policy``) and where/how views are rendered."""

    recipe: str = "simclr"
    crop: str = "random"  # random | joint (J-Crop) | fixed | gcc | cgcc | mgcc | mcgcc (label-preserving crops)
    blur: str = "random"  # random | joint (J-Blur)
    color: str = "random"  # random | joint (J-Color)
    beta: float = 0.0
    blur_beta: float | None = None
    color_beta: float | None = None
    size: int | None = None  # view size (None: the recipe's)
    scale: list[float] | None = None  # crop area range (None: the recipe's)
    blur_p: list[float] | None = None  # per-view blur probabilities (None: the recipe's)
    combine: str = "coin"  # coin | both (J-Crop and J-Blur together)
    coin_p: float | None = None  # combine=coin: probability of J-Crop (else J-Blur) per image (None: fair, 1/2)
    bound: str = "paper"  # paper | code
    fallback: str = "whole"  # whole | center
    n_local: int | None = None  # multi-crop: local views after the 2 global ones (None: the recipe's; dino 6, others 0)
    local_size: int | None = None  # local view size (None: round(size * 96 / 224))
    local_scale: list[float] | None = None  # local crop area range (None: the recipe's, else [0.05, 0.4])
    joint_pairs: str = "global"  # coupled pairs: global (0-1) | local (2-3, 4-5 ...) | both | cross (0-2, 1-3)
    mode: str = "fast"  # renderer: fast | exact
    where: str = "main"  # main (batched renderer in the training process) | workers (per image, DataLoader)
    #                      | batches (batched renderer in DataLoader workers: the views of main, prepared ahead)
    crop_size: float = 0.4  # fixed-size crops: area fraction in (0, 1] (views keep the crop's size unless aug.size)
    alpha: float = 1.0  # gcc family: variance scale of the Gaussian centre (std = sqrt(alpha * side))
    gcc_range: list[float] = field(default_factory=lambda: [0.25, 0.75])  # mgcc / mcgcc: mean ~ U(a, b) * side
    pad: str = "even"  # gcc / mgcc boxes leaving the image: even (the authors') | side zero padding
    rotate_p: float = 0.0  # probability of a 90 / 180 / 270 degree rotation of every view (square views)
    # ContrastiveCrop (Peng et al. 2022): crop centres ~ Beta(alpha, alpha) per axis inside per-image heat-map boxes
    ccrop: bool = False  # on: with aug.crop=random (RandomResizedCrop areas) or aug.crop=joint (J-Crop areas)
    ccrop_warmup_epochs: int = 20  # epochs of ordinary crops before the first boxes (the authors' ImageNet: 20)
    ccrop_every: int = 20  # epochs between box refreshes (the authors' ImageNet: 20)
    ccrop_threshold: float = 0.1  # box = pixels of the [0, 1] heat map above this
    ccrop_alpha: float = 0.6  # Beta(alpha, alpha) centre law; < 1 pushes centres to the box's edges
    # adaptive difficulty (issue 13): numeric keys above as functions of training progress step / total_steps;
    # key -> schedule spec (jointaug.sampling.schedules); keys: SCHEDULABLE (scale.0 = aug.scale[0] ...)
    schedule: dict[str, Any] = field(default_factory=dict)
    # integral controller on aug.beta holding the online SDF at a target (jointaug.train.difficulty):
    # {target: number or schedule spec, gain, every, smoothing, beta_min, beta_max, max_change}; null: off
    controller: dict[str, Any] | None = None


@dataclass
class OptimConfig:
    """Optimiser and schedule. ``lr`` is per 256 images (see ``lr_scaling``)."""

    name: str = "sgd"  # sgd | lars | adamw
    lr: float = 0.3
    lr_scaling: str = "linear"  # linear (lr * batch / 256) | sqrt (lr * sqrt(batch / 256)) | none
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw
    lars_eta: float = 0.001  # LARS trust coefficient
    warmup_epochs: float = 10.0  # linear warm-up, per step, from 0
    schedule: str = "cosine"  # cosine | constant (after warm-up)
    min_lr_ratio: float = 0.0  # cosine ends at lr * min_lr_ratio
    batch_size: int = 256  # global (all ranks together)
    epochs: int = 100
    grad_clip: float | None = None  # max gradient norm (None: no clipping)


@dataclass
class TrainConfig:
    """The loop: seed, device, precision, logging, checkpoints, monitors."""

    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # autocast on GPU (ignored on CPU)
    precision: str = "bf16"  # bf16 | fp16 (autocast dtype; fp16 adds a GradScaler)
    dtype: str = "float32"  # float32 | float64 (weights and views; float64 for exact-comparison tests, CPU)
    log_every: int = 20  # steps between JSON-lines records
    ckpt_every: int = 1  # epochs between checkpoints (the last epoch always saves)
    keep_checkpoints: int = 2  # checkpoint files kept (last.pt, last-1.pt ...); resume falls back to the newest valid
    out_dir: str = "runs/train"
    resume: bool = True  # continue from out_dir/checkpoints/last.pt when present
    max_steps: int | None = None  # stop after this many optimiser steps (tests, smoke runs)
    knn_every: int = 0  # epochs between online kNN monitors (0: off)
    detect_nan: bool = True  # stop on a non-finite loss, keeping the last good checkpoint
    progress: bool | None = None  # progress bar: None = when stderr is a terminal
    tensorboard: bool = True  # also write TensorBoard events (skipped with a note when not installed)
    threads: int | None = None  # torch.set_num_threads (None: torch's default)
    channels_last: bool = False
    sync_timing: bool = True  # synchronise CUDA around the data phase so data-wait is measured honestly
    debug_step_delay: float = 0.0  # seconds slept after each step (fault-injection tests only)


@dataclass
class EvalConfig:
    """Online kNN monitor and the final evaluation (kNN + linear probe)."""

    knn_k: int = 200
    knn_t: float = 0.1
    knn_train_limit: int | None = None  # subset of the clean train features for the online monitor
    batch_size: int = 512  # feature extraction
    final: bool = True  # evaluate at the end of training
    linear: bool = True  # run the linear probe in the final evaluation
    linear_protocol: str = "fast"  # fast (precomputed features) | augmented (SGD on augmented images)
    linear_epochs: int = 100
    linear_lr: float = 0.1
    linear_batch_size: int = 256
    linear_weight_decay: float = 0.0


@dataclass
class Config:
    """A whole training run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    name: str = ""  # free label (defaults to the recipe's file stem)


# --------------------------------------------------------------------------------------------- loading
def config_dirs() -> list[Path]:
    """Where recipe names are looked up: ``$JOINTAUG_CONFIG_DIR``, ./configs, the source tree's configs/."""
    dirs = []
    env = os.environ.get("JOINTAUG_CONFIG_DIR")
    if env:
        dirs.append(Path(env))
    dirs.append(Path.cwd() / "configs")
    dirs.append(Path(__file__).resolve().parents[2] / "configs")
    out: list[Path] = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def find_config(path_or_name: str | os.PathLike) -> Path:
    """A recipe file from a path or a name like ``simclr/cifar10`` (searched in :func:`config_dirs`)."""
    p = Path(path_or_name)
    if p.is_file():
        return p
    name = str(path_or_name)
    candidates = [name] if name.endswith((".yaml", ".yml")) else [name + ".yaml", name + ".yml", name]
    for d in config_dirs():
        for c in candidates:
            if (d / c).is_file():
                return d / c
    searched = ", ".join(str(d) for d in config_dirs())
    raise ConfigError(f"config {name!r}: no such file, and no recipe of that name in {searched}")


def _describe(exc: OmegaConfBaseException) -> str:
    return str(exc).splitlines()[0].strip()


def _merge(base: DictConfig, other: DictConfig, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, other)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        try:
            value = OmegaConf.select(other, key, default=None, throw_on_missing=False)
        except OmegaConfBaseException:
            value = None
        if isinstance(value, DictConfig) or OmegaConf.is_list(value):
            value = OmegaConf.to_container(value)
        what = "unknown key" if isinstance(exc, KeyError) else "bad value"
        raise ConfigError(f"{key}={value!r} ({source}): {what}: {_describe(exc)}") from None


def _parse_overrides(overrides: list[str]) -> list[tuple[str, DictConfig]]:
    out = []
    for ov in overrides:
        if "=" not in ov or ov.startswith("="):
            raise ConfigError(f"command-line override {ov!r}: expected key=value (e.g. optim.lr=0.1)")
        try:
            out.append((ov, OmegaConf.from_dotlist([ov])))
        except OmegaConfBaseException as exc:
            raise ConfigError(f"command-line override {ov!r}: {_describe(exc)}") from None
    return out


def load_config(path_or_name: str | os.PathLike | None = None, overrides: list[str] | None = None) -> DictConfig:
    """Defaults <- YAML recipe (path or name; None for defaults only) <- ``key=value`` overrides; validated.

    Returns an OmegaConf ``DictConfig`` with the :class:`Config` schema (typed; ``cfg.optim.lr``).
    Raises :class:`ConfigError` for any problem, naming key, value and source.
    """
    cfg: DictConfig = OmegaConf.structured(Config)
    sources: dict[str, str] = {}
    if path_or_name is not None:
        path = find_config(path_or_name)
        try:
            raw = OmegaConf.load(path)
        except Exception as exc:  # yaml syntax errors and the like
            raise ConfigError(f"config file {path}: cannot parse: {exc}") from None
        if not isinstance(raw, DictConfig):
            raise ConfigError(f"config file {path}: expected a mapping of sections, got {type(raw).__name__}")
        cfg = _merge(cfg, raw, f"config file {path}")
        _record_sources(raw, str(path), sources)
        if not cfg.name:
            cfg.name = path.stem if path.parent.name in ("", "configs") else f"{path.parent.name}/{path.stem}"
    for text, ov in _parse_overrides(list(overrides or [])):
        cfg = _merge(cfg, ov, f"command-line override {text!r}")
        _record_sources(ov, f"command-line override {text!r}", sources)
    validate(cfg, sources)
    return cfg


def _record_sources(node: Any, source: str, sources: dict[str, str], prefix: str = "") -> None:
    if isinstance(node, DictConfig):
        for k in node.keys():
            key = f"{prefix}{k}"
            sources[key] = source
            _record_sources(node._get_node(k), source, sources, key + ".")  # type: ignore[arg-type]


def config_to_yaml(cfg: DictConfig) -> str:
    """The full resolved config as YAML (what a run folder keeps)."""
    return OmegaConf.to_yaml(cfg, resolve=True)


def scaled_lr(cfg: DictConfig) -> float:
    """The optimiser's learning rate: ``optim.lr`` (per 256 images) scaled to ``optim.batch_size``."""
    o = cfg.optim
    if o.lr_scaling == "linear":
        return float(o.lr) * o.batch_size / 256.0
    if o.lr_scaling == "sqrt":
        return float(o.lr) * math.sqrt(o.batch_size / 256.0)
    return float(o.lr)


# --------------------------------------------------------------------------------------------- validation
class _Checker:
    def __init__(self, cfg: DictConfig, sources: dict[str, str]) -> None:
        self.cfg, self.sources = cfg, sources

    def where(self, key: str) -> str:
        return self.sources.get(key, "default value")

    def fail(self, key: str, msg: str) -> None:
        value = OmegaConf.select(self.cfg, key, default=None)
        if isinstance(value, DictConfig) or OmegaConf.is_list(value):
            value = OmegaConf.to_container(value)
        raise ConfigError(f"{key}={value!r} ({self.where(key)}): {msg}")

    def get(self, key: str) -> Any:
        return OmegaConf.select(self.cfg, key)

    def choice(self, key: str, options: tuple[str, ...] | list[str]) -> None:
        if self.get(key) not in options:
            self.fail(key, f"must be one of {', '.join(options)}")

    def number(self, key: str, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
               hi_open: bool = False, optional: bool = False) -> None:
        v = self.get(key)
        if v is None:
            if not optional:
                self.fail(key, "a value is required")
            return
        if not math.isfinite(float(v)):
            self.fail(key, "must be a finite number")
        if lo is not None and (v <= lo if lo_open else v < lo):
            self.fail(key, f"must be {'>' if lo_open else '>='} {lo}")
        if hi is not None and (v >= hi if hi_open else v > hi):
            self.fail(key, f"must be {'<' if hi_open else '<='} {hi}")

    def floats(self, key: str, n: int, *, positive: bool = False) -> list[float] | None:
        v = self.get(key)
        if v is None:
            return None
        vals = list(v)
        if len(vals) != n:
            self.fail(key, f"must be a list of {n} numbers")
        if not all(math.isfinite(x) for x in vals):
            self.fail(key, "must hold finite numbers")
        if positive and any(x <= 0 for x in vals):
            self.fail(key, "must hold positive numbers")
        return vals


def _dataset_names() -> tuple[str, ...]:
    try:
        from jointaug.data import datasets as ds_mod
    except ImportError:
        return _FALLBACK_DATASETS
    for attr in ("dataset_names", "DATASETS", "DATASET_NAMES", "NAMES"):
        obj = getattr(ds_mod, attr, None)
        if callable(obj):
            try:
                return tuple(obj())
            except TypeError:
                continue
        if isinstance(obj, (dict, list, tuple, set, frozenset)):
            names = tuple(obj)
            aliases = getattr(ds_mod, "ALIASES", None) or getattr(ds_mod, "DATASET_ALIASES", None) or {}
            return names + tuple(aliases)
    return _FALLBACK_DATASETS


def _check_multicrop(c: _Checker, cfg: DictConfig) -> int:
    """Check the multi-crop keys (aug.n_local, local_size, local_scale, joint_pairs); returns the local view count."""
    from jointaug.sampling.recipes import JOINT_PAIR_MODES, LOCAL_SCALE, RECIPE_ALIASES, RECIPES

    a = cfg.aug
    c.number("aug.n_local", lo=0, optional=True)
    c.number("aug.local_size", lo=1, optional=True)
    local_scale = c.floats("aug.local_scale", 2)
    if local_scale is not None and not (0 < local_scale[0] <= local_scale[1] <= 1):
        c.fail("aug.local_scale", "must be [min, max] with 0 < min <= max <= 1")
    c.choice("aug.joint_pairs", JOINT_PAIR_MODES)
    recipe = RECIPES[RECIPE_ALIASES.get(a.recipe, a.recipe)]
    n_loc = int(a.n_local) if a.n_local is not None else int(recipe.get("n_local", 0))
    if n_loc and a.crop not in ("random", "joint"):
        c.fail("aug.n_local" if a.n_local is not None else "aug.crop",
               f"local views (multi-crop, {n_loc}) need aug.crop=random|joint; fixed-size crops (aug.crop={a.crop!r}) "
               "have no multi-crop")
    if not n_loc:
        for key in ("aug.local_size", "aug.local_scale"):
            if c.get(key) is not None:
                c.fail(key, "applies to local views, but the policy has none (set aug.n_local)")
    mode = a.joint_pairs
    if mode in ("local", "both") and (n_loc < 2 or n_loc % 2):
        c.fail("aug.n_local" if a.n_local is not None else "aug.joint_pairs",
               f"aug.joint_pairs={mode!r} couples pairs of local views: needs an even number >= 2 of local views "
               f"(the policy has {n_loc})")
    if mode == "cross":
        if n_loc < 2:
            c.fail("aug.n_local" if a.n_local is not None else "aug.joint_pairs",
                   f"aug.joint_pairs='cross' couples each global view with a local view: needs >= 2 local views "
                   f"(the policy has {n_loc})")
        g_scale = tuple(a.scale) if a.scale is not None else tuple(recipe["scale"])
        l_scale = tuple(local_scale) if local_scale is not None else tuple(recipe.get("local_scale", LOCAL_SCALE))
        if a.crop == "joint" and g_scale != l_scale:
            c.fail("aug.joint_pairs", f"'cross' with aug.crop=joint needs one crop area range for the global and "
                                      f"local views (J-Crop's law), got {list(g_scale)} vs {list(l_scale)}: set "
                                      "aug.local_scale to aug.scale, or couple blur/colour only")
    joint = a.crop in ("joint", "mgcc", "mcgcc") or a.blur == "joint" or a.color == "joint"
    if mode != "global" and not joint:
        c.fail("aug.joint_pairs", "has no effect: no joint law is on (aug.crop, aug.blur and aug.color are not joint)")
    return n_loc


def _check_ccrop(c: _Checker, cfg: DictConfig) -> None:
    """Check the ContrastiveCrop keys (aug.ccrop*); the backbone must have a spatial feature map."""
    c.number("aug.ccrop_warmup_epochs", lo=0)
    c.number("aug.ccrop_every", lo=1)
    c.number("aug.ccrop_threshold", lo=0, hi=1, hi_open=True)
    c.number("aug.ccrop_alpha", lo=0, lo_open=True)
    if not cfg.aug.ccrop:
        return
    if cfg.aug.crop not in ("random", "joint"):
        c.fail("aug.crop", "aug.ccrop=true (ContrastiveCrop) places resized crops: needs aug.crop=random or joint")
    if int(cfg.aug.ccrop_warmup_epochs) >= int(cfg.optim.epochs):
        c.fail("aug.ccrop_warmup_epochs", f"aug.ccrop=true but the warm-up lasts the whole run "
                                          f"(optim.epochs={cfg.optim.epochs}): no crop would use the boxes")
    prefix = str(cfg.model.backbone).partition(":")[0]
    if prefix in ("timm", "torchvision"):
        c.fail("model.backbone", "aug.ccrop=true needs a backbone with a spatial feature map (forward_maps) for "
                                 "its heat maps; timm/torchvision wrappers have none (use resnet18/34/50, convnet4)")


def validate(cfg: DictConfig, sources: dict[str, str] | None = None) -> None:
    """Check every value of ``cfg`` (types are enforced by the schema; this checks meanings)."""
    c = _Checker(cfg, sources or {})
    # data
    names = _dataset_names()
    if cfg.data.name not in names:
        c.fail("data.name", f"unknown data set; choose from {', '.join(names)}")
    root = cfg.data.root
    if root is None:
        if cfg.data.name not in _NO_ROOT and not cfg.data.download:
            c.fail("data.root", f"data set {cfg.data.name!r} needs data.root (a folder or archive) or "
                                "data.download=true")
    elif not Path(os.path.expanduser(root)).exists() and not cfg.data.download:
        c.fail("data.root", "no such file or directory")
    c.number("data.size", lo=MIN_IMAGE_SIZE, hi=MAX_IMAGE_SIZE, optional=True)
    c.number("data.limit", lo=1, optional=True)
    c.number("data.test_limit", lo=1, optional=True)
    c.number("data.num_workers", lo=0)
    c.choice("data.on_error", ("raise", "skip"))
    c.number("data.max_resolution", lo=MIN_IMAGE_SIZE, hi=MAX_IMAGE_SIZE, optional=True)
    if cfg.data.max_resolution is not None:
        if cfg.data.name not in _FOLDER_SETS:
            c.fail("data.max_resolution", f"applies to image-folder sets ({', '.join(_FOLDER_SETS)}), "
                                          f"not {cfg.data.name!r}")
        if cfg.data.size is not None:
            c.fail("data.max_resolution", f"give data.size (square images, {cfg.data.size} px) or "
                                          "data.max_resolution (bounded shorter side), not both")
    c.floats("data.mean", 3)
    c.floats("data.std", 3, positive=True)
    if (cfg.data.mean is None) != (cfg.data.std is None):
        c.fail("data.mean", "give both data.mean and data.std, or neither")
    # model
    from jointaug.models import BACKBONES

    bb = cfg.model.backbone
    prefix, _, rest = bb.partition(":")
    if bb not in BACKBONES and not (prefix in ("timm", "torchvision") and rest):
        c.fail("model.backbone", f"unknown backbone; choose from {', '.join(BACKBONES)}, timm:<name>, "
                                 "torchvision:<name>")
    # method
    from jointaug.methods import METHODS, method_hyperparameters

    if cfg.method.name not in METHODS:
        c.fail("method.name", f"unknown method; choose from {', '.join(sorted(METHODS))}")
    accepted = method_hyperparameters(cfg.method.name)
    for k in cfg.method.params:
        if k not in accepted:
            c.fail(f"method.params.{k}", f"unknown hyperparameter of {cfg.method.name!r}; accepted: "
                                         f"{', '.join(accepted)}")
        why = _param_type_error(cfg.method.params[k], accepted[k])
        if why:
            c.fail(f"method.params.{k}", f"{why} (the default of {cfg.method.name!r} is {accepted[k]!r})")
    # aug
    from jointaug.sampling.recipes import RECIPE_ALIASES, recipe_names

    if cfg.aug.recipe not in recipe_names() and cfg.aug.recipe not in RECIPE_ALIASES:
        c.fail("aug.recipe", f"unknown recipe; choose from {', '.join(recipe_names())}")
    from jointaug.sampling.recipes import CROP_CHOICES

    c.choice("aug.crop", CROP_CHOICES)
    for k in ("blur", "color"):
        c.choice(f"aug.{k}", ("random", "joint"))
    c.number("aug.crop_size", lo=0, lo_open=True, hi=1)
    c.number("aug.alpha", lo=0, lo_open=True)
    gcc_range = c.floats("aug.gcc_range", 2)
    if gcc_range is not None and not 0 <= gcc_range[0] <= gcc_range[1] <= 1:
        c.fail("aug.gcc_range", "must be [a, b] with 0 <= a <= b <= 1")
    c.choice("aug.pad", ("even", "side"))
    c.number("aug.rotate_p", lo=0, hi=1)
    c.number("aug.beta")
    c.number("aug.blur_beta", optional=True)
    c.number("aug.color_beta", optional=True)
    c.number("aug.size", lo=MIN_IMAGE_SIZE, hi=MAX_IMAGE_SIZE, optional=True)
    scale = c.floats("aug.scale", 2)
    if scale is not None and not (0 < scale[0] <= scale[1] <= 1):
        c.fail("aug.scale", "must be [min, max] with 0 < min <= max <= 1")
    blur_p = c.floats("aug.blur_p", 2)
    if blur_p is not None and not all(0 <= p <= 1 for p in blur_p):
        c.fail("aug.blur_p", "must hold probabilities in [0, 1]")
    c.choice("aug.combine", ("coin", "both"))
    c.number("aug.coin_p", lo=0, hi=1, optional=True)
    if cfg.aug.coin_p is not None and not (cfg.aug.crop == "joint" and cfg.aug.blur == "joint"
                                           and cfg.aug.combine == "coin"):
        c.fail("aug.coin_p", "is the probability of J-Crop in the J-Crop-or-J-Blur coin: needs aug.crop=joint, "
                             "aug.blur=joint and aug.combine=coin")
    c.choice("aug.bound", ("paper", "code"))
    c.choice("aug.fallback", ("whole", "center"))
    c.choice("aug.mode", ("fast", "exact"))
    c.choice("aug.where", ("main", "workers", "batches"))
    _check_multicrop(c, cfg)
    _check_ccrop(c, cfg)
    from jointaug.methods import METHODS as _M

    params = {**method_hyperparameters(cfg.method.name), **OmegaConf.to_container(cfg.method.params)}
    # the method's own checks first (its values may shape the policy: LooC's augmentations), then the views
    for key, msg in _M[cfg.method.name].config_errors(params, batch_size=int(cfg.optim.batch_size), num_views=None):
        c.fail(f"method.params.{key}", f"{msg} (got {params.get(key)!r})")
    try:
        policy = build_policy(cfg)
    except ValueError as exc:
        c.fail("aug", f"cannot build the view policy: {exc}")
    else:
        why = _M[cfg.method.name].views_error(policy.num_views)
        if why:
            c.fail("aug.n_local" if cfg.aug.n_local else "aug.recipe",
                   f"gives {policy.num_views} views but method {cfg.method.name!r} {why}")
        for key, msg in _M[cfg.method.name].config_errors(params, batch_size=int(cfg.optim.batch_size),
                                                           num_views=policy.num_views):
            c.fail(f"method.params.{key}", f"{msg} (got {params.get(key)!r})")
    _check_adaptive(c, cfg)
    # optim
    c.choice("optim.name", ("sgd", "lars", "adamw"))
    c.number("optim.lr", lo=0, lo_open=True)
    c.choice("optim.lr_scaling", ("linear", "sqrt", "none"))
    c.number("optim.momentum", lo=0, hi=1, hi_open=True)
    c.number("optim.weight_decay", lo=0)
    betas = c.floats("optim.betas", 2)
    if betas is not None and not all(0 <= b < 1 for b in betas):
        c.fail("optim.betas", "must hold two numbers in [0, 1)")
    c.number("optim.lars_eta", lo=0, lo_open=True)
    c.number("optim.warmup_epochs", lo=0)
    c.choice("optim.schedule", ("cosine", "constant"))
    c.number("optim.min_lr_ratio", lo=0, hi=1)
    c.number("optim.batch_size", lo=2)
    c.number("optim.epochs", lo=1)
    c.number("optim.grad_clip", lo=0, lo_open=True, optional=True)
    # train
    c.number("train.seed", lo=0, hi=MAX_SEED)
    dev = cfg.train.device
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        c.fail("train.device", "must be auto, cpu, cuda or cuda:N")
    c.choice("train.precision", ("bf16", "fp16"))
    c.choice("train.dtype", ("float32", "float64"))
    c.number("train.log_every", lo=1)
    c.number("train.ckpt_every", lo=1)
    c.number("train.keep_checkpoints", lo=1)
    if not str(cfg.train.out_dir).strip():
        c.fail("train.out_dir", "must name a directory")
    c.number("train.max_steps", lo=1, optional=True)
    c.number("train.knn_every", lo=0)
    c.number("train.threads", lo=1, optional=True)
    c.number("train.debug_step_delay", lo=0)
    # eval
    c.number("eval.knn_k", lo=1)
    c.number("eval.knn_t", lo=0, lo_open=True)
    c.number("eval.knn_train_limit", lo=1, optional=True)
    c.number("eval.batch_size", lo=1)
    c.choice("eval.linear_protocol", ("fast", "augmented"))
    c.number("eval.linear_epochs", lo=1)
    c.number("eval.linear_lr", lo=0, lo_open=True)
    c.number("eval.linear_batch_size", lo=1)
    c.number("eval.linear_weight_decay", lo=0)


def build_policy(cfg: DictConfig, values: Mapping[str, float] | None = None):
    """The :class:`~jointaug.sampling.ViewPolicy` of ``cfg.aug``; ``values``: schedulable keys
    (:data:`SCHEDULABLE`, e.g. ``{"beta": 1.5, "scale.0": 0.3}``) overriding the config's values."""
    from jointaug.sampling import make_policy

    kw = policy_kwargs(cfg)
    if values:
        kw = with_aug_values(kw, values)
    return make_policy(**kw)


def policy_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """The :func:`~jointaug.sampling.make_policy` keywords (``recipe`` included) of ``cfg.aug``: computed once,
    so a schedule can rebuild the policy per step without re-reading the config."""
    a = cfg.aug
    extra: dict[str, Any] = {}
    from jointaug.methods import METHODS, method_hyperparameters

    if cfg.method.name in METHODS:  # views a method needs (LooC's leave-one-out keys); aug.* values win
        params = {**method_hyperparameters(cfg.method.name), **OmegaConf.to_container(cfg.method.params)}
        extra = METHODS[cfg.method.name].policy_options(params)
        if float(a.rotate_p) != 0.0:
            extra.pop("rotate_p", None)
    rotate_p = extra.pop("rotate_p", float(a.rotate_p))
    coin_p = a.get("coin_p")  # older stored configs lack the key
    return dict(
        recipe=a.recipe, **extra, crop=a.crop, blur=a.blur, color=a.color, beta=float(a.beta),
        blur_beta=None if a.blur_beta is None else float(a.blur_beta),
        color_beta=None if a.color_beta is None else float(a.color_beta),
        size=None if a.size is None else int(a.size),
        scale=None if a.scale is None else tuple(float(x) for x in a.scale),
        blur_p=None if a.blur_p is None else tuple(float(x) for x in a.blur_p),
        combine=a.combine, coin_p=None if coin_p is None else float(coin_p), bound=a.bound, fallback=a.fallback,
        n_local=None if a.n_local is None else int(a.n_local),
        local_size=None if a.local_size is None else int(a.local_size),
        local_scale=None if a.local_scale is None else tuple(float(x) for x in a.local_scale),
        joint_views=a.joint_pairs,
        crop_size=float(a.crop_size), alpha=float(a.alpha), gcc_range=tuple(float(x) for x in a.gcc_range),
        pad=a.pad, rotate_p=rotate_p,
        centre="region_beta" if a.ccrop else "uniform", region_alpha=float(a.ccrop_alpha),
    )


# --------------------------------------------------------------------------------------------- schedules
#: numeric aug keys ``aug.schedule`` may move: name -> (AugConfig field, index in a two-number list or None)
SCHEDULABLE: dict[str, tuple[str, int | None]] = {
    "beta": ("beta", None), "blur_beta": ("blur_beta", None), "color_beta": ("color_beta", None),
    "crop_size": ("crop_size", None), "alpha": ("alpha", None), "rotate_p": ("rotate_p", None),
    "coin_p": ("coin_p", None), "scale.0": ("scale", 0), "scale.1": ("scale", 1),
    "blur_p.0": ("blur_p", 0), "blur_p.1": ("blur_p", 1),
}
#: ``aug.controller`` keys and their defaults (``target`` is required)
CONTROLLER_DEFAULTS: dict[str, float] = {"gain": 16.0, "every": 10, "smoothing": 0.05, "beta_min": -4.0,
                                         "beta_max": 4.0, "max_change": 0.25}


def with_aug_values(kwargs: dict[str, Any], values: Mapping[str, float]) -> dict[str, Any]:
    """:func:`policy_kwargs` with the schedulable ``values`` in force (``scale.0`` replaces the lower crop area
    bound of ``aug.scale``, or of the recipe's range when ``aug.scale`` is unset)."""
    from jointaug.sampling.recipes import RECIPE_ALIASES, RECIPES

    out = dict(kwargs)
    recipe = RECIPES[RECIPE_ALIASES.get(out["recipe"], out["recipe"])]
    for key, value in values.items():
        name, index = SCHEDULABLE[key]
        if index is None:
            out[name] = float(value)
            continue
        pair = list(out[name] if out.get(name) is not None else recipe[name])
        pair[index] = float(value)
        out[name] = tuple(pair)
    return out


def aug_schedules(cfg: DictConfig) -> dict[str, Any]:
    """``aug.schedule`` parsed: schedulable key -> :class:`~jointaug.sampling.schedules.Schedule`. Accepts
    ``scale.0`` as one key or nested (``aug.schedule.scale.0=...`` on the command line). Raises
    :class:`ConfigError` naming ``aug.schedule.<key>`` for an unknown key or a bad spec."""
    from collections.abc import Mapping as _Map

    from jointaug.sampling.schedules import ScheduleError, parse_schedule

    raw = cfg.aug.get("schedule") if "schedule" in cfg.aug else None
    if raw is None:
        return {}
    raw = OmegaConf.to_container(raw) if isinstance(raw, DictConfig) else dict(raw)
    flat: dict[str, Any] = {}
    for k, v in raw.items():
        k = str(k)
        if k in ("scale", "blur_p") and isinstance(v, _Map) and "kind" not in v:
            for i, spec in v.items():
                flat[f"{k}.{i}"] = spec
        else:
            flat[k] = v
    out = {}
    for key, spec in flat.items():
        if key not in SCHEDULABLE:
            raise ConfigError(f"aug.schedule.{key}={spec!r}: unknown schedulable key; choose from "
                              f"{', '.join(SCHEDULABLE)}")
        try:
            out[key] = parse_schedule(spec, f"aug.schedule.{key}")
        except ScheduleError as exc:
            raise ConfigError(f"{exc} (value {spec!r})") from None
    return out


def controller_settings(cfg: DictConfig) -> dict[str, Any] | None:
    """``aug.controller`` with defaults filled in and ``target`` parsed (a number or a Schedule); None when off.
    Raises :class:`ConfigError` naming ``aug.controller.<key>``."""
    from jointaug.sampling.schedules import ScheduleError, parse_schedule

    raw = cfg.aug.get("controller") if "controller" in cfg.aug else None
    if raw is None:
        return None
    raw = OmegaConf.to_container(raw) if isinstance(raw, DictConfig) else dict(raw)
    unknown = sorted(set(raw) - set(CONTROLLER_DEFAULTS) - {"target"})
    if unknown:
        raise ConfigError(f"aug.controller.{unknown[0]}={raw[unknown[0]]!r}: unknown key; accepted: target, "
                          f"{', '.join(CONTROLLER_DEFAULTS)}")
    if "target" not in raw:
        raise ConfigError(f"aug.controller={raw!r}: needs a target (the SDF to hold: a number or a schedule spec)")
    out: dict[str, Any] = dict(CONTROLLER_DEFAULTS)
    for k, v in raw.items():
        if k == "target":
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            raise ConfigError(f"aug.controller.{k}={v!r}: must be a finite number")
        out[k] = float(v)
    try:
        target = parse_schedule(raw["target"], "aug.controller.target")
    except ScheduleError as exc:
        raise ConfigError(f"{exc} (value {raw['target']!r})") from None
    if not all(-1.0 <= v <= 1.0 for _, v in target.points):
        raise ConfigError(f"aug.controller.target={raw['target']!r}: the target SDF is a mean cosine similarity, "
                          "so it must lie in [-1, 1]")
    out["target"] = target.points[0][1] if target.is_constant else target
    checks = {"gain": out["gain"] > 0, "every": out["every"] >= 1 and float(out["every"]).is_integer(),
              "smoothing": 0 < out["smoothing"] <= 1, "max_change": out["max_change"] > 0,
              "beta_max": out["beta_max"] > out["beta_min"]}
    why = {"gain": "must be > 0", "every": "must be an integer >= 1 (steps between beta updates)",
           "smoothing": "must be in (0, 1] (weight of a new batch in the running mean)",
           "max_change": "must be > 0", "beta_max": f"must be > aug.controller.beta_min={out['beta_min']!r}"}
    for k, ok in checks.items():
        if not ok:
            raise ConfigError(f"aug.controller.{k}={out[k]!r}: {why[k]}")
    out["every"] = int(out["every"])
    return out


_BOUNDS: dict[str, tuple[float | None, float | None, bool, str]] = {  # (lo, hi, lo_open, wording)
    "crop_size": (0.0, 1.0, True, "in (0, 1]"), "alpha": (0.0, None, True, "> 0"),
    "rotate_p": (0.0, 1.0, False, "in [0, 1]"), "coin_p": (0.0, 1.0, False, "in [0, 1]"),
    "scale.0": (0.0, 1.0, True, "in (0, 1]"), "scale.1": (0.0, 1.0, True, "in (0, 1]"),
    "blur_p.0": (0.0, 1.0, False, "in [0, 1]"), "blur_p.1": (0.0, 1.0, False, "in [0, 1]"),
}


def _check_adaptive(c: _Checker, cfg: DictConfig) -> None:
    """Check ``aug.schedule`` and ``aug.controller``: keys, specs, the values over the whole run, what the
    keys apply to, and where they can run (main-process data paths, no ContrastiveCrop)."""
    try:
        schedules = aug_schedules(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{exc} ({c.where('aug.schedule')})") from None
    try:
        ctrl = controller_settings(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{exc} ({c.where('aug.controller')})") from None
    if not schedules and ctrl is None:
        return
    a = cfg.aug
    what = "aug.schedule" if schedules else "aug.controller"
    if a.where != "main":
        c.fail("aug.where", f"{what} rebuilds the view policy as training goes, which the main-process data "
                            "paths do; use aug.where=main (views rendered in the training process)")
    if a.ccrop:
        c.fail("aug.ccrop", f"{what} with ContrastiveCrop is not supported (its region-centred twin policies are "
                            "built once); turn one of them off")
    fixed = a.crop not in ("random", "joint")
    uses_beta = a.crop == "joint" or (a.blur == "joint" and a.blur_beta is None) or (
        a.color == "joint" and a.color_beta is None)
    applies = {
        "beta": (uses_beta, "a joint law that uses aug.beta (aug.crop=joint, or aug.blur / aug.color = joint "
                 "without their own blur_beta / color_beta)"),
        "blur_beta": (a.blur == "joint", "aug.blur=joint"), "color_beta": (a.color == "joint", "aug.color=joint"),
        "crop_size": (fixed, "fixed-size crops (aug.crop=fixed|gcc|cgcc|mgcc|mcgcc)"),
        "alpha": (fixed and a.crop != "fixed", "the gcc family (aug.crop=gcc|cgcc|mgcc|mcgcc)"),
        "scale.0": (not fixed, "resized crops (aug.crop=random|joint)"),
        "scale.1": (not fixed, "resized crops (aug.crop=random|joint)"),
        "coin_p": (a.crop == "joint" and a.blur == "joint" and a.combine == "coin",
                   "the J-Crop-or-J-Blur coin (aug.crop=joint, aug.blur=joint, aug.combine=coin)"),
    }
    for key, sched in schedules.items():
        ok, needs = applies.get(key, (True, ""))
        if not ok:
            c.fail(f"aug.schedule.{key}", f"has no effect: it applies to {needs}")
        lo, hi, lo_open, wording = _BOUNDS.get(key, (None, None, False, ""))
        for _, v in sched.points:  # every schedule kind stays within the values of its points
            if (lo is not None and (v <= lo if lo_open else v < lo)) or (hi is not None and v > hi):
                c.fail(f"aug.schedule.{key}", f"reaches {v!r}; values of {key} must be {wording}")
    if ctrl is not None:
        if "beta" in schedules:
            c.fail("aug.controller", "and aug.schedule.beta both set aug.beta; use one of them")
        if not uses_beta:
            c.fail("aug.controller", "has no effect: it moves aug.beta, which no joint law of the policy uses "
                                     "(set aug.crop=joint, or aug.blur/color=joint without their own beta)")
        if not ctrl["beta_min"] <= float(a.beta) <= ctrl["beta_max"]:
            c.fail("aug.beta", f"the controller starts from aug.beta, which must lie in [aug.controller.beta_min, "
                               f"beta_max] = [{ctrl['beta_min']:g}, {ctrl['beta_max']:g}]")
        from jointaug.methods import METHODS, method_hyperparameters

        params = {**method_hyperparameters(cfg.method.name), **OmegaConf.to_container(cfg.method.params)}
        why = METHODS[cfg.method.name].online_pairs_error(params)
        if why:
            c.fail("aug.controller", f"needs the online SDF of views 0 and 1 through the backbone, but method "
                                     f"{cfg.method.name!r} {why}")
    # the values at every breakpoint of every schedule (and a fine grid, for two bounds that must stay ordered)
    grid = sorted({p for s in schedules.values() for p, _ in s.points} | {0.0, 1.0})
    scale_keys = [k for k in ("scale.0", "scale.1") if k in schedules]
    if scale_keys:
        base = policy_kwargs(cfg)
        for p in sorted(set(grid) | {i / 1000 for i in range(1001)}):
            lo_hi = with_aug_values(base, {k: schedules[k](p) for k in scale_keys})["scale"]
            if lo_hi[0] > lo_hi[1]:
                c.fail(f"aug.schedule.{scale_keys[0]}", f"at progress {p:g} the crop area range would be "
                                                         f"{list(lo_hi)}: min must stay <= max")
    for p in grid:
        values = {k: s(p) for k, s in schedules.items()}
        try:
            build_policy(cfg, values)
        except ValueError as exc:
            c.fail(f"aug.schedule.{next(iter(values))}" if values else "aug", f"at progress {p:g} the values "
                   f"{values} give no valid view policy: {exc}")
