"""Training-step throughput of a backbone (forward + backward + SGD step), in images per second.

``python -m jointaug.models.bench --models convnet4 resnet18 --size 32 --batch 128`` prints one
line per model (and JSON with ``--json``). Figures depend on the machine and its load: report them
with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from jointaug.models import build_backbone


def measure_throughput(
    name: str,
    *,
    batch: int = 128,
    size: int = 32,
    steps: int = 5,
    warmup: int = 2,
    cifar_stem: bool = True,
    device: str = "cpu",
) -> dict[str, float | int | str | bool]:
    """Median images/s of ``steps`` training steps (after ``warmup``) of backbone ``name`` on random data."""
    torch.manual_seed(0)
    model = build_backbone(name, cifar_stem=cifar_stem).to(device).train()
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
            "device": device, "threads": torch.get_num_threads(), "seconds_per_step": round(median, 4),
            "images_per_s": round(batch / median, 1)}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: one line (or JSON record) per model."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["convnet4", "resnet18"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--imagenet-stem", action="store_true", help="ResNets with the 7x7 stride-2 stem + max-pool")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in args.models:
        res = measure_throughput(name, batch=args.batch, size=args.size, steps=args.steps,
                                 cifar_stem=not args.imagenet_stem, device=args.device)
        res["machine"] = f"{platform.machine()} {platform.processor() or ''}".strip()
        res["load_avg_1min"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else -1.0
        if args.json:
            print(json.dumps(res))
        else:
            stem = "cifar stem" if res["cifar_stem"] else "imagenet stem"
            print(f"{name:10s} ({stem}) batch {args.batch} @ {args.size}px on {args.device} "
                  f"({res['threads']} threads): {res['images_per_s']:8.1f} img/s fwd+bwd "
                  f"({res['seconds_per_step']:.3f} s/step)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
