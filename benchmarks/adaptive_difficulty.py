"""Issue 13: the adaptive-difficulty comparison, summarised from a finished (or partial) grid folder.

For every policy of an adaptive grid (``configs/grids/adaptive-*.yaml``: RandomCrop, fixed J-Crop(beta),
an easy-to-hard beta schedule, the beta controller) this reads the grid's ``results.json`` and each cell's
``metrics.jsonl`` and writes, per policy (mean over seeds): kNN and linear top-1 with their difference to the
baseline (the grid's paired 95% t-interval), the online SDF (``sdf_online``: epoch means, its mean over epochs
2..E, first and last epoch), beta in force (first, mean, last epoch; fixed laws: their ``aug.beta``) and, for
the controller, how well it held its target over the second half of training (mean and max |sdf_online - target|
of the step records, each the mean of its logging window, and how often the logged beta changed direction: a
count of swings).

    python benchmarks/adaptive_difficulty.py runs/grids/adaptive-synthetic --out benchmarks/results/adaptive/synthetic
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from jointaug.experiments.grid import _diff as _d  # the grid table's formats: mean ± std, Δ [95% CI]
from jointaug.experiments.grid import _pm


def _records(cell: Path) -> list[dict[str, Any]]:
    p = cell / "metrics.jsonl"
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def _fixed_beta(cell: Path) -> float | None:
    import yaml

    p = cell / "config.yaml"
    if not p.is_file():
        return None
    aug = (yaml.safe_load(p.read_text()) or {}).get("aug", {})
    if aug.get("crop") in ("joint", "mgcc", "mcgcc") or aug.get("blur") == "joint" or aug.get("color") == "joint":
        return float(aug.get("beta", 0.0))
    return None


def cell_summary(cell: Path) -> dict[str, Any]:
    """Online SDF and beta over one cell's training, and the controller's tracking in its second half."""
    recs = _records(cell)
    epochs = sorted({int(r["epoch"]): r for r in recs if r.get("type") == "epoch"}.items())
    sdf = [(e, r["sdf_online"]) for e, r in epochs if r.get("sdf_online") is not None]
    beta = [(e, r["aug_beta"]) for e, r in epochs if r.get("aug_beta") is not None]
    fixed = _fixed_beta(cell) if not beta else None
    if fixed is not None:
        beta = [(e, fixed) for e, _ in sdf]
    out: dict[str, Any] = {
        "sdf_epochs": sdf, "beta_epochs": beta,
        "sdf_mean_from_epoch2": statistics.fmean(v for e, v in sdf if e >= 2) if len(sdf) > 1 else None,
        "sdf_first": sdf[0][1] if sdf else None, "sdf_last": sdf[-1][1] if sdf else None,
        "beta_first": beta[0][1] if beta else None, "beta_last": beta[-1][1] if beta else None,
        "beta_mean": statistics.fmean(v for _, v in beta) if beta else None,
    }
    start = next((r for r in recs if r.get("event") == "start" and r.get("aug_controller")), None)
    steps = [r for r in recs if r.get("type") == "step" and r.get("sdf_online") is not None]
    if start is not None and steps:
        target = start["aug_controller"]["target"]  # a number (a schedule target is not summarised here)
        last = max(r["step"] for r in steps)
        half = [r for r in steps if r["step"] > last / 2]
        err = [abs(r["sdf_online"] - target) for r in half] if isinstance(target, (int, float)) else []
        betas = [r["aug_beta"] for r in half if r.get("aug_beta") is not None]
        moves = [b - a for a, b in zip(betas, betas[1:]) if abs(b - a) > 1e-12]
        out["controller"] = {
            "target": target if isinstance(target, (int, float)) else None,
            "gain": start["aug_controller"].get("gain", 2.0),
            "abs_error_mean_2nd_half": statistics.fmean(err) if err else None,
            "abs_error_max_2nd_half": max(err) if err else None,
            "beta_sign_changes_2nd_half": sum(1 for a, b in zip(moves, moves[1:]) if a * b < 0),
            "beta_moves_2nd_half": len(moves), "log_records_2nd_half": len(half),
        }
    return out


def _mean(vals: list[float | None]) -> float | None:
    v = [x for x in vals if x is not None]
    return statistics.fmean(v) if v else None


def summarise(grid_dir: Path) -> dict[str, Any]:
    res = json.loads((grid_dir / "results.json").read_text())
    cells = {c["id"]: c for c in res["cells"]}
    groups = []
    for g in res["groups"]:
        members = [cell_summary(Path(cells[cid]["dir"])) | {"id": cid, "state": cells[cid]["state"]}
                   for cid in g["cells"]]
        done = [m for m in members if m["state"] == "done"]
        ctl = [m["controller"] for m in done if "controller" in m]
        groups.append({
            "label": g["label"].removeprefix("policy="), "n_done": g["n_done"], "n_cells": g["n_cells"],
            "knn_top1_mean": g.get("knn_top1_mean"), "knn_top1_std": g.get("knn_top1_std"),
            "linear_top1_mean": g.get("linear_top1_mean"), "linear_top1_std": g.get("linear_top1_std"),
            "diff_knn_top1": g.get("diff_knn_top1"), "diff_linear_top1": g.get("diff_linear_top1"),
            "is_baseline": g.get("is_baseline"),
            **{k: _mean([m[k] for m in done]) for k in ("sdf_mean_from_epoch2", "sdf_first", "sdf_last",
                                                         "beta_first", "beta_mean", "beta_last")},
            "controller": ({k: _mean([c[k] for c in ctl]) for k in ctl[0]} if ctl else None),
            "cells": members,
        })
    return {"grid": res["grid"], "file": res["file"], "baseline": res.get("baseline_labels"), "groups": groups}


def _f(x: float | None, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def table(summary: dict[str, Any]) -> str:
    base = ", ".join(f"{k}={v}" for k, v in (summary.get("baseline") or {}).items())
    lines = [f"| policy | seeds | kNN top-1 (%) | linear top-1 (%) | Δ kNN vs {base} [95% CI] | Δ linear [95% CI] | "
             "online SDF (mean ep. 2-E) | SDF first -> last epoch | beta first / mean / last |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for g in summary["groups"]:
        lines.append(
            f"| {g['label']}{' (baseline)' if g.get('is_baseline') else ''} | {g['n_done']}/{g['n_cells']} | "
            f"{_pm(g['knn_top1_mean'], g['knn_top1_std'])} | {_pm(g['linear_top1_mean'], g['linear_top1_std'])} | "
            f"{_d(g['diff_knn_top1'])} | {_d(g['diff_linear_top1'])} | {_f(g['sdf_mean_from_epoch2'], '.4f')} | "
            f"{_f(g['sdf_first'], '.3f')} -> {_f(g['sdf_last'], '.3f')} | "
            + (f"{_f(g['beta_first'], '.2f')} / {_f(g['beta_mean'], '.2f')} / {_f(g['beta_last'], '.2f')}"
               if g["beta_mean"] is not None else "(independent crops)" if g["n_done"] else "n/a") + " |")
    ctl = [g for g in summary["groups"] if g.get("controller")]
    for g in ctl:
        c = g["controller"]
        lines += ["", f"Controller ({g['label']}), second half of training, mean over seeds: target "
                  f"{_f(c['target'], '.3f')}, gain {c['gain']:g}, mean |sdf_online - target| (logged 20-step means) "
                  f"{_f(c['abs_error_mean_2nd_half'], '.4f')} "
                  f"(max {_f(c['abs_error_max_2nd_half'], '.4f')}), beta moved {c['beta_moves_2nd_half']:.0f} times "
                  f"in {c['log_records_2nd_half']:.0f} logged steps and changed direction "
                  f"{c['beta_sign_changes_2nd_half']:g} times."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid_dir", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    a = ap.parse_args(argv)
    if not (a.grid_dir / "results.json").is_file():
        print(f"error: {a.grid_dir / 'results.json'} not found: run `jointaug grid` on the grid file first",
              file=sys.stderr)
        return 2
    s = summarise(a.grid_dir)
    s["machine"] = {"platform": platform.platform(), "processor": platform.processor(), "torch": torch.__version__,
                    "python": platform.python_version()}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(s, indent=1))
    md = f"# {s['grid']} ({s['file']})\n\n" + table(s)
    a.out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
