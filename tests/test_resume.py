"""Kill-and-resume for real: a training subprocess is SIGKILLed after its first checkpoint, started again
with the same out_dir, and must end with exactly the metrics and weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from jointaug.train.logger import read_metrics

CACHE = Path(tempfile.gettempdir()) / "jointaug-test-cache"
TIMING = {"img_per_s", "data_wait", "train_time", "knn_time", "setup_time", "eval_time_s", "train_time_s",
          "images_per_s", "out_dir", "wall_time_s"}


def _cmd(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "jointaug.cli", "train", "simclr/synthetic",
        "data.limit=256", "data.test_limit=200", f"data.cache_dir={CACHE}", "model.backbone=convnet4",
        "model.backbone_kwargs.width=8", "method.params.proj_hidden_dim=64", "method.params.proj_out_dim=32",
        "optim.batch_size=64", "optim.epochs=3", "optim.warmup_epochs=1", "train.knn_every=1", "train.log_every=1",
        "train.tensorboard=false", "train.progress=false", "train.threads=1", "eval.linear_epochs=5",
        f"train.out_dir={out}", *extra,
    ]


def _strip(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k not in TIMING}


def test_sigkill_then_rerun_matches_uninterrupted_run(tmp_path: Path) -> None:
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "killed"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # the reference and the run to be killed start together (the latter sleeps between steps)
    ref = subprocess.Popen(_cmd(ref_dir), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen(_cmd(run_dir, "train.debug_step_delay=0.3"), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    ckpt = run_dir / "checkpoints" / "last.pt"
    deadline = time.time() + 180
    while not ckpt.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert ckpt.exists(), f"no checkpoint appeared; stderr: {victim.stderr.read() if victim.poll() is not None else ''}"
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    assert not (run_dir / "summary.json").exists()  # it really died before the end
    at_kill = torch.load(ckpt, weights_only=True)
    assert 1 <= at_kill["epoch"] < 3

    out, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    rerun = subprocess.run(_cmd(run_dir), env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr

    # same final metrics
    s_ref = json.loads((ref_dir / "summary.json").read_text())
    s_run = json.loads((run_dir / "summary.json").read_text())
    assert _strip(s_run) == _strip(s_ref)
    assert s_ref["steps"] == 12 and s_ref["knn_top1"] == s_run["knn_top1"]
    # same logged history (the records the killed run wrote past its checkpoint were dropped on resume)
    r_ref = [_strip(r) for r in read_metrics(ref_dir / "metrics.jsonl") if r["type"] in ("step", "epoch", "eval")]
    r_run = [_strip(r) for r in read_metrics(run_dir / "metrics.jsonl") if r["type"] in ("step", "epoch", "eval")]
    assert r_run == r_ref
    events = [r["event"] for r in read_metrics(run_dir / "metrics.jsonl") if r["type"] == "event"]
    assert events == ["start", "resume"]
    # bit-identical weights and optimiser state
    a = torch.load(ref_dir / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    opt_a = [t for st in a["optimizer"]["state"].values() for t in st.values()]
    opt_b = [t for st in b["optimizer"]["state"].values() for t in st.values()]
    assert len(opt_a) == len(opt_b) > 0 and all(torch.equal(x, y) for x, y in zip(opt_a, opt_b))
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
