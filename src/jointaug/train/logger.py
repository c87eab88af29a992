"""Run logs: JSON lines (``metrics.jsonl``, one record per line) plus optional TensorBoard events.

Records carry a ``type`` (``step``, ``epoch``, ``eval``, ``event``), the global ``step`` and the
``epoch``. On resume, records written after the checkpoint being resumed from are dropped, so the
log of a killed-and-resumed run ends up identical to an uninterrupted one (timings aside).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

__all__ = ["MetricsLogger", "read_metrics"]


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no nan/inf
    if hasattr(v, "item") and callable(v.item):
        return _clean(v.item())
    return v


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` (a torn last line from a kill is ignored)."""
    out = []
    p = Path(path)
    if not p.exists():
        return out
    for line in p.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class MetricsLogger:
    """Append records to ``<out_dir>/metrics.jsonl`` and, when available, TensorBoard ``<out_dir>/tb``."""

    def __init__(self, out_dir: str | os.PathLike, *, enabled: bool = True, tensorboard: bool = True,
                 resume_step: int | None = None) -> None:
        self.path = Path(out_dir) / "metrics.jsonl"
        self.enabled = enabled
        self.tb = None
        self.tb_note = ""
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        else:
            keep = [r for r in read_metrics(self.path)
                    if r.get("type") in ("step", "epoch", "event") and int(r.get("step", 0)) <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in keep))
        if tensorboard:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    from torch.utils.tensorboard import SummaryWriter
            except Exception as exc:  # tensorboard not installed (it is optional)
                self.tb_note = f"TensorBoard logging skipped: {exc}"
            else:
                self.tb = SummaryWriter(str(Path(out_dir) / "tb"), purge_step=resume_step)
        self._fh = open(self.path, "a")  # noqa: SIM115 - kept open for the run

    def log(self, record: dict[str, Any]) -> None:
        """Write one record (numbers; tensors are converted) and mirror its scalars to TensorBoard."""
        if not self.enabled:
            return
        rec = {k: _clean(v) for k, v in record.items()}
        self._fh.write(json.dumps(rec) + "\n")
        self._fh.flush()
        if self.tb is not None:
            kind, step = rec.get("type", "step"), int(rec.get("step", 0))
            for k, v in rec.items():
                if k in ("type", "step", "epoch") or isinstance(v, bool) or not isinstance(v, (int, float)):
                    continue
                self.tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        if not self.enabled:
            return
        self._fh.close()
        if self.tb is not None:
            self.tb.close()
