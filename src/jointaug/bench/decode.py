"""JPEG decode throughput (images/s, one thread): full decode vs decoding at the side the views need.

The real code path, :func:`jointaug.data.io.load_image` on the encoded bytes (held in memory, so the
disk is not measured), in four modes timed round-robin in one run:

- ``full``: every pixel decoded;
- ``draft 64 px``: JPEG draft mode at the side 64 px views from crops of area >= 0.2 need
  (:func:`~jointaug.data.io.decode_min_side`: 166 px), what ``data.draft`` does for ``*/imagenette``;
- ``draft 32 px``: the same for 32 px views (83 px);
- ``cache 96 px``: what building the bounded cache costs per image (``data.max_resolution=96``:
  draft to >= 96 px, then the shorter side shrunk to 96).

Fidelity: for each draft mode the smallest crop the views allow (area 0.2, aspect 3/4, centred, its
edges on the 8-pixel grid so it is the same region at every DCT scale) is resized to the view size
from the draft and from the full decode (bilinear, antialiased); the mean and largest absolute
differences (in 1/255 units) show what draft decoding changes in a view.

Inputs: two sets of JPEGs, 224 x 224 and 500 x 375 (``--dir224``, ``--dir500``); by default they are
made from the package's photo (``assets/elephant.png``: shifted crops, quality 90)::

    jointaug bench decode                       # -> benchmarks/results/decode.{json,md}
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.base import bound_resize
from ..data.io import decode_min_side, load_image
from .common import RESULTS_DIR, Timed, machine_info, round_robin, write_results

SIZES = {"224x224": (224, 224), "500x375": (500, 375)}


def _made_from_asset(w: int, h: int, n: int) -> list[bytes]:
    """``n`` JPEGs of w x h (quality 90): shifted, flipped crops of the package's photo, resized."""
    from PIL import Image

    src = Image.open(Path(__file__).resolve().parents[1] / "assets" / "elephant.png").convert("RGB")
    out = []
    for i in range(n):
        fw, fh = src.size
        cw, ch = int(fw * (0.6 + 0.4 * ((i * 7) % 10) / 10)), int(fh * (0.6 + 0.4 * ((i * 3) % 10) / 10))
        x0, y0 = (i * 37) % max(1, fw - cw + 1), (i * 53) % max(1, fh - ch + 1)
        im = src.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.BICUBIC)
        if i % 2:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _from_dir(d: str, n: int) -> list[bytes]:
    files = sorted(p for p in Path(d).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))[:n]
    if not files:
        raise FileNotFoundError(f"jointaug bench decode: no .jpg files under {d}")
    return [p.read_bytes() for p in files]


def _fidelity(blobs: list[bytes], min_side: int, view: int, scale: float = 0.2, ratio: float = 3 / 4) -> dict:
    """Mean / max |view from draft - view from full decode| (1/255 units) of the smallest centred crop."""
    diffs, maxes = [], []

    def view_of(img: torch.Tensor, box: tuple[float, float, float, float], hw: tuple[int, int]) -> torch.Tensor:
        top, left, ch, cw = box
        fy, fx = img.shape[1] / hw[0], img.shape[2] / hw[1]  # the box in this decode's pixels
        y0, x0 = int(round(top * fy)), int(round(left * fx))
        crop = img[:, y0:y0 + max(1, int(round(ch * fy))), x0:x0 + max(1, int(round(cw * fx)))]
        return F.interpolate(crop[None], size=(view, view), mode="bilinear", align_corners=False, antialias=True)[0]

    for b in blobs[:32]:
        full, small = load_image(b).float(), load_image(b, min_side=min_side).float()
        H, W = full.shape[1:]
        ch, cw = (scale * H * W / ratio) ** 0.5, (scale * H * W * ratio) ** 0.5  # crop h > w (aspect 3/4)
        # on the 8-pixel grid of the full image, so the box is the same region in every DCT-scaled decode
        box = tuple(float(8 * round(v / 8)) for v in ((H - ch) / 2, (W - cw) / 2, ch, cw))
        d = (view_of(full, box, (H, W)) - view_of(small, box, (H, W))).abs()
        diffs.append(float(d.mean()))
        maxes.append(float(d.max()))
    return {"mean_abs_diff_255": round(statistics.fmean(diffs), 3), "max_abs_diff_255": round(max(maxes), 1)}


def run(args: argparse.Namespace) -> dict:
    """Time every mode on both sizes (one thread, round-robin); returns the result dict."""
    torch.set_num_threads(1)
    need64, need32 = decode_min_side(64, 0.2), decode_min_side(32, 0.2)
    sets = {}
    for tag, (w, h) in SIZES.items():
        d = args.dir224 if tag == "224x224" else args.dir500
        sets[tag] = _from_dir(d, args.images) if d else _made_from_asset(w, h, args.images)
    rows = []
    for tag, blobs in sets.items():
        modes = {
            "full": lambda b=blobs: [load_image(x) for x in b],
            f"draft 64 px (side >= {need64})": lambda b=blobs: [load_image(x, min_side=need64) for x in b],
            f"draft 32 px (side >= {need32})": lambda b=blobs: [load_image(x, min_side=need32) for x in b],
            "cache 96 px (draft + shrink)": lambda b=blobs: [bound_resize(load_image(x, min_side=96), 96) for x in b],
        }
        timers = [Timed(name, fn, len(blobs)) for name, fn in modes.items()]
        round_robin(timers, args.rounds)
        full = timers[0].pairs_per_s
        shapes = {"full": tuple(load_image(blobs[0]).shape[1:]),
                  f"draft 64 px (side >= {need64})": tuple(load_image(blobs[0], min_side=need64).shape[1:]),
                  f"draft 32 px (side >= {need32})": tuple(load_image(blobs[0], min_side=need32).shape[1:]),
                  "cache 96 px (draft + shrink)": tuple(bound_resize(load_image(blobs[0], min_side=96), 96).shape[1:])}
        fid = {f"draft 64 px (side >= {need64})": _fidelity(blobs, need64, 64),
               f"draft 32 px (side >= {need32})": _fidelity(blobs, need32, 32)}
        for t in timers:
            rows.append({"input": tag, "mode": t.name, "decoded_hw": list(shapes[t.name]),
                         "images_per_s": round(t.pairs_per_s, 1), "best_images_per_s": round(t.best_pairs_per_s, 1),
                         "x_full": round(t.pairs_per_s / full, 2), **fid.get(t.name, {})})
    src = "files under " + ", ".join(x for x in (args.dir224, args.dir500) if x) if (args.dir224 or args.dir500) \
        else "made from assets/elephant.png (shifted flipped crops, JPEG quality 90)"
    return {"benchmark": "decode", "command": getattr(args, "command_line", "jointaug bench decode"),
            "images_per_set": args.images, "rounds": args.rounds, "source": src, "threads": 1,
            "timed": "load_image on encoded bytes in memory (decode + RGB conversion; no disk)",
            "rows": rows, "machine": machine_info(threads=1),
            "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}


def markdown(result: dict) -> str:
    """The decode table (images/s, ratio to the full decode, fidelity of the views)."""
    m = result["machine"]
    lines = [f"# JPEG decode throughput, one thread ({result['time_utc']} UTC)", "",
             f"`{result['command']}`; {result['images_per_set']} images per set, {result['source']}; "
             f"median of {result['rounds']} round-robin rounds. {m['cpu']}, torch {m['torch']}, "
             f"Pillow {m['pillow']}, load average {m['load_average']}.", "",
             "| input | mode | decoded (h, w) | images/s | x full | view diff mean / max (1/255) |",
             "|---|---|---|---:|---:|---|"]
    for r in result["rows"]:
        fid = f"{r['mean_abs_diff_255']} / {r['max_abs_diff_255']}" if "mean_abs_diff_255" in r else ""
        lines.append(f"| {r['input']} | {r['mode']} | {tuple(r['decoded_hw'])} | {r['images_per_s']:.0f} | "
                     f"{r['x_full']:.2f} | {fid} |")
    lines += ["", "View diff: the smallest crop the views allow (area 0.2, aspect 3/4, centred, edges on the 8-px "
              "grid) resized to the view size from the draft and from the full decode; mean and largest "
              "|difference| over 32 images."]
    return "\n".join(lines) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``jointaug bench decode``."""
    p.add_argument("--dir224", help="folder of 224 x 224 JPEGs (default: made from the package's photo)")
    p.add_argument("--dir500", help="folder of 500 x 375 JPEGs (default: made from the package's photo)")
    p.add_argument("--images", type=int, default=100, help="images per set")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds (round-robin over the modes)")
    p.add_argument("--out", default=f"{RESULTS_DIR}/decode", help="output stem (.json and .md)")


def main(args: argparse.Namespace) -> int:
    """Run, print the table, write the files."""
    result = run(args)
    md = markdown(result)
    print(md)
    pj, pm = write_results(result, md, args.out)
    print(f"wrote {pj} and {pm}")
    return 0


__all__ = ["add_arguments", "main", "markdown", "run"]
