"""Image folders end to end: training images/s and data-wait fraction per epoch, and peak memory.

``e2e``: SimCLR ConvNet-4 (``configs/simclr/imagenette.yaml``) on a JPEG folder, views of 32 and 64
px, through the real trainer (``jointaug.train.trainer.train``), one run per configuration in one
session:

- ``before``: what a folder got before issue 11: full JPEG decode in 2 DataLoader workers every
  epoch, views rendered in the main process (``data.draft=false data.max_resolution=null
  aug.where=main``);
- ``cache``: the bounded decoded cache (``data.max_resolution`` = 1.5 x the view size), views still
  rendered in the main process;
- ``after``: the cache plus whole batches rendered ahead in 2 workers (``aug.where=batches``).

Per epoch the trainer logs images/s and data wait (time waiting for the next batch's views / step
time). Setup time (listing, decoding the cache) is reported apart.

``memory``: peak resident memory (``ru_maxrss`` of a child process) of ``jointaug train`` on a
folder of 224 px images, and of the channel statistics alone, before (float64 chunks of 1,024
images, the code replaced in issue 11) and after (streaming histograms)::

    jointaug bench folder --data-dir /tmp/imagenette-style --memory-dir /tmp/folder-5000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import RESULTS_DIR, load_average, machine_info, write_results

CONFIGS = {
    "before": ["data.draft=false", "data.max_resolution=null", "aug.where=main"],
    "cache": ["aug.where=main"],
    "after": ["aug.where=batches"],
}


def e2e_run(name: str, size: int, args: argparse.Namespace, out_dir: Path) -> dict:
    """One training run of configuration ``name`` at ``size`` px views; per-epoch figures from its log."""
    from ..config import load_config
    from ..train.logger import read_metrics
    from ..train.trainer import train

    bound = [f"data.max_resolution={round(1.5 * size)}"] if name != "before" else []
    ov = [f"data.root={args.data_dir}", f"data.name={args.data}", f"aug.size={size}", f"optim.epochs={args.epochs}",
          f"data.limit={args.limit}", "train.knn_every=0", "eval.final=false", "train.tensorboard=false",
          "train.progress=false", "train.resume=false", f"train.out_dir={out_dir}", f"data.cache_dir={args.cache_dir}",
          f"data.num_workers={args.workers}", *bound, *CONFIGS[name], *args.overrides]
    cfg = load_config("simclr/imagenette", ov)
    t0 = time.perf_counter()
    train(cfg)
    wall = time.perf_counter() - t0
    epochs = [r for r in read_metrics(out_dir / "metrics.jsonl") if r["type"] == "epoch"]
    later = epochs[1:] or epochs
    return {"config": name, "view_px": size, "overrides": ov, "epochs": len(epochs),
            "images_per_s": [round(r["img_per_s"], 1) for r in epochs],
            "data_wait": [round(r["data_wait"], 4) for r in epochs],
            "data_wait_from_epoch_2": round(sum(r["data_wait"] * r["train_time"] for r in later)
                                            / sum(r["train_time"] for r in later), 4),
            "images_per_s_from_epoch_2": round(sum(r["img_per_s"] * r["train_time"] for r in later)
                                               / sum(r["train_time"] for r in later), 1),
            "train_time_s": round(sum(r["train_time"] for r in epochs), 2),
            "setup_and_other_s": round(wall - sum(r["train_time"] for r in epochs), 2),
            "load_average_after": load_average()}


_STATS_BEFORE = '''
import torch
def channel_stats(images, max_images=10000):  # the implementation replaced in issue 11
    x = images[:max_images]
    acc = torch.zeros(3, dtype=torch.float64); acc2 = torch.zeros(3, dtype=torch.float64); count = 0
    for s in range(0, x.shape[0], 1024):
        chunk = x[s:s + 1024].to(torch.float64) / 255.0
        acc += chunk.sum(dim=(0, 2, 3)); acc2 += (chunk * chunk).sum(dim=(0, 2, 3))
        count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    mean = acc / max(count, 1)
    return mean, (acc2 / max(count, 1) - mean * mean).clamp_min(1e-12).sqrt()
'''

_CHILD = '''
import json, resource, sys, time
{stats}
from jointaug.data.datasets import build_dataset
ds = build_dataset("folder", "train", root={root!r}, cache_dir={cache!r})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
print(json.dumps({{"mean_std": [list(map(float, v)) for v in channel_stats(ds.images)], "s": time.perf_counter() - t,
                  "images": list(ds.images.shape), "rss_before_kb": before,
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
'''


def _child_peak(cmd: list[str]) -> tuple[dict | None, int, float]:
    """Run ``cmd``; (its last JSON line or None, the child's own peak RSS in kB from ``wait4``, wall s)."""
    t = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {stderr[-2000:]}")
    found = None
    for ln in stdout.splitlines():  # the statistics children print one JSON line; training prints its own text
        try:
            found = json.loads(ln) if ln.startswith("{") else found
        except ValueError:
            continue
    return found, int(usage.ru_maxrss), wall


def memory(args: argparse.Namespace) -> list[dict]:
    """Peak RSS of the statistics (before / after) and of a training run on the 224 px folder."""
    rows = []
    stats_after = "from jointaug.train.data import channel_stats"
    for label, stats in (("channel statistics, after (streaming histograms)", stats_after),
                         ("channel statistics, before (float64 chunks of 1,024 images)", _STATS_BEFORE)):
        code = _CHILD.format(stats=stats, root=args.memory_dir, cache=args.cache_dir)
        out, peak, wall = _child_peak([sys.executable, "-c", code])
        rows.append({"what": label, "peak_rss_mb": round(peak / 1024, 1), "wall_s": round(wall, 1),
                     "result": out})
    for label, extra in (("jointaug train simclr/imagenette on it (recipe: data.max_resolution=96)", []),
                         ("the same with data.max_resolution=null (224 px images cached, 750 MB)",
                          ["data.max_resolution=null"])):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "jointaug.cli", "train", "simclr/imagenette", f"data.root={args.memory_dir}",
                   "data.name=folder", "data.limit=null", "data.test_limit=500", "optim.epochs=1",
                   "train.max_steps=5", "train.knn_every=0", "eval.linear=false", "train.tensorboard=false",
                   "train.progress=false", f"train.out_dir={tmp}/run", f"data.cache_dir={args.cache_dir}", *extra]
            _, peak, wall = _child_peak(cmd)
        rows.append({"what": label, "peak_rss_mb": round(peak / 1024, 1), "wall_s": round(wall, 1),
                     "command": " ".join(cmd[2:])})
    return rows


def _markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"# Image folders end to end ({result['time_utc']} UTC)", "",
             f"`{result['command']}`. {m['cpu']}, {m['logical_cpus']} logical CPUs (shared), torch {m['torch']}, "
             f"Pillow {m['pillow']}; load average at start {m['load_average']}, at end {result['load_average_end']}.",
             ""]
    if result.get("e2e"):
        lines += [f"SimCLR ConvNet-4 (simclr/imagenette), {result['folder']}; {result['e2e'][0]['epochs']} epochs "
                  "per run; before = full decode in workers + rendering in the main process, cache = "
                  "data.max_resolution 1.5 x view, after = cache + batches rendered by 2 workers "
                  "(aug.where=batches).", "",
                  "| view | config | images/s per epoch | data wait per epoch | data wait from epoch 2 | setup s |",
                  "|---|---|---|---|---:|---:|"]
        for r in result["e2e"]:
            lines.append(f"| {r['view_px']} px | {r['config']} | {', '.join(f'{v:.0f}' for v in r['images_per_s'])} | "
                         f"{', '.join(f'{100 * v:.1f}%' for v in r['data_wait'])} | "
                         f"{100 * r['data_wait_from_epoch_2']:.1f}% | {r['setup_and_other_s']:.1f} |")
        lines.append("")
    if result.get("memory"):
        lines += [f"Peak resident memory, {result['memory_folder']}:", "", "| what | peak RSS (MB) | wall s |",
                  "|---|---:|---:|"]
        for r in result["memory"]:
            lines.append(f"| {r['what']} | {r['peak_rss_mb']:.0f} | {r['wall_s']:.0f} |")
        lines += ["", "Peak RSS = ru_maxrss of each child process (os.wait4), file-backed pages of the memory-mapped "
                  "cache included."]
    return "\n".join(lines) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``jointaug bench folder``."""
    p.add_argument("--data-dir", help="ImageNet-layout JPEG folder for the end-to-end runs (skipped when absent)")
    p.add_argument("--data", default="imagenette", help="data-set name of --data-dir (imagenette: val = test)")
    p.add_argument("--memory-dir", help="folder of 224 px images for the memory figures (skipped when absent)")
    p.add_argument("--sizes", default="32,64", help="view sizes, comma-separated")
    p.add_argument("--configs", default="before,cache,after", help=f"of {', '.join(CONFIGS)}")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--limit", type=int, default=3000, help="training images (class-stratified)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    p.add_argument("--cache-dir", default=None, help="decoded cache (default: a temporary folder)")
    p.add_argument("--out", default=f"{RESULTS_DIR}/folder", help="output stem (.json and .md)")
    p.add_argument("overrides", nargs="*", help="extra key=value config overrides for every run")


def main(args: argparse.Namespace) -> int:
    """Run the parts whose folders are given, print the table, write the files."""
    with tempfile.TemporaryDirectory() as tmp:
        args.cache_dir = args.cache_dir or f"{tmp}/cache"
        result: dict = {"benchmark": "folder", "command": getattr(args, "command_line", "jointaug bench folder"),
                        "machine": machine_info(), "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                        "folder": args.data_dir, "memory_folder": args.memory_dir, "e2e": [], "memory": []}
        if args.data_dir:
            for size in (int(s) for s in args.sizes.split(",")):
                for name in args.configs.split(","):
                    print(f"== {name} at {size} px ...", file=sys.stderr, flush=True)
                    result["e2e"].append(e2e_run(name, size, args, Path(tmp) / f"{name}-{size}"))
        if args.memory_dir:
            result["memory"] = memory(args)
    result["load_average_end"] = load_average()
    md = _markdown(result)
    print(md)
    pj, pm = write_results(result, md, args.out)
    print(f"wrote {pj} and {pm}")
    return 0 if (args.data_dir or args.memory_dir) else 2


__all__ = ["add_arguments", "e2e_run", "main", "memory"]
