"""``jointaug grid FILE.yaml``: an experiment grid. One YAML names the axes and the fixed settings; the
grid is the cartesian product of the axes (axes listed together under ``zip`` advance together), one
*cell* per combination, each trained and evaluated in ``<out>/cells/<cell-id>/`` by the same code as
``jointaug train`` (``jointaug.train.trainer.train``: training, then kNN + linear evaluation).

Grid file (every key is checked; an unknown key, an empty axis or a cell whose config is invalid is
reported before anything runs, naming the cell and the key)::

    name: demo                         # optional label
    recipe: "{method}/synthetic"       # recipe; {method} and {data} are filled from those axes
    fixed: {optim.epochs: 5, eval.linear_epochs: 20}      # dotted overrides for every cell
    axes:
      method: [simclr, byol]           # -> the recipe
      policy: [random, "jcrop(0)", "jcrop(-1)"]           # jointaug run --policies names
      seed: [0, 1, 2]                  # -> train.seed; cells differing only in seed form a group
      optim.lr: [0.002, 0.004]         # any dotted config key
      # also: beta (aug.beta), data (data.name and the recipe's {data}); a value may be a mapping
      # {label: NAME, set: {dotted.key: value, ...}} for several keys at once
    zip: [[policy, beta]]              # optional: these axes advance together (equal lengths)
    baseline: {policy: random}         # the reference of the "difference to baseline" columns
    executor: {name: local, jobs: 2, threads: 1, timeout_min: 120,
               slurm: {slurm_partition: gpu, gpus_per_node: 1, cpus_per_task: 8, mem_gb: 32}}

Executors: ``sequential`` (in this process, one cell after another), ``local`` (submitit's
LocalExecutor: one process per cell, ``jobs`` at a time, ``torch`` threads shared out), ``slurm``
(submitit's AutoExecutor with the ``executor.slurm`` parameters; an array of at most ``jobs`` running).
Resumable: a cell whose ``result.json`` (written atomically, last) exists is never rerun; a killed
cell resumes from its own checkpoint (the trainer's exact resume). A per-cell lock keeps two
processes (e.g. an orphan of a killed local grid) from training the same cell at once.

Results (``<out>/results.json``, ``results.md``, ``results.csv``, ``loss.png``): per group of cells
differing only in seed, mean +/- std over seeds of kNN and linear top-1 and the difference to the
named baseline with a paired (by seed) 95% t-interval; per cell its wall time and images/s; the
training loss per epoch (mean over seeds), one line per policy (paper Fig. 5).
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import io
import itertools
import json
import math
import os
import re
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Cell", "Grid", "add_arguments", "cell_state", "collect", "expand", "load_grid", "main",
           "paired_ci", "run_cell", "run_grid", "t_quantile", "write_results"]

TOP_KEYS = ("name", "description", "recipe", "fixed", "axes", "zip", "baseline", "executor")
NAMED_AXES = ("method", "policy", "beta", "data", "seed")
EXECUTOR_KEYS = ("name", "jobs", "threads", "timeout_min", "slurm")
EXECUTORS = ("sequential", "local", "slurm")
RESULT = "result.json"
#: two-sided 95% Student t quantiles (df 1..30), used when scipy is not installed
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
        20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
        29: 2.045, 30: 2.042}


class GridError(ValueError):
    """A bad grid file or cell: names the file, the cell and the key."""


@dataclass
class Value:
    """One value of one axis: its label (table), slug (cell id) and the config overrides it sets."""

    label: str
    slug: str
    overrides: list[str]
    raw: Any = None


@dataclass
class Cell:
    """One combination of axis values: id, recipe, overrides (fixed, then per axis) and its folder."""

    id: str
    axes: dict[str, str]  # axis -> value label
    slugs: dict[str, str]
    recipe: str
    overrides: list[str]
    dir: Path

    def spec(self) -> dict[str, Any]:
        """What the cell's process needs (plain data: picklable, JSON-able)."""
        return {"id": self.id, "axes": dict(self.axes), "slugs": dict(self.slugs), "recipe": self.recipe,
                "overrides": list(self.overrides), "dir": str(self.dir)}

    def command(self) -> str:
        """The ``jointaug train`` command line that reproduces this cell."""
        return " ".join(["jointaug", "train", shlex.quote(self.recipe),
                         *(shlex.quote(o) for o in self.overrides), shlex.quote(f"train.out_dir={self.dir}")])


@dataclass
class Grid:
    """A parsed grid file."""

    path: Path
    name: str
    recipe: str
    fixed: list[str]
    axes: dict[str, list[Value]]
    zip: list[list[str]]
    baseline: dict[str, str]  # axis -> slug
    executor: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- parsing
def _ov_value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v)
    return str(v)


def _flatten(d: Any, where: str, prefix: str = "") -> list[str]:
    """{a: {b: 1}, c.d: 2} or ["a.b=1"] -> ["a.b=1", "c.d=2"]."""
    if isinstance(d, list):
        for item in d:
            if not isinstance(item, str) or "=" not in item:
                raise GridError(f"{where}: expected key=value strings, got {item!r}")
        return list(d)
    if not isinstance(d, dict):
        raise GridError(f"{where}: expected a mapping of dotted config keys to values, got {type(d).__name__}")
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and not key.endswith(("params", "backbone_kwargs")):
            out += _flatten(v, where, key + ".")
        else:
            out.append(f"{key}={_ov_value(v)}")
    return out


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9.+-]+", "_", str(text)).strip("_")
    return s or "_"


def _axis_values(name: str, values: Any, where: str) -> list[Value]:
    from jointaug.train.main_job import parse_policies

    if not isinstance(values, list):
        values = [values]
    if not values:
        raise GridError(f"{where}: axis {name!r} is empty; give at least one value")
    out: list[Value] = []
    for v in values:
        if isinstance(v, dict):
            unknown = sorted(set(v) - {"label", "set"})
            if unknown or "label" not in v:
                raise GridError(f"{where}: axis {name!r}: a mapping value needs 'label' and 'set' "
                                f"(got keys {sorted(v)})")
            ovs = _flatten(v.get("set") or {}, f"{where}: axis {name!r} value {v['label']!r}")
            out.append(Value(str(v["label"]), _slug(v["label"]), ovs, v["label"]))
            continue
        if isinstance(v, (list, tuple)):
            raise GridError(f"{where}: axis {name!r}: value {v!r} is a list; a value is a scalar or "
                            "{label, set} (to vary a list-valued key, write each list as a mapping value)")
        if name == "policy":
            try:
                ((label, folder, ovs),) = parse_policies(str(v))
            except ValueError as exc:
                raise GridError(f"{where}: axis 'policy' value {v!r}: {exc}") from None
            out.append(Value(label, folder, ovs, v))
        elif name == "method":
            out.append(Value(str(v), _slug(v), [], v))
        elif name == "data":
            out.append(Value(str(v), _slug(v), [f"data.name={v}"], v))
        elif name == "seed":
            if isinstance(v, bool) or not isinstance(v, int):
                raise GridError(f"{where}: axis 'seed': {v!r} is not an integer")
            out.append(Value(str(v), str(v), [f"train.seed={v}"], v))
        elif name == "beta":
            out.append(Value(f"{v:g}" if isinstance(v, float) else str(v), _slug(v), [f"aug.beta={_ov_value(v)}"], v))
        else:
            out.append(Value(_ov_value(v), _slug(_ov_value(v)), [f"{name}={_ov_value(v)}"], v))
    slugs = [x.slug for x in out]
    dup = sorted({s for s in slugs if slugs.count(s) > 1})
    if dup:
        raise GridError(f"{where}: axis {name!r} lists a value twice ({', '.join(dup)})")
    return out


def load_grid(path: str | os.PathLike, raw: dict[str, Any] | None = None) -> Grid:
    """Parse and check a grid file (not yet the cells' configs: see :func:`expand`)."""
    import yaml

    path = Path(path)
    if raw is None:
        if not path.is_file():
            raise FileNotFoundError(f"grid file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise GridError(f"{path}: cannot parse YAML: {exc}") from None
    where = str(path)
    if not isinstance(raw, dict):
        raise GridError(f"{where}: expected a mapping with keys {', '.join(TOP_KEYS)}")
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise GridError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(TOP_KEYS)}")
    axes_raw = raw.get("axes")
    if not isinstance(axes_raw, dict) or not axes_raw:
        raise GridError(f"{where}: 'axes' must be a non-empty mapping of axis -> list of values")
    axes: dict[str, list[Value]] = {}
    for name, values in axes_raw.items():
        name = str(name)
        if name not in NAMED_AXES and "." not in name:
            raise GridError(f"{where}: unknown axis {name!r}; use {', '.join(NAMED_AXES)} or a dotted config key "
                            "(e.g. optim.lr)")
        axes[name] = _axis_values(name, values, where)
    recipe = raw.get("recipe", "{method}/synthetic" if "method" in axes else "simclr/synthetic")
    if not isinstance(recipe, str) or not recipe:
        raise GridError(f"{where}: 'recipe' must be a recipe name or file, e.g. simclr/synthetic")
    for ph in re.findall(r"{(\w*)}", recipe):
        if ph not in ("method", "data") or ph not in axes:
            raise GridError(f"{where}: recipe {recipe!r} uses {{{ph}}} but the grid has no {ph!r} axis")
    if "method" in axes and "{method}" not in recipe:
        raise GridError(f"{where}: the grid has a 'method' axis, so the recipe must name it, e.g. "
                        f"recipe: \"{{method}}/synthetic\" (got {recipe!r})")
    fixed = _flatten(raw.get("fixed") or {}, f"{where}: fixed")
    zips = raw.get("zip") or []
    if not isinstance(zips, list) or not all(isinstance(z, list) and len(z) >= 2 for z in zips):
        raise GridError(f"{where}: 'zip' must be a list of lists of at least two axis names")
    seen: set[str] = set()
    for z in zips:
        for a in z:
            if a not in axes:
                raise GridError(f"{where}: zip names {a!r}, which is not an axis")
            if a in seen:
                raise GridError(f"{where}: axis {a!r} is in two zip groups")
            seen.add(a)
        lens = {a: len(axes[a]) for a in z}
        if len(set(lens.values())) != 1:
            raise GridError(f"{where}: zipped axes need equal lengths, got {lens}")
    if "seed" in seen:
        raise GridError(f"{where}: 'seed' cannot be zipped (cells differing only in seed form a group)")
    base_raw = raw.get("baseline") or {}
    if not isinstance(base_raw, dict):
        raise GridError(f"{where}: 'baseline' must be a mapping axis -> value, e.g. {{policy: random}}")
    baseline: dict[str, str] = {}
    for a, v in base_raw.items():
        if a not in axes:
            raise GridError(f"{where}: baseline names {a!r}, which is not an axis")
        if a == "seed":
            raise GridError(f"{where}: the baseline cannot fix the seed (differences are paired by seed)")
        (val,) = _axis_values(a, [v], f"{where}: baseline")
        if val.slug not in [x.slug for x in axes[a]]:
            raise GridError(f"{where}: baseline {a}={v!r} is not one of the axis' values "
                            f"({', '.join(x.label for x in axes[a])})")
        baseline[a] = val.slug
    ex = raw.get("executor") or {}
    if not isinstance(ex, dict):
        raise GridError(f"{where}: 'executor' must be a mapping with keys {', '.join(EXECUTOR_KEYS)}")
    bad = sorted(set(ex) - set(EXECUTOR_KEYS))
    if bad:
        raise GridError(f"{where}: executor: unknown key(s) {', '.join(map(repr, bad))}; "
                        f"allowed: {', '.join(EXECUTOR_KEYS)}")
    if "name" in ex and ex["name"] not in EXECUTORS:
        raise GridError(f"{where}: executor.name={ex['name']!r}; choose from {', '.join(EXECUTORS)}")
    for k in ("jobs", "threads", "timeout_min"):
        if k in ex and (isinstance(ex[k], bool) or not isinstance(ex[k], int) or ex[k] < 1):
            raise GridError(f"{where}: executor.{k}={ex[k]!r} must be a positive integer")
    if "slurm" in ex and not isinstance(ex["slurm"], dict):
        raise GridError(f"{where}: executor.slurm must be a mapping of submitit parameters")
    name = str(raw.get("name") or path.stem)
    return Grid(path, name, recipe, fixed, axes, [list(z) for z in zips], baseline, dict(ex), dict(raw))


def expand(grid: Grid, out: str | os.PathLike, *, validate: bool = True) -> list[Cell]:
    """The grid's cells (cartesian product, zip groups advancing together), every config validated first."""
    from jointaug.config import ConfigError, load_config

    out = Path(out)
    zipped = {a for z in grid.zip for a in z}
    units: list[list[list[tuple[str, Value]]]] = []  # per unit: list of choices, each a list of (axis, value)
    placed: set[str] = set()
    for a in grid.axes:
        if a in placed:
            continue
        group = next((z for z in grid.zip if a in z), None) if a in zipped else None
        if group is None:
            units.append([[(a, v)] for v in grid.axes[a]])
            placed.add(a)
        else:
            n = len(grid.axes[group[0]])
            units.append([[(g, grid.axes[g][i]) for g in group] for i in range(n)])
            placed.update(group)
    cells: list[Cell] = []
    for combo in itertools.product(*units):
        pairs = dict(kv for choice in combo for kv in choice)
        ordered = [(a, pairs[a]) for a in grid.axes]
        cid = "__".join(f"{a}={v.slug}" for a, v in ordered)
        fill = {a: str(pairs[a].raw if not isinstance(pairs[a].raw, dict) else pairs[a].label)
                for a in ("method", "data") if a in pairs}
        recipe = grid.recipe.format(**fill)
        ovs = [*grid.fixed, *(o for _, v in ordered for o in v.overrides)]
        cells.append(Cell(cid, {a: v.label for a, v in ordered}, {a: v.slug for a, v in ordered}, recipe, ovs,
                          out / "cells" / cid))
    if validate:
        for c in cells:
            try:
                load_config(c.recipe, [*c.overrides, f"train.out_dir={c.dir}"])
            except ConfigError as exc:
                raise GridError(f"{grid.path}: cell {c.id}: {exc}") from None
    return cells


# ------------------------------------------------------------------------------------------- one cell
@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (released when the holder exits, even by SIGKILL)."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _atomic_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w") as fh:
            fh.write(json.dumps(obj, indent=2) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_result(cell_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The cell's result.json, or None while it is not finished (absent or unreadable)."""
    p = Path(cell_dir) / RESULT
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def cell_state(cell_dir: str | os.PathLike) -> str:
    """done | failed | partial (a checkpoint, no result) | missing."""
    d = Path(cell_dir)
    if read_result(d) is not None:
        return "done"
    if (d / "error.json").is_file():
        return "failed"
    if any((d / "checkpoints").glob("*.pt")) if (d / "checkpoints").is_dir() else False:
        return "partial"
    return "missing"


def run_cell(spec: dict[str, Any], threads: int | None = None) -> dict[str, Any]:
    """Train and evaluate one cell in its folder (resuming its checkpoint); write result.json last.

    A finished cell returns its stored result without training. Module-level so submitit can pickle it."""
    from jointaug.config import config_to_yaml, load_config
    from jointaug.train.trainer import train

    d = Path(spec["dir"])
    d.mkdir(parents=True, exist_ok=True)
    with _locked(d / ".lock"):
        done = read_result(d)
        if done is not None:
            return done
        extra = ["train.progress=false", *([f"train.threads={threads}"] if threads else [])]
        cfg = load_config(spec["recipe"], [*spec["overrides"], f"train.out_dir={d}", *extra])
        attempts = d / "attempts.jsonl"
        with open(attempts, "a") as fh:  # one line per (re)start: how often the cell was (re)trained
            fh.write(json.dumps({"start": time.time(), "pid": os.getpid()}) + "\n")
        (d / "cell.json").write_text(json.dumps({**spec, "command": _command(spec)}, indent=2) + "\n")
        (d / "error.json").unlink(missing_ok=True)
        t0 = time.perf_counter()
        try:
            summary = train(cfg)
        except Exception as exc:
            _atomic_json(d / "error.json", {"error": f"{type(exc).__name__}: {exc}", "time": time.time()})
            raise
        wall = time.perf_counter() - t0
        result = {"id": spec["id"], "axes": spec["axes"], "slugs": spec["slugs"], "recipe": spec["recipe"],
                  "overrides": spec["overrides"], "command": _command(spec), "wall_time_s": wall,
                  "attempts": len(attempts.read_text().splitlines()), "config": config_to_yaml(cfg),
                  "summary": summary}
        _atomic_json(d / RESULT, result)
        return result


def _command(spec: dict[str, Any]) -> str:
    return " ".join(["jointaug", "train", shlex.quote(spec["recipe"]), *(shlex.quote(o) for o in spec["overrides"]),
                     shlex.quote(f"train.out_dir={spec['dir']}")])


def _run_cell_quiet(spec: dict[str, Any], threads: int | None) -> str:
    """Entry point of a submitted job: run the cell, return only its id (the result lives in its folder)."""
    run_cell(spec, threads)
    return spec["id"]


# ------------------------------------------------------------------------------------------- executors
def _threads_for(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def run_grid(cells: list[Cell], out: Path, *, executor: str = "sequential", jobs: int = 1,
             threads: int | None = None, timeout_min: int = 24 * 60,
             slurm: dict[str, Any] | None = None, log=print) -> dict[str, str]:
    """Run every unfinished cell; returns cell id -> error message for the cells that failed."""
    todo = [c for c in cells if read_result(c.dir) is None]
    for c in cells:
        if c not in todo:
            log(f"grid: {c.id}: done, skipped")
    failed: dict[str, str] = {}
    if not todo:
        return failed
    if executor == "sequential":
        for i, c in enumerate(todo):
            log(f"grid: [{i + 1}/{len(todo)}] {c.id} ({cell_state(c.dir)}) ...")
            t0 = time.perf_counter()
            try:
                res = run_cell(c.spec(), threads)
                s = res["summary"]
                log(f"grid: {c.id}: kNN {_f(s.get('knn_top1'))}  linear {_f(s.get('linear_top1'))}  "
                    f"({time.perf_counter() - t0:.0f} s)")
            except Exception as exc:  # one failed cell does not stop the grid
                failed[c.id] = f"{type(exc).__name__}: {exc}"
                log(f"grid: {c.id}: FAILED: {failed[c.id]}")
        return failed
    import submitit

    folder = out / "submitit"
    if executor == "local":
        ex = submitit.LocalExecutor(folder=str(folder))
        ex.update_parameters(timeout_min=timeout_min)
        threads = threads or _threads_for(jobs)
        running: list[tuple[Cell, Any]] = []
        queue = list(todo)
        while queue or running:
            while queue and len(running) < jobs:
                c = queue.pop(0)
                running.append((c, ex.submit(_run_cell_quiet, c.spec(), threads)))
                log(f"grid: {c.id}: started (local job {running[-1][1].job_id}, {threads} threads)")
            time.sleep(0.5)
            for c, job in [r for r in running if r[1].done()]:
                running.remove((c, job))
                _finish(c, job, failed, log)
        return failed
    if executor == "slurm":
        ex = submitit.AutoExecutor(folder=str(folder))
        if ex.cluster != "slurm":
            raise GridError(f"--executor slurm: no Slurm on this machine (submitit found {ex.cluster!r}); "
                            "use --executor local or sequential")
        params = {"timeout_min": timeout_min, "slurm_array_parallelism": jobs, **(slurm or {})}
        ex.update_parameters(**params)
        subs = ex.map_array(_run_cell_quiet, [c.spec() for c in todo], [threads] * len(todo))
        log(f"grid: submitted {len(subs)} cells as {ex.cluster} jobs ({', '.join(j.job_id for j in subs[:3])}...); "
            "waiting (rerun the same command later to collect)")
        for c, job in zip(todo, subs):
            _finish(c, job, failed, log)
        return failed
    raise GridError(f"--executor {executor!r}: choose from {', '.join(EXECUTORS)}")


def _finish(c: Cell, job: Any, failed: dict[str, str], log) -> None:
    try:
        job.result()
        s = (read_result(c.dir) or {}).get("summary", {})
        log(f"grid: {c.id}: kNN {_f(s.get('knn_top1'))}  linear {_f(s.get('linear_top1'))}")
    except Exception as exc:
        msg = str(exc).strip().splitlines()
        failed[c.id] = msg[-1] if msg else type(exc).__name__
        log(f"grid: {c.id}: FAILED: {failed[c.id]} (log: {getattr(job, 'paths', None) and job.paths.stderr})")


def _f(v: Any, spec: str = ".2f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


# ------------------------------------------------------------------------------------------- statistics
def t_quantile(df: int) -> float:
    """Two-sided 95% Student t quantile for ``df`` degrees of freedom (scipy when installed)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    try:
        from scipy.stats import t

        return float(t.ppf(0.975, df))
    except ImportError:
        return T975.get(df, 1.96)


def _mean_std(xs: list[float]) -> tuple[float | None, float | None]:
    if not xs:
        return None, None
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None
    return m, sd


def paired_ci(x: list[float], base: list[float]) -> dict[str, Any]:
    """Mean difference x - base over paired seeds with its 95% t-interval (None below two pairs)."""
    d = [a - b for a, b in zip(x, base)]
    m, sd = _mean_std(d)
    if m is None:
        return {"n": 0, "mean": None, "lo": None, "hi": None}
    if sd is None:
        return {"n": 1, "mean": m, "lo": None, "hi": None}
    half = t_quantile(len(d) - 1) * sd / math.sqrt(len(d))
    return {"n": len(d), "mean": m, "lo": m - half, "hi": m + half}


# ------------------------------------------------------------------------------------------- collecting
def _group_key(slugs: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple((a, s) for a, s in slugs.items() if a != "seed")


def collect(grid: Grid, cells: list[Cell]) -> dict[str, Any]:
    """Per cell (state, metrics, timing) and per seed-group (mean/std, paired difference to the baseline)."""
    rows = []
    for c in cells:
        res = read_result(c.dir)
        s = (res or {}).get("summary") or {}
        rows.append({"id": c.id, "axes": c.axes, "slugs": c.slugs, "state": cell_state(c.dir),
                     "dir": str(c.dir), "command": c.command(),
                     "knn_top1": s.get("knn_top1"), "linear_top1": s.get("linear_top1"),
                     "wall_time_s": (res or {}).get("wall_time_s"), "train_time_s": s.get("train_time_s"),
                     "images_per_s": s.get("images_per_s"), "final_loss": s.get("final_loss"),
                     "attempts": (res or {}).get("attempts")})
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(_group_key(r["slugs"]), []).append(r)
    out_groups = []
    for key, members in groups.items():
        done = [m for m in members if m["state"] == "done"]
        g: dict[str, Any] = {"key": dict(key), "label": ", ".join(f"{a}={lab}" for a, lab in members[0]["axes"].items()
                                                                  if a != "seed") or "all",
                             "axes": {a: lab for a, lab in members[0]["axes"].items() if a != "seed"},
                             "cells": [m["id"] for m in members], "n_done": len(done), "n_cells": len(members)}
        for metric in ("knn_top1", "linear_top1"):
            vals = [m[metric] for m in done if m[metric] is not None]
            g[metric + "_mean"], g[metric + "_std"] = _mean_std(vals)
        g["wall_time_s_mean"], _ = _mean_std([m["wall_time_s"] for m in done if m["wall_time_s"] is not None])
        g["images_per_s_mean"], _ = _mean_std([m["images_per_s"] for m in done if m["images_per_s"] is not None])
        bkey = None
        if grid.baseline:
            bkey = tuple((a, grid.baseline.get(a, s)) for a, s in key)
        g["is_baseline"] = bkey == key
        if bkey is not None and bkey in groups and bkey != key:
            base = {m["slugs"].get("seed", "-"): m for m in groups[bkey] if m["state"] == "done"}
            g["baseline"] = ", ".join(f"{a}={s}" for a, s in bkey)
            for metric in ("knn_top1", "linear_top1"):
                pairs = [(m[metric], base[m["slugs"].get("seed", "-")][metric]) for m in done
                         if m["slugs"].get("seed", "-") in base and m[metric] is not None
                         and base[m["slugs"].get("seed", "-")][metric] is not None]
                g["diff_" + metric] = paired_ci([p[0] for p in pairs], [p[1] for p in pairs])
        out_groups.append(g)
    return {"grid": grid.name, "file": str(grid.path), "recipe": grid.recipe, "fixed": grid.fixed,
            "axes": {a: [v.label for v in vs] for a, vs in grid.axes.items()}, "baseline": grid.baseline,
            "baseline_labels": {a: next(v.label for v in grid.axes[a] if v.slug == s)
                                for a, s in grid.baseline.items()},
            "cells": rows, "groups": out_groups,
            "missing": [r["id"] for r in rows if r["state"] != "done"]}


def _pm(m: float | None, s: float | None) -> str:
    if m is None:
        return "n/a"
    return f"{m:.2f}" + ("" if s is None else f" ± {s:.2f}")


def _diff(d: dict[str, Any] | None) -> str:
    if not d or d.get("mean") is None:
        return "—"
    if d.get("lo") is None:
        return f"{d['mean']:+.2f} (n={d['n']})"
    return f"{d['mean']:+.2f} [{d['lo']:+.2f}, {d['hi']:+.2f}]"


def format_tables(res: dict[str, Any]) -> str:
    """Markdown: the seed-group table (mean ± std, difference to baseline [95% CI]) and the per-cell table."""
    lines = ["| group | seeds done | kNN top-1 (%) | linear top-1 (%) | Δ kNN vs baseline [95% CI] | "
             "Δ linear vs baseline [95% CI] | wall time / cell (s) | images/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for g in res["groups"]:
        label = g["label"] + (" (baseline)" if g.get("is_baseline") else "")
        lines.append(f"| {label} | {g['n_done']}/{g['n_cells']} | {_pm(g['knn_top1_mean'], g['knn_top1_std'])} | "
                     f"{_pm(g['linear_top1_mean'], g['linear_top1_std'])} | {_diff(g.get('diff_knn_top1'))} | "
                     f"{_diff(g.get('diff_linear_top1'))} | {_f(g['wall_time_s_mean'], '.0f')} | "
                     f"{_f(g['images_per_s_mean'], '.0f')} |")
    cell_lines = ["| cell | state | kNN top-1 (%) | linear top-1 (%) | wall time (s) | train time (s) | images/s | "
                  "attempts |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in res["cells"]:
        cell_lines.append(f"| {r['id']} | {r['state']} | {_f(r['knn_top1'])} | {_f(r['linear_top1'])} | "
                          f"{_f(r['wall_time_s'], '.1f')} | {_f(r['train_time_s'], '.1f')} | "
                          f"{_f(r['images_per_s'], '.0f')} | {r.get('attempts') or ''} |")
    note = ("Mean ± std over seeds; Δ: mean paired difference (same seed) to the baseline group with a 95% "
            "Student-t interval over seeds. Wall time: the cell's last attempt only (a cell resumed after a kill "
            "shows more attempts; its train time counts every attempt's training steps).")
    return "\n".join(lines) + "\n\n" + note + "\n\n" + "\n".join(cell_lines) + "\n"


def epoch_losses(cell_dir: str | os.PathLike) -> list[tuple[int, float]]:
    """(epoch, mean training loss) of a cell, from its metrics.jsonl (empty when absent)."""
    from jointaug.train.logger import read_metrics

    p = Path(cell_dir) / "metrics.jsonl"
    if not p.is_file():
        return []
    by_epoch: dict[int, float] = {}
    for r in read_metrics(p):
        if r.get("type") == "epoch" and r.get("loss") is not None:
            by_epoch[int(r["epoch"])] = float(r["loss"])  # a resumed epoch: the last record wins
    return sorted(by_epoch.items())


def plot_losses(res: dict[str, Any], path: Path) -> Path | None:
    """Fig. 5: training loss vs epoch, mean over seeds, one line per policy (or group), a panel per rest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    line_axis = "policy" if any("policy" in g["axes"] for g in res["groups"]) else None
    panels: dict[str, list[dict[str, Any]]] = {}
    for g in res["groups"]:
        rest = ", ".join(f"{a}={v}" for a, v in g["axes"].items() if a != line_axis) or "all cells"
        panels.setdefault(rest, []).append(g)
    cells = {c["id"]: c for c in res["cells"]}
    n = len(panels)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), dpi=90, squeeze=False)
    any_line = False
    for ax, (title, groups) in zip(axes.ravel(), panels.items()):
        for g in groups:
            curves = [dict(epoch_losses(cells[c]["dir"])) for c in g["cells"]]
            curves = [c for c in curves if c]
            if not curves:
                continue
            epochs = sorted(set.intersection(*(set(c) for c in curves)))
            if not epochs:
                continue
            mean = [sum(c[e] for c in curves) / len(curves) for e in epochs]
            label = g["axes"].get(line_axis, g["label"]) if line_axis else g["label"]
            ax.plot(epochs, mean, marker="o", ms=2.5, label=f"{label} (n={len(curves)})")
            any_line = True
        ax.set_title(title, fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss (mean over seeds)")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.tight_layout()
    if not any_line:
        plt.close(fig)
        return None
    fig.savefig(path)
    plt.close(fig)
    return path


def write_results(grid: Grid, cells: list[Cell], out: Path) -> dict[str, Any]:
    """results.json, results.md, results.csv and loss.png in ``out``; returns the collected results."""
    res = collect(grid, cells)
    md = format_tables(res)
    try:
        png = plot_losses(res, out / "loss.png")
    except Exception as exc:  # a figure must never cost the results
        print(f"jointaug grid: note: loss figure skipped ({exc})", file=sys.stderr)
        png = None
    res["files"] = ["results.json", "results.md", "results.csv", *(["loss.png"] if png else [])]
    head = f"# grid {grid.name}\n\n`{grid.path}`; baseline: " + (
        ", ".join(f"{a}={v}" for a, v in res["baseline_labels"].items()) or "none") + "\n\n"
    missing = "" if not res["missing"] else (
        "\nUnfinished cells: " + ", ".join(f"{r['id']} ({r['state']})" for r in res["cells"]
                                           if r["state"] != "done") + "\n")
    (out / "results.md").write_text(head + md + missing + ("\n![loss](loss.png)\n" if png else ""))
    buf = io.StringIO()
    axes = list(grid.axes)
    w = csv.writer(buf)
    w.writerow(["cell", *axes, "state", "knn_top1", "linear_top1", "wall_time_s", "train_time_s", "images_per_s",
                "final_loss", "attempts"])
    for r in res["cells"]:
        w.writerow([r["id"], *(r["axes"][a] for a in axes), r["state"], r["knn_top1"], r["linear_top1"],
                    r["wall_time_s"], r["train_time_s"], r["images_per_s"], r["final_loss"], r["attempts"]])
    (out / "results.csv").write_text(buf.getvalue())
    _atomic_json(out / "results.json", {**res, "table": md})
    return res


# ------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``jointaug grid``."""
    parser.add_argument("file", help="grid YAML (e.g. configs/grids/cifar10-cpu.yaml)")
    parser.add_argument("--out", help="grid folder (default: runs/grids/<file stem>); rerun to resume")
    parser.add_argument("--executor", choices=EXECUTORS, help="sequential (default), local, slurm "
                        "(default: the file's executor.name)")
    parser.add_argument("--jobs", type=int, help="cells at a time (local processes / slurm array parallelism)")
    parser.add_argument("--threads", type=int, help="torch threads per cell (default: cores / jobs for local)")
    parser.add_argument("--only", metavar="REGEX",
                        help="run only the cells whose id matches (e.g. 'seed=0' or 'policy=(random-crop|j-crop)'); "
                             "the table still lists every cell")
    parser.add_argument("--dry-run", action="store_true", help="validate and list the cells, run nothing")
    parser.add_argument("--no-report", action="store_true", help="do not write the HTML/Markdown report")


def main(args: argparse.Namespace) -> int:
    """Validate every cell, run the unfinished ones, write the results table (and the report)."""
    grid = load_grid(args.file)
    out = Path(args.out) if args.out else Path("runs") / "grids" / Path(args.file).stem
    cells = expand(grid, out)
    ex = grid.executor
    executor = args.executor or ex.get("name", "sequential")
    jobs = int(args.jobs or ex.get("jobs", 1))
    if jobs < 1:
        raise GridError(f"--jobs must be >= 1, got {jobs}")
    threads = args.threads or ex.get("threads")
    print(f"grid {grid.name}: {len(cells)} cells, {sum(read_result(c.dir) is not None for c in cells)} done; "
          f"folder {out}", file=sys.stderr)
    chosen = cells
    if getattr(args, "only", None):
        try:
            pattern = re.compile(args.only)
        except re.error as exc:
            raise GridError(f"--only {args.only!r}: not a regular expression ({exc})") from None
        chosen = [c for c in cells if pattern.search(c.id)]
        if not chosen:
            raise GridError(f"--only {args.only!r} matches no cell; ids look like {cells[0].id}")
    if args.dry_run:
        for c in chosen:
            print(f"{c.id}\t{cell_state(c.dir)}\t{c.command()}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    (out / "grid.yaml").write_text(Path(args.file).read_text())
    t0 = time.perf_counter()
    failed = run_grid(chosen, out, executor=executor, jobs=jobs, threads=threads,
                      timeout_min=int(ex.get("timeout_min", 24 * 60)), slurm=ex.get("slurm"),
                      log=lambda m: print(m, file=sys.stderr, flush=True))
    res = write_results(grid, cells, out)
    if not args.no_report:
        try:
            from jointaug.experiments.report import write_report

            write_report(out)
        except Exception as exc:
            print(f"jointaug grid: note: report skipped ({type(exc).__name__}: {exc})", file=sys.stderr)
    print(format_tables(res))
    print(f"grid folder: {out}  ({time.perf_counter() - t0:.0f} s this call; "
          f"{len(cells) - len(res['missing'])}/{len(cells)} cells done)")
    if failed:
        print(f"jointaug grid: {len(failed)} cell(s) failed: " + "; ".join(f"{k}: {v}" for k, v in failed.items()),
              file=sys.stderr)
        return 1
    return 0
