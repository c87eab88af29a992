"""Checkpoint files (jointaug.checkpoint): checksum, corruption detection, keep-last-k, fallback, full disk."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest
import torch

import jointaug.checkpoint as ck
from jointaug.checkpoint import (
    CheckpointError,
    CheckpointWriteError,
    checkpoint_candidates,
    load_checkpoint,
    non_finite_tensors,
    remove_stale_temporaries,
    save_checkpoint,
    select_checkpoint,
)


def _state(step: int) -> dict:
    g = torch.Generator().manual_seed(step)
    return {"format": 2, "global_step": step, "model": {"w": torch.randn(64, 64, generator=g), "b": torch.zeros(3)},
            "lr": 0.1 * step, "betas": (0.9, 0.999), "name": "x", "flag": True, "none": None}


def test_eval_imports_checkpoints_from_the_shared_room_not_from_train() -> None:
    src = Path(__file__).resolve().parents[1] / "src" / "jointaug" / "eval"
    offenders = [p.name for p in src.glob("*.py") if "jointaug.train" in p.read_text().replace(
        "``jointaug.train.trainer``", "")]
    assert offenders == []
    from jointaug.train import checkpoint as legacy

    assert legacy.load_checkpoint is load_checkpoint and legacy.save_checkpoint is save_checkpoint


def test_overwritten_bytes_are_detected_by_train_and_eval_loaders(tmp_path: Path) -> None:
    from jointaug.eval.checkpoint import load_checkpoint_dict

    path = save_checkpoint(tmp_path / "last.pt", {**_state(1), "config": {}})
    assert load_checkpoint(path)["global_step"] == 1
    data = bytearray(path.read_bytes())
    # overwrite bytes inside the weight tensor's data record (found by its known content)
    w = load_checkpoint(path)["model"]["w"]
    start = bytes(data).find(w[0].numpy().tobytes())
    assert start > 0
    data[start + 8:start + 16] = b"\x00\x00\x80\x7f" * 2  # two floats become +inf
    path.write_bytes(bytes(data))
    assert torch.load(path, weights_only=True)["global_step"] == 1  # plain torch.load does not notice
    with pytest.raises(CheckpointError, match=r"last\.pt is corrupt: its content does not match its SHA-256"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint_dict(path)


def test_checksum_is_required_where_asked_and_missing_files_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "hand.pt"
    torch.save({"model": {}}, path)
    assert load_checkpoint(path) == {"model": {}}  # hand-made files (no checksum) still load for evaluation
    with pytest.raises(CheckpointError, match="has no checksum"):
        load_checkpoint(path, require_checksum=True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_keep_last_k_rotation(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    for step in range(1, 6):
        save_checkpoint(path, _state(step), keep=3)
    cands = checkpoint_candidates(path)
    assert [p.name for p in cands] == ["last.pt", "last-1.pt", "last-2.pt"]
    assert [load_checkpoint(p)["global_step"] for p in cands] == [5, 4, 3]
    save_checkpoint(path, _state(6), keep=1)  # fewer kept: older files go
    assert [p.name for p in checkpoint_candidates(path)] == ["last.pt"]
    with pytest.raises(ValueError, match="keep must be >= 1"):
        save_checkpoint(path, _state(7), keep=0)


def test_select_falls_back_to_newest_valid_and_names_the_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    for step in (1, 2, 3):
        save_checkpoint(path, _state(step), keep=3)
    path.write_bytes(path.read_bytes()[:1000])  # torn newest file
    state, chosen, rejected = select_checkpoint(path)
    assert chosen.name == "last-1.pt" and state["global_step"] == 2
    assert rejected[0][0] == path and "cannot be loaded" in rejected[0][1]
    # a caller's check (e.g. non-finite weights) also rejects
    state, chosen, rejected = select_checkpoint(path, check=lambda s: "too new" if s["global_step"] == 2 else None)
    assert chosen.name == "last-2.pt" and [r[1] for r in rejected][-1] == "too new"
    with pytest.raises(CheckpointError, match="all unusable.*last-2.pt: nope"):
        select_checkpoint(path, check=lambda s: "nope")
    assert select_checkpoint(tmp_path / "other.pt") is None


def test_full_disk_is_a_clear_error_and_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(1), keep=2)
    before = path.read_bytes()
    usage = namedtuple("usage", "total used free")
    # 1) the space check: too little free space, nothing written
    monkeypatch.setattr(ck.shutil, "disk_usage", lambda p: usage(10**6, 10**6 - 100, 100))
    with pytest.raises(CheckpointWriteError, match=r"last\.pt: it needs [\d,]+ bytes but .* has 100 bytes free") as e:
        save_checkpoint(path, _state(2), keep=2)
    assert e.value.errno == errno.ENOSPC
    monkeypatch.undo()
    # 2) the disk fills during the write (space reported, ENOSPC on flush to disk)
    real_fsync = os.fsync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck.os, "fsync", full)
    with pytest.raises(CheckpointWriteError, match=r"checkpoint .*last\.pt \([\d,]+ bytes\): No space left"):
        save_checkpoint(path, _state(2), keep=2)
    monkeypatch.setattr(ck.os, "fsync", real_fsync)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file, nothing rotated
    assert path.read_bytes() == before and load_checkpoint(path)["global_step"] == 1
    # through the command-line handler: one line, exit code 2
    assert issubclass(CheckpointWriteError, OSError)


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".last.pt.tmp-{dead_pid}"
    stale.write_bytes(b"partial")
    alive = tmp_path / f".last.pt.tmp-{os.getppid()}"  # a running process: left alone
    alive.write_bytes(b"in flight")
    other = tmp_path / "notes.tmp-1"
    other.write_bytes(b"not ours")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and alive.exists() and other.exists()


def test_non_finite_tensors_names_them() -> None:
    state = {"a": torch.ones(3), "bn.running_var": torch.tensor([1.0, float("inf"), float("nan")]),
             "n": torch.tensor(3)}
    assert non_finite_tensors(state) == ["bn.running_var (2 of 3 values non-finite)"]


def test_digest_covers_every_value_type() -> None:
    s = _state(1)
    base = ck.state_digest(s)
    for key, val in (("lr", 0.1000001), ("betas", (0.9, 0.99)), ("name", "y"), ("flag", False), ("none", 0),
                     ("global_step", 2)):
        assert ck.state_digest({**s, key: val}) != base, key
    m = dict(s["model"], b=torch.zeros(3, dtype=torch.float64))
    assert ck.state_digest({**s, "model": m}) != base  # dtype counts, not just bytes
    with pytest.raises(TypeError, match="only tensors and plain values"):
        ck.state_digest({"x": object()})
