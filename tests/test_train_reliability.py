"""Trainer faults (issue 9): corrupt newest checkpoint, non-finite weights, changed data, resumed log windows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from train_helpers import tiny

from jointaug.checkpoint import CheckpointError, checkpoint_candidates, load_checkpoint, save_checkpoint
from jointaug.config import load_config
from jointaug.data.base import TensorImageDataset
from jointaug.methods import METHODS, SimCLR, register_method
from jointaug.train.fingerprint import compare_fingerprints, dataset_fingerprint
from jointaug.train.logger import read_metrics
from jointaug.train.trainer import NonFiniteLossError, NonFiniteStateError, train

TIMING = {"img_per_s", "data_wait", "train_time", "knn_time", "setup_time", "eval_time_s", "train_time_s",
          "images_per_s", "out_dir", "wall_time_s"}


def _records(out: Path, kinds: tuple[str, ...] = ("step", "epoch")) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING}
            for r in read_metrics(out / "metrics.jsonl") if r["type"] in kinds]


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(out / "checkpoints" / "last.pt")["model"]


def test_corrupt_newest_checkpoint_resumes_from_the_previous_one(tmp_path: Path, capsys) -> None:
    ref, run = tmp_path / "ref", tmp_path / "run"
    common = ("optim.epochs=3", "eval.final=false", "train.keep_checkpoints=2")
    train(load_config(None, tiny(ref, *common)))
    train(load_config(None, tiny(run, *common, "train.max_steps=8")))  # stops after epoch 2
    ck = run / "checkpoints"
    assert [p.name for p in checkpoint_candidates(ck / "last.pt")] == ["last.pt", "last-1.pt"]
    assert load_checkpoint(ck / "last-1.pt")["global_step"] == 4
    # flip bytes in the middle of the newest file (tensor data: it still unpickles)
    data = bytearray((ck / "last.pt").read_bytes())
    mid = len(data) // 2
    data[mid:mid + 4] = bytes(255 - b for b in data[mid:mid + 4])
    (ck / "last.pt").write_bytes(bytes(data))
    (ck / ".last.pt.tmp-999999999").write_bytes(b"left by a kill")  # a stale temporary file
    capsys.readouterr()
    summary = train(load_config(None, tiny(run, *common)))
    err = capsys.readouterr().err
    assert f"checkpoint {ck / 'last.pt'} is unusable" in err and "resumes from" in err and "last-1.pt" in err
    assert "removed" in err and not (ck / ".last.pt.tmp-999999999").exists()
    assert (ck / "last.pt.bad").exists()
    resume = [r for r in read_metrics(run / "metrics.jsonl") if r.get("event") == "resume"][-1]
    assert resume["step"] == 4 and resume["rejected_checkpoints"][0][0] == str(ck / "last.pt")
    # the run still ends exactly like the uninterrupted one
    assert summary["steps"] == 12
    a, b = _weights(ref), _weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _records(run) == _records(ref)


def test_checkpoint_with_non_finite_weights_is_never_the_last_good_one(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    train(load_config(None, tiny(out, "optim.epochs=3", "eval.final=false", "train.max_steps=8")))
    ck = out / "checkpoints" / "last.pt"
    state = load_checkpoint(ck)
    key = next(k for k in state["model"] if k.endswith("running_var"))
    state["model"][key][0] = float("inf")
    save_checkpoint(ck, state, keep=2)  # a valid checksum, but inf inside (as an older jointaug could have written)
    capsys.readouterr()
    train(load_config(None, tiny(out, "optim.epochs=3", "eval.final=false")))
    err = capsys.readouterr().err
    assert f"holds non-finite weights or buffers: {key} (1 of" in err and "last-1.pt (step 8)" in err
    # no usable file at all: refused with every file and its reason, nothing overwritten
    out2 = tmp_path / "bad"
    (out2 / "checkpoints").mkdir(parents=True)
    (out2 / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"no usable checkpoint.*last\.pt: cannot be loaded.*resume=false"):
        train(load_config(None, tiny(out2)))
    assert (out2 / "checkpoints" / "last.pt").read_bytes() == b"not a checkpoint"


class _InfBuffers(SimCLR):
    """Test-only method: its BatchNorm running variances become inf at the ``inf_at``-th step; the loss stays finite."""

    def __init__(self, backbone, inf_at: int = 3, proj_hidden_dim: int = 64, proj_out_dim: int = 32) -> None:
        super().__init__(backbone, proj_hidden_dim=proj_hidden_dim, proj_out_dim=proj_out_dim)
        self.inf_at, self.calls = inf_at, 0

    def forward(self, views):
        out = super().forward(views)
        self.calls += 1
        if self.calls == self.inf_at:
            bn = next(m for m in self.backbone.modules() if isinstance(m, nn.BatchNorm2d))
            bn.running_var = torch.full_like(bn.running_var, float("inf"))  # new tensor: autograd keeps the old
        return out


if "test_inf_buffers" not in METHODS:
    register_method("test_inf_buffers")(_InfBuffers)


def test_non_finite_buffers_stop_training_at_the_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = load_config(None, tiny(out, "optim.epochs=3", "method.name=test_inf_buffers",
                                 "method.params.inf_at=6", "eval.final=false"))
    with pytest.raises(NonFiniteStateError) as info:
        train(cfg)
    exc = info.value
    assert isinstance(exc, NonFiniteLossError)  # jointaug train / run exit with code 3
    assert exc.step == 8 and exc.epoch == 2
    assert "running_var" in str(exc) and "non-finite" in str(exc) and str(out / "checkpoints" / "last.pt") in str(exc)
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["global_step"] == 4  # the state with inf was not written
    events = [r for r in read_metrics(out / "metrics.jsonl") if r["type"] == "event"]
    assert events[-1]["event"] == "non_finite_state" and "running_var" in events[-1]["tensors"][0]


def _folder(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 16), ("test", 4)):
        for c in ("a", "b"):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (24 + i, 30, 3), dtype=np.uint8)).save(d / f"{i}.png")


def test_resume_refuses_changed_data_but_accepts_a_moved_folder(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _folder(root)
    out = tmp_path / "run"

    def cfg(data_root: Path, *extra: str):
        return load_config(None, tiny(out, "data.name=folder", f"data.root={data_root}", "data.limit=null",
                                      "data.test_limit=null", "optim.batch_size=16", "optim.epochs=2",
                                      "data.num_workers=0", "eval.final=false", *extra))

    train(cfg(root, "train.max_steps=2"))
    moved = tmp_path / "moved"
    shutil.move(root, moved)
    # content changed: one training image replaced by a different one
    img = moved / "train" / "a" / "3.png"
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(img)
    with pytest.raises(ValueError, match=r"the training data changed \(image content differ.*data\.root="):
        train(cfg(moved, "train.max_steps=3"))
    # one image fewer: named as a count change
    img.unlink()
    with pytest.raises(ValueError, match="number of images: checkpoint 32, now 31"):
        train(cfg(moved, "train.max_steps=3"))
    # the original content at the new place resumes
    shutil.rmtree(moved)
    _folder(moved)
    summary = train(cfg(moved))
    assert summary["steps"] == 4


def test_fingerprint_of_in_memory_images_sees_one_pixel() -> None:
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8, generator=g)
    a = TensorImageDataset(imgs, list(range(10)), [str(i) for i in range(10)], name="t", split="train")
    imgs2 = imgs.clone()
    imgs2[7, 1, 3, 3] ^= 1
    b = TensorImageDataset(imgs2, list(range(10)), [str(i) for i in range(10)], name="t", split="train")
    c = TensorImageDataset(imgs, [0] * 10, [str(i) for i in range(10)], name="t", split="train")
    assert compare_fingerprints(dataset_fingerprint(a), dataset_fingerprint(a)) == []
    assert compare_fingerprints(dataset_fingerprint(a), dataset_fingerprint(b)) == ["image content differ"]
    assert compare_fingerprints(dataset_fingerprint(a), dataset_fingerprint(c)) == ["labels differ"]


def test_resumed_logs_match_when_log_every_does_not_divide_the_epoch(tmp_path: Path) -> None:
    # 4 steps per epoch, a record every 3 steps: the window open at the checkpoint (step 4) spans it
    ref, run = tmp_path / "ref", tmp_path / "run"
    common = ("optim.epochs=3", "train.log_every=3", "eval.final=false")
    train(load_config(None, tiny(ref, *common)))
    train(load_config(None, tiny(run, *common, "train.max_steps=4")))
    train(load_config(None, tiny(run, *common)))
    steps = [r["step"] for r in _records(ref, ("step",))]
    assert steps == [3, 6, 9, 12]
    assert _records(run) == _records(ref)


class _NaNAt(SimCLR):
    """Test-only method: the loss is NaN from the ``nan_at``-th step on."""

    def __init__(self, backbone, nan_at: int = 3, proj_hidden_dim: int = 64, proj_out_dim: int = 32) -> None:
        super().__init__(backbone, proj_hidden_dim=proj_hidden_dim, proj_out_dim=proj_out_dim)
        self.nan_at, self.calls = nan_at, 0

    def forward(self, views):
        out = super().forward(views)
        self.calls += 1
        if self.calls >= self.nan_at:
            out["loss"] = out["loss"] * float("nan")
        return out


if "test_nan_at" not in METHODS:
    register_method("test_nan_at")(_NaNAt)


def test_summary_is_strict_json_when_nan_detection_is_off(tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(load_config(None, tiny(out, "method.name=test_nan_at", "method.params.nan_at=2", "train.detect_nan=false",
                                 "eval.final=false")))

    def refuse(name: str) -> None:
        raise ValueError(f"bare {name} in summary.json")

    summary = json.loads((out / "summary.json").read_text(), parse_constant=refuse)
    assert summary["final_loss"] is None and summary["steps"] == 8
