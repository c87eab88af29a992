"""Image-folder reader: directory, .tar and .tar.gz; fixed vs variable size; corrupt files; layouts."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jointaug.data import FileImageDataset, ImageReadError, TensorImageDataset, build_dataset, load_image


def _rgb(seed: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _write_mixed(root: Path, corrupt: bool = True) -> None:
    """train/{cat,dog}, test/{cat,dog}: several sizes and modes, plus one corrupt file."""
    (root / "train/cat").mkdir(parents=True)
    (root / "train/dog").mkdir(parents=True)
    (root / "test/cat").mkdir(parents=True)
    (root / "test/dog").mkdir(parents=True)
    Image.fromarray(_rgb(0, 10, 12)).save(root / "train/cat/a.png")
    Image.fromarray(_rgb(1, 20, 20)).save(root / "train/cat/b.jpg", quality=90)
    Image.fromarray(_rgb(2, 5, 9)[:, :, 0], "L").save(root / "train/cat/c.png")
    Image.fromarray(np.dstack([_rgb(3, 6, 6), np.full((6, 6), 128, np.uint8)]), "RGBA").save(root / "train/cat/d.png")
    Image.fromarray(np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000).save(root / "train/dog/e.png")
    Image.fromarray(_rgb(4, 7, 3)).convert("P").save(root / "train/dog/f.png")
    Image.fromarray(_rgb(5, 1, 1)).save(root / "train/dog/g.bmp")
    (root / "train/dog/notes.txt").write_text("not an image")
    if corrupt:
        (root / "train/dog/bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken jpeg")
    Image.fromarray(_rgb(6, 8, 8)).save(root / "test/cat/x.png")
    Image.fromarray(_rgb(7, 9, 8)).save(root / "test/dog/y.png")


def _write_fixed(root: Path, corrupt: bool = False, n: int = 3) -> None:
    """train/test with 8x8 images of mixed modes (a fixed-size set)."""
    modes = ["RGB", "L", "RGBA", "P"]
    for split, off in (("train", 0), ("test", 100)):
        for ci, cls in enumerate(("ant", "bee", "cow")):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                img = Image.fromarray(_rgb(off + 10 * ci + i, 8, 8)).convert(modes[(ci + i) % 4])
                img.save(root / split / cls / f"{i:02d}.png")
    if corrupt:
        (root / "train/bee/zz_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")


def _tar(src: Path, dest: Path, mode: str, wrapper: str = "") -> Path:
    with tarfile.open(dest, mode) as tf:
        for p in sorted(src.rglob("*")):
            tf.add(p, arcname=wrapper + p.relative_to(src).as_posix(), recursive=False)
    return dest


def test_variable_folder_decodes_per_item(tmp_path):
    _write_mixed(tmp_path / "data")
    ds = build_dataset("folder", "train", root=str(tmp_path / "data"), cache_dir=str(tmp_path / "c"))
    assert isinstance(ds, FileImageDataset) and ds.fixed_size is None and not hasattr(ds, "images")
    assert ds.classes == ["cat", "dog"]
    assert len(ds) == 8  # notes.txt ignored, bad.jpg listed (raise mode finds it when read)
    assert ds.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    img, label = ds[0]
    assert img.dtype == torch.uint8 and img.shape == (3, 10, 12) and label == 0
    assert np.array_equal(img.permute(1, 2, 0).numpy(), _rgb(0, 10, 12))
    assert ds[2][0].shape == (3, 5, 9) and ds[6][0].shape == (3, 7, 3)
    bad = ds.files.index("train/dog/bad.jpg")
    with pytest.raises(ImageReadError, match="bad.jpg"):
        ds[bad]
    e = ds[ds.files.index("train/dog/e.png")][0]
    assert e[0, 3, 3].item() == round(15 * 4000 * 255 / 65535)


def test_variable_folder_skip_lists_corrupt(tmp_path):
    _write_mixed(tmp_path / "data")
    ds = build_dataset("folder", "train", root=str(tmp_path / "data"), on_error="skip", cache_dir=str(tmp_path / "c"))
    assert len(ds) == 7 and len(ds.skipped) == 1 and ds.skipped[0].endswith("bad.jpg")
    for i in range(len(ds)):
        assert ds[i][0].shape[0] == 3
    again = build_dataset("folder", "train", root=str(tmp_path / "data"), on_error="skip",
                          cache_dir=str(tmp_path / "c"))
    assert again.skipped == ds.skipped and again.files == ds.files


def test_fixed_folder_becomes_cached_tensor_set(tmp_path):
    _write_fixed(tmp_path / "d")
    kw = dict(root=str(tmp_path / "d"), cache_dir=str(tmp_path / "c"))
    ds = build_dataset("folder", "train", **kw)
    assert isinstance(ds, TensorImageDataset) and ds.fixed_size == (8, 8)
    assert ds.images.shape == (9, 3, 8, 8) and ds.images.dtype == torch.uint8
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    expect = load_image(tmp_path / "d/train/bee/01.png")
    assert torch.equal(ds.images[4], expect) and torch.equal(ds[4][0], expect)
    assert list((tmp_path / "c").glob("*.images.npy"))
    again = build_dataset("folder", "train", **kw)
    assert "cache" in again.info and torch.equal(again.images, ds.images)
    test = build_dataset("folder", "test", **kw)
    assert len(test) == 9 and not torch.equal(test.images, ds.images)


def test_fixed_folder_corrupt_raise_or_skip(tmp_path):
    _write_fixed(tmp_path / "d", corrupt=True)
    with pytest.raises(ImageReadError, match="zz_bad.png"):
        build_dataset("folder", "train", root=str(tmp_path / "d"), cache_dir=str(tmp_path / "c"))
    ds = build_dataset("folder", "train", root=str(tmp_path / "d"), on_error="skip", cache_dir=str(tmp_path / "c"))
    assert len(ds) == 9 and len(ds.skipped) == 1 and "zz_bad.png" in ds.skipped[0]
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert torch.equal(ds.images[8], load_image(tmp_path / "d/train/cow/02.png"))


@pytest.mark.parametrize("mode,suffix", [("w", ".tar"), ("w:gz", ".tar.gz")])
def test_tar_archives_match_directory(tmp_path, mode, suffix):
    _write_fixed(tmp_path / "d")
    _write_mixed(tmp_path / "m", corrupt=False)
    ref_fixed = build_dataset("folder", "train", root=str(tmp_path / "d"), cache_dir=str(tmp_path / "c"))
    ref_var = build_dataset("folder", "train", root=str(tmp_path / "m"), cache_dir=str(tmp_path / "c"))
    tf_fixed = _tar(tmp_path / "d", tmp_path / f"fixed{suffix}", mode, wrapper="wrapped/")
    tf_var = _tar(tmp_path / "m", tmp_path / f"var{suffix}", mode)
    for _ in range(2):  # second round comes from the cache
        fixed = build_dataset("folder", "train", root=str(tf_fixed), cache_dir=str(tmp_path / "c"))
        assert isinstance(fixed, TensorImageDataset)
        assert torch.equal(fixed.images, ref_fixed.images) and torch.equal(fixed.labels, ref_fixed.labels)
        var = build_dataset("folder", "train", root=str(tf_var), cache_dir=str(tmp_path / "c"))
        assert isinstance(var, FileImageDataset) and len(var) == len(ref_var)
        for i in range(len(var)):
            assert torch.equal(var[i][0], ref_var[i][0]) and var[i][1] == ref_var[i][1]


def test_tar_dataset_pickles_and_works_in_workers(tmp_path):
    _write_mixed(tmp_path / "m", corrupt=False)
    tf = _tar(tmp_path / "m", tmp_path / "m.tar", "w")
    ds = build_dataset("folder", "train", root=str(tf), cache_dir=str(tmp_path / "c"))
    ds[0]  # opens the handle in this process
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[3][0], ds[3][0])
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, shuffle=False)
    got = [x[0].shape for x in loader]
    assert got == [ds[i][0].shape for i in range(len(ds))]


def test_fixed_dataset_pickle_carries_no_pixels(tmp_path):
    _write_fixed(tmp_path / "d", n=40)
    ds = build_dataset("folder", "train", root=str(tmp_path / "d"), cache_dir=str(tmp_path / "c"))
    blob = pickle.dumps(ds)
    assert len(blob) < ds.images.numel()  # memory map re-opened, not copied
    assert torch.equal(pickle.loads(blob).images, ds.images)


def test_size_option_makes_variable_folder_fixed(tmp_path):
    _write_mixed(tmp_path / "m", corrupt=False)
    ds = build_dataset("folder", "train", root=str(tmp_path / "m"), size=8, cache_dir=str(tmp_path / "c"))
    assert isinstance(ds, TensorImageDataset) and ds.images.shape == (7, 3, 8, 8)


def test_layouts_flat_val_and_train_classes(tmp_path):
    flat = tmp_path / "flat"
    for cls in ("b", "a"):
        (flat / cls).mkdir(parents=True)
        Image.fromarray(_rgb(0, 4, 4)).save(flat / cls / "1.png")
    ds = build_dataset("folder", "train", root=str(flat), cache_dir=str(tmp_path / "c"))
    assert ds.classes == ["a", "b"] and len(ds) == 2
    with pytest.raises(ValueError, match="flat"):
        build_dataset("folder", "test", root=str(flat), cache_dir=str(tmp_path / "c"))

    tree = tmp_path / "tree"
    for split, classes in (("train", ("x", "y", "z")), ("val", ("z",))):
        for cls in classes:
            (tree / split / cls).mkdir(parents=True)
            Image.fromarray(_rgb(1, 4, 4)).save(tree / split / cls / "1.png")
    test = build_dataset("folder", "test", root=str(tree), cache_dir=str(tmp_path / "c"))  # falls back to val
    assert test.classes == ["x", "y", "z"] and test.labels.tolist() == [2]
    with pytest.raises(ValueError, match="'extra'"):
        build_dataset("folder", "extra", root=str(tree), cache_dir=str(tmp_path / "c"))


def test_tiny_imagenet_val_annotations(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    for wnid in ("n01", "n02"):
        (root / "train" / wnid / "images").mkdir(parents=True)
        Image.fromarray(_rgb(2, 6, 6)).save(root / "train" / wnid / "images" / f"{wnid}_0.JPEG")
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    (root / "val/images").mkdir(parents=True)
    (root / "test/images").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(_rgb(3 + i, 6, 6)).save(root / "val/images" / f"val_{i}.JPEG")
    Image.fromarray(_rgb(9, 6, 6)).save(root / "test/images/test_0.JPEG")
    (root / "val/val_annotations.txt").write_text(
        "val_0.JPEG\tn02\t0\t0\t5\t5\nval_1.JPEG\tn01\t0\t0\t5\t5\nval_2.JPEG\tn02\t1\t1\t4\t4\n")
    train = build_dataset("tiny-imagenet", "train", root=str(root), cache_dir=str(tmp_path / "c"))
    test = build_dataset("tiny-imagenet", "test", root=str(root), cache_dir=str(tmp_path / "c"))
    assert train.classes == test.classes == ["n01", "n02"]
    assert test.labels.tolist() == [1, 0, 1] and test.fixed_size == (6, 6)


def test_limit_is_stratified(tmp_path):
    _write_fixed(tmp_path / "d", n=5)
    ds = build_dataset("folder", "train", root=str(tmp_path / "d"), limit=7, cache_dir=str(tmp_path / "c"))
    assert ds.labels.bincount().tolist() == [3, 2, 2]
    assert torch.equal(ds.images[3], load_image(tmp_path / "d/train/bee/00.png"))


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        build_dataset("folder", "train", root=str(tmp_path / "missing_dir"))
    with pytest.raises(ValueError, match="root"):
        build_dataset("imagenette", "train")
    not_tar = tmp_path / "x.bin"
    not_tar.write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match="x.bin"):
        build_dataset("folder", "train", root=str(not_tar), cache_dir=str(tmp_path / "c"))
    (tmp_path / "empty/train").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images"):
        build_dataset("folder", "train", root=str(tmp_path / "empty"), cache_dir=str(tmp_path / "c"))
