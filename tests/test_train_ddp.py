"""Trainer-level DDP: 2 processes (torchrun, gloo, CPU) train to the same weights as 1 process on the
same global batch; sharding and seeding make the global batch identical; only rank 0 writes files."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from ddp_helpers import assert_states_match, train_one_process, train_two_processes

from jointaug.train.logger import read_metrics

CACHE = Path(tempfile.gettempdir()) / "jointaug-test-cache"


def _overrides(out: Path) -> list[str]:
    return [
        "data.limit=256", "data.test_limit=200", f"data.cache_dir={CACHE}", "model.backbone=convnet4",
        "model.backbone_kwargs.width=8", "method.params.proj_hidden_dim=64", "method.params.proj_out_dim=32",
        "optim.batch_size=32", "optim.epochs=1", "optim.warmup_epochs=0", "optim.lr=1.0", "optim.name=lars",
        "train.max_steps=3", "train.knn_every=0", "train.log_every=1", "train.tensorboard=false",
        "train.progress=false", "train.threads=1", "eval.final=false", f"train.out_dir={out}",
        "train.dtype=float64",
    ]


def test_two_process_gloo_matches_one_process(tmp_path: Path) -> None:
    ddp_dir, one_dir = tmp_path / "ddp", tmp_path / "one"
    train_two_processes("simclr/synthetic", _overrides(ddp_dir))
    train_one_process("simclr/synthetic", _overrides(one_dir))

    a = torch.load(ddp_dir / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(one_dir / "checkpoints" / "last.pt", weights_only=True)
    assert a["world_size"] == 2 and b["world_size"] == 1
    assert a["global_step"] == b["global_step"] == 3
    assert_states_match(a["model"], b["model"])  # float64 runs, tolerance: see tests/ddp_helpers.py
    # logged losses agree (each is the mean over the global batch)
    la = [r["loss"] for r in read_metrics(ddp_dir / "metrics.jsonl") if r["type"] == "step"]
    lb = [r["loss"] for r in read_metrics(one_dir / "metrics.jsonl") if r["type"] == "step"]
    assert len(la) == len(lb) == 3  # rank 0 alone writes the log: no duplicated records
    # logged losses are float32 scalars (the mean of 2 rank losses vs one): a few float32 ulps
    log_tol = 4 * torch.finfo(torch.float32).eps
    assert all(abs(x - y) <= log_tol * abs(y) for x, y in zip(la, lb)), (la, lb)
    # the online SDF (views 0 and 1 through the backbone, issue 13) is the global batch's on every world size
    sa = [r["sdf_online"] for r in read_metrics(ddp_dir / "metrics.jsonl") if r["type"] == "step"]
    sb = [r["sdf_online"] for r in read_metrics(one_dir / "metrics.jsonl") if r["type"] == "step"]
    assert len(sa) == 3 and all(abs(x - y) <= 1e-9 for x, y in zip(sa, sb)), (sa, sb)
    start = [r for r in read_metrics(ddp_dir / "metrics.jsonl") if r["type"] == "event"][0]
    assert start["world_size"] == 2
    assert sorted(p.name for p in (ddp_dir / "checkpoints").iterdir()) == ["last.pt"]
