"""Shared by the trainer tests: the decoded-data cache folder and the overrides of a tiny CPU run."""

from __future__ import annotations

import tempfile
from pathlib import Path

CACHE = Path(tempfile.gettempdir()) / "jointaug-test-cache"


def tiny(out_dir: Path, *extra: str) -> list[str]:
    """Overrides for a tiny CPU run: ConvNet-4 width 8, 256 synthetic images, batch 64 (4 steps/epoch),
    2 epochs; ``extra`` overrides come last and win."""
    return [
        "data.name=synthetic", "data.limit=256", "data.test_limit=200", f"data.cache_dir={CACHE}",
        "data.num_workers=0", "model.backbone=convnet4", "model.backbone_kwargs.width=8",
        "method.params.proj_hidden_dim=64", "method.params.proj_out_dim=32", "aug.recipe=small", "aug.size=32",
        "optim.batch_size=64", "optim.epochs=2", "optim.warmup_epochs=0.5", "optim.lr=0.5",
        "train.tensorboard=false", "train.log_every=1", "eval.linear_epochs=5", f"train.out_dir={out_dir}",
        "train.progress=false", *extra,
    ]
