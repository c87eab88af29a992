"""What every benchmark shares: where the figures come from (machine, load, versions), timing, files.

Figures of a shared machine are comparable only within one run: timers run round-robin
(:func:`round_robin`) and results carry the load average and versions (:func:`machine_info`);
:func:`write_results` writes ``<stem>.json`` and ``<stem>.md`` (benchmarks/results/ by default).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

#: where the benchmarks write their JSON and Markdown (relative to the working directory)
RESULTS_DIR = "benchmarks/results"


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo where there is one)."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return name


def load_average() -> list[float] | None:
    """``os.getloadavg()`` (1, 5, 15 min) rounded, or None where the platform has none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def versions() -> dict[str, str | None]:
    """Versions of the libraries the benchmarks touch (None: not installed)."""
    import numpy as np

    out: dict[str, str | None] = {"python": platform.python_version(), "torch": torch.__version__,
                                  "numpy": np.__version__}
    for name in ("PIL", "kornia", "torchvision"):
        try:
            mod = __import__(name)
            out["pillow" if name == "PIL" else name] = getattr(mod, "__version__", "unknown")
        except Exception:  # noqa: BLE001 (a broken optional install counts as absent)
            out["pillow" if name == "PIL" else name] = None
    return out


def machine_info(threads: int | None = None, device: str = "cpu") -> dict:
    """Where the figures come from: platform, CPU, threads, versions, load average, GPU when used."""
    info = {"platform": platform.platform(), "cpu": cpu_name(), "logical_cpus": os.cpu_count(),
            "threads": threads if threads is not None else torch.get_num_threads(), "device": device,
            **versions(), "load_average": load_average()}
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def tune_glibc_malloc() -> dict | None:
    """Keep freed memory in the process (glibc malloc): no page faults on every fresh output tensor.

    Large tensors (every batch of views) are otherwise returned to the OS when freed and faulted
    in again, page by page, when the next batch is allocated, which on a VM can cost more than
    rendering them. This is the usual CPU advice for PyTorch (or use jemalloc / tcmalloc, or set
    ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``); a benchmark applies it to every
    pipeline alike. Returns the settings, or None where glibc's ``mallopt`` is unavailable.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or platform.system() != "Linux":
        return None
    try:
        libc = ctypes.CDLL(name)
        m_trim, m_mmap = -1, -3  # mallopt parameters M_TRIM_THRESHOLD, M_MMAP_THRESHOLD
        ok = libc.mallopt(m_mmap, 32 << 20) == 1 and libc.mallopt(m_trim, 1 << 30) == 1
    except (OSError, AttributeError):
        return None
    return {"mmap_threshold": 32 << 20, "trim_threshold": 1 << 30} if ok else None


@dataclass
class Timed:
    """Repeated wall-clock (and process CPU) timings of one pipeline on one batch of ``pairs`` items."""

    name: str
    fn: Callable[[], object]
    pairs: int
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)

    def run(self, sync: Callable[[], None] | None = None) -> None:
        """Time one call of ``fn`` (``sync`` waits for a device before the clock stops)."""
        t, c = time.perf_counter(), time.process_time()
        self.fn()
        if sync is not None:
            sync()
        self.seconds.append(time.perf_counter() - t)
        self.cpu_seconds.append(time.process_time() - c)

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / statistics.median(self.seconds)

    @property
    def best_pairs_per_s(self) -> float:
        return self.pairs / min(self.seconds)

    @property
    def cpu_pairs_per_s(self) -> float:
        """Pairs per second of process CPU time (less sensitive to other jobs on a shared machine)."""
        return self.pairs / max(statistics.median(self.cpu_seconds), 1e-9)


def round_robin(timers: list[Timed], rounds: int, sync: Callable[[], None] | None = None) -> None:
    """One warm-up call of each timer, then ``rounds`` rounds of one call each, in turn.

    A drift of a shared machine (another job starting) then hits every pipeline alike, so ratios
    taken within the run stay meaningful.
    """
    for t in timers:  # warm-up (allocator, caches, lazy imports)
        t.fn()
    if sync is not None:
        sync()
    for _ in range(rounds):
        for t in timers:
            t.run(sync)


def write_results(result: dict, markdown: str, stem: str | Path) -> tuple[Path, Path]:
    """Write ``<stem>.json`` (the result) and ``<stem>.md`` (its table); returns both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    pj, pm = stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".md")
    pj.write_text(json.dumps(result, indent=2) + "\n")
    pm.write_text(markdown)
    return pj, pm


__all__ = ["RESULTS_DIR", "Timed", "cpu_name", "load_average", "machine_info", "round_robin", "tune_glibc_malloc",
           "versions", "write_results"]
