"""The trainer end to end on tiny runs (CPU), its data paths, optimisers, schedule, checkpoints and faults."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from train_helpers import tiny

from jointaug.config import load_config
from jointaug.methods import METHODS, SimCLR, register_method
from jointaug.train.checkpoint import get_rng_state, load_checkpoint, save_checkpoint, set_rng_state
from jointaug.train.data import InMemoryViews, ShardedBatchSampler, derive_seed, epoch_permutation
from jointaug.train.logger import read_metrics
from jointaug.train.optim import LARS, build_scheduler, lr_factor
from jointaug.train.trainer import NonFiniteLossError, train


def test_tiny_run_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = load_config(None, tiny(out, "train.knn_every=1", "train.tensorboard=true"))
    summary = train(cfg)
    # outputs
    for f in ("config.yaml", "metrics.jsonl", "summary.json", "backbone.pt", "checkpoints/last.pt"):
        assert (out / f).is_file(), f
    assert (out / "tb").is_dir() and any((out / "tb").iterdir())
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["steps"] == 8 and summary["epochs_done"] == 2
    assert 0 <= summary["knn_top1"] <= 100 and 0 <= summary["linear_top1"] <= 100
    assert 0 < summary["data_wait"] < 1 and summary["images_per_s"] > 0
    assert [e for e, _ in summary["knn_history"]] == [1, 2]
    # checkpoint: weights_only loadable, complete
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    for key in ("model", "optimizer", "scheduler", "scaler", "rng", "aug_generator", "epoch", "global_step",
                "config"):
        assert key in state, key
    assert state["epoch"] == 2 and state["global_step"] == 8 and state["step_in_epoch"] == 0
    assert state["config"]["model"]["backbone"] == "convnet4"
    assert state["scheduler"]["last_epoch"] == 8
    # the eval package can rebuild the backbone from it
    from jointaug.eval.checkpoint import load_backbone

    backbone, saved = load_backbone(out / "checkpoints" / "last.pt")
    assert isinstance(backbone, torch.nn.Module) and saved["model"]["backbone_kwargs"] == {"width": 8}
    # logs
    recs = read_metrics(out / "metrics.jsonl")
    steps = [r for r in recs if r["type"] == "step"]
    epochs = [r for r in recs if r["type"] == "epoch"]
    assert [r["step"] for r in steps] == list(range(1, 9))
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert all(math.isfinite(r["loss"]) and "pos_sim" in r and 0 <= r["data_wait"] <= 1 for r in steps)
    assert steps[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine reaches 0 at the last step
    assert epochs[0]["knn_top1"] == pytest.approx(summary["knn_history"][0][1])
    assert recs[0]["type"] == "event" and recs[0]["event"] == "start"
    assert recs[-1]["type"] == "eval"


def test_rerun_of_finished_run_resumes_without_training(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = load_config(None, tiny(out, "optim.epochs=1", "eval.linear=false"))
    first = train(cfg)
    again = train(cfg)
    assert again["steps"] == first["steps"] == 4
    assert again["knn_top1"] == first["knn_top1"]
    assert [r["event"] for r in read_metrics(out / "metrics.jsonl") if r["type"] == "event"] == ["start", "resume"]
    changed = load_config(None, tiny(out, "optim.epochs=1", "optim.lr=0.1"))
    with pytest.raises(ValueError, match="optim.lr"):
        train(changed)


def test_max_steps_stops_mid_epoch_and_resumes_there(tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(load_config(None, tiny(out, "train.max_steps=3", "eval.final=false")))
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (0, 3, 3)
    summary = train(load_config(None, tiny(out, "train.max_steps=6", "eval.final=false")))
    assert summary["steps"] == 6
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl") if r["type"] == "step"] == [1, 2, 3, 4, 5, 6]


class _NaNAfter(SimCLR):
    """Test-only method: SimCLR whose loss becomes NaN from its ``nan_at``-th training step on."""

    def __init__(self, backbone, nan_at: int = 6, proj_hidden_dim: int = 64, proj_out_dim: int = 32,
                 temperature: float = 0.5) -> None:
        super().__init__(backbone, proj_hidden_dim=proj_hidden_dim, proj_out_dim=proj_out_dim, temperature=temperature)
        self.nan_at, self.calls = nan_at, 0

    def forward(self, views):
        out = super().forward(views)
        self.calls += 1
        if self.calls >= self.nan_at:
            out["loss"] = out["loss"] * float("nan")
        return out


if "test_nan_after" not in METHODS:
    register_method("test_nan_after")(_NaNAfter)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    overrides = tiny(out, "optim.epochs=3", "method.name=test_nan_after", "method.params.nan_at=6")
    cfg = load_config(None, overrides)
    with pytest.raises(NonFiniteLossError) as info:
        train(cfg)
    exc = info.value
    assert exc.step == 6 and exc.epoch == 2 and math.isnan(exc.loss)
    assert "step 6" in str(exc) and "nan" in str(exc) and str(out / "checkpoints" / "last.pt") in str(exc)
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["global_step"] == 4 and state["epoch"] == 1  # the end of epoch 1: the last good state
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    events = [r for r in read_metrics(out / "metrics.jsonl") if r["type"] == "event"]
    assert events[-1]["event"] == "non_finite_loss" and events[-1]["step"] == 6
    assert not (out / "summary.json").exists()
    # through the command line: exit code 3 and one clear message
    from jointaug.cli import main as cli_main

    out2 = tmp_path / "cli"
    rc = cli_main(["train", "simclr/synthetic", *tiny(out2, "optim.epochs=3", "method.name=test_nan_after",
                                                      "method.params.nan_at=2")])
    assert rc == 3
    err = capsys.readouterr().err
    assert "loss is nan at step 2 (epoch 1)" in err and "no checkpoint had been written yet" in err


def test_cli_reports_config_errors(capsys, tmp_path: Path) -> None:
    from jointaug.cli import main as cli_main

    assert cli_main(["train", "simclr/synthetic", "optim.lr=-1"]) == 2
    assert "optim.lr=-1.0" in capsys.readouterr().err
    assert cli_main(["train", "--print-config", "simclr/synthetic", f"train.out_dir={tmp_path}"]) == 0
    assert "batch_size: 256" in capsys.readouterr().out


def test_worker_path_runs(tmp_path: Path) -> None:
    cfg = load_config(None, tiny(tmp_path / "w", "aug.where=workers", "train.max_steps=2", "eval.final=false"))
    summary = train(cfg)
    assert summary["steps"] == 2 and "workers" in summary["data_path"]


def _write_folder(root: Path, n_per_class: int = 24) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", n_per_class), ("test", 8)):
        for c in ("a", "b"):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                h, w = int(rng.integers(24, 48)), int(rng.integers(24, 48))
                arr = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
                if c == "a":
                    arr[: h // 2] //= 4
                Image.fromarray(arr).save(d / f"{i}.png")


def test_variable_size_folder_uses_loader_path(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _write_folder(root)
    cfg = load_config(None, tiny(tmp_path / "f", "data.name=folder", f"data.root={root}", "data.limit=null",
                                 "data.test_limit=null", "optim.batch_size=16", "optim.epochs=1",
                                 "data.num_workers=1"))
    summary = train(cfg)
    assert "DataLoader" in summary["data_path"]
    assert summary["steps"] == 3  # 48 images // 16
    assert summary["eval_test_images"] == 16 and 0 <= summary["knn_top1"] <= 100


def test_batch_larger_than_data_is_a_clear_error(tmp_path: Path) -> None:
    cfg = load_config(None, tiny(tmp_path / "x", "optim.batch_size=512"))
    with pytest.raises(ValueError, match="larger than the training set"):
        train(cfg)


# ------------------------------------------------------------------------------------------- units
def test_sharding_covers_the_global_batch() -> None:
    one = ShardedBatchSampler(100, 20, 0, 1, seed=3)
    two = [ShardedBatchSampler(100, 20, r, 2, seed=3) for r in range(2)]
    for s in (one, *two):
        s.set_epoch(4)
    b1 = list(one)
    b2 = [list(s) for s in two]
    assert len(b1) == 5 and all(len(b) == 10 for b in b2[0])
    for step in range(5):
        assert b2[0][step] + b2[1][step] == b1[step]
    assert sorted(i for b in b1 for i in b) == sorted(epoch_permutation(100, 3, 4)[:100].tolist())
    one.set_epoch(5)
    assert list(one) != b1  # each epoch reshuffles
    one.set_epoch(4, start_step=2)
    assert list(one) == b1[2:]
    assert derive_seed(0, "a", 1) != derive_seed(0, "a", 2) and derive_seed(1, "x") == derive_seed(1, "x")


def test_in_memory_views_do_not_depend_on_world_size() -> None:
    from jointaug.augment import BatchViews
    from jointaug.sampling import make_policy

    images = torch.randint(0, 256, (40, 3, 16, 16), dtype=torch.uint8)
    bv = BatchViews(make_policy("small", crop="joint", size=16), mean=None, std=None)
    common = dict(global_batch=8, seed=11, device=torch.device("cpu"))
    full = list(InMemoryViews(images, bv, rank=0, world=1, **common).epoch(2))
    parts = [list(InMemoryViews(images, bv, rank=r, world=2, **common).epoch(2)) for r in range(2)]
    assert len(full) == 5
    for step in range(5):
        for v in range(2):
            assert torch.equal(torch.cat([parts[0][step][v], parts[1][step][v]]), full[step][v])
    resumed = list(InMemoryViews(images, bv, rank=0, world=1, **common).epoch(2, start_step=3))
    assert all(torch.equal(a, b) for a, b in zip(resumed[0], full[3]))


def test_lars_trust_ratio_and_exclusion() -> None:
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    b = torch.nn.Parameter(torch.tensor([1.0]))
    opt = LARS([{"params": [w], "lars_exclude": False, "weight_decay": 0.1},
                {"params": [b], "lars_exclude": True, "weight_decay": 0.0}], lr=0.5, momentum=0.9, eta=0.02)
    w.grad = torch.tensor([0.6, -0.8])
    b.grad = torch.tensor([2.0])
    opt.step()
    g = torch.tensor([0.6, -0.8]) + 0.1 * torch.tensor([3.0, 4.0])
    trust = 0.02 * 5.0 / g.norm()
    assert torch.allclose(w.detach(), torch.tensor([3.0, 4.0]) - 0.5 * trust * g)
    assert torch.allclose(b.detach(), torch.tensor([0.0]))  # plain SGD: 1 - 0.5 * 2
    w.grad, b.grad = torch.tensor([0.0, 0.0]), torch.tensor([2.0])
    w_before = w.detach().clone()
    opt.step()  # momentum carries the first update; zero grad + decay still moves w
    assert not torch.equal(w.detach(), w_before)
    assert torch.allclose(b.detach(), torch.tensor([0.0 - 0.5 * (0.9 * 2.0 + 2.0)]))


def test_schedule_warmup_then_cosine() -> None:
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10) == pytest.approx(0.0)
    assert lr_factor(100, 100, 10, min_ratio=0.1) == pytest.approx(0.1)
    assert lr_factor(50, 100, 10, schedule="constant") == 1.0
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=2.0)
    sched = build_scheduler(opt, 100, 10)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2)
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(2.0)


def test_checkpoint_atomic_weights_only_and_rng_roundtrip(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = get_rng_state()
    expect = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    path = save_checkpoint(tmp_path / "c" / "x.pt", {"rng": state, "n": 3})
    assert [p.name for p in path.parent.iterdir()] == ["x.pt"]  # no temporary file left behind
    loaded = load_checkpoint(path)
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(loaded["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expect
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "torn.pt").write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="cannot be loaded"):
        load_checkpoint(tmp_path / "torn.pt")
