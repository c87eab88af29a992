"""Training: the trainer (single process or DDP under torchrun), optimisers, checkpoints, the main job.

``jointaug.train.trainer.train(cfg)`` trains a validated config (``jointaug.config.load_config``);
``jointaug train`` and ``jointaug run`` are the command-line entry points (``cli`` and ``main_job``).
Submodules are imported on use, so ``import jointaug.train`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["NonFiniteLossError", "Trainer", "train"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("jointaug.train.trainer"), name)
    raise AttributeError(f"module 'jointaug.train' has no attribute {name!r}")
