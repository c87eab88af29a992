"""``jointaug grid``: expansion and validation errors, statistics, SIGKILL in the middle of a grid (only
unfinished cells rerun, bit-identical table), and the submitit local executor."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from grid_helpers import write_grid

from jointaug.experiments.grid import (
    T975,
    GridError,
    collect,
    expand,
    load_grid,
    paired_ci,
    read_result,
    run_grid,
    t_quantile,
    write_results,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def keep_threads():
    """Cells set torch threads (train.threads); keep the test process's own setting afterwards."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------------------------------- expansion
def test_expansion_ids_zip_recipe_and_baseline(tmp_path: Path) -> None:
    f = write_grid(tmp_path / "g.yaml", {"method": ["simclr", "byol"], "policy": ["random", "jcrop(0)", "jcrop(-1)"],
                                         "seed": [0, 1]}, recipe="{method}/synthetic", baseline={"policy": "random"})
    g = load_grid(f)
    cells = expand(g, tmp_path / "out")
    assert len(cells) == 12 and len({c.id for c in cells}) == 12
    c = next(c for c in cells if c.axes == {"method": "byol", "policy": "J-Crop(-1)", "seed": "1"})
    assert c.id == "method=byol__policy=jcrop-1__seed=1" and c.recipe == "byol/synthetic"
    assert c.dir == tmp_path / "out" / "cells" / c.id
    assert c.overrides[-3:] == ["aug.crop=joint", "aug.beta=-1.0", "train.seed=1"]
    assert "jointaug train byol/synthetic" in c.command() and "train.out_dir=" in c.command()
    assert g.baseline == {"policy": "random-crop"}
    # zip: policy and a dotted key advance together; the ids stay stable across calls
    f2 = write_grid(tmp_path / "z.yaml", {"policy": ["random", "jcrop(-2)"], "aug.scale": [
        {"label": "wide", "set": {"aug.scale": [0.08, 1.0]}}, {"label": "narrow", "set": {"aug.scale": [0.5, 1.0]}}],
        "seed": [3]}, zip=[["policy", "aug.scale"]])
    z = expand(load_grid(f2), tmp_path / "o2")
    assert [c.id for c in z] == ["policy=random-crop__aug.scale=wide__seed=3",
                                 "policy=jcrop-2__aug.scale=narrow__seed=3"]
    assert "aug.scale=[0.5, 1.0]" in z[1].overrides
    assert [c.id for c in expand(load_grid(f2), tmp_path / "o2")] == [c.id for c in z]


@pytest.mark.parametrize("raw, message", [
    ({"axes": {"seed": [0]}, "epochs": 3}, r"unknown key\(s\) 'epochs'"),
    ({"axes": {"seed": []}}, "axis 'seed' is empty"),
    ({"axes": {}}, "'axes' must be a non-empty mapping"),
    ({"axes": {"colour": [1]}}, "unknown axis 'colour'"),
    ({"axes": {"policy": ["random", "jcrop(x)"]}}, "axis 'policy' value 'jcrop\\(x\\)'.*beta must be a number"),
    ({"axes": {"seed": [0, 0]}}, "lists a value twice"),
    ({"axes": {"seed": ["a"]}}, "'a' is not an integer"),
    ({"axes": {"policy": ["random"], "seed": [0]}, "baseline": {"policy": "jcrop(0)"}}, "not one of the axis"),
    ({"axes": {"seed": [0]}, "baseline": {"method": "simclr"}}, "baseline names 'method', which is not an axis"),
    ({"axes": {"policy": ["random"], "seed": [0, 1]}, "zip": [["policy", "seed"]]}, "zipped axes need equal"),
    ({"axes": {"method": ["simclr"]}, "recipe": "simclr/synthetic"}, "recipe must name it"),
    ({"axes": {"seed": [0]}, "recipe": "{data}/x"}, "no 'data' axis"),
    ({"axes": {"seed": [0]}, "executor": {"name": "pbs"}}, "executor.name='pbs'"),
    ({"axes": {"seed": [0]}, "executor": {"jobs": 0}}, "executor.jobs=0"),
    ({"axes": {"seed": [0]}, "executor": {"partition": "x"}}, "executor: unknown key"),
])
def test_bad_grid_files_are_named(tmp_path: Path, raw: dict, message: str) -> None:
    f = tmp_path / "bad.yaml"
    with pytest.raises(GridError, match=message) as exc:
        load_grid(f, raw={"recipe": "simclr/synthetic", **raw})
    assert str(f) in str(exc.value)


def test_invalid_cell_config_names_the_cell_and_key_before_anything_runs(tmp_path: Path) -> None:
    f = write_grid(tmp_path / "g.yaml", {"optim.lr": [0.001, -1.0], "seed": [0]})
    with pytest.raises(GridError, match=r"cell optim.lr=-1.0__seed=0: .*optim.lr"):
        expand(load_grid(f), tmp_path / "out")
    f = write_grid(tmp_path / "h.yaml", {"seed": [0]}, fixed={"optim.nonsense": 1})
    with pytest.raises(GridError, match=r"cell seed=0: .*optim.nonsense"):
        expand(load_grid(f), tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing ran, nothing written
    from jointaug.cli import main as cli_main

    assert cli_main(["grid", str(f), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_dry_run_lists_the_chosen_cells_with_their_commands(tmp_path: Path, capsys) -> None:
    from jointaug.cli import main as cli_main

    f = write_grid(tmp_path / "g.yaml", {"policy": ["random", "jcrop(0)"], "seed": [0, 1]})
    assert cli_main(["grid", str(f), "--out", str(tmp_path / "out"), "--dry-run", "--only", "seed=1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [x.split("\t")[:2] for x in lines] == [["policy=random-crop__seed=1", "missing"],
                                                   ["policy=j-crop__seed=1", "missing"]]
    assert "jointaug train simclr/synthetic" in lines[0] and "train.seed=1" in lines[0]
    assert not (tmp_path / "out").exists()
    assert cli_main(["grid", str(f), "--dry-run", "--only", "seed=7"]) == 2
    assert "matches no cell" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- statistics
def test_t_quantile_and_paired_interval() -> None:
    pytest.importorskip("scipy")
    for df, q in T975.items():  # the fallback table agrees with scipy to its 3 decimals
        assert abs(t_quantile(df) - q) < 1e-3, df
    ci = paired_ci([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])  # d = 1, 2, 3: mean 2, sd 1, t(2) = 4.303
    assert ci["n"] == 3 and ci["mean"] == 2.0
    assert math.isclose(ci["hi"] - 2.0, t_quantile(2) / math.sqrt(3), rel_tol=1e-12)
    assert paired_ci([5.0], [4.0]) == {"n": 1, "mean": 1.0, "lo": None, "hi": None}


def test_collect_groups_seeds_and_pairs_with_the_baseline(tmp_path: Path) -> None:
    f = write_grid(tmp_path / "g.yaml", {"policy": ["random", "jcrop(0)"], "seed": [0, 1, 2]},
                   baseline={"policy": "random"})
    g = load_grid(f)
    cells = expand(g, tmp_path / "out", validate=False)
    fake = {("random-crop", "0"): 50.0, ("random-crop", "1"): 52.0, ("random-crop", "2"): 54.0,
            ("j-crop", "0"): 51.0, ("j-crop", "1"): 55.0}  # j-crop seed 2 unfinished
    for c in cells:
        key = (c.slugs["policy"], c.slugs["seed"])
        if key in fake:
            c.dir.mkdir(parents=True)
            (c.dir / "result.json").write_text(json.dumps({"summary": {"knn_top1": fake[key], "linear_top1": 1.0},
                                                           "wall_time_s": 2.0}))
    res = collect(g, cells)
    grp = {x["axes"]["policy"]: x for x in res["groups"]}
    assert grp["RandomCrop"]["is_baseline"] and grp["RandomCrop"]["knn_top1_mean"] == 52.0
    assert grp["J-Crop(0)"]["n_done"] == 2 and grp["J-Crop(0)"]["knn_top1_mean"] == 53.0
    d = grp["J-Crop(0)"]["diff_knn_top1"]  # paired by seed: (51-50, 55-52) = (1, 3)
    assert d["n"] == 2 and d["mean"] == 2.0 and math.isclose(d["hi"] - 2.0, t_quantile(1) * math.sqrt(2) / math.sqrt(2))
    assert res["missing"] == ["policy=j-crop__seed=2"]
    write_results(g, cells, tmp_path / "out")
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| policy=J-Crop(0) | 2/3 | 53.00 ± 2.83 |" in md and "+2.00 [" in md and "Unfinished cells" in md
    assert len((tmp_path / "out" / "results.csv").read_text().splitlines()) == 1 + 6


# ------------------------------------------------------------------------------------------- resume
def _metrics(out: Path) -> dict[str, dict]:
    res = json.loads((out / "results.json").read_text())
    keep = ("knn_top1", "linear_top1", "final_loss")
    return {r["id"]: {k: r[k] for k in keep} for r in res["cells"]}


def test_sigkill_in_the_middle_of_a_grid_reruns_only_unfinished_cells(tmp_path: Path, keep_threads) -> None:
    # each step sleeps 0.15 s, so a cell's second epoch (2 steps) leaves time to kill it after its first checkpoint
    f = write_grid(tmp_path / "g.yaml", {"seed": [0, 1, 2]}, fixed={"train.debug_step_delay": 0.15})
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "jointaug.cli", "grid", str(f), "--out", str(out), "--executor", "sequential",
           "--no-report"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cells = expand(load_grid(f), out)
    first, second, third = (c.dir for c in cells)
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not (read_result(first) and (second / "checkpoints" / "last.pt").is_file()):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "the grid made no progress"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert read_result(second) is None and not third.exists()  # killed inside the second cell
    first_mtime = (first / "result.json").stat().st_mtime_ns
    rerun = subprocess.run(cmd[:-1], cwd=tmp_path, env=env, capture_output=True, text=True)  # with the report
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "| all | 3/3 |" in rerun.stdout and "3/3 cells done" in rerun.stdout
    for name in ("results.json", "results.md", "results.csv", "loss.png", "report.html", "report.md", "grid.yaml"):
        assert (out / name).is_file(), name
    assert (first / "result.json").stat().st_mtime_ns == first_mtime  # finished cell untouched
    attempts = {d.name: len((d / "attempts.jsonl").read_text().splitlines()) for d in (first, second, third)}
    assert list(attempts.values()) == [1, 2, 1]  # only the killed cell was started again
    events = [json.loads(x).get("event") for x in (second / "metrics.jsonl").read_text().splitlines()]
    assert "resume" in events  # ... from its own checkpoint
    # an uninterrupted run of the same grid: the same table, bit for bit (same threads, exact resume)
    ref = tmp_path / "ref"
    g = load_grid(f)
    ref_cells = expand(g, ref)
    assert run_grid(ref_cells, ref, executor="sequential", log=lambda m: None) == {}
    write_results(g, ref_cells, ref)
    assert _metrics(out) == _metrics(ref)
    assert all(v["knn_top1"] is not None for v in _metrics(ref).values())


# ------------------------------------------------------------------------------------------- submitit
def test_submitit_local_executor_runs_cells_in_their_own_processes(tmp_path: Path, keep_threads) -> None:
    pytest.importorskip("submitit")
    f = write_grid(tmp_path / "g.yaml", {"policy": ["random", "jcrop(0)"]})
    g = load_grid(f)
    out = tmp_path / "out"
    cells = expand(g, out)
    cwd = Path.cwd()
    os.chdir(tmp_path)  # the cells import jointaug from the installed package, wherever they start
    try:
        failed = run_grid(cells, out, executor="local", jobs=2, threads=1, timeout_min=10, log=lambda m: None)
    finally:
        os.chdir(cwd)
    assert failed == {}
    pids = set()
    for c in cells:
        res = read_result(c.dir)
        assert res is not None and 0 <= res["summary"]["knn_top1"] <= 100
        pids |= {json.loads(x)["pid"] for x in (c.dir / "attempts.jsonl").read_text().splitlines()}
    assert len(pids) == 2 and os.getpid() not in pids  # one submitit process per cell
    assert list((out / "submitit").glob("*_log.out"))  # submitit's own job logs
    # a second call finds every cell finished and starts nothing
    assert run_grid(cells, out, executor="local", jobs=2, threads=1, log=lambda m: None) == {}
    assert all(len((c.dir / "attempts.jsonl").read_text().splitlines()) == 1 for c in cells)


def test_repository_grid_files_expand_and_validate(tmp_path, monkeypatch):
    """configs/grids/*.yaml: every cell of every committed grid expands, and its config validates where
    the data set the grid names is present (the grids read ../shared/datasets relative to the repository)."""
    from jointaug.experiments.grid import expand, load_grid

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)
    have_data = (repo / ".." / "shared" / "datasets" / "cifar10-jpg.tar.gz").exists()
    files = sorted((repo / "configs" / "grids").glob("*.yaml"))
    want = {"cifar10-cpu": 18, "cifar10-gpu": 18, "adaptive-synthetic": 16, "adaptive-cifar10-cpu": 16}
    assert {p.stem for p in files} >= set(want)
    for p in files:
        # the synthetic grid needs no data set; the others read CIFAR-10
        cells = expand(load_grid(p), tmp_path / p.stem, validate=have_data or "synthetic" in p.stem)
        assert len(cells) == want.get(p.stem, len(cells)), p
