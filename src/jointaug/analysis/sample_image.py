"""The built-in sample image of ``jointaug pairs``: a procedural elephant in a savanna (simple shapes).

It is drawn here with Pillow (no external picture, nothing to license) and shipped, already drawn,
as ``jointaug/assets/elephant.png`` so the gallery looks the same everywhere. Regenerate it with
``python -m jointaug.analysis.sample_image [PATH]``.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from PIL import Image, ImageDraw

SAMPLE_NAME = "elephant.png"


def draw_elephant(width: int = 384, height: int = 288, supersample: int = 2) -> Image.Image:
    """An RGB picture of an elephant (body, head, ear, trunk, tusk, legs) under an acacia tree."""
    if width < 8 or height < 8:
        raise ValueError(f"sample image size must be at least 8x8, got {width}x{height}")
    k = max(1, int(supersample))
    W, H = width * k, height * k
    img = Image.new("RGB", (W, H))
    d = ImageDraw.Draw(img)

    def P(x: float, y: float) -> tuple[float, float]:  # relative -> pixel coordinates
        return x * W, y * H

    def box(x0: float, y0: float, x1: float, y1: float) -> list[float]:
        return [*P(x0, y0), *P(x1, y1)]

    horizon = 0.62
    for y in range(int(horizon * H) + 1):  # sky: vertical gradient
        t = y / (horizon * H)
        d.line([(0, y), (W, y)], fill=(int(110 + 110 * t), int(170 + 60 * t), int(235 - 15 * t)))
    d.ellipse(box(0.80, 0.07, 0.92, 0.23), fill=(255, 214, 90))  # sun
    d.polygon([P(0, horizon), P(0.18, 0.50), P(0.38, horizon - 0.02), P(0.62, 0.52), P(1, horizon)],
              fill=(150, 170, 120))  # distant hills
    d.rectangle(box(0, horizon, 1, 1), fill=(196, 170, 96))  # dry grass
    for i in range(40):  # grass tufts, deterministic
        x = (i * 0.6180339) % 1.0
        y = horizon + 0.03 + ((i * 0.3819660) % 1.0) * (0.95 - horizon)
        d.line([P(x, y), P(x + 0.006, y - 0.03)], fill=(140, 128, 60), width=2 * k)
        d.line([P(x + 0.01, y), P(x + 0.008, y - 0.035)], fill=(150, 135, 66), width=2 * k)

    # acacia tree on the left
    d.polygon([P(0.12, 0.66), P(0.145, 0.66), P(0.15, 0.40), P(0.125, 0.40)], fill=(98, 70, 45))
    d.line([P(0.135, 0.45), P(0.07, 0.33)], fill=(98, 70, 45), width=4 * k)
    d.line([P(0.14, 0.44), P(0.21, 0.34)], fill=(98, 70, 45), width=4 * k)
    d.ellipse(box(0.00, 0.25, 0.30, 0.38), fill=(72, 110, 52))

    grey, dark, light = (128, 128, 136), (100, 100, 110), (150, 150, 158)
    d.ellipse(box(0.66, 0.88, 0.95, 0.96), fill=(150, 128, 70))  # shadow
    for x0 in (0.46, 0.53, 0.72, 0.79):  # legs (rear pair darker, behind the body)
        c = dark if x0 in (0.53, 0.79) else grey
        d.rounded_rectangle(box(x0, 0.62, x0 + 0.075, 0.92), radius=0.02 * W, fill=c)
        d.ellipse(box(x0 - 0.003, 0.89, x0 + 0.078, 0.94), fill=(225, 220, 205))  # toes
    d.line([P(0.88, 0.50), P(0.92, 0.66)], fill=dark, width=3 * k)  # tail
    d.ellipse(box(0.42, 0.36, 0.90, 0.76), fill=grey)  # body
    d.ellipse(box(0.27, 0.30, 0.50, 0.62), fill=grey)  # head
    d.ellipse(box(0.38, 0.28, 0.56, 0.62), fill=dark)  # ear
    d.ellipse(box(0.40, 0.31, 0.53, 0.58), fill=light)  # inner ear
    trunk = [P(0.31, 0.52), P(0.27, 0.62), P(0.25, 0.72), P(0.26, 0.80), P(0.30, 0.84)]
    d.line(trunk, fill=grey, width=int(0.05 * W), joint="curve")  # trunk
    d.ellipse(box(0.275, 0.81, 0.325, 0.87), fill=grey)  # trunk tip
    d.polygon([P(0.34, 0.56), P(0.27, 0.66), P(0.30, 0.66), P(0.37, 0.58)], fill=(245, 240, 225))  # tusk
    d.ellipse(box(0.335, 0.40, 0.36, 0.43), fill=(20, 20, 20))  # eye
    if k > 1:
        img = img.resize((width, height), Image.LANCZOS)
    return img


def sample_image_path() -> Path:
    """Path of the shipped sample image (``jointaug/assets/elephant.png``)."""
    return Path(str(resources.files("jointaug").joinpath("assets", SAMPLE_NAME)))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent / "assets" / SAMPLE_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    draw_elephant().save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
