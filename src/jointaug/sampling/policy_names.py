"""View-policy names of ``jointaug run --policies`` (and ``jointaug sdf``): ``"random,jcrop(0),jblur(-1)"``
-> (label, folder, config overrides). Pure string handling (no torch, no pixels), so every room can share it.
"""

from __future__ import annotations

__all__ = ["POLICY_KINDS", "parse_policies"]

#: --policies names -> (label format, config overrides; {b} is the beta in parentheses, default 0)
POLICY_KINDS: dict[str, tuple[str, list[str]]] = {
    "random": ("RandomCrop", ["aug.crop=random"]),
    "jcrop": ("J-Crop({b})", ["aug.crop=joint", "aug.beta={b}"]),
    "jblur": ("J-Blur({b})", ["aug.blur=joint", "aug.beta={b}"]),
    "jcolor": ("J-Color({b})", ["aug.color=joint", "aug.beta={b}"]),
    "coin": ("J-Crop/J-Blur coin({b})", ["aug.crop=joint", "aug.blur=joint", "aug.combine=coin", "aug.beta={b}"]),
    "both": ("J-Crop+J-Blur({b})", ["aug.crop=joint", "aug.blur=joint", "aug.combine=both", "aug.beta={b}"]),
    # label-preserving crops (fixed size aug.crop_size, no resize): the number is alpha (default 1)
    "fixed": ("RandomCrop(fixed size)", ["aug.crop=fixed"]),
    "gcc": ("GCC(alpha={b})", ["aug.crop=gcc", "aug.alpha={b}"]),
    "cgcc": ("CGCC(alpha={b})", ["aug.crop=cgcc", "aug.alpha={b}"]),
    "mgcc": ("MGCC(alpha={b})", ["aug.crop=mgcc", "aug.alpha={b}"]),
    "mcgcc": ("MCGCC(alpha={b})", ["aug.crop=mcgcc", "aug.alpha={b}"]),
    # ContrastiveCrop (heat-map boxes, Beta centres; schedule aug.ccrop_warmup_epochs / aug.ccrop_every)
    "ccrop": ("ContrastiveCrop", ["aug.ccrop=true", "aug.crop=random"]),
    "ccropj": ("ContrastiveCrop+J-Crop({b})", ["aug.ccrop=true", "aug.crop=joint", "aug.beta={b}"]),
}
_NO_NUMBER = ("random", "fixed", "ccrop")
_DEFAULT_NUMBER = {"gcc": 1.0, "cgcc": 1.0, "mgcc": 1.0, "mcgcc": 1.0}


def _kind_usage(kind: str) -> str:
    return kind + ("" if kind in _NO_NUMBER else "(ALPHA)" if kind in _DEFAULT_NUMBER else "(BETA)")


def parse_policies(text: str) -> list[tuple[str, str, list[str]]]:
    """``"random,jcrop(0),jcrop(-1),jblur(0)"`` -> [(label, folder, overrides)]; clear errors for bad names.

    J-Blur and the coin need a recipe with blur: at 32 px the small-data recipe has none, so give the
    blur probabilities as an override for every run (``aug.blur_p=[0.5,0.5]``), which keeps the
    comparison fair."""
    import math
    import re

    out: list[tuple[str, str, list[str]]] = []
    for item in [t.strip() for t in text.split(",") if t.strip()]:
        m = re.fullmatch(r"([a-z-]+)(?:\(([^)]*)\))?", item.lower())
        if not m or m.group(1).replace("-", "") not in POLICY_KINDS:
            raise ValueError(f"--policies: unknown view policy {item!r}; choose from "
                             f"{', '.join(_kind_usage(k) for k in POLICY_KINDS)}")
        kind = m.group(1).replace("-", "")
        beta = _DEFAULT_NUMBER.get(kind, 0.0)
        if m.group(2) is not None:
            if kind in _NO_NUMBER:
                raise ValueError(f"--policies: {item!r}: {kind} takes no beta")
            try:
                beta = float(m.group(2))
            except ValueError:
                raise ValueError(f"--policies: {item!r}: beta must be a number, got {m.group(2)!r}") from None
            if not math.isfinite(beta):
                raise ValueError(f"--policies: {item!r}: beta must be finite")
            if kind in _DEFAULT_NUMBER and not beta > 0:
                raise ValueError(f"--policies: {item!r}: alpha must be > 0")
        label_fmt, ovs = POLICY_KINDS[kind]
        label = label_fmt.format(b=f"{beta:g}")
        if kind == "random":
            folder = "random-crop"
        elif kind in _NO_NUMBER or (kind in _DEFAULT_NUMBER and m.group(2) is None):
            folder = kind
        else:
            folder = kind if beta == 0 and kind not in _DEFAULT_NUMBER else f"{kind}{beta:g}"
        folder = {"jcrop": "j-crop"}.get(folder, folder)
        out.append((label, folder.replace(".", "p"), [o.format(b=beta) for o in ovs]))
    if not out:
        raise ValueError("--policies: give at least one view policy, e.g. random,jcrop(0)")
    folders = [f for _, f, _ in out]
    dup = sorted({f for f in folders if folders.count(f) > 1})
    if dup:
        raise ValueError(f"--policies: a policy is listed twice ({', '.join(dup)})")
    return out
