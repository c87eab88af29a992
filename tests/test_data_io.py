"""load_image: every documented mode conversion, tiny images, and clear errors for bad files."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from jointaug.data.io import ImageReadError, is_image_name, load_image


def _encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_rgb_png_roundtrip_exact(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    p = tmp_path / "a.png"
    Image.fromarray(arr).save(p)
    out = load_image(p)
    assert out.dtype == torch.uint8 and out.shape == (3, 7, 5)
    assert np.array_equal(out.permute(1, 2, 0).numpy(), arr)
    assert torch.equal(load_image(p.read_bytes()), out)
    assert torch.equal(load_image(str(p)), out)


def test_grey_modes_copied_to_three_channels():
    g = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    out = load_image(_encode(Image.fromarray(g, "L")))
    assert out.shape == (3, 3, 4)
    for c in range(3):
        assert np.array_equal(out[c].numpy(), g)
    bits = np.array([[0, 1], [1, 0]], dtype=bool)
    out1 = load_image(_encode(Image.fromarray(bits).convert("1")))
    assert out1[0].tolist() == [[0, 255], [255, 0]]


def test_sixteen_bit_is_scaled_not_clipped():
    a = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    data = _encode(Image.fromarray(a))
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = load_image(data)
    assert out[0, 0].tolist() == [0, 1, 128, 255]
    assert torch.equal(out[0], out[2])


def test_mode_I_and_F():
    a = np.array([[0, 65535]], dtype=np.int32)
    assert load_image(Image.fromarray(a, "I"))[0, 0].tolist() == [0, 255]
    neg = np.array([[-100, 0, 100]], dtype=np.int32)  # outside 16-bit range: min-max scaled
    lo, mid, hi = load_image(Image.fromarray(neg, "I"))[0, 0].tolist()
    assert (lo, hi) == (0, 255) and 127 <= mid <= 128
    f = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    assert load_image(Image.fromarray(f, "F"))[0, 0].tolist() == [0, 128, 255]
    big = np.array([[10.0, 20.0, np.nan]], dtype=np.float32)
    assert load_image(Image.fromarray(big, "F"))[0, 0].tolist() == [0, 255, 0]


def test_palette_with_and_without_transparency():
    p = Image.new("P", (2, 1))
    p.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    p.putpixel((0, 0), 0)
    p.putpixel((1, 0), 1)
    opaque = load_image(_encode(p))
    assert opaque[:, 0, 0].tolist() == [255, 0, 0] and opaque[:, 0, 1].tolist() == [0, 0, 255]
    clear = load_image(_encode(p, transparency=1))  # index 1 transparent -> black
    assert clear[:, 0, 0].tolist() == [255, 0, 0] and clear[:, 0, 1].tolist() == [0, 0, 0]


def test_alpha_composited_onto_black():
    rgba = np.array([[[200, 100, 50, 255], [200, 100, 50, 128], [200, 100, 50, 0]]], dtype=np.uint8)
    out = load_image(_encode(Image.fromarray(rgba, "RGBA")))
    assert out[:, 0, 0].tolist() == [200, 100, 50]
    assert out[:, 0, 1].tolist() == [100, 50, 25]
    assert out[:, 0, 2].tolist() == [0, 0, 0]
    la = np.array([[[90, 255], [90, 0]]], dtype=np.uint8)
    out_la = load_image(_encode(Image.fromarray(la, "LA")))
    assert out_la[:, 0, 0].tolist() == [90, 90, 90] and out_la[:, 0, 1].tolist() == [0, 0, 0]


def test_cmyk_and_ycbcr_converted():
    cmyk = Image.new("CMYK", (3, 2), (0, 255, 255, 0))  # pure red in CMYK
    out = load_image(_encode(cmyk, "JPEG", quality=95))
    assert out.shape == (3, 2, 3)
    assert out[0].float().mean() > 200 and out[1].float().mean() < 60
    ycc = Image.new("RGB", (4, 4), (10, 200, 30)).convert("YCbCr")
    out2 = load_image(ycc)
    assert (out2[:, 0, 0].int() - torch.tensor([10, 200, 30])).abs().max() <= 3


def test_tiny_image_loads():
    out = load_image(_encode(Image.new("RGB", (1, 1), (1, 2, 3))))
    assert out.shape == (3, 1, 1) and out[:, 0, 0].tolist() == [1, 2, 3]


def test_corrupt_truncated_missing_raise_image_read_error(tmp_path):
    bad = tmp_path / "garbage.jpg"
    bad.write_bytes(b"this is not an image at all")
    with pytest.raises(ImageReadError, match="garbage.jpg"):
        load_image(bad)
    good = _encode(Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)), "JPEG")
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(good[: len(good) // 2])
    with pytest.raises(ImageReadError, match="trunc.jpg"):
        load_image(trunc)
    png = _encode(Image.new("RGB", (40, 40), (5, 5, 5)))
    with pytest.raises(ImageReadError, match="member.png"):
        load_image(png[:60], name="archive.tar:member.png")
    with pytest.raises(ImageReadError, match="nope.png"):
        load_image(tmp_path / "nope.png")
    assert issubclass(ImageReadError, ValueError)


def test_is_image_name():
    assert is_image_name("train/cat/a.JPEG") and is_image_name("x.png")
    assert not is_image_name("train/cat/._a.jpg") and not is_image_name("notes.txt")
