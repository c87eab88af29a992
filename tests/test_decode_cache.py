"""Decoding only what the views need (JPEG draft), the bounded-resolution packed cache, streaming channel
statistics, batches rendered in workers, and the CPU image-folder recipes (issue 11, items 2-3)."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jointaug.data.datasets import build_dataset
from jointaug.data.io import decode_min_side, load_image

METHODS = ("simclr", "mocov1", "mocov2", "mocov3", "byol", "simsiam", "dino")


def _jpeg(path: Path, w: int, h: int, seed: int = 0, fmt: str = "JPEG") -> Path:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)  # smooth-ish content
    img = Image.fromarray(base).resize((w, h), Image.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-class ImageNet-layout folder of varied sizes (500x375, 375x500, 224x224, 96x64)."""
    root = tmp_path_factory.mktemp("folder")
    sizes = [(500, 375), (375, 500), (224, 224), (96, 64)]
    for split, n in (("train", 8), ("val", 4)):
        for c in ("a", "b"):
            for i in range(n):
                w, h = sizes[i % len(sizes)]
                _jpeg(root / split / c / f"{i}.jpg", w, h, seed=hash((split, c, i)) % 1000)
    return root


def test_decode_min_side_keeps_every_crop_at_least_the_view_size() -> None:
    for size, s_min, ratio in ((64, 0.2, (3 / 4, 4 / 3)), (32, 0.08, (3 / 4, 4 / 3)), (224, 0.08, (0.5, 3.0)),
                               (96, 0.05, (1.0, 1.0))):
        m = decode_min_side(size, s_min, ratio)
        q = min(min(r, 1 / r) for r in ratio)
        assert math.sqrt(s_min * q) * m >= size - 1e-9  # smallest crop's shorter side >= the view side
        assert math.sqrt(s_min * q) * (m - 1) < size  # and the rule asks no more than that
    assert decode_min_side(64, 0.2) == 166 and decode_min_side(64, 1.0, (1.0, 1.0)) == 64
    with pytest.raises(ValueError, match="bad view"):
        decode_min_side(64, 0.0)


def test_draft_decodes_jpeg_smaller_but_never_below_the_needed_side(tmp_path: Path) -> None:
    p = _jpeg(tmp_path / "x.jpg", 500, 375)
    full = load_image(p)
    assert tuple(full.shape) == (3, 375, 500)
    for need in (1, 40, 47, 60, 93, 94, 150, 187, 188, 374):
        img = load_image(p, min_side=need)
        h, w = img.shape[1:]
        assert min(h, w) >= need  # never below what the views need
        k = max(s for s in (1, 2, 4, 8) if 375 // s >= need or s == 1)  # the largest DCT reduction allowed
        assert (h, w) == (math.ceil(375 / k), math.ceil(500 / k)), need
    assert tuple(load_image(p, min_side=150).shape) == (3, 188, 250)  # 1/2 scale
    assert tuple(load_image(p.read_bytes(), min_side=40).shape) == (3, 47, 63)  # 1/8 scale, from bytes too
    png = _jpeg(tmp_path / "x.png", 500, 375, fmt="PNG")
    assert tuple(load_image(png, min_side=40).shape) == (3, 375, 500)  # not a JPEG: full decode
    # a draft decode is a low-pass image of the full one: the mean colour agrees closely
    half = load_image(p, min_side=150).double().mean(dim=(1, 2))
    assert torch.allclose(half, full.double().mean(dim=(1, 2)), atol=2.0)


def test_folder_decode_side_reaches_the_file_images(folder: Path, tmp_path: Path) -> None:
    ds = build_dataset("folder", "train", root=str(folder), cache_dir=str(tmp_path), decode_side=90)
    shapes = {tuple(ds[i][0].shape[1:]) for i in range(len(ds))}
    # 375 // 90 = 4 -> 1/4 scale; 224 // 90 = 2 -> 1/2; 64 < 2 * 90: full size
    assert shapes == {(94, 125), (125, 94), (112, 112), (64, 96)}
    ds_full = build_dataset("folder", "train", root=str(folder), cache_dir=str(tmp_path))
    assert {tuple(ds_full[i][0].shape[1:]) for i in range(len(ds_full))} == {(375, 500), (500, 375), (224, 224),
                                                                          (64, 96)}


def test_packed_cache_bounds_the_shorter_side_and_is_keyed_by_the_bound(folder: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from jointaug.data import base
    from jointaug.data import folder as folder_mod
    from jointaug.data.base import PackedImageDataset

    ds = build_dataset("imagenette", "train", root=str(folder), cache_dir=str(tmp_path), max_resolution=80)
    assert isinstance(ds, PackedImageDataset) and len(ds) == 16
    full = build_dataset("imagenette", "train", root=str(folder), cache_dir=str(tmp_path))
    for i in range(len(ds)):
        img, label = ds[i]
        ref, ref_label = full[i]
        assert label == ref_label and img.dtype == torch.uint8
        h, w = ref.shape[1:]
        if min(h, w) <= 80:  # small images are kept as they are
            assert torch.equal(img, ref)
        else:  # shorter side exactly 80, aspect kept to the nearest pixel
            assert min(img.shape[1:]) == 80
            assert abs(max(img.shape[1:]) - round(max(h, w) * 80 / min(h, w))) <= 1
            small = torch.nn.functional.interpolate(ref[None].float(), size=tuple(img.shape[1:]), mode="area")[0]
            assert (img.float() - small).abs().mean() < 6.0  # same picture (draft + antialias vs area mean)
    cached = sorted(p.name for p in tmp_path.glob("folder-*.packed.bin"))
    assert len(cached) == 1
    assert (tmp_path / cached[0]).stat().st_size == sum(3 * int(h) * int(w) for h, w in ds.shapes)

    def boom(*a, **k):  # a cache hit decodes nothing
        raise AssertionError("decoded on a cache hit")

    monkeypatch.setattr(folder_mod, "load_image", boom)
    monkeypatch.setattr(base, "load_image", boom)
    again = build_dataset("imagenette", "train", root=str(folder), cache_dir=str(tmp_path), max_resolution=80)
    assert torch.equal(again[3][0], ds[3][0])
    clone = pickle.loads(pickle.dumps(again))  # workers re-map the file: the pixels are not pickled
    assert len(pickle.dumps(again)) < 10_000 and torch.equal(clone[5][0], ds[5][0])
    monkeypatch.undo()
    other = build_dataset("imagenette", "train", root=str(folder), cache_dir=str(tmp_path), max_resolution=120)
    assert max(min(s) for s in other.shapes.tolist()) == 120  # another bound: another entry
    assert len(list(tmp_path.glob("folder-*.packed.bin"))) == 2
    with pytest.raises(ValueError, match="not both"):
        build_dataset("imagenette", "train", root=str(folder), cache_dir=str(tmp_path), max_resolution=80, size=64)
    with pytest.raises(ValueError, match="max_resolution"):
        build_dataset("synthetic", "train", cache_dir=str(tmp_path), max_resolution=80, num_train=8)


def test_bounded_cache_of_one_size_is_a_fixed_array(tmp_path: Path) -> None:
    root = tmp_path / "sq"
    for c in ("a", "b"):
        for i in range(3):
            _jpeg(root / "train" / c / f"{i}.jpg", 200, 150, seed=i)
    ds = build_dataset("folder", "train", root=str(root), cache_dir=str(tmp_path / "c"), max_resolution=60)
    assert ds.fixed_size == (60, 80) and tuple(ds.images.shape) == (6, 3, 60, 80)


def test_streaming_channel_stats_equal_the_exact_float64_statistics() -> None:
    from jointaug.train.data import channel_stats

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (37, 3, 11, 13), dtype=torch.uint8, generator=g)
    x[:, 2] = x[:, 2] // 4 + 100  # channels with different spreads
    ref = x.double() / 255.0
    mean_ref = ref.mean(dim=(0, 2, 3))
    std_ref = ref.std(dim=(0, 2, 3), unbiased=False)
    for chunk in (1, 3 * 11 * 13 * 5, 1 << 24):  # one image per slice, five, all at once
        mean, std = channel_stats(x, chunk_bytes=chunk)
        # outputs are rounded to 6 decimals; float64 rounding of the sums is ~1e-16 relative
        assert torch.allclose(torch.tensor(mean, dtype=torch.float64), mean_ref, atol=5e-7, rtol=0)
        assert torch.allclose(torch.tensor(std, dtype=torch.float64), std_ref, atol=5e-7, rtol=0)
    assert channel_stats(x, max_images=1)[0] == channel_stats(x[:1])[0]
    with pytest.raises(ValueError, match="uint8"):
        channel_stats(x.float())


def test_views_decode_side_of_recipes() -> None:
    from jointaug.config import build_policy, load_config
    from jointaug.train.data import views_decode_side

    cfg = load_config("simclr/imagenette", ["data.download=true"])
    assert views_decode_side(build_policy(cfg)) == decode_min_side(64, 0.2)
    dino = load_config("dino/imagenette", ["data.download=true"])  # global 64 @ 0.2, local 32 @ 0.14
    assert views_decode_side(build_policy(dino)) == max(decode_min_side(64, 0.2), decode_min_side(32, 0.14))
    gcc = load_config("simclr/gcc-synthetic")  # fixed-size crops keep the crop's size: full decode
    assert views_decode_side(build_policy(gcc)) is None


def _batch_views(size: int = 24):
    from jointaug.augment import BatchViews
    from jointaug.sampling import make_policy

    return BatchViews(make_policy("small", size=size, scale=(0.2, 1.0)), mode="fast", mean=(0.5,) * 3, std=(0.25,) * 3)


@pytest.mark.parametrize("fixed", [True, False])
def test_batches_rendered_in_workers_equal_the_main_process_views(fixed: bool, folder: Path, tmp_path: Path) -> None:
    from jointaug.train.data import BatchWorkerViews, InMemoryViews, LoaderViews

    bv = _batch_views()
    common = dict(global_batch=4, rank=0, world=1, seed=3, device=torch.device("cpu"))
    if fixed:
        from jointaug.data.base import TensorImageDataset

        imgs = torch.randint(0, 256, (10, 3, 20, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
        ds = TensorImageDataset(imgs, torch.arange(10) % 2, ["a", "b"], name="t", split="train")
        main = InMemoryViews(imgs, bv, **common)
    else:
        ds = build_dataset("folder", "train", root=str(folder), cache_dir=str(tmp_path), max_resolution=40)
        main = LoaderViews(ds, bv, num_workers=0, **common)
    ahead = BatchWorkerViews(ds, bv, num_workers=1 if not fixed else 0, **common)
    for epoch, start in ((0, 0), (1, 0), (2, 1), (2, 1)):  # one stream over epochs; a resume/jump restarts it
        a, b = list(main.epoch(epoch, start)), list(ahead.epoch(epoch, start))
        assert len(a) == len(b) == main.steps_per_epoch - start
        for va, vb in zip(a, b):
            for x, y in zip(va, vb):  # same draws and pixels; a worker's single thread may round differently
                assert x.shape == y.shape and torch.allclose(x, y, atol=1e-5, rtol=0)
    ahead.close()


def test_imagenette_recipes_are_cpu_sized_and_picked_by_run(folder: Path) -> None:
    import argparse

    from jointaug.config import load_config
    from jointaug.train.main_job import _base_overrides, add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for method in METHODS:
        args = parser.parse_args(["--data", "imagenette", "--data-dir", str(folder), "--method", method])
        recipe, overrides = _base_overrides(args)
        assert recipe == f"{method}/imagenette"
        cfg = load_config(recipe, overrides)
        assert cfg.model.backbone == "convnet4" and cfg.optim.batch_size <= 256 and cfg.aug.size == 64
        assert cfg.data.max_resolution is not None and cfg.data.limit is not None and cfg.optim.epochs <= 20


def test_run_with_a_missing_folder_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from jointaug.cli import main

    missing = tmp_path / "no-such-imagenette"
    code = main(["run", "--data", "imagenette", "--data-dir", str(missing), "--out", str(tmp_path / "run"), "--quick"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1
    assert str(missing) in err and "no such file or directory" in err
    assert not (tmp_path / "run").exists()


def test_max_resolution_config_errors(folder: Path) -> None:
    from jointaug.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="data.max_resolution.*image-folder"):
        load_config("simclr/synthetic", ["data.max_resolution=64"])
    with pytest.raises(ConfigError, match="not both"):
        load_config("simclr/imagenette", [f"data.root={folder}", "data.size=64"])
    with pytest.raises(ConfigError, match="aug.where"):
        load_config("simclr/imagenette", [f"data.root={folder}", "aug.where=everywhere"])


def test_decode_benchmark_writes_its_table(tmp_path: Path) -> None:
    import argparse

    from jointaug.bench.decode import main

    args = argparse.Namespace(dir224=None, dir500=None, images=3, rounds=1, out=str(tmp_path / "decode"))
    assert main(args) == 0
    import json

    result = json.loads((tmp_path / "decode.json").read_text())
    rows = {(r["input"], r["mode"].split(" (")[0]): r for r in result["rows"]}
    assert tuple(rows[("500x375", "full")]["decoded_hw"]) == (375, 500)
    assert tuple(rows[("500x375", "draft 64 px")]["decoded_hw"]) == (188, 250)  # 1/2 scale, >= 166
    assert tuple(rows[("224x224", "draft 64 px")]["decoded_hw"]) == (224, 224)  # 224 < 2 x 166: full
    assert rows[("500x375", "draft 64 px")]["mean_abs_diff_255"] < 2.0  # the same picture
    assert "| 500x375 | full |" in (tmp_path / "decode.md").read_text()
    assert result["machine"]["load_average"] is not None
