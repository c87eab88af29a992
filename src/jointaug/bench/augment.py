"""Augmentation throughput benchmark: jointaug's batched renderer against PIL and kornia.

One run, one machine, one thread setting: pairs per second of a SimCLR-style two-view pipeline
(random resized crop, flip, colour jitter p=0.8, grayscale p=0.2, Gaussian blur p=0.5, to
float, normalise) for

1. the per-image PIL pipeline, run the way a torchvision user runs it (one image at a time: PIL
   crop + bilinear resize, ImageEnhance brightness / contrast / colour, hue through HSV, gray,
   ImageFilter.GaussianBlur, to tensor, normalise), parameters drawn per call with torch's RNG
   as torchvision's transforms do; a second row draws them with Python's ``random`` (cheaper);
2. torchvision's own transforms (v1 on PIL images, v2 on uint8 tensors) when torchvision imports;
   the baseline of the ratios is torchvision v1 then, the in-house PIL pipeline (its CPU stand-in)
   otherwise, and the result says which (``baseline``);
3. kornia.augmentation, batched (optional: skipped when kornia is not installed);
4. jointaug on CPU: sampling the ViewParams (``make_policy("simclr", ...)``, random crops or
   J-Crop(0) + J-Blur(0)) plus rendering, in fast and exact mode, the geometry chosen
   automatically (banded or dense resampling); the same with the dense path forced
   (``geometry="dense"``, the renderer before banded resampling) gives the before/after ratio;
5. jointaug on CUDA when a GPU is present: rendering throughput and the uint8-to-views cost per
   image (with and without the host-to-device copy).

Pipelines are timed round-robin (one batch of each per round), so drifts of a shared machine hit
all of them alike; the figures are medians over rounds, ratios are taken within the run. The
difference between the fast and exact modes (mean and max per pixel, on CIFAR-10 images when the
data set is present, procedural images otherwise) is measured on the same run.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..constants import IMAGENET_MEAN, IMAGENET_STD
from ..render.batched import render_views
from ..render.kernels import blur_kernel_size
from ..sampling.params import ViewParams, fields
from ..sampling.recipes import make_policy
from .common import Timed, machine_info, round_robin, tune_glibc_malloc, write_results
from .images import benchmark_images, find_cifar, procedural_images

#: SimCLR's colour jitter strengths (brightness, contrast, saturation, hue) and probabilities
JITTER = (0.8, 0.8, 0.8, 0.2)
JITTER_P, GRAY_P, BLUR_P, FLIP_P = 0.8, 0.2, 0.5, 0.5
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)
TARGETS = {"fast_vs_pil_32": 20.0, "fast_vs_kornia_32": 6.0, "exact_vs_pil_32": 4.0,
           "fast_vs_baseline_96": 8.0, "exact_vs_baseline_96": 4.0,
           "fast_vs_baseline_224": 8.0, "exact_vs_baseline_224": 4.0,
           "joint_overhead_pct": 2.0, "cuda_pairs_per_s_32": 1_000_000.0}


@dataclass
class Case:
    """One benchmark size: ``src`` x ``src`` inputs rendered to ``out`` x ``out`` views."""

    src: int
    out: int
    batch: int


FULL_CASES = (Case(32, 32, 512), Case(128, 96, 128), Case(256, 224, 32))
QUICK_CASES = (Case(32, 32, 32), Case(48, 40, 8))


# ---------------------------------------------------------------------------------------------- PIL
class PILPipeline:
    """SimCLR's view pipeline on one PIL image at a time, as torchvision's transforms run it.

    ``draws="torch"`` (default) draws every parameter the way torchvision's transforms do, with a
    small torch RNG call per decision (RandomResizedCrop's uniform area / log-aspect and randint
    corner, RandomApply / flip / grayscale coins, ColorJitter's randperm and four uniforms, the
    blur sigma); ``draws="python"`` uses Python's ``random`` instead (cheaper: a lower bound on
    the per-image cost). Blur is PIL's ImageFilter.GaussianBlur (torchvision would convert the
    image to a tensor and back for its GaussianBlur, which is slower).
    """

    def __init__(self, out: int, seed: int = 0, draws: str = "torch") -> None:
        from PIL import Image, ImageEnhance, ImageFilter

        if draws not in ("torch", "python"):
            raise ValueError(f"draws must be 'torch' or 'python', got {draws!r}")
        self.Image, self.ImageEnhance, self.ImageFilter = Image, ImageEnhance, ImageFilter
        self.out, self.draws = out, draws
        self.rng = random.Random(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.log_ratio = torch.log(torch.tensor(RATIO))

    # parameter draws ------------------------------------------------------------------------
    def _uniform(self, lo: float, hi: float) -> float:
        if self.draws == "python":
            return self.rng.uniform(lo, hi)
        return float(torch.empty(1).uniform_(lo, hi, generator=self.gen))

    def _coin(self, p: float) -> bool:
        if self.draws == "python":
            return self.rng.random() < p
        return bool(torch.rand(1, generator=self.gen) < p)

    def _randint(self, hi: int) -> int:  # in [0, hi]
        if self.draws == "python":
            return self.rng.randint(0, hi)
        return int(torch.randint(0, hi + 1, size=(1,), generator=self.gen).item())

    def _order(self) -> list[int]:
        if self.draws == "python":
            order = [0, 1, 2, 3]
            self.rng.shuffle(order)
            return order
        return torch.randperm(4, generator=self.gen).tolist()

    def _crop_box(self, W: int, H: int) -> tuple[int, int, int, int]:
        area = W * H
        lr = self.log_ratio
        for _ in range(10):
            target = area * self._uniform(*SCALE)
            aspect = math.exp(self._uniform(float(lr[0]), float(lr[1])))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= W and 0 < h <= H:
                return self._randint(W - w), self._randint(H - h), w, h
        s = min(W, H)
        return (W - s) // 2, (H - s) // 2, s, s

    # pixel ops --------------------------------------------------------------------------------
    def _hue(self, img, h: float):
        Image = self.Image
        hh, s, v = img.convert("HSV").split()
        a = np.array(hh, dtype=np.uint8)
        with np.errstate(over="ignore"):
            a += np.uint8(int(h * 255) % 256)
        return Image.merge("HSV", (Image.fromarray(a, "L"), s, v)).convert("RGB")

    def view(self, img) -> torch.Tensor:
        """One view of a PIL RGB image -> normalised float tensor [3, out, out]."""
        Image, E = self.Image, self.ImageEnhance
        x0, y0, w, h = self._crop_box(*img.size)
        v = img.crop((x0, y0, x0 + w, y0 + h)).resize((self.out, self.out), Image.BILINEAR)
        if self._coin(FLIP_P):
            v = v.transpose(Image.FLIP_LEFT_RIGHT)
        if self._coin(JITTER_P):
            b, c, s, hu = JITTER
            order = self._order()
            f = (self._uniform(1 - b, 1 + b), self._uniform(1 - c, 1 + c), self._uniform(1 - s, 1 + s),
                 self._uniform(-hu, hu))
            for op in order:
                if op == 0:
                    v = E.Brightness(v).enhance(f[0])
                elif op == 1:
                    v = E.Contrast(v).enhance(f[1])
                elif op == 2:
                    v = E.Color(v).enhance(f[2])
                else:
                    v = self._hue(v, f[3])
        if self._coin(GRAY_P):
            g = np.asarray(v.convert("L"))
            v = Image.fromarray(np.dstack([g, g, g]), "RGB")
        if self._coin(BLUR_P):
            v = v.filter(self.ImageFilter.GaussianBlur(radius=self._uniform(0.1, 2.0)))
        t = torch.from_numpy(np.array(v, dtype=np.uint8, copy=True)).view(self.out, self.out, 3)
        t = t.permute(2, 0, 1).contiguous().to(torch.float32).div(255)
        mean = torch.as_tensor(IMAGENET_MEAN, dtype=t.dtype).view(-1, 1, 1)
        std = torch.as_tensor(IMAGENET_STD, dtype=t.dtype).view(-1, 1, 1)
        return t.sub_(mean).div_(std)

    def __call__(self, images: list) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(self.view(im), self.view(im)) for im in images]


# ---------------------------------------------------------------------------------------------- kornia
def kornia_pipeline(out: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """kornia.augmentation's batched SimCLR view (None when kornia is not installed)."""
    try:
        import kornia.augmentation as K
    except ImportError:
        return None
    k = blur_kernel_size(out)  # the same kernel rule as jointaug's renderer
    aug = torch.nn.Sequential(
        K.RandomResizedCrop((out, out), scale=SCALE, ratio=RATIO),
        K.RandomHorizontalFlip(p=FLIP_P),
        K.ColorJitter(*JITTER, p=JITTER_P),
        K.RandomGrayscale(p=GRAY_P),
        K.RandomGaussianBlur((k, k), (0.1, 2.0), p=BLUR_P),
        K.Normalize(mean=torch.tensor(IMAGENET_MEAN), std=torch.tensor(IMAGENET_STD)),
    )
    return aug


# ---------------------------------------------------------------------------------------------- timing
def _jointaug_timers(x: torch.Tensor, out: int, device: str, gen_seed: int, dense: bool = False) -> list[Timed]:
    """jointaug sample+render timers (random crops / J-Crop(0)+J-Blur(0), fast / exact) for batch x;
    ``dense``: also random crops with the dense resampling forced (the renderer before banding)."""
    n = x.shape[0]
    hw = torch.tensor([[x.shape[-2], x.shape[-1]]]).expand(n, 2)
    policies = {"random": make_policy("simclr", size=out),
                "joint": make_policy("simclr", crop="joint", blur="joint", beta=0.0, size=out)}
    timers = []
    for mode in ("fast", "exact"):
        for crop, pol in policies.items():
            g = torch.Generator().manual_seed(gen_seed)

            def step(pol=pol, mode=mode, g=g):
                params = pol.sample(hw, g)
                return render_views(x, params.to(x.device), mode=mode, mean=IMAGENET_MEAN, std=IMAGENET_STD)

            timers.append(Timed(f"jointaug {mode} {crop} ({device})", step, n))
        if dense:
            g = torch.Generator().manual_seed(gen_seed)

            def step_dense(pol=policies["random"], mode=mode, g=g):
                params = pol.sample(hw, g)
                return render_views(x, params.to(x.device), mode=mode, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                    geometry="dense")

            timers.append(Timed(f"jointaug {mode} random dense ({device})", step_dense, n))
    return timers


def torchvision_pipelines(out: int) -> dict[str, Callable] | None:
    """torchvision's SimCLR view (v1 on PIL images, v2 on uint8 tensors), or None when it does not import."""
    try:
        from torchvision import transforms as T
        from torchvision.transforms import v2
    except Exception:  # noqa: BLE001 (absent, or a build that fails to load: no torchvision row)
        return None
    k = blur_kernel_size(out)
    v1 = T.Compose([T.RandomResizedCrop(out, scale=SCALE, ratio=RATIO), T.RandomHorizontalFlip(FLIP_P),
                    T.RandomApply([T.ColorJitter(*JITTER)], p=JITTER_P), T.RandomGrayscale(GRAY_P),
                    T.RandomApply([T.GaussianBlur(k, (0.1, 2.0))], p=BLUR_P), T.ToTensor(),
                    T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    t2 = v2.Compose([v2.RandomResizedCrop(out, scale=SCALE, ratio=RATIO, antialias=True),
                     v2.RandomHorizontalFlip(FLIP_P), v2.RandomApply([v2.ColorJitter(*JITTER)], p=JITTER_P),
                     v2.RandomGrayscale(GRAY_P), v2.RandomApply([v2.GaussianBlur(k, (0.1, 2.0))], p=BLUR_P),
                     v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    return {"v1": v1, "v2": t2}


def _sampling_timers(n: int, src: int, out: int, repeat: int = 5) -> list[Timed]:
    """Sampling alone (``repeat`` batches per timing: the joint-law overhead is a small difference)."""
    hw = torch.tensor([[src, src]]).expand(n, 2)
    out_t = []
    for crop, pol in (("random", make_policy("simclr", size=out)),
                      ("joint", make_policy("simclr", crop="joint", blur="joint", beta=0.0, size=out))):
        g = torch.Generator().manual_seed(1)

        def step(pol=pol, g=g):
            for _ in range(repeat):
                pol.sample(hw, g)

        out_t.append(Timed(f"sampling {crop}", step, n * repeat))
    return out_t


# ---------------------------------------------------------------------------------------------- fidelity
def mode_difference(images: torch.Tensor, seed: int = 0) -> dict:
    """Per-pixel |fast - exact| (in 1/255 units) on SimCLR views of ``images`` (no normalisation)."""
    n, _, h, w = images.shape
    pol = make_policy("simclr", size=int(h))
    params = pol.sample(torch.tensor([[h, w]]).expand(n, 2), torch.Generator().manual_seed(seed))
    out: dict = {}
    variants = {"simclr": params}
    no_hue = _clone(params)
    no_hue.hue.zero_()
    variants["simclr, hue = 0"] = no_hue
    for name, p in variants.items():
        fast = render_views(images, p, mode="fast")
        exact = render_views(images, p, mode="exact")
        d = torch.cat([(a - b).abs().flatten() for a, b in zip(fast, exact)]) * 255
        out[name] = {"mean": float(d.mean()), "max": float(d.max()), "p99": float(torch.quantile(d[:1 << 24], 0.99))}
    return out


def _clone(p: ViewParams) -> ViewParams:
    """A copy of ``p`` with every tensor cloned."""
    kw = {name: getattr(p, name).clone() for name in fields()}
    return ViewParams(out_hw=list(p.out_hw), extra={k: v.clone() for k, v in p.extra.items()}, **kw)


# ---------------------------------------------------------------------------------------------- profile
def profile_fast(x: torch.Tensor, out: int, rounds: int = 3) -> dict:
    """Where the time of a fast-mode render goes: CPU microseconds per pair, stage by stage.

    Re-runs the steps of :func:`render_views` (same private functions, same chunks) with a timer
    around each; the stages add up to about one render.
    """
    from ..render import batched as B

    n, _, h, w = x.shape
    pol = make_policy("simclr", size=out)
    params = pol.sample(torch.tensor([[h, w]]).expand(n, 2), torch.Generator().manual_seed(0))
    st = B._settings("fast", IMAGENET_MEAN, IMAGENET_STD, "tenth", torch.float32, None, x.device)
    acc: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], object]) -> object:
        t = time.process_time()
        r = fn()
        acc[name] = acc.get(name, 0.0) + time.process_time() - t
        return r

    for rep in range(rounds + 1):
        if rep == 1:
            acc.clear()
        timed("sampling (policy.sample)", lambda rep=rep: pol.sample(torch.tensor([[h, w]]).expand(n, 2),
                                                                   torch.Generator().manual_seed(rep)))
        plan_key = "per-batch plan (matrices' indices, colour maps, buffers)"
        plans = timed(plan_key, lambda: [B._plan(params, views, oh, ow, st, x.device, (h, w), 1.0 / 255)
                                         for (oh, ow), views in B._view_groups(params.out_hw)])
        outs = B._alloc_outputs(n, params.out_hw, st, x.device)
        step = min(n, B._chunk_size(st, x.shape[1], h, w, params.out_hw, x.device))
        works = timed(plan_key, lambda step=step, plans=plans: [B._Work(step, x.shape[1], h, w, plan, True, x.device)
                                                              for plan in plans])
        for s0 in range(0, n, step):
            rows = slice(s0, min(n, s0 + step))
            for plan, work in zip(plans, works):
                work = work.for_chunk(rows.stop - rows.start)
                _, m = timed("geometry (uint8->float, matrix lookup + blur, 2 matmuls, means)",
                             lambda plan=plan, rows=rows, work=work: B._geometry(x[rows], plan, rows, 1.0, st, work))
                timed("photometric (3x4 colour map, clamp, write)",
                      lambda plan=plan, rows=rows, m=m, outs=outs, work=work: B._photometric(
                          work, m, plan, params, rows, outs, st))
    return {k: 1e6 * v / rounds / n for k, v in acc.items()}


# ---------------------------------------------------------------------------------------------- run
def run(
    *,
    quick: bool = False,
    threads: int = 1,
    rounds: int | None = None,
    cases: tuple[Case, ...] | None = None,
    cifar: str | None = None,
    device: str = "auto",
    kornia: bool = True,
    malloc_tune: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Run the benchmark; returns the JSON-able result (figures, ratios, machine, versions)."""
    from PIL import Image

    torch.set_num_threads(threads)
    cases = cases or (QUICK_CASES if quick else FULL_CASES)
    rounds = rounds or (1 if quick else 7)
    cifar_path = find_cifar(cifar)
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("device='cuda' asked for, but torch sees no CUDA device")
    t0 = time.perf_counter()
    malloc = tune_glibc_malloc() if malloc_tune else None
    baseline = "torchvision v1 (PIL)" if torchvision_pipelines(32) is not None else "PIL per-image"
    result: dict = {"machine": dict(machine_info(threads), malloc_tuning=malloc), "quick": quick, "rounds": rounds,
                    "baseline": baseline,
                    "images": "cifar10" if cifar_path else "procedural (CIFAR-10 archive not found)",
                    "cases": [], "targets": TARGETS}
    if cifar_path is None:
        log("CIFAR-10 archive not found: using procedural images")
    for case in cases:
        log(f"[{time.perf_counter() - t0:6.1f}s] {case.src}px -> {case.out}px, batch {case.batch}")
        arrays, source = benchmark_images(case.batch, case.src, cifar_path)
        pil_images = [Image.fromarray(a) for a in arrays]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # uint8 NCHW
        pil, pil_py = PILPipeline(case.out), PILPipeline(case.out, draws="python")
        timers = [Timed("PIL per-image", lambda p=pil, ims=pil_images: p(ims), case.batch),
                  Timed("PIL per-image, python draws", lambda p=pil_py, ims=pil_images: p(ims), case.batch)]
        tv = torchvision_pipelines(case.out)
        if tv is not None:
            timers.append(Timed("torchvision v1 (PIL)", lambda t=tv["v1"], ims=pil_images: [
                (t(im), t(im)) for im in ims], case.batch))
            timers.append(Timed("torchvision v2 (uint8 tensors)", lambda t=tv["v2"], x=x: [
                (t(im), t(im)) for im in x], case.batch))
        aug = kornia_pipeline(case.out) if kornia else None
        if aug is not None:
            def kstep(aug=aug, x=x):
                xf = x.float().div_(255)
                with torch.no_grad():
                    return aug(xf), aug(xf)

            timers.append(Timed("kornia batched", kstep, case.batch))
        timers += _jointaug_timers(x, case.out, "cpu", 0, dense=True)
        timers += _sampling_timers(case.batch, case.src, case.out)
        round_robin(timers, rounds)
        row = {"src": case.src, "out": case.out, "batch": case.batch, "images": source,
               "pairs_per_s": {t.name: t.pairs_per_s for t in timers},
               "best_pairs_per_s": {t.name: t.best_pairs_per_s for t in timers},
               "cpu_pairs_per_s": {t.name: t.cpu_pairs_per_s for t in timers},
               "kornia_available": aug is not None, "torchvision_available": tv is not None}
        if use_cuda:
            row["cuda"] = _cuda_case(x, case, rounds, log)
        row["ratios"] = _ratios(row["pairs_per_s"], baseline)
        row["ratios_cpu_time"] = _ratios(row["cpu_pairs_per_s"], baseline)
        result["cases"].append(row)
    c32 = next((c for c in cases if c.src == 32 and c.out == 32), None)
    if c32 is not None:
        arrays, _ = benchmark_images(c32.batch, 32, cifar_path)
        xp = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        result["profile_fast_32"] = profile_fast(xp, 32, rounds=1 if quick else 3)
    n_diff = 64 if quick else 512
    diff_imgs, diff_src = benchmark_images(n_diff, 32, cifar_path)
    xd = torch.from_numpy(np.stack(diff_imgs)).permute(0, 3, 1, 2).contiguous()
    log(f"[{time.perf_counter() - t0:6.1f}s] fast vs exact difference on {n_diff} {diff_src} images")
    result["fast_vs_exact"] = {"images": f"{n_diff} x {diff_src}", **mode_difference(xd)}
    result["seconds"] = time.perf_counter() - t0
    result["summary"] = _summary(result)
    return result


def _cuda_case(x: torch.Tensor, case: Case, rounds: int, log: Callable[[str], None]) -> dict:
    """Render throughput on CUDA (params pre-sampled) and the uint8-to-views cost per image."""
    dev = torch.device("cuda")
    n = 8192 if case.out <= 32 else (1024 if case.out <= 96 else 256)
    reps = (n + x.shape[0] - 1) // x.shape[0]
    xc = x.repeat(reps, 1, 1, 1)[:n].contiguous()
    xg = xc.to(dev)
    pin = xc.pin_memory()
    hw = torch.tensor([[x.shape[-2], x.shape[-1]]]).expand(n, 2)
    out: dict = {"batch": n}
    sync = torch.cuda.synchronize
    timers = []
    for mode in ("fast", "exact"):
        for crop, pol in (("random", make_policy("simclr", size=case.out)),
                          ("joint", make_policy("simclr", crop="joint", blur="joint", size=case.out))):
            params = pol.sample(hw, torch.Generator().manual_seed(0)).to(dev)
            timers.append(Timed(f"{mode} {crop} render", lambda p=params, m=mode: render_views(
                xg, p, mode=m, mean=IMAGENET_MEAN, std=IMAGENET_STD), n))
            if mode == "fast" and crop == "random":
                timers.append(Timed("fast random render incl. H2D copy", lambda p=params: render_views(
                    pin.to(dev, non_blocking=True), p, mode="fast", mean=IMAGENET_MEAN, std=IMAGENET_STD), n))
    round_robin(timers, max(rounds, 3), sync)
    out["pairs_per_s"] = {t.name: t.pairs_per_s for t in timers}
    out["us_per_image"] = {t.name: 1e6 / t.pairs_per_s for t in timers}
    log(f"    cuda: {out['pairs_per_s']}")
    return out


def _ratios(pps: dict, baseline: str = "PIL per-image") -> dict:
    pil = pps.get("PIL per-image")
    kor = pps.get("kornia batched")
    base = pps.get(baseline)
    r = {}
    for mode in ("fast", "exact"):
        after = pps[f"jointaug {mode} random (cpu)"]
        before = pps.get(f"jointaug {mode} random dense (cpu)")
        if base:
            r[f"{mode} random / baseline"] = after / base
            r[f"{mode} joint / baseline"] = pps[f"jointaug {mode} joint (cpu)"] / base
            if before:
                r[f"{mode} random dense / baseline"] = before / base
        if before:
            r[f"{mode} after / before (auto / dense)"] = after / before
        for crop in ("random", "joint"):
            v = pps[f"jointaug {mode} {crop} (cpu)"]
            if pil:
                r[f"{mode} {crop} / PIL"] = v / pil
            if kor:
                r[f"{mode} {crop} / kornia"] = v / kor
        # end to end (sampling + rendering): noisy on a shared machine, both renders do the same work
        r[f"{mode} joint overhead %"] = 100.0 * (pps[f"jointaug {mode} random (cpu)"]
                                                 / pps[f"jointaug {mode} joint (cpu)"] - 1.0)
        # the extra sampling time of the joint laws, relative to a whole random-crop step
        extra = 1.0 / pps["sampling joint"] - 1.0 / pps["sampling random"]
        r[f"{mode} joint sampling overhead %"] = 100.0 * extra * pps[f"jointaug {mode} random (cpu)"]
    r["sampling joint / random time"] = pps["sampling random"] / pps["sampling joint"]
    return r


def _summary(result: dict) -> dict:
    """The targets of the issues against this run's ratios (32 px against PIL and kornia; 96 and
    224 px against the baseline)."""
    c32 = next((c for c in result["cases"] if c["out"] == 32 and c["src"] == 32), None)
    s: dict = {}
    if c32 is None:
        return s
    r = c32["ratios"]
    s["fast_vs_pil_32"] = r.get("fast random / PIL")
    s["fast_vs_kornia_32"] = r.get("fast random / kornia")
    s["exact_vs_pil_32"] = r.get("exact random / PIL")
    s["joint_overhead_pct"] = r.get("fast joint sampling overhead %")
    s["joint_overhead_end_to_end_pct"] = r.get("fast joint overhead %")
    if "cuda" in c32:
        s["cuda_pairs_per_s_32"] = c32["cuda"]["pairs_per_s"].get("fast random render")
    for src, out in ((128, 96), (256, 224)):
        c = next((c for c in result["cases"] if (c["src"], c["out"]) == (src, out)), None)
        if c is not None:
            s[f"fast_vs_baseline_{out}"] = c["ratios"].get("fast random / baseline")
            s[f"exact_vs_baseline_{out}"] = c["ratios"].get("exact random / baseline")
    s["met"] = {}
    for k, target in TARGETS.items():
        v = s.get(k)
        if v is None:
            continue
        s["met"][k] = bool(v <= target) if k == "joint_overhead_pct" else bool(v >= target)
    return s


def markdown(result: dict, command: str) -> str:
    """The Markdown table of a result."""
    m = result["machine"]
    baseline = result.get("baseline", "PIL per-image")
    have = {k for c in result["cases"] for k in c["pairs_per_s"]}
    others = list(dict.fromkeys(k for k in (baseline, "torchvision v2 (uint8 tensors)", "PIL per-image",
                                            "kornia batched") if k in have))
    lines = [
        "# Augmentation throughput (pairs of views per second)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, torch threads = {m['threads']}"
        + (f", load average {m['load_average'][0]:.1f}" if m.get("load_average") else "") + "  ",
        f"Versions: torch {m['torch']}, Pillow {m['pillow']}, kornia {m['kornia'] or 'not installed'}, "
        f"python {m['python']}; glibc malloc tuning for all pipelines: "
        f"{'on' if m.get('malloc_tuning') else 'off'}  ",
        f"Images: {result['images']}; SimCLR two-view pipeline (crop, flip, jitter, gray, blur, normalise); "
        f"median of {result['rounds']} round-robin rounds" + (" (QUICK MODE: tiny sizes, not for reporting)"
                                                              if result["quick"] else "") + "  ",
        f"Baseline of the ratios: **{baseline}**"
        + (" (torchvision's own transforms)" if baseline.startswith("torchvision") else
           " (the in-house CPU stand-in for torchvision v1: torchvision does not import here)") + ".  ",
        "PIL per-image draws its parameters with torch's RNG per call, as torchvision's transforms do "
        "(JSON: also with Python's random). Joint sampling overhead = extra sampling time of "
        "J-Crop(0)+J-Blur(0) over random crops, relative to a whole random-crop step (sampling + fast "
        "render); 'end to end' compares the two timed steps directly (noisy on a shared machine).",
        "",
        "| input -> view | " + " | ".join(others) + " | jointaug fast | fast J-Crop+J-Blur | jointaug exact "
        "| exact J-Crop+J-Blur | fast / baseline | exact / baseline | fast / kornia | joint sampling overhead "
        "| joint end to end |",
        "|---|" + "---:|" * (len(others) + 9),
    ]

    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:,.0f}"

    def x(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}x"

    for c in result["cases"]:
        p, r = c["pairs_per_s"], c["ratios"]
        lines.append(
            f"| {c['src']} -> {c['out']} px | " + " | ".join(f(p.get(k)) for k in others)
            + f" | {f(p['jointaug fast random (cpu)'])} | {f(p['jointaug fast joint (cpu)'])} "
            f"| {f(p['jointaug exact random (cpu)'])} | {f(p['jointaug exact joint (cpu)'])} "
            f"| {x(r.get('fast random / baseline'))} | {x(r.get('exact random / baseline'))} "
            f"| {x(r.get('fast random / kornia'))} | {r['fast joint sampling overhead %']:+.2f}% "
            f"| {r['fast joint overhead %']:+.1f}% |")
    if any("jointaug fast random dense (cpu)" in c["pairs_per_s"] for c in result["cases"]):
        lines += ["", "Before / after banded resampling, same run (before: `geometry=\"dense\"` forced, the "
                  "interpolation matrices; after: the automatic choice, banded where it is cheaper):", "",
                  "| input -> view | fast before | fast after | after / before | exact before | exact after "
                  "| after / before | fast before / baseline | exact before / baseline |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for c in result["cases"]:
            p, r = c["pairs_per_s"], c["ratios"]
            if "jointaug fast random dense (cpu)" not in p:
                continue
            lines.append(
                f"| {c['src']} -> {c['out']} px | {f(p['jointaug fast random dense (cpu)'])} "
                f"| {f(p['jointaug fast random (cpu)'])} | {x(r.get('fast after / before (auto / dense)'))} "
                f"| {f(p['jointaug exact random dense (cpu)'])} | {f(p['jointaug exact random (cpu)'])} "
                f"| {x(r.get('exact after / before (auto / dense)'))} | {x(r.get('fast random dense / baseline'))} "
                f"| {x(r.get('exact random dense / baseline'))} |")
    cuda_rows = [c for c in result["cases"] if "cuda" in c]
    if cuda_rows:
        lines += ["", f"CUDA ({m.get('cuda_device')}), parameters pre-sampled, batch per case:", "",
                  "| input -> view | batch | fast render | exact render | fast incl. H2D copy | fast us/image |",
                  "|---|---:|---:|---:|---:|---:|"]
        for c in cuda_rows:
            p = c["cuda"]["pairs_per_s"]
            lines.append(f"| {c['src']} -> {c['out']} px | {c['cuda']['batch']} | {f(p['fast random render'])} "
                         f"| {f(p['exact random render'])} | {f(p['fast random render incl. H2D copy'])} "
                         f"| {c['cuda']['us_per_image']['fast random render']:.3f} |")
    d = result["fast_vs_exact"]
    lines += ["", f"Fast vs exact mode, per pixel, in 1/255 ({d['images']}, 32 px SimCLR views, no normalisation):",
              "", "| parameters | mean | p99 | max |", "|---|---:|---:|---:|"]
    for k, v in d.items():
        if isinstance(v, dict):
            lines.append(f"| {k} | {v['mean']:.2f} | {v['p99']:.1f} | {v['max']:.1f} |")
    prof = result.get("profile_fast_32")
    if prof:
        lines += ["", "Where the time goes (fast mode, 32 px, process CPU time per pair):", "",
                  "| stage | us / pair |", "|---|---:|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in prof.items()]
        lines.append(f"| total | {sum(prof.values()):.1f} |")
    s = result.get("summary", {})
    if s.get("met"):
        lines += ["", "Targets (ratios from this run):", "", "| target | this run | met |", "|---|---:|---|"]
        names = {"fast_vs_pil_32": ("32 px: fast >= 20x PIL", "x"),
                 "fast_vs_kornia_32": ("32 px: fast >= 6x kornia", "x"),
                 "exact_vs_pil_32": ("32 px: exact >= 4x PIL", "x"),
                 "fast_vs_baseline_96": ("128 -> 96 px: fast >= 8x baseline", "x"),
                 "exact_vs_baseline_96": ("128 -> 96 px: exact >= 4x baseline", "x"),
                 "fast_vs_baseline_224": ("256 -> 224 px: fast >= 8x baseline", "x"),
                 "exact_vs_baseline_224": ("256 -> 224 px: exact >= 4x baseline", "x"),
                 "joint_overhead_pct": ("J-Crop+J-Blur sampling costs <= 2% of a step", "%"),
                 "cuda_pairs_per_s_32": ("CUDA >= 1,000,000 pairs/s", "")}
        for k, met in s["met"].items():
            label, unit = names[k]
            v = s[k]
            val = f"{v:.1f}x" if unit == "x" else (f"{v:+.2f}%" if unit == "%" else f"{v:,.0f}")
            lines.append(f"| {label} | {val} | {'yes' if met else 'NO'} |")
    lines.append("")
    return "\n".join(lines)


def write(result: dict, out_dir: str | Path, command: str) -> tuple[Path, Path]:
    """Write ``augment.json`` and ``augment.md`` into ``out_dir``."""
    result = dict(result, command=command)
    return write_results(result, markdown(result, command), Path(out_dir) / "augment")


# ---------------------------------------------------------------------------------------------- command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``jointaug bench augment``."""
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one round (smoke test, not for reporting)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every pipeline (default 1)")
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds per pipeline (default 7, quick 1)")
    parser.add_argument("--out", default="benchmarks/results", help="folder for augment.json and augment.md")
    parser.add_argument("--data", default=None, help="CIFAR-10 JPEG archive (default: ../shared/datasets/...)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="also benchmark CUDA: auto (when present), cpu (never), cuda (required)")
    parser.add_argument("--no-kornia", action="store_true", help="skip the kornia row")
    parser.add_argument("--no-malloc-tune", action="store_true",
                        help="leave glibc malloc's defaults (memory returned to the OS after every batch)")


def main(args: argparse.Namespace) -> int:
    """Run the benchmark, print its table, write augment.json and augment.md."""
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.rounds is not None and args.rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {args.rounds}")
    command = getattr(args, "command_line", None) or "jointaug bench augment"
    result = run(quick=args.quick, threads=args.threads, rounds=args.rounds, cifar=args.data, device=args.device,
                 kornia=not args.no_kornia, malloc_tune=not args.no_malloc_tune,
                 log=lambda s: print(s, file=sys.stderr, flush=True))
    pj, pm = write(result, args.out, command)
    print(pm.read_text())
    print(f"wrote {pj} and {pm}", file=sys.stderr)
    return 0


__all__ = ["Case", "FULL_CASES", "QUICK_CASES", "PILPipeline", "kornia_pipeline", "mode_difference", "run",
           "markdown", "write", "benchmark_images", "procedural_images", "machine_info", "add_arguments", "main"]
