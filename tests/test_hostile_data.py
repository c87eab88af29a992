"""Hostile data sets: each gives the documented conversion, a clear error naming the file, or a counted
skip; never a crash, a hang or a write outside the data, run and cache folders (issue 9)."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import signal
import struct
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jointaug.data import ImageReadError, build_dataset, load_image
from jointaug.data import cache as cache_mod
from jointaug.data.checks import check_splits


# ------------------------------------------------------------------------------------------ helpers
class Hung(BaseException):
    """Raised by :func:`deadline`; not an OSError (as TimeoutError is), so no reader can swallow it."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail (instead of hanging) when the block takes longer than ``seconds`` (SIGALRM, main thread)."""
    def on_alarm(signum: int, frame: object) -> None:
        raise Hung(f"hung for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def png(h: int, w: int, seed: int = 0) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header declares w x h pixels, followed by a tiny (incomplete) data stream."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def add_file(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    tf.addfile(ti, io.BytesIO(data))


def add_special(tf: tarfile.TarFile, name: str, kind: bytes, linkname: str = "") -> None:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = linkname
    tf.addfile(ti)


def good_members(variable: bool = True) -> list[tuple[str, bytes]]:
    """train/{cat,dog} and test/{cat,dog}; with ``variable`` two sizes (the extraction path)."""
    out = []
    for split in ("train", "test"):
        for ci, cls in enumerate(("cat", "dog")):
            for i in range(2):
                side = 8 + (2 * i if variable else 0)
                out.append((f"{split}/{cls}/{i}.png", png(side, side, seed=10 * ci + i)))
    return out


def make_tar(path: Path, extra: list[tuple[str, bytes]] | None = None, *, variable: bool = True,
             mode: str = "w:gz", special: list[tuple[str, bytes, str]] | None = None) -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in good_members(variable) + list(extra or []):
            add_file(tf, name, data)
        for name, kind, link in special or []:
            add_special(tf, name, kind, link)
    return path


def snapshot(root: Path, allowed: tuple[Path, ...]) -> set[str]:
    """Every file under ``root`` outside the ``allowed`` folders (to detect escaping writes)."""
    out = set()
    for p in root.rglob("*"):
        if not any(p == a or a in p.parents for a in allowed):
            out.add(str(p))
    return out


@pytest.fixture
def area(tmp_path: Path) -> Path:
    """tmp/work/{data,cache}; the tests check nothing is written into tmp/work outside those."""
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "cache").mkdir()
    return work


# ------------------------------------------------------------------- defect 1: archive members escape
@pytest.mark.parametrize("variable", [True, False], ids=["extracted", "decoded-in-memory"])
@pytest.mark.parametrize("mode,suffix", [("w:gz", "tar.gz"), ("w", "tar")])
def test_path_traversal_member_is_refused_and_nothing_escapes(area: Path, variable: bool, mode: str,
                                                              suffix: str) -> None:
    evil = "train/cat/../../../escape_valid.png"
    archive = make_tar(area / "data" / f"evil.{suffix}", [(evil, png(12, 12, 5))], variable=variable, mode=mode)
    before = snapshot(area.parent, (area / "data", area / "cache"))
    with pytest.raises(ValueError, match=r"escape_valid\.png.*'\.\.'"):
        build_dataset("folder", "train", root=str(archive), cache_dir=str(area / "cache"))
    assert snapshot(area.parent, (area / "data", area / "cache")) == before
    assert not list(area.parent.rglob("escape_valid.png"))


@pytest.mark.parametrize("member,kind,link,pattern", [
    ("/tmp/jointaug-absolute-escape.png", None, "", "absolute path"),
    ("train/cat/link.png", tarfile.SYMTYPE, "/etc/passwd", "symbolic link"),
    ("train/cat/hard.png", tarfile.LNKTYPE, "train/cat/0.png", "hard link"),
    ("train/cat/dev.png", tarfile.CHRTYPE, "", "device"),
    ("train/cat/blk.png", tarfile.BLKTYPE, "", "device"),
    ("train/cat/fifo.png", tarfile.FIFOTYPE, "", "FIFO"),
], ids=["absolute", "symlink", "hardlink", "chardev", "blockdev", "fifo"])
@pytest.mark.parametrize("mode,suffix", [("w:gz", "tar.gz"), ("w", "tar")])
def test_unsafe_members_are_refused_by_name(area: Path, member: str, kind: bytes | None, link: str, pattern: str,
                                            mode: str, suffix: str) -> None:
    path = area / "data" / f"evil.{suffix}"
    if kind is None:
        make_tar(path, [(member, png(9, 9))], mode=mode)
    else:
        make_tar(path, mode=mode, special=[(member, kind, link)])
    before = snapshot(area.parent, (area / "data", area / "cache"))
    for on_error in ("raise", "skip"):  # an unsafe archive is never "skipped" around
        with pytest.raises(ValueError, match=pattern) as err:
            build_dataset("folder", "train", root=str(path), cache_dir=str(area / "cache"), on_error=on_error)
        assert repr(member) in str(err.value) and str(path) in str(err.value)
    assert snapshot(area.parent, (area / "data", area / "cache")) == before
    assert not Path("/tmp/jointaug-absolute-escape.png").exists()


def test_cifar_and_stl10_archives_refuse_unsafe_members(tmp_path: Path) -> None:
    cifar = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(cifar, "w:gz") as tf:
        add_special(tf, "cifar-10-batches-py/batches.meta", tarfile.SYMTYPE, "/etc/passwd")
    with pytest.raises(ValueError, match="symbolic link"):
        build_dataset("cifar10", "train", root=str(cifar), cache_dir=str(tmp_path / "c"), verify=False)
    stl = tmp_path / "stl10_binary.tar.gz"
    with tarfile.open(stl, "w:gz") as tf:
        add_file(tf, "stl10_binary/../../train_X.bin", b"\0" * 27648)
    with pytest.raises(ValueError, match=r"'\.\.'"):
        build_dataset("stl10", "train", root=str(stl), cache_dir=str(tmp_path / "c"), verify=False)
    assert not (tmp_path / "train_X.bin").exists() and not (tmp_path.parent / "train_X.bin").exists()


# ----------------------------------------------------------------- defect 2: unbounded decompression
def test_huge_member_is_refused_or_skipped_without_decompressing(area: Path, monkeypatch) -> None:
    monkeypatch.setenv("JOINTAUG_MAX_MEMBER_BYTES", "20000")
    big = png(120, 120, 9)  # about 43 kB of incompressible PNG: over the 20,000-byte limit
    assert len(big) > 20000
    for variable in (True, False):
        for mode, suffix in (("w:gz", "tar.gz"), ("w", "tar")):
            path = make_tar(area / "data" / f"big{variable}.{suffix}", [("train/dog/huge.png", big)],
                            variable=variable, mode=mode)
            cache = area / "cache" / f"{variable}{suffix}"
            with pytest.raises(ImageReadError, match=r"huge\.png.*over the limit of 20,000"):
                ds = build_dataset("folder", "train", root=str(path), cache_dir=str(cache))
                [ds[i] for i in range(len(ds))]  # plain tar, variable size: read lazily
            ds = build_dataset("folder", "train", root=str(path), cache_dir=str(cache), on_error="skip")
            assert len(ds) == 4 and len(ds.skipped) == 1 and ds.skipped[0].endswith("train/dog/huge.png")
            assert not list(cache.rglob("huge.png"))  # never extracted


def test_decompression_bomb_png_is_refused_or_skipped(area: Path, monkeypatch) -> None:
    # a legitimately large but highly compressible image (about 1 kB on disk), with the limit lowered
    bomb = io.BytesIO()
    Image.new("RGB", (400, 300), (7, 7, 7)).save(bomb, format="PNG")
    assert len(bomb.getvalue()) < 4000
    monkeypatch.setenv("JOINTAUG_MAX_IMAGE_PIXELS", "100000")
    with pytest.raises(ImageReadError, match=r"bomb\.png.*400 x 300 = 120,000 pixels, over the limit of 100,000"):
        load_image(bomb.getvalue(), name="bomb.png")
    root = area / "data" / "tree"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            (root / split / cls / "ok.png").write_bytes(png(8, 8))
    (root / "train/a/bomb.png").write_bytes(bomb.getvalue())
    with pytest.raises(ImageReadError, match="bomb.png"):
        build_dataset("folder", "train", root=str(root), cache_dir=str(area / "cache"))
    ds = build_dataset("folder", "train", root=str(root), cache_dir=str(area / "cache"), on_error="skip")
    assert len(ds) == 2 and [Path(s).name for s in ds.skipped] == ["bomb.png"]
    monkeypatch.setenv("JOINTAUG_MAX_IMAGE_PIXELS", "0")  # 0: no limit (documented)
    assert load_image(bomb.getvalue()).shape == (3, 300, 400)
    monkeypatch.setenv("JOINTAUG_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ValueError, match="JOINTAUG_MAX_IMAGE_PIXELS='lots'"):
        load_image(bomb.getvalue())


def test_huge_header_is_refused_before_decoding() -> None:
    # 12000 x 12000 declared (144 Mpx, between Pillow's warning and error thresholds), 100 bytes of file
    data = png_header_only(12000, 12000)
    with deadline(10), pytest.warns(Image.DecompressionBombWarning):  # Pillow's warning is no longer silenced
        with pytest.raises(ImageReadError, match="12000 x 12000 = 144,000,000 pixels, over the limit"):
            load_image(data, name="header.png")
    with pytest.raises(ImageReadError, match="huge.png"):  # far beyond: Pillow's own error, same clear form
        load_image(png_header_only(100000, 100000), name="huge.png")


# ------------------------------------------------------------ defect 3: full cache disk (bus error)
def _fixed_tree(root: Path) -> Path:
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(3):
                (root / split / cls / f"{i}.png").write_bytes(png(8, 8, i))
    return root


def test_full_cache_disk_is_a_clear_error_and_leaves_no_temporary(tmp_path: Path, monkeypatch) -> None:
    root = _fixed_tree(tmp_path / "tree")
    cache = tmp_path / "cache"

    class Usage:
        total, used, free = 10**9, 10**9 - 5000, 5000

    monkeypatch.setattr(cache_mod.shutil, "disk_usage", lambda p: Usage())
    with pytest.raises(OSError, match=r"not enough disk space in .*cache.* bytes needed .* 5,000 bytes free") as err:
        build_dataset("folder", "train", root=str(root), cache_dir=str(cache))
    assert err.value.errno == 28 and str(cache) in str(err.value)
    assert not [p for p in cache.rglob("*") if ".tmp" in p.name]


def test_failing_cache_write_removes_its_temporary(tmp_path: Path, monkeypatch) -> None:
    root = _fixed_tree(tmp_path / "tree")
    cache = tmp_path / "cache"

    def no_space(path: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_mod, "_reserve", no_space)
    with pytest.raises(OSError, match="not enough disk space"):
        build_dataset("folder", "train", root=str(root), cache_dir=str(cache))
    assert not [p for p in cache.rglob("*") if ".tmp" in p.name]
    monkeypatch.undo()

    def fail_labels(*a: object, **k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_mod.np, "save", fail_labels)  # the commit step fails after decoding
    with pytest.raises(OSError, match="could not write cache entry"):
        build_dataset("folder", "train", root=str(root), cache_dir=str(cache))
    assert not [p for p in cache.rglob("*") if ".tmp" in p.name]


def test_cache_space_is_reserved_before_writing(tmp_path: Path) -> None:
    writer = cache_mod.ArrayWriter(tmp_path, "x", (4, 3, 64, 64))
    assert writer.tmp_path is not None
    if hasattr(os, "posix_fallocate"):  # blocks allocated up front, not a sparse file
        assert os.stat(writer.tmp_path).st_blocks * 512 >= 4 * 3 * 64 * 64
    writer.discard()
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------- defect 5: classes dropped or mislabelled
def test_symlink_loop_is_an_error_naming_the_folder(tmp_path: Path) -> None:
    root = _fixed_tree(tmp_path / "tree")
    os.symlink("..", root / "train/a/loop")
    with deadline(20), pytest.raises(ValueError, match=r"symbolic link loop at .*train/a/loop"):
        build_dataset("folder", "train", root=str(root), cache_dir=str(tmp_path / "cache"))


def test_unreadable_class_folder_is_an_error_naming_it(tmp_path: Path, monkeypatch) -> None:
    # tests run as root, where chmod 000 does not stop reading: make listing that folder fail instead
    root = _fixed_tree(tmp_path / "tree")
    real = os.scandir

    def scandir(path: str) -> object:
        if str(path).endswith(os.path.join("train", "b")):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(ValueError, match=r"cannot list folder .*train/b \(Permission denied\)"):
        build_dataset("folder", "train", root=str(root), cache_dir=str(tmp_path / "cache"))


def test_empty_class_folder_is_reported(tmp_path: Path) -> None:
    root = _fixed_tree(tmp_path / "tree")
    (root / "train/c_empty").mkdir()
    (root / "train/d_text").mkdir()
    (root / "train/d_text/readme.txt").write_text("no image")
    with pytest.warns(UserWarning, match=r"2 class folder\(s\) hold no image and are dropped: "
                                         r"train/c_empty/, train/d_text/ \(2 classes kept"):
        ds = build_dataset("folder", "train", root=str(root), cache_dir=str(tmp_path / "cache"))
    assert ds.classes == ["a", "b"]
    # the same through a tar archive (folder members are listed too)
    tar = tmp_path / "tree.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(root, arcname=".", recursive=False)  # as `tar cf tree.tar .` makes: not a class folder
        for p in sorted(root.rglob("*")):
            tf.add(p, arcname=p.relative_to(root).as_posix(), recursive=False)
    with pytest.warns(UserWarning) as record:
        build_dataset("folder", "train", root=str(tar), cache_dir=str(tmp_path / "cache"))
    assert [str(w.message).split(": ", 1)[1] for w in record] == [
        "2 class folder(s) hold no image and are dropped: train/c_empty/, train/d_text/ (2 classes kept; "
        "labels follow the sorted names of the kept ones)"]


# --------------------------------------------------- defect 7: FIFO and other non-regular files
def test_fifo_named_png_never_hangs(tmp_path: Path) -> None:
    root = _fixed_tree(tmp_path / "tree")
    os.mkfifo(root / "train/a/pipe.png")
    cache = str(tmp_path / "cache")
    with deadline(20):
        with pytest.raises(ImageReadError, match=r"pipe\.png: a FIFO, not a regular file"):
            build_dataset("folder", "train", root=str(root), cache_dir=cache)
        ds = build_dataset("folder", "train", root=str(root), cache_dir=cache, on_error="skip")
    assert len(ds) == 6 and [Path(s).name for s in ds.skipped] == ["pipe.png"]
    with deadline(20), pytest.raises(ImageReadError, match="FIFO"):
        load_image(root / "train/a/pipe.png")


def test_fifo_in_variable_size_folder_is_skipped_with_workers(tmp_path: Path) -> None:
    root = _fixed_tree(tmp_path / "tree")
    (root / "train/a/big.png").write_bytes(png(12, 10))  # variable size: decoded per item
    os.mkfifo(root / "train/b/pipe.png")
    with deadline(30):
        ds = build_dataset("folder", "train", root=str(root), cache_dir=str(tmp_path / "cache"), on_error="skip")
        assert ds.fixed_size is None and len(ds) == 7 and [Path(s).name for s in ds.skipped] == ["pipe.png"]
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
        assert len(list(loader)) == 7


# --------------------------------------------- other hostile files: conversions, errors, skips
@pytest.mark.parametrize("name,content,expect", [
    ("zero.png", b"", "not a recognised image format"),
    ("truncated.png", None, "truncated|broken|Truncated"),
    ("text.jpg", b"just some text\n" * 10, "not a recognised image format"),
    ("dir.png", "dir", "a directory, not a regular file"),
    ("dangling.png", "dangling", "no such file"),
], ids=["zero-byte", "truncated", "text-named-jpg", "folder-named-png", "dangling-link"])
def test_bad_files_raise_naming_the_file_or_are_counted(tmp_path: Path, name: str, content: object,
                                                        expect: str) -> None:
    root = _fixed_tree(tmp_path / "tree")
    target = root / "train/a" / name
    if content == "dir":
        target.mkdir()
        (target / "inner.txt").write_text("x")
    elif content == "dangling":
        os.symlink(tmp_path / "nowhere.png", target)
    else:
        target.write_bytes(png(8, 8)[:60] if content is None else content)
    cache = str(tmp_path / "cache")
    with deadline(20):
        if content == "dir":  # a folder is a folder (deeper nesting), whatever its name: its .txt is ignored
            assert len(build_dataset("folder", "train", root=str(root), cache_dir=cache)) == 6
            with pytest.raises(ImageReadError, match=f"{name}: {expect}"):
                load_image(target)
            return
        with pytest.raises(ImageReadError, match=rf"{name}: .*({expect})"):
            build_dataset("folder", "train", root=str(root), cache_dir=cache)
        ds = build_dataset("folder", "train", root=str(root), cache_dir=cache, on_error="skip")
    assert len(ds) == 6 and [Path(s).name for s in ds.skipped] == [name]


def test_wrong_extension_is_decoded_by_content(tmp_path: Path) -> None:
    # documented conversion: the format comes from the bytes, not the name
    data = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(data, format="PNG")
    p = tmp_path / "really_a_png.jpg"
    p.write_bytes(data.getvalue())
    assert torch.equal(load_image(p), torch.full((3, 8, 8), 200, dtype=torch.uint8))


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True,
                    reason="running as root: chmod 000 does not make a file unreadable (covered by the "
                           "monkeypatched unreadable-folder test and the FIFO/dangling-link cases)")
def test_unreadable_file_is_an_error_naming_it(tmp_path: Path) -> None:
    root = _fixed_tree(tmp_path / "tree")
    bad = root / "train/a/locked.png"
    bad.write_bytes(png(8, 8))
    bad.chmod(0)
    with pytest.raises(ImageReadError, match="locked.png: PermissionError"):
        build_dataset("folder", "train", root=str(root), cache_dir=str(tmp_path / "cache"))


# ------------------------------------------------ defect 8: evaluation split checked before training
def test_check_splits_finds_eval_problems_before_training(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    for split, classes in (("train", ("a", "b")), ("val", ("a", "b"))):
        for ci, cls in enumerate(classes):
            (root / split / cls).mkdir(parents=True)
            for i in range(2):
                (root / split / cls / f"{i}.png").write_bytes(png(8 + 2 * i, 8, 10 * ci + i))  # variable size
    cache = str(tmp_path / "cache")
    train = build_dataset("folder", "train", root=str(root), cache_dir=cache)
    test = build_dataset("folder", "test", root=str(root), cache_dir=cache)
    assert check_splits(train, test, cache_dir=cache)["decoded"] == 4
    assert check_splits(train, test, cache_dir=cache)["decoded"] == 0  # remembered for unchanged files
    (root / "val/b/1.png").write_bytes(b"\x89PNG\r\n\x1a\n corrupt")  # a corrupt validation image
    test = build_dataset("folder", "test", root=str(root), cache_dir=cache)  # lazily decoded: no error yet
    with pytest.raises(ImageReadError, match=r"val/b/1\.png.*checking the evaluation split"):
        check_splits(train, test, cache_dir=cache)
    fixed_train = build_dataset("synthetic", "train", cache_dir=cache, num_train=20, num_test=10)
    with pytest.raises(ValueError, match="classes differ .* not in training: a, b"):
        check_splits(fixed_train, build_dataset("folder", "train", root=str(root), cache_dir=cache))


def _train_cli(capsys: pytest.CaptureFixture, out: Path, cache: Path, *extra: str) -> tuple[int, str]:
    """Run ``jointaug train`` in this process (as the command line does); return (exit code, stderr)."""
    from jointaug.cli import main

    config = Path(__file__).resolve().parents[1] / "configs/simclr/synthetic.yaml"
    capsys.readouterr()
    code = main(["train", str(config), f"data.cache_dir={cache}", "model.backbone=convnet4",
                 "model.backbone_kwargs.width=8", "method.params.proj_hidden_dim=32", "method.params.proj_out_dim=16",
                 "aug.recipe=small", "aug.size=16", "optim.batch_size=4", "optim.epochs=1", "train.progress=false",
                 "train.tensorboard=false", "eval.linear=false", f"train.out_dir={out}", *extra])
    return code, capsys.readouterr().err


def test_trainer_refuses_a_missing_val_folder_before_training(tmp_path: Path, capsys) -> None:
    root = tmp_path / "tree"
    for cls in ("a", "b"):
        (root / "train" / cls).mkdir(parents=True)
        for i in range(4):
            (root / "train" / cls / f"{i}.png").write_bytes(png(8, 8, i))
    out = tmp_path / "run"
    code, err = _train_cli(capsys, out, tmp_path / "cache", "data.name=folder", f"data.root={root}",
                           "data.num_workers=0", "train.log_every=1")
    assert code == 2, err[-3000:]
    assert "no 'test' split folder; found train" in err
    assert not (out / "metrics.jsonl").exists() or '"type": "step"' not in (out / "metrics.jsonl").read_text()
    assert not list(out.rglob("*.pt"))  # nothing trained, no checkpoint written


# ------------------------------------------- defect 9: errors from DataLoader workers stay one line
def test_image_read_error_pickles_and_survives_dataloader_workers(tmp_path: Path) -> None:
    err = ImageReadError("/data/x.png", "truncated: broken data")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ImageReadError and (back.path, back.reason) == (err.path, err.reason)
    assert str(back) == str(err)
    space = pickle.loads(pickle.dumps(cache_mod.CacheSpaceError("not enough disk space in /c")))
    assert type(space) is cache_mod.CacheSpaceError and space.errno == 28
    assert str(space) == "not enough disk space in /c"
    root = _fixed_tree(tmp_path / "tree")
    (root / "train/a/big.png").write_bytes(png(12, 10))  # variable size: decoded in the workers
    (root / "train/b/bad.png").write_bytes(b"\x89PNG\r\n\x1a\n corrupt")
    ds = build_dataset("folder", "train", root=str(root), cache_dir=str(tmp_path / "cache"))
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    with deadline(60), pytest.raises(ImageReadError) as info:
        list(loader)
    with pytest.raises(ImageReadError) as direct:  # the same error as in one process
        load_image(root / "train/b/bad.png")
    assert str(info.value) == str(direct.value) and "\n" not in str(info.value)
    assert info.value.path == str(root / "train/b/bad.png") and info.value.reason == direct.value.reason


def test_cli_prints_one_line_for_a_corrupt_image_read_by_workers(tmp_path: Path, capsys) -> None:
    root = tmp_path / "tree"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(4):
                (root / split / cls / f"{i}.png").write_bytes(png(8 + (i % 2), 8, i))  # variable size
    (root / "train/b/zz_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n corrupt")
    with deadline(120):
        code, err = _train_cli(capsys, tmp_path / "run", tmp_path / "cache", "data.name=folder", f"data.root={root}",
                               "data.num_workers=2")
    assert code == 2, err[-3000:]
    errors = [ln for ln in err.splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
    assert f"cannot read image {root / 'train/b/zz_bad.png'}: " in errors[0]
