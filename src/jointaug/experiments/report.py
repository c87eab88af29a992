"""``jointaug report RUN_DIR``: one self-contained HTML report (figures embedded as base64 PNG, inline CSS,
no network) and its Markdown twin (figures as PNG files beside it) of a ``jointaug run`` folder or a
``jointaug grid`` folder.

Sections: the results table (one row per run / cell; for a grid also the seed-group table with the
paired differences to the baseline), the log-ratio densities of the crop laws used (paper Fig. 3,
``jointaug.analysis.plots``), SDF figures and numbers when a run or cell has an ``sdf/`` folder
(``jointaug sdf``), training-loss and kNN-accuracy curves per run, a gallery of example pairs per view
policy on a few images of the run's data set (``jointaug.analysis.pairs``), and per run its exact
config (YAML) and the command that reproduces it. Runs that are missing or unfinished are listed as
such; a section that cannot be drawn (e.g. the data set is not reachable from here) says why.

Files: ``RUN_DIR/report.html``, ``RUN_DIR/report.md`` and ``RUN_DIR/report_files/*.png``.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Entry", "add_arguments", "load_entries", "main", "write_report"]

FIG_DIR = "report_files"


@dataclass
class Entry:
    """One training run of the folder: a policy of ``jointaug run`` or a cell of a grid."""

    id: str
    label: str
    dir: Path
    state: str  # done | partial | failed | missing
    summary: dict[str, Any] | None = None
    command: str | None = None
    axes: dict[str, str] = field(default_factory=dict)
    policy_label: str = ""
    wall_time_s: float | None = None  # the whole run or cell: training and evaluation


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _state(d: Path, done_file: str) -> str:
    if (d / done_file).is_file() and _json(d / done_file) is not None:
        return "done"
    if (d / "error.json").is_file():
        return "failed"
    if (d / "checkpoints").is_dir() and any((d / "checkpoints").glob("*.pt")):
        return "partial"
    if (d / "metrics.jsonl").is_file():
        return "partial"
    return "missing"


def load_entries(run_dir: Path) -> tuple[str, list[Entry], dict[str, Any]]:
    """("grid" | "run", entries, extra info) of a run or grid folder; a clear error for anything else."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: {run_dir}")
    if (run_dir / "grid.yaml").is_file() or (run_dir / "cells").is_dir():
        return _load_grid(run_dir)
    if (run_dir / "metrics.json").is_file() or any((p / "config.yaml").is_file() for p in run_dir.iterdir()
                                                     if p.is_dir()):
        return _load_run(run_dir)
    raise ValueError(f"{run_dir}: neither a `jointaug run` folder (metrics.json or run subfolders with config.yaml) "
                     "nor a `jointaug grid` folder (grid.yaml, cells/)")


def _load_grid(run_dir: Path) -> tuple[str, list[Entry], dict[str, Any]]:
    from jointaug.experiments.grid import collect, expand, load_grid

    info: dict[str, Any] = {"notes": []}
    entries: list[Entry] = []
    if (run_dir / "grid.yaml").is_file():
        grid = load_grid(run_dir / "grid.yaml")
        cells = expand(grid, run_dir, validate=False)
        res = collect(grid, cells)
        info["results"] = res
        info["title"] = f"grid {grid.raw.get('name') or run_dir.name}"
        for c, row in zip(cells, res["cells"]):
            entries.append(Entry(c.id, c.id, c.dir, row["state"], (_json(c.dir / "result.json") or {}).get("summary"),
                                 c.command(), dict(c.axes), c.axes.get("policy", ""), row.get("wall_time_s")))
        known = {c.id for c in cells}
        extra = sorted(p.name for p in (run_dir / "cells").glob("*") if p.is_dir() and p.name not in known) \
            if (run_dir / "cells").is_dir() else []
        if extra:
            info["notes"].append(f"cell folders not in grid.yaml (ignored): {', '.join(extra)}")
    else:
        info["title"] = f"grid {run_dir.name}"
        info["notes"].append("grid.yaml is missing: cells listed from cells/*/cell.json")
        for d in sorted(p for p in (run_dir / "cells").iterdir() if p.is_dir()):
            spec = _json(d / "cell.json") or {}
            entries.append(Entry(d.name, d.name, d, _state(d, "result.json"),
                                 (_json(d / "result.json") or {}).get("summary"), spec.get("command"),
                                 dict(spec.get("axes") or {}), (spec.get("axes") or {}).get("policy", "")))
    return "grid", entries, info


def _load_run(run_dir: Path) -> tuple[str, list[Entry], dict[str, Any]]:
    info: dict[str, Any] = {"notes": [], "title": f"jointaug run {run_dir.name}"}
    m = _json(run_dir / "metrics.json")
    entries: list[Entry] = []
    if m is not None:
        info["metrics"] = m
        walls = {r.get("label"): r.get("wall_time_s") for r in m.get("runs", [])}
        for p in m.get("policies", []):
            d = run_dir / p["folder"]
            cmd = " ".join(["jointaug", "train", shlex.quote(m["recipe"]), *map(shlex.quote, m.get("overrides", [])),
                            *map(shlex.quote, p["overrides"]), shlex.quote(f"train.out_dir={d}"),
                            shlex.quote(f"name={p['folder']}")])
            entries.append(Entry(p["folder"], p["label"], d, _state(d, "summary.json"), _json(d / "summary.json"),
                                 cmd, {"policy": p["label"]}, p["label"], walls.get(p["label"])))
    else:
        info["notes"].append("metrics.json is missing: the run did not finish; runs listed from the subfolders")
        for d in sorted(p for p in run_dir.iterdir() if p.is_dir() and (p / "config.yaml").is_file()):
            entries.append(Entry(d.name, d.name, d, _state(d, "summary.json"), _json(d / "summary.json"),
                                 f"jointaug train {shlex.quote(str(d / 'config.yaml'))}", {"policy": d.name}, d.name))
    return "run", entries, info


# ------------------------------------------------------------------------------------------- figures
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _load_cfg(d: Path):
    """The run's resolved config (schema-typed, not validated: the data root may not exist from here)."""
    from omegaconf import OmegaConf

    from jointaug.config import Config

    p = d / "config.yaml"
    if not p.is_file():
        return None
    return OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.load(p))


def _epochs(d: Path, key: str) -> list[tuple[int, float]]:
    from jointaug.train.logger import read_metrics

    p = d / "metrics.jsonl"
    if not p.is_file():
        return []
    out: dict[int, float] = {}
    for r in read_metrics(p):
        if r.get("type") == "epoch" and r.get(key) is not None:
            out[int(r["epoch"])] = float(r[key])
    return sorted(out.items())


def _curves(entries: list[Entry], path: Path) -> Path | None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), dpi=90)
    drawn = False
    for e in entries:
        for ax, key in zip(axes, ("loss", "knn_top1")):
            pts = _epochs(e.dir, key)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=2.5, lw=1.2, label=e.label)
                drawn = True
    if not drawn:
        plt.close(fig)
        return None
    from matplotlib.ticker import MaxNLocator

    for ax, ylabel in zip(axes, ("training loss (epoch mean)", "kNN top-1 (%)")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if not handles:
        handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7 if len(labels) > 6 else 8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def _fixed_beta(d: Path) -> float | None:
    """``aug.beta`` of a run whose joint law keeps it fixed (drawn as a flat line); None without a joint law."""
    cfg = _load_cfg(d)
    a = cfg.aug if cfg is not None else None
    if a is None or not (a.crop in ("joint", "mgcc", "mcgcc") or a.blur == "joint" or a.color == "joint"):
        return None
    return float(cfg.aug.beta)


def _difficulty(entries: list[Entry], path: Path) -> Path | None:
    """Adaptive difficulty (issue 13): beta in force and the online SDF per epoch, one line per run (a run
    with a fixed joint law: its ``aug.beta`` as a flat line); drawn only when some run moved its view values
    (``aug_beta`` logged by a schedule or the controller)."""
    if not any(_epochs(e.dir, "aug_beta") for e in entries):
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), dpi=90)
    # grid cells: one colour per group of cells that differ only in seed, one line style per seed
    def group(e: Entry) -> str:
        return ", ".join(f"{a}={v}" for a, v in e.axes.items() if a != "seed") if e.axes else e.label

    groups = list(dict.fromkeys(group(e) for e in entries))
    seeds = list(dict.fromkeys(e.axes.get("seed", "") for e in entries))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if len(groups) > len(colors):
        colors = [plt.get_cmap("tab20")(i % 20) for i in range(len(groups))]
    styles = ["-", "--", ":", "-."]
    labelled: set[str] = set()
    for e in entries:
        sdf = _epochs(e.dir, "sdf_online")
        beta = _epochs(e.dir, "aug_beta") or [(ep, b) for ep, _ in sdf if (b := _fixed_beta(e.dir)) is not None]
        g = group(e)
        seed = e.axes.get("seed", "")
        label = None
        if g not in labelled and (beta or sdf):
            labelled.add(g)
            label = g + (" (line style: seed)" if len(seeds) > 1 else "")
        for ax, pts in zip(axes, (beta, sdf)):
            if pts:
                ax.plot([q[0] for q in pts], [q[1] for q in pts], marker="o", ms=2.0, lw=1.2,
                        color=colors[groups.index(g) % len(colors)], ls=styles[seeds.index(seed) % len(styles)],
                        label=label if ax is axes[1] else None)
    from matplotlib.ticker import MaxNLocator

    for ax, ylabel in zip(axes, ("beta in force (end of epoch)", "online SDF (epoch mean)")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7 if len(labels) > 6 else 8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def _policies(entries: list[Entry]) -> list[tuple[str, Any]]:
    """Distinct view policies of the runs: (label, config), in order of first use."""
    from omegaconf import OmegaConf

    seen: dict[str, tuple[str, Any]] = {}
    for e in entries:
        cfg = _load_cfg(e.dir)
        if cfg is None:
            continue
        key = OmegaConf.to_yaml(cfg.aug)
        if key not in seen:
            seen[key] = (e.policy_label or e.label, cfg)
    return list(seen.values())


def _densities(policies: list[tuple[str, Any]], path: Path, image_hw: tuple[int, int]) -> Path | None:
    from jointaug.analysis.plots import log_ratio_density_data, plot_log_ratio_density

    betas: list[float] = []
    scale = (0.2, 1.0)
    for _, cfg in policies:
        if cfg.aug.scale is not None:
            scale = tuple(float(x) for x in cfg.aug.scale)
        if cfg.aug.crop == "joint" and float(cfg.aug.beta) not in betas:
            betas.append(float(cfg.aug.beta))
    if not any(cfg.aug.crop in ("random", "joint") for _, cfg in policies):
        return None
    data = log_ratio_density_data(tuple(betas), scale=scale, image_hw=image_hw, pairs=10_000, seed=0, bins=30)
    return plot_log_ratio_density(data, path)


def _gallery(policies: list[tuple[str, Any]], path: Path, n_images: int = 4) -> tuple[Path, tuple[int, int]]:
    import torch

    from jointaug.analysis.pairs import make_gallery
    from jointaug.config import build_policy
    from jointaug.data.datasets import build_dataset

    cfg = policies[0][1]
    d = cfg.data
    ds = build_dataset(d.name, d.eval_train_split, root=d.root, download=False, size=d.size, on_error=d.on_error,
                       cache_dir=d.cache_dir, limit=d.limit)
    n = min(n_images, len(ds))
    picks = torch.linspace(0, len(ds) - 1, n).long().tolist()
    items = [ds[i] for i in picks]
    images = [it[0] for it in items]
    classes = list(getattr(ds, "classes", []))
    names = [classes[int(it[1])] if 0 <= int(it[1]) < len(classes) else f"#{i}" for it, i in zip(items, picks)]
    pols = []
    for label, c in policies:
        p = build_policy(c)
        p.name = label
        pols.append(p)
    make_gallery(images, names, pols, path, seed=int(cfg.train.seed), mode=str(cfg.aug.mode))
    return path, (int(images[0].shape[-2]), int(images[0].shape[-1]))


def _sdf_rows(data: Any) -> list[list[str]]:
    """Rows (curve, x, SDF, 95% CI) of ``jointaug sdf``'s JSON; empty when its layout is not the known one."""
    rows: list[list[str]] = []
    if not isinstance(data, dict):
        return rows
    names = {"ratio": ("fixed area ratio", "ratios", "1:{:g}"), "jcrop": ("J-Crop", "betas", "beta {:g}"),
             "jblur": ("J-Blur", "betas", "beta {:g}")}
    for key, (name, xkey, xfmt) in names.items():
        c = data.get(key)
        if not isinstance(c, dict) or not isinstance(c.get("sdf"), list) or not isinstance(c.get(xkey), list):
            continue
        cis = c.get("ci95") or [None] * len(c["sdf"])
        for x, v, ci in zip(c[xkey], c["sdf"], cis):
            ci_s = f"[{ci[0]:.4f}, {ci[1]:.4f}]" if isinstance(ci, list) and len(ci) == 2 else "n/a"
            rows.append([name, xfmt.format(x), _fmt(v, ".4f"), ci_s])
        ref = c.get("reference")
        if isinstance(ref, dict) and ref.get("sdf") is not None:
            ci = ref.get("ci95")
            ci_s = f"[{ci[0]:.4f}, {ci[1]:.4f}]" if isinstance(ci, list) and len(ci) == 2 else "n/a"
            rows.append([name, f"reference: {ref.get('name', '')}", _fmt(ref["sdf"], ".4f"), ci_s])
    return rows


# ------------------------------------------------------------------------------------------- document
def _fmt(v: Any, spec: str = ".2f") -> str:
    if v is None:
        return "n/a"
    try:
        return format(v, spec)
    except (TypeError, ValueError):
        return str(v)


class _Doc:
    """The HTML and Markdown bodies, written side by side."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.html: list[str] = []
        self.md: list[str] = []

    def h(self, level: int, text: str) -> None:
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")
        self.md.append(f"{'#' * level} {text}\n")

    def p(self, text: str, cls: str = "") -> None:
        c = f' class="{cls}"' if cls else ""
        self.html.append(f"<p{c}>{html.escape(text)}</p>")
        self.md.append(text + "\n")

    def table(self, head: list[str], rows: list[list[str]], table_id: str, row_class: str = "") -> None:
        rc = f' class="{row_class}"' if row_class else ""
        h = "".join(f"<th>{html.escape(x)}</th>" for x in head)
        body = "".join("<tr" + rc + ">" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>" for r in rows)
        self.html.append(f'<table id="{table_id}"><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>')
        esc = [[x.replace("|", "\\|") for x in r] for r in [head, *rows]]
        self.md.append("\n".join(["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(head),
                                  *("| " + " | ".join(r) + " |" for r in esc[1:])]) + "\n")

    def figure(self, path: Path, caption: str) -> None:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        self.html.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        rel = os.path.relpath(path, self.root)
        self.md.append(f"![{caption}]({rel})\n\n*{caption}*\n")

    def pre(self, text: str, lang: str = "") -> None:
        self.html.append(f'<pre class="cmd">{html.escape(text)}</pre>')
        self.md.append(f"```{lang}\n{text.rstrip()}\n```\n")

    def code(self, text: str, summary: str, lang: str = "") -> None:
        self.html.append(f"<details><summary>{html.escape(summary)}</summary><pre>{html.escape(text)}</pre></details>")
        self.md.append(f"<details><summary>{summary}</summary>\n\n```{lang}\n{text.rstrip()}\n```\n\n</details>\n")


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;
max-width:1200px;color:#222;line-height:1.4;padding:0 16px}h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;
padding-bottom:4px;margin-top:1.8em}table{border-collapse:collapse;margin:8px 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f2f2f2}td:first-child,
th:first-child{text-align:left}tr.missing td,tr.partial td,tr.failed td{color:#a33}figure{margin:12px 0}
img{max-width:100%;height:auto;border:1px solid #eee}figcaption{font-size:.85em;color:#555}
pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:.8em;max-height:420px}.note{color:#8a5a00}
details{margin:4px 0}summary{cursor:pointer}.figrow{display:flex;flex-wrap:wrap;gap:12px}
.figrow figure{flex:0 1 auto;max-width:32%}pre.cmd{white-space:pre-wrap;word-break:break-all;max-height:none}"""

#: on load: how many images decoded (naturalWidth > 0) and how many result rows, for headless checks
CHECK_JS = """window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var b = document.body;
  b.setAttribute('data-images-total', imgs.length);
  b.setAttribute('data-images-loaded', ok);
  b.setAttribute('data-cell-rows', document.querySelectorAll('#cells tbody tr').length);
});"""


def write_report(run_dir: str | os.PathLike, *, gallery_images: int = 4) -> dict[str, Any]:
    """Write report.html, report.md and report_files/ into ``run_dir``; returns what it wrote and skipped."""
    run_dir = Path(run_dir)
    kind, entries, info = load_entries(run_dir)
    figs = run_dir / FIG_DIR
    figs.mkdir(exist_ok=True)
    doc = _Doc(run_dir)
    skipped: list[str] = []
    title = info.get("title", run_dir.name)
    doc.h(1, f"Report: {title}")
    doc.p(f"Folder: {run_dir.resolve()} ({kind} folder, {len(entries)} "
          f"{'cells' if kind == 'grid' else 'runs'}, {sum(e.state == 'done' for e in entries)} finished).")
    for n in info.get("notes", []):
        doc.p(n, "note")
    unfinished = [e for e in entries if e.state != "done"]
    if unfinished:
        doc.p("Missing or unfinished: " + ", ".join(f"{e.label} ({e.state})" for e in unfinished), "note")

    # results
    doc.h(2, "Results")
    if kind == "grid" and "results" in info:
        from jointaug.experiments.grid import _diff, _pm

        res = info["results"]
        rows = [[g["label"] + (" (baseline)" if g.get("is_baseline") else ""), f"{g['n_done']}/{g['n_cells']}",
                 _pm(g["knn_top1_mean"], g["knn_top1_std"]), _pm(g["linear_top1_mean"], g["linear_top1_std"]),
                 _diff(g.get("diff_knn_top1")), _diff(g.get("diff_linear_top1"))] for g in res["groups"]]
        doc.table(["group", "seeds done", "kNN top-1 (%)", "linear top-1 (%)", "Δ kNN vs baseline [95% CI]",
                   "Δ linear vs baseline [95% CI]"], rows, "groups")
        base = res.get("baseline_labels", res["baseline"])  # slugs in results of an older grid module
        doc.p("Mean ± std over seeds; Δ: mean paired difference (same seed) to the baseline "
              f"({', '.join(f'{a}={v}' for a, v in base.items()) or 'none'}) with a 95% Student-t "
              "interval over seeds.")
    head = ["run" if kind == "run" else "cell", "state", "kNN top-1 (%)", "linear top-1 (%)", "wall time (s)",
            "train time (s)", "images/s", "data wait", "final loss"]
    rows = []
    for e in entries:
        s = e.summary or {}
        wait = s.get("data_wait")
        rows.append([e.label, e.state, _fmt(s.get("knn_top1")), _fmt(s.get("linear_top1")),
                     _fmt(e.wall_time_s, ".1f"), _fmt(s.get("train_time_s"), ".1f"), _fmt(s.get("images_per_s"), ".0f"),
                     "n/a" if wait is None else f"{100 * wait:.1f}%", _fmt(s.get("final_loss"), ".4f")])
    doc.table(head, rows, "cells")
    untrained = (info.get("metrics") or {}).get("untrained")
    if untrained:
        doc.p(f"Untrained initial weights (shared by every run): kNN {_fmt(untrained.get('knn_top1'))}%, "
              f"linear {_fmt(untrained.get('linear_top1'))}%.")

    # curves
    doc.h(2, "Training curves")
    grid_loss = run_dir / "loss.png" if kind == "grid" else None
    if grid_loss is not None and grid_loss.is_file():
        doc.figure(grid_loss, "training loss per epoch, mean over seeds, one line per policy (paper Fig. 5)")
    try:
        p = _curves(entries, figs / "curves.png")
        if p:
            doc.figure(p, "per run: training loss (epoch mean) and online kNN top-1 per epoch")
        else:
            doc.p("no epoch records yet", "note")
    except Exception as exc:
        skipped.append(f"curves: {exc}")
        doc.p(f"curves skipped: {type(exc).__name__}: {exc}", "note")
    try:
        p = _difficulty(entries, figs / "difficulty.png")
        if p:
            doc.figure(p, "per run: beta in force (schedule or controller) and the online SDF (mean cosine of "
                          "the pairs' backbone features on the training batches) per epoch")
    except Exception as exc:
        skipped.append(f"difficulty: {exc}")
        doc.p(f"difficulty figure skipped: {type(exc).__name__}: {exc}", "note")

    # policies: densities and gallery
    try:
        policies = _policies(entries)
    except Exception as exc:
        policies = []
        skipped.append(f"policies: {exc}")
    image_hw = (32, 32)
    doc.h(2, "View policies: example pairs")
    if policies:
        try:
            p, image_hw = _gallery(policies, figs / "pairs.png", gallery_images)
            doc.figure(p, "the same images under each view policy (same seed): source, view 1 | view 2 with the "
                          "realised area ratio")
        except Exception as exc:
            skipped.append(f"gallery: {exc}")
            doc.p(f"gallery skipped (data set not readable from here?): {type(exc).__name__}: {exc}", "note")
    else:
        doc.p("no run config found", "note")
    doc.h(2, "Log area-ratio densities of the crop laws")
    if policies:
        try:
            p = _densities(policies, figs / "log_ratio_density.png", image_hw)
            if p:
                doc.figure(p, "density of ln(s2/s1) of the two views' crop areas: exact law, sampled areas, "
                              "realised boxes (paper Fig. 3)")
            else:
                doc.p("no resized-crop law (random / joint) among the policies", "note")
        except Exception as exc:
            skipped.append(f"densities: {exc}")
            doc.p(f"densities skipped: {type(exc).__name__}: {exc}", "note")

    # SDF
    sdf_dirs = [(e.label, e.dir / "sdf") for e in entries if (e.dir / "sdf").is_dir()]
    if (run_dir / "sdf").is_dir():
        sdf_dirs.insert(0, ("(folder)", run_dir / "sdf"))
    if sdf_dirs:
        doc.h(2, "SDF (pair difficulty)")
        for label, d in sdf_dirs:
            doc.h(3, label)
            order = {"sdf_ratio": 0, "sdf_beta_crop": 1, "sdf_beta_blur": 2}
            doc.html.append('<div class="figrow">')
            for png in sorted(d.glob("*.png"), key=lambda q: (order.get(q.stem, 9), q.name)):
                doc.figure(png, f"{label}: {png.stem}")
            doc.html.append("</div>")
            sj = d / "sdf.json"
            if sj.is_file():
                text = sj.read_text()
                rows = _sdf_rows(_json(sj))
                if rows:
                    doc.table(["curve", "x", "SDF", "95% CI"], rows, f"sdf-{len(doc.html)}")
                doc.code(text if len(text) < 20_000 else text[:20_000] + "\n... (truncated)", "sdf.json", "json")

    # per run: config and command
    doc.h(2, "Runs: config and command")
    if kind == "grid":
        doc.p("The whole grid (finished cells are kept, unfinished ones resume):")
        doc.pre(f"jointaug grid {shlex.quote(str(run_dir / 'grid.yaml'))} --out {shlex.quote(str(run_dir))}", "sh")
    doc.p("Each command below retrains and evaluates that run alone (jointaug train: the same code as "
          + ("the grid's cells" if kind == "grid" else "jointaug run") + "); its full config follows.")
    for e in entries:
        doc.h(3, f"{e.label} ({e.state})")
        if e.command:
            doc.pre(e.command, "sh")
        cfgp = e.dir / "config.yaml"
        if cfgp.is_file():
            doc.code(cfgp.read_text(), f"config ({cfgp.relative_to(run_dir)})", "yaml")
        else:
            doc.p("no config.yaml yet (not started)", "note")
    if skipped:
        print("jointaug report: note: " + "; ".join(skipped), file=sys.stderr)

    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(doc.html) + f"\n<script>{CHECK_JS}</script>\n</body></html>\n")
    (run_dir / "report.html").write_text(page, encoding="utf-8")
    (run_dir / "report.md").write_text("\n".join(doc.md), encoding="utf-8")
    return {"html": str(run_dir / "report.html"), "md": str(run_dir / "report.md"), "entries": len(entries),
            "unfinished": [e.id for e in unfinished], "skipped": skipped,
            "images": sum(x.count("<img ") for x in doc.html)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``jointaug report``."""
    parser.add_argument("run_dir", help="a `jointaug run` output folder or a `jointaug grid` folder")
    parser.add_argument("--gallery-images", type=int, default=4, help="images in the pairs gallery (default 4)")


def main(args: argparse.Namespace) -> int:
    """Write the report; print its paths."""
    if args.gallery_images < 1:
        raise ValueError(f"--gallery-images must be >= 1, got {args.gallery_images}")
    out = write_report(args.run_dir, gallery_images=args.gallery_images)
    print(out["html"])
    print(out["md"])
    if out["unfinished"]:
        print(f"jointaug report: note: unfinished: {', '.join(out['unfinished'])}", file=sys.stderr)
    return 0
