"""Schedules of numeric view-policy parameters (beta, scale bounds, blur range, coin probability)
as functions of training progress p = step / total_steps in [0, 1].

A schedule is data: ``parse_schedule(spec, key)`` turns a YAML value into a :class:`Schedule`, and
``schedule(p)`` gives the value in force. Accepted specs (``key`` only names the config key in errors):

- a number: constant;
- ``{kind: constant, value: v}``;
- ``{kind: linear, start: a, end: b}`` and ``{kind: cosine, start: a, end: b}`` (half-cosine from a to b);
- ``{kind: step, values: [v0, v1, ...], milestones: [p1, ...]}``: v0 before p1, v1 from p1 on, ...;
- ``{kind: piecewise, points: [[p0, v0], [p1, v1], ...]}``: linear between points, flat outside.

Linear and cosine take an optional ``warmup: [p0, p1]`` window: the value is ``start`` before p0, ``end``
after p1 and moves in between (an easy-to-hard schedule that starts late or stops early).
Schedules are pure (no state): a resumed run recomputes the value from its step, so resume is exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["KINDS", "Schedule", "ScheduleError", "parse_schedule"]

KINDS = ("constant", "linear", "cosine", "step", "piecewise")


class ScheduleError(ValueError):
    """A schedule spec that cannot be used; the message names the config key and the value."""


@dataclass(frozen=True)
class Schedule:
    """A parameter's value as a function of training progress (see the module docstring)."""

    kind: str
    points: tuple[tuple[float, float], ...]  # (progress, value); meaning depends on kind

    def __call__(self, progress: float) -> float:
        p = min(max(float(progress), 0.0), 1.0)
        pts = self.points
        if self.kind == "constant":
            return pts[0][1]
        if self.kind == "step":
            value = pts[0][1]
            for start, v in pts[1:]:
                if p >= start:
                    value = v
            return value
        # linear, cosine, piecewise: interpolate between the surrounding points
        if p <= pts[0][0]:
            return pts[0][1]
        if p >= pts[-1][0]:
            return pts[-1][1]
        for (p0, v0), (p1, v1) in zip(pts, pts[1:]):
            if p0 <= p <= p1:
                t = 0.0 if p1 == p0 else (p - p0) / (p1 - p0)
                if self.kind == "cosine":
                    t = 0.5 - 0.5 * math.cos(math.pi * t)
                return v0 + (v1 - v0) * t
        return pts[-1][1]  # unreachable: points are sorted and cover [pts[0][0], pts[-1][0]]

    @property
    def is_constant(self) -> bool:
        """True when the value never changes (the policy can be built once)."""
        return len({v for _, v in self.points}) == 1

    def describe(self) -> str:
        """A short human-readable form for logs and reports."""
        if self.is_constant:
            return f"{self.points[0][1]:g}"
        body = ", ".join(f"{p:g}:{v:g}" for p, v in self.points)
        return f"{self.kind}({body})"


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ScheduleError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _progress(value: Any, where: str) -> float:
    p = _number(value, where)
    if not 0.0 <= p <= 1.0:
        raise ScheduleError(f"{where}: a progress point must lie in [0, 1] (fraction of training), got {value!r}")
    return p


def parse_schedule(spec: Any, key: str = "schedule") -> Schedule:
    """Turn a config value (number or mapping, see the module docstring) into a :class:`Schedule`."""
    if not isinstance(spec, Mapping):
        return Schedule("constant", ((0.0, _number(spec, key)),))
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in KINDS:
        raise ScheduleError(f"{key}.kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    allowed = {"constant": {"value"}, "linear": {"start", "end", "warmup"}, "cosine": {"start", "end", "warmup"},
               "step": {"values", "milestones"}, "piecewise": {"points"}}[kind]
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ScheduleError(f"{key}: unknown key(s) {', '.join(unknown)} for kind {kind!r} "
                            f"(allowed: {', '.join(sorted(allowed))})")
    missing = sorted(k for k in allowed - {"warmup"} if k not in spec)
    if missing:
        raise ScheduleError(f"{key}: kind {kind!r} needs {', '.join(missing)}")
    if kind == "constant":
        return Schedule(kind, ((0.0, _number(spec["value"], f"{key}.value")),))
    if kind in ("linear", "cosine"):
        a, b = _number(spec["start"], f"{key}.start"), _number(spec["end"], f"{key}.end")
        window = spec.get("warmup", [0.0, 1.0])
        if not isinstance(window, Sequence) or isinstance(window, str) or len(window) != 2:
            raise ScheduleError(f"{key}.warmup: expected [p0, p1], got {window!r}")
        p0, p1 = _progress(window[0], f"{key}.warmup[0]"), _progress(window[1], f"{key}.warmup[1]")
        if p1 <= p0:
            raise ScheduleError(f"{key}.warmup: p1 must be greater than p0, got {list(window)!r}")
        return Schedule(kind, ((p0, a), (p1, b)))
    if kind == "step":
        values, milestones = spec["values"], spec["milestones"]
        if not isinstance(values, Sequence) or isinstance(values, str) or not values:
            raise ScheduleError(f"{key}.values: expected a non-empty list of numbers, got {values!r}")
        if not isinstance(milestones, Sequence) or isinstance(milestones, str) or len(milestones) != len(values) - 1:
            raise ScheduleError(f"{key}.milestones: expected {len(values) - 1} progress point(s) (one fewer "
                                f"than values), got {milestones!r}")
        ms = [_progress(m, f"{key}.milestones[{i}]") for i, m in enumerate(milestones)]
        if any(b <= a for a, b in zip(ms, ms[1:])):
            raise ScheduleError(f"{key}.milestones: must increase strictly, got {list(milestones)!r}")
        vs = [_number(v, f"{key}.values[{i}]") for i, v in enumerate(values)]
        return Schedule(kind, tuple(zip([0.0, *ms], vs)))
    points = spec["points"]
    if not isinstance(points, Sequence) or isinstance(points, str) or len(points) < 2:
        raise ScheduleError(f"{key}.points: expected at least two [progress, value] pairs, got {points!r}")
    pts = []
    for i, pt in enumerate(points):
        if not isinstance(pt, Sequence) or isinstance(pt, str) or len(pt) != 2:
            raise ScheduleError(f"{key}.points[{i}]: expected [progress, value], got {pt!r}")
        pts.append((_progress(pt[0], f"{key}.points[{i}][0]"), _number(pt[1], f"{key}.points[{i}][1]")))
    if any(b[0] <= a[0] for a, b in zip(pts, pts[1:])):
        raise ScheduleError(f"{key}.points: progress must increase strictly, got {[p for p, _ in pts]!r}")
    return Schedule(kind, tuple(pts))
