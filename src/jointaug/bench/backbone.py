"""Training-step throughput of a backbone (forward + backward + SGD step), in images per second.

``jointaug bench backbone --models convnet4 resnet18 --size 32 --batch 128`` prints one line per
model (and JSON with ``--json``); ``--out STEM`` also writes ``STEM.json`` and ``STEM.md``.
``--formats contiguous,channels_last`` measures both memory layouts (``train.channels_last``) in
alternating rounds and reports the speed ratio of the same run. Figures
depend on the machine and its load: each record carries the machine and the load average.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from ..models import build_backbone
from .common import load_average, machine_info, write_results


def measure_throughput(
    name: str,
    *,
    batch: int = 128,
    size: int = 32,
    steps: int = 5,
    warmup: int = 2,
    cifar_stem: bool = True,
    device: str = "cpu",
    memory_format: str = "contiguous",
) -> dict[str, float | int | str | bool]:
    """Median images/s of ``steps`` training steps (after ``warmup``) of backbone ``name`` on random data;
    ``memory_format="channels_last"`` converts the weights as ``train.channels_last`` does (inputs stay NCHW)."""
    torch.manual_seed(0)
    model = build_backbone(name, cifar_stem=cifar_stem).to(device).train()
    if memory_format == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device=device)
    times = []
    for i in range(warmup + steps):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    return {"model": name, "cifar_stem": cifar_stem, "batch": batch, "size": size, "steps": steps,
            "device": device, "memory_format": memory_format, "threads": torch.get_num_threads(),
            "seconds_per_step": round(median, 4),
            "images_per_s": round(batch / median, 1)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``jointaug bench backbone``."""
    p.add_argument("--models", nargs="+", default=["convnet4", "resnet18"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--imagenet-stem", action="store_true", help="ResNets with the 7x7 stride-2 stem + max-pool")
    p.add_argument("--device", default="cpu")
    p.add_argument("--formats", default="contiguous",
                   help="comma-separated memory layouts: contiguous, channels_last (both: measured alternately)")
    p.add_argument("--rounds", type=int, default=1, help="alternating rounds per model (median over rounds)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="one JSON record per model instead of a line")
    p.add_argument("--out", default=None, help="also write STEM.json and STEM.md (e.g. benchmarks/results/backbone)")


def main(args: argparse.Namespace) -> int:
    """One line (or JSON record) per model; with ``--out`` the JSON + Markdown files."""
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    for key in ("batch", "size", "steps"):
        if getattr(args, key) < 1:
            raise ValueError(f"--{key} must be >= 1, got {getattr(args, key)}")
    formats = [f.strip() for f in str(args.formats).split(",") if f.strip()]
    bad = [f for f in formats if f not in ("contiguous", "channels_last")]
    if bad or not formats:
        raise ValueError(f"--formats: expected contiguous and/or channels_last, got {args.formats!r}")
    if args.rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {args.rounds}")
    records = []
    for name in args.models:
        per: dict[str, list[dict]] = {f: [] for f in formats}
        for _ in range(args.rounds):  # alternate the layouts so that load changes hit both alike
            for f in formats:
                per[f].append(measure_throughput(name, batch=args.batch, size=args.size, steps=args.steps,
                                                 cifar_stem=not args.imagenet_stem, device=args.device,
                                                 memory_format=f))
        for f in formats:
            res = sorted(per[f], key=lambda r: r["images_per_s"])[len(per[f]) // 2]
            res["rounds"] = args.rounds
            res["load_average"] = load_average()
            if f != formats[0]:
                base = sorted(r["images_per_s"] for r in per[formats[0]])[len(per[formats[0]]) // 2]
                res[f"speedup_vs_{formats[0]}"] = round(res["images_per_s"] / base, 3)
            records.append(res)
            if args.json:
                print(json.dumps(res))
            else:
                stem = "cifar stem" if res["cifar_stem"] else "imagenet stem"
                ratio = next((f" ({v:.2f}x {k[11:]})" for k, v in res.items() if k.startswith("speedup_vs_")), "")
                print(f"{name:10s} ({stem}, {f}) batch {args.batch} @ {args.size}px on {args.device} "
                      f"({res['threads']} threads): {res['images_per_s']:8.1f} img/s fwd+bwd "
                      f"({res['seconds_per_step']:.3f} s/step){ratio}")
    if args.out:
        command = getattr(args, "command_line", "jointaug bench backbone")
        m = machine_info(device=args.device)
        md = ["# Backbone training-step throughput", "", f"Command: `{command}`  ",
              f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, torch {m['torch']}, "
              f"load average {m['load_average']}", "",
              "| model | stem | memory format | batch | px | threads | images/s | s/step | speed-up (same run) |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        md += [f"| {r['model']} | {'cifar' if r['cifar_stem'] else 'imagenet'} | {r['memory_format']} | {r['batch']} "
               f"| {r['size']} | {r['threads']} | {r['images_per_s']:.1f} | {r['seconds_per_step']:.3f} | "
               + next((f"{v:.2f}x" for k, v in r.items() if k.startswith("speedup_vs_")), "") + " |"
               for r in records]
        write_results({"command": command, "machine": m, "runs": records}, "\n".join(md) + "\n", args.out)
    return 0


__all__ = ["add_arguments", "main", "measure_throughput"]
