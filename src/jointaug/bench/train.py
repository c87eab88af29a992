"""Training throughput (images/s) and data-wait fraction per method, measured through the real trainer.

CPU (default): SimCLR with ResNet-18 (CIFAR stem) and ConvNet-4 at 32 px on the synthetic set,
batch 128, a few dozen steps each (the first ``--warmup`` steps are not counted)::

    jointaug bench train                  # -> benchmarks/results/train_cpu.{json,md}

(``python benchmarks/bench_train.py`` is the same command.) Every method of the zoo (each with its
``configs/<method>/synthetic.yaml`` heads and losses)::

    jointaug bench train --methods simclr,mocov1,mocov2,mocov3,byol,simsiam,dino \\
        --models convnet4,resnet18 --out benchmarks/results/train_cpu_methods

GPU: ResNet-18 on CIFAR-10 (the shared JPEG copy), full epochs timed, data wait, and kNN accuracy
after a short run (``--epochs``)::

    jointaug bench train --device cuda --data folder \\
        --data-dir ../shared/datasets/cifar10-jpg.tar.gz --models resnet18 --batch-size 512 --epochs 5

What is measured (see jointaug.train.trainer): per step, data time = from asking for the batch
until its views are ready on the device (indexing the in-memory uint8 images + batched rendering;
CUDA synchronised); step time = data time + forward + backward + optimiser step until the loss is
on the host. images/s = images of the global batch / step time (each image gives 2 views).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from ..config import load_config
from ..train.logger import read_metrics
from ..train.trainer import train
from .common import RESULTS_DIR, machine_info, write_results

MODELS = {"resnet18": ["model.backbone=resnet18", "model.cifar_stem=true"],
          "convnet4": ["model.backbone=convnet4", "model.backbone_kwargs.width=32"]}


def _data_overrides(args: argparse.Namespace) -> list[str]:
    ov = [f"data.name={args.data}"]
    if args.data_dir:
        ov.append(f"data.root={args.data_dir}")
    if args.limit:
        ov.append(f"data.limit={args.limit}")
    return ov


def _method_base(method: str, recipe: str) -> tuple[str | None, list[str]]:
    """(recipe, overrides) that give ``method`` its own heads and loss: SimCLR from the defaults (as the
    earlier results), the other methods from ``configs/<method>/<recipe>.yaml``."""
    if method == "simclr":
        return None, []
    return f"{method}/{recipe}", ["model.backbone_kwargs={}"]


def bench_steps(model: str, args: argparse.Namespace, out_dir: Path, method: str = "simclr") -> dict:
    """A short run of ``warmup + steps`` steps; throughput from the steps after the warm-up."""
    recipe, base = _method_base(method, "synthetic")
    simclr = ["method.params.temperature=0.2"] if method == "simclr" else []
    ov = [*base, *_data_overrides(args), *MODELS[model], f"optim.batch_size={args.batch_size}", "optim.epochs=100",
          "optim.warmup_epochs=0", f"aug.size={args.size}", "train.log_every=1", "data.num_workers=0", *simclr,
          f"train.max_steps={args.warmup + args.steps}", "train.knn_every=0", "eval.final=false",
          "train.tensorboard=false", "train.progress=false", "train.resume=false", f"train.device={args.device}",
          f"train.out_dir={out_dir}", *args.overrides]
    if method in ("simclr", "mocov1", "mocov2", "mocov3", "byol", "simsiam"):
        ov.insert(len(base), "aug.recipe=small")
    cfg = load_config(recipe, ov)
    t0 = time.perf_counter()
    summary = train(cfg)
    wall = time.perf_counter() - t0
    recs = [r for r in read_metrics(out_dir / "metrics.jsonl") if r["type"] == "step"][args.warmup:]
    gb = args.batch_size
    step_t = [gb / r["img_per_s"] for r in recs]
    data_t = [r["data_wait"] * s for r, s in zip(recs, step_t)]
    return {"method": method, "model": model, "batch_size": gb, "image_size": args.size, "steps_timed": len(recs),
            "images_per_s": gb * len(recs) / sum(step_t), "data_wait": sum(data_t) / sum(step_t),
            "step_time_s_median": sorted(step_t)[len(step_t) // 2], "wall_s": wall,
            "data_path": summary.get("data_path")}


def bench_epochs(model: str, args: argparse.Namespace, out_dir: Path, method: str = "simclr") -> dict:
    """``--epochs`` full epochs with the kNN monitor: epoch times, data wait, kNN after the short run."""
    recipe, base = _method_base(method, "cifar10")
    simclr = (["optim.name=sgd", "optim.lr=0.25", "optim.weight_decay=5e-4", "method.params.temperature=0.5",
               "method.params.proj_hidden_dim=2048", "aug.recipe=small"] if method == "simclr" else [])
    ov = [*base, *_data_overrides(args), *MODELS[model], f"optim.batch_size={args.batch_size}",
          f"optim.epochs={args.epochs}", "optim.warmup_epochs=1", f"aug.size={args.size}", *simclr,
          f"train.knn_every={args.epochs}", "eval.linear=false",
          "train.tensorboard=false", "train.progress=false", "train.resume=false", f"train.device={args.device}",
          f"train.out_dir={out_dir}", "data.num_workers=8", *args.overrides]
    cfg = load_config(recipe, ov)
    summary = train(cfg)
    epochs = [r for r in read_metrics(out_dir / "metrics.jsonl") if r["type"] == "epoch"]
    steady = epochs[1:] or epochs
    return {"method": method, "model": model, "batch_size": args.batch_size, "epochs": len(epochs),
            "epoch_train_time_s": [r["train_time"] for r in epochs],
            "steady_epoch_time_s": sum(r["train_time"] for r in steady) / len(steady),
            "images_per_s": sum(r["img_per_s"] for r in steady) / len(steady),
            "data_wait": sum(r["data_wait"] for r in steady) / len(steady),
            "knn_top1": summary.get("knn_top1"), "knn_history": summary.get("knn_history"),
            "data_path": summary.get("data_path")}


def _markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"# Training throughput ({result['mode']})", "",
             f"Machine: {m['cpu']} ({m['logical_cpus']} CPUs, torch threads {m['threads']}), "
             f"{m.get('cuda_device', 'no GPU') if m['device'].startswith('cuda') else 'no GPU'}; "
             f"torch {m['torch']}, Python {m['python']}; load average at start {m['load_average']}.", "",
             f"Command: `{result['command']}`", ""]
    if result["mode"] == "steps":
        lines += ["| method | model | batch | px | steps timed | images/s | data wait | median step (s) |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in result["runs"]:
            lines.append(f"| {r.get('method', 'simclr')} | {r['model']} | {r['batch_size']} | {r['image_size']} | "
                         f"{r['steps_timed']} | "
                         f"{r['images_per_s']:.1f} | {100 * r['data_wait']:.1f}% | {r['step_time_s_median']:.3f} |")
    else:
        lines += ["| method | model | batch | epochs | steady epoch (s) | images/s | data wait | kNN top-1 |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in result["runs"]:
            knn = "n/a" if r["knn_top1"] is None else f"{r['knn_top1']:.2f}%"
            lines.append(f"| {r.get('method', 'simclr')} | {r['model']} | {r['batch_size']} | {r['epochs']} | "
                         f"{r['steady_epoch_time_s']:.2f} | "
                         f"{r['images_per_s']:.0f} | {100 * r['data_wait']:.1f}% | {knn} |")
    lines += ["", "images/s counts images (2 views each) per second of step time; data wait = time blocked on "
              "the next batch (indexing + view rendering) / step time."]
    return "\n".join(lines) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``jointaug bench train``."""
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", default="synthetic")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--models", default="resnet18,convnet4")
    p.add_argument("--methods", default="simclr", help="comma-separated methods (each with its own recipe's heads)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--steps", type=int, default=24, help="timed steps per model")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--epochs", type=int, default=0, help="> 0: time full epochs (+ kNN) instead of steps")
    p.add_argument("--out", default=None, help=f"result stem (default: {RESULTS_DIR}/train_<device>)")
    p.add_argument("overrides", nargs="*", help="extra config overrides (key=value)")


def main(args: argparse.Namespace) -> int:
    """Run every (method, model) pair, print one JSON line each, write the JSON + Markdown files."""
    if args.data != "synthetic" and not args.data_dir:
        raise ValueError(f"--data {args.data} needs --data-dir (e.g. ../shared/datasets/cifar10-jpg.tar.gz "
                         "with --data folder)")
    if args.data_dir and not Path(args.data_dir).exists():
        raise FileNotFoundError(f"--data-dir {args.data_dir} does not exist (the shared CIFAR-10 copy lives in "
                                "../shared/datasets/cifar10-jpg.tar.gz when present)")
    models = args.models.split(",")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    mode = "epochs" if args.epochs > 0 else "steps"
    result = {"mode": mode, "machine": machine_info(device=args.device),
              "command": getattr(args, "command_line", "jointaug bench train"), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods.split(","):
            for model in models:
                fn = bench_epochs if mode == "epochs" else bench_steps
                r = fn(model, args, Path(tmp) / f"{method}-{model}", method)
                print(json.dumps(r))
                result["runs"].append(r)
    stem = Path(args.out) if args.out else Path(RESULTS_DIR) / f"train_{args.device.split(':')[0]}"
    md = _markdown(result)
    write_results(result, md, stem)
    print(md)
    return 0


__all__ = ["MODELS", "add_arguments", "bench_epochs", "bench_steps", "main"]
