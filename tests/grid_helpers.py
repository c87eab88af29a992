"""Shared by the grid and report tests: a tiny grid file (a few steps on the synthetic set per cell)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml

CACHE = Path(tempfile.gettempdir()) / "jointaug-test-cache"

#: one cell: 64 training images, batch 32, 2 epochs (4 steps), kNN monitor each epoch, 2 probe epochs
TINY_FIXED: dict[str, Any] = {
    "data.limit": 64, "data.test_limit": 60, "data.cache_dir": str(CACHE), "data.num_workers": 0,
    "model.backbone_kwargs.width": 4, "method.params.proj_hidden_dim": 16, "method.params.proj_out_dim": 8,
    "optim.batch_size": 32, "optim.epochs": 2, "optim.warmup_epochs": 0, "train.knn_every": 1,
    "train.log_every": 1, "train.tensorboard": False, "train.threads": 1, "eval.linear_epochs": 2,
    "eval.knn_k": 10,
}


def write_grid(path: Path, axes: dict[str, list[Any]], **extra: Any) -> Path:
    """A grid YAML at ``path``: simclr/synthetic, the tiny fixed settings (plus ``fixed=``), these axes."""
    fixed = {**TINY_FIXED, **extra.pop("fixed", {})}
    doc = {"name": path.stem, "recipe": extra.pop("recipe", "simclr/synthetic"), "fixed": fixed, "axes": axes,
           **extra}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run_tiny_grid(folder: Path, axes: dict[str, list[Any]], **extra: Any) -> Path:
    """Write and run (in this process, sequentially) a tiny grid into ``folder/out``; returns that folder.

    The test process's torch thread count is restored afterwards (cells set ``train.threads``)."""
    import torch

    from jointaug.experiments.grid import expand, load_grid, run_grid, write_results

    f = write_grid(folder / "grid.yaml", axes, **extra)
    out = folder / "out"
    g = load_grid(f)
    cells = expand(g, out)
    n = torch.get_num_threads()
    try:
        failed = run_grid(cells, out, executor="sequential", log=lambda m: None)
    finally:
        torch.set_num_threads(n)
    assert failed == {}, failed
    (out / "grid.yaml").write_text(f.read_text())
    write_results(g, cells, out)
    return out
