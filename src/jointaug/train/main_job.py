"""``jointaug run``: the main job. A method (SimCLR by default; ``--method``) trained and evaluated under
several view policies (RandomCrop and J-Crop(0) by default; ``--policies``), compared in one table.

With no argument it uses the built-in synthetic set (``configs/<method>/synthetic.yaml``; the GPU
when there is one) and fits in a few minutes on 2 CPU cores. ``--data cifar10 --data-dir PATH``
(or cifar100, stl10, tiny-imagenet, imagenet, folder) runs the same comparison with that data
set's recipe. All runs share the seed, so they see the same images in the same order, the same
initial weights and the same colour/flip draws: only the view law differs.

The run folder (``runs/<timestamp>/`` or ``--out``) holds one training run per policy (e.g.
``random-crop/`` and ``j-crop/``: config, metrics.jsonl, TensorBoard events, checkpoint,
summary.json), ``metrics.json`` (every summary and the untrained baseline), ``table.md``,
``loss.png``, ``knn.png``, ``pairs.png`` and the report (``report.html`` / ``report.md``, ``jointaug
report``). The table ends with the accuracy of the untrained initial weights (shared by every run), so
what training added is visible.
Running it again with the same ``--out`` resumes unfinished runs from their checkpoints.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from jointaug.sampling.policy_names import POLICY_KINDS, parse_policies

__all__ = ["DEFAULT_POLICIES", "POLICIES", "POLICY_KINDS", "add_arguments", "evaluate_initial", "format_table", "main",
           "parse_policies", "run_comparison"]

#: (label, folder, config overrides) of the default comparison: RandomCrop vs J-Crop(0)
POLICIES: list[tuple[str, str, list[str]]] = [
    ("RandomCrop", "random-crop", ["aug.crop=random"]),
    ("J-Crop(0)", "j-crop", ["aug.crop=joint", "aug.beta=0.0"]),
]
DEFAULT_POLICIES = "random,jcrop(0)"
_RECIPES = {"synthetic": "simclr/synthetic", "cifar10": "simclr/cifar10", "cifar100": "simclr/cifar100",
            "stl10": "simclr/stl10", "tiny-imagenet": "simclr/tiny-imagenet", "imagenet": "simclr/imagenet",
            "imagenette": "simclr/imagenette", "folder": "simclr/cifar10"}

#: --quick: a tiny run for smoke tests (seconds)
QUICK = ["data.limit=256", "data.test_limit=200", "model.backbone=convnet4", "model.backbone_kwargs.width=8",
         "method.params.proj_hidden_dim=64", "method.params.proj_out_dim=32", "optim.batch_size=64",
         "optim.epochs=2", "optim.warmup_epochs=0", "train.knn_every=1", "eval.linear_epochs=3",
         "train.log_every=1", "data.num_workers=0"]  # no worker processes to start for 256 images


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``jointaug run``."""
    parser.add_argument("--out", help="run folder (default: runs/<timestamp>)")
    parser.add_argument("--data", default="synthetic",
                        help="data set: synthetic (default), cifar10, cifar100, stl10, tiny-imagenet, imagenet, "
                             "imagenette, folder")
    parser.add_argument("--data-dir", help="data root: archive or folder (not needed for synthetic)")
    parser.add_argument("--method", default="simclr",
                        help="self-supervised method: simclr (default), mocov1, mocov2, mocov3, byol, simsiam, dino; "
                             "the recipe is configs/<method>/<data>.yaml")
    parser.add_argument("--policies", default=DEFAULT_POLICIES,
                        help="comma-separated view policies to compare (default: random,jcrop(0)); kinds: random, "
                             "jcrop(B), jblur(B), jcolor(B), coin(B) (J-Crop or J-Blur per image), both(B); with "
                             "fixed-size crops (aug.crop_size): fixed, gcc(ALPHA), cgcc(ALPHA), mgcc(ALPHA), "
                             "mcgcc(ALPHA); ContrastiveCrop: ccrop, ccropj(B) (with J-Crop(B); set "
                             "aug.ccrop_warmup_epochs and aug.ccrop_every below --epochs)")
    parser.add_argument("--config",
                        help="recipe to start from (default: <method>/<data>; folder uses <method>/cifar10)")
    parser.add_argument("--epochs", type=int, help="training epochs per policy (default: the recipe's)")
    parser.add_argument("--batch-size", type=int, help="global batch size (default: the recipe's)")
    parser.add_argument("--limit", type=int, help="train on a class-stratified subset of this many images")
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda")
    parser.add_argument("--seed", type=int, default=None, help="the one seed (default: the recipe's)")
    parser.add_argument("--quick", action="store_true", help="tiny run for smoke tests (seconds, not meaningful)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for both runs")


def _base_overrides(args: argparse.Namespace) -> tuple[str, list[str]]:
    recipe = args.config or _RECIPES.get(args.data)
    method = getattr(args, "method", "simclr") or "simclr"
    if recipe is not None and not args.config and method != "simclr":
        recipe = f"{method}/{recipe.split('/', 1)[1]}"
    if recipe is None:
        raise ValueError(f"--data {args.data!r}: unknown data set; choose from {', '.join(_RECIPES)} "
                         "(or pass --config)")
    ov: list[str] = []
    if args.config or args.data != "synthetic":
        ov.append(f"data.name={args.data}")
    if args.data_dir:
        ov.append(f"data.root={args.data_dir}")
    if args.quick:
        ov += QUICK
    if args.epochs is not None:
        ov.append(f"optim.epochs={args.epochs}")
    if args.batch_size is not None:
        ov.append(f"optim.batch_size={args.batch_size}")
    if args.limit is not None:
        ov.append(f"data.limit={args.limit}")
    if args.device:
        ov.append(f"train.device={args.device}")
    if args.seed is not None:
        ov.append(f"train.seed={args.seed}")
    return recipe, ov + list(args.overrides)


def _fmt(v: Any, spec: str, suffix: str = "") -> str:
    return "n/a" if v is None else f"{format(v, spec)}{suffix}"


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table: policy, kNN top-1, linear top-1, train time, images/s, data-wait fraction."""
    head = "| policy | kNN top-1 (%) | linear top-1 (%) | train time (s) | images/s | data wait |"
    lines = [head, "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        wait = None if r.get("data_wait") is None else 100 * r["data_wait"]
        lines.append(f"| {r['label']} | {_fmt(r.get('knn_top1'), '.2f')} | {_fmt(r.get('linear_top1'), '.2f')} | "
                     f"{_fmt(r.get('train_time_s'), '.1f')} | {_fmt(r.get('images_per_s'), '.0f')} | "
                     f"{_fmt(wait, '.1f', '%')} |")
    return "\n".join(lines)


def _epoch_records(run_dir: Path) -> list[dict[str, Any]]:
    from jointaug.train.logger import read_metrics

    return [r for r in read_metrics(run_dir / "metrics.jsonl") if r.get("type") == "epoch"]


def _plots(out: Path, rows: list[dict[str, Any]], baseline: dict[str, Any] | None = None) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    method = rows[0].get("method", "training") if rows else "training"
    for key, fname, ylabel in (("loss", "loss.png", f"{method} loss (epoch mean)"),
                               ("knn_top1", "knn.png", "kNN top-1 (%)")):
        fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
        for r in rows:
            recs = [x for x in _epoch_records(Path(r["out_dir"])) if x.get(key) is not None]
            if recs:
                ax.plot([x["epoch"] for x in recs], [x[key] for x in recs], marker="o", ms=3, label=r["label"])
        if key == "knn_top1" and baseline and baseline.get("knn_top1") is not None:
            ax.axhline(baseline["knn_top1"], ls=":", lw=1.0, color="gray", label="untrained")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / fname)
        plt.close(fig)
        written.append(fname)
    return written


def _pairs_png(out: Path, cfg_by_label: dict[str, Any], n_images: int = 6, seed: int = 0) -> str | None:
    """A grid of positive pairs: per image, the original and two views under each policy (same seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from jointaug.augment import BatchViews
    from jointaug.config import build_policy
    from jointaug.data.datasets import build_dataset

    first = next(iter(cfg_by_label.values()))
    d = first.data
    ds = build_dataset(d.name, d.eval_train_split, root=d.root, download=d.download, size=d.size,
                       on_error=d.on_error, cache_dir=d.cache_dir, limit=d.limit)
    n = min(n_images, len(ds))
    picks = torch.linspace(0, len(ds) - 1, n).long().tolist()
    images = [ds[i][0] for i in picks]
    try:  # the analysis package's gallery (captions with the realised area ratio) when it is there
        from jointaug.analysis.pairs import make_gallery
    except ImportError:
        make_gallery = None
    if make_gallery is not None:
        classes = list(getattr(ds, "classes", []))
        names = [classes[int(ds[i][1])] if 0 <= int(ds[i][1]) < len(classes) else f"#{i}" for i in picks]
        policies = [build_policy(cfg) for cfg in cfg_by_label.values()]
        for label, pol in zip(cfg_by_label, policies):
            pol.name = label
        make_gallery(images, names, policies, out / "pairs.png", seed=seed, mode=first.aug.mode)
        return "pairs.png"
    cols: list[tuple[str, list[Any]]] = [("image", [im.permute(1, 2, 0).numpy() for im in images])]
    for label, cfg in cfg_by_label.items():
        bv = BatchViews(build_policy(cfg), mode=cfg.aug.mode, mean=None, std=None)
        views, _ = bv.from_list(images, torch.Generator().manual_seed(seed))
        for k in range(2):
            cols.append((f"{label} v{k + 1}", [v.clamp(0, 1).permute(1, 2, 0).numpy() for v in views[k]]))
    fig, axes = plt.subplots(n, len(cols), figsize=(1.5 * len(cols), 1.5 * n), dpi=110, squeeze=False)
    for j, (title, imgs) in enumerate(cols):
        for i in range(n):
            ax = axes[i][j]
            ax.imshow(imgs[i], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=7)
    fig.suptitle(f"positive pairs: the same image under {', '.join(cfg_by_label)} (same seed)", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "pairs.png")
    plt.close(fig)
    return "pairs.png"


def evaluate_initial(cfg: Any) -> dict[str, Any]:
    """kNN and linear accuracy of the untrained backbone (the seeded initial weights both runs start from)."""
    from jointaug.train.trainer import Trainer

    t = Trainer(cfg)
    t.setup()
    res = t.final_evaluation()
    return {"label": "untrained (initial weights)", "knn_top1": res.get("knn_top1"),
            "linear_top1": res.get("linear_top1"), "train_time_s": None, "images_per_s": None, "data_wait": None}


def run_comparison(out: Path, recipe: str, overrides: list[str],
                   policies: list[tuple[str, str, list[str]]] | None = None) -> dict[str, Any]:
    """Train and evaluate each policy (default :data:`POLICIES`) into ``out``; write metrics.json, table.md,
    plots, pairs. Every config is validated before anything trains."""
    from jointaug.config import config_to_yaml, load_config
    from jointaug.train.trainer import train

    policies = POLICIES if policies is None else policies
    cfgs = {}
    for label, folder, extra in policies:  # validate all before training any (a bad config leaves no folder)
        cfgs[label] = load_config(recipe, [*overrides, *extra, f"train.out_dir={out / folder}", f"name={folder}"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text("# the runs differ only in the view policy's aug.* keys: "
                                     + "; ".join(f"{lab}: {' '.join(ex)}" for lab, _, ex in policies) + "\n"
                                     + config_to_yaml(cfgs[policies[0][0]]))
    rows: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    baseline = evaluate_initial(cfgs[policies[0][0]])
    for label, _, _ in policies:
        print(f"== {label}: training ({cfgs[label].optim.epochs} epochs) ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        summary = train(cfgs[label])
        summary = {"label": label, **summary, "wall_time_s": time.perf_counter() - t0}
        rows.append(summary)
        print(f"== {label}: kNN {_fmt(summary.get('knn_top1'), '.2f')}%  linear "
              f"{_fmt(summary.get('linear_top1'), '.2f')}%  ({summary['wall_time_s']:.0f} s)",
              file=sys.stderr, flush=True)
    table = format_table([*rows, baseline])
    files = ["metrics.json", "table.md"]
    try:
        files += _plots(out, rows, baseline)
    except Exception as exc:  # plots are a convenience: never lose the results over them
        print(f"jointaug run: note: plots skipped ({exc})", file=sys.stderr)
    try:
        png = _pairs_png(out, cfgs, seed=int(cfgs[policies[0][0]].train.seed))
        if png:
            files.append(png)
    except Exception as exc:
        print(f"jointaug run: note: example pairs skipped ({exc})", file=sys.stderr)
    result = {"recipe": recipe, "method": cfgs[policies[0][0]].method.name, "overrides": overrides,
              "policies": [{"label": lab, "folder": f, "overrides": ex} for lab, f, ex in policies],
              "runs": rows, "untrained": baseline,
              "total_wall_time_s": time.perf_counter() - t_all, "table": table, "files": files}
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "table.md").write_text(table + "\n")
    try:  # report.html + report.md (jointaug report): a few seconds; never costs the results
        from jointaug.experiments.report import write_report

        write_report(out)
    except Exception as exc:
        print(f"jointaug run: note: report skipped ({type(exc).__name__}: {exc})", file=sys.stderr)
    return result


def main(args: argparse.Namespace) -> int:
    """Run both trainings and print the comparison table."""
    recipe, overrides = _base_overrides(args)
    policies = parse_policies(getattr(args, "policies", None) or DEFAULT_POLICIES)
    out = Path(args.out) if args.out else Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    from jointaug.train.trainer import NonFiniteLossError

    try:
        result = run_comparison(out, recipe, overrides, policies)
    except NonFiniteLossError as exc:
        print(f"jointaug run: {exc}", file=sys.stderr)
        return 3
    print(result["table"])
    print(f"\nrun folder: {out}  (total {result['total_wall_time_s']:.0f} s)")
    return 0
