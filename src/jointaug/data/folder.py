"""Image folders in the ImageNet layout ``root/<split>/<class>/.../<image>``, as a directory or a tar.

Layout rules (the same for a directory, a ``.tar`` and a compressed tar such as ``.tar.gz``):

- The class of an image is the first folder below the split folder (deeper nesting is allowed, so
  Tiny-ImageNet's ``train/<wnid>/images/*.JPEG`` works); files directly in the split folder are
  ignored with a warning, except Tiny-ImageNet's ``val/images`` + ``val/val_annotations.txt``.
- Class names and label order come from the ``train`` folder when there is one (sorted names), so
  every split shares one label order; a class found only in another split is an error.
- ``split="test"`` falls back to ``val`` when there is no ``test`` folder (the ImageNet aliases
  always use ``val`` for "test": Tiny-ImageNet's ``test`` folder has no labels).
- A tree with no split folders at all (``root/<class>/<image>``) is accepted as split ``"train"``
  only; asking it for any other split is an error (so a test set is never silently the train set).
- An archive whose members all sit under one wrapper folder (``imagenette2/train/...``) is read
  as if that folder were the root.

Storage: fixed-size folders (every image the same size, or any folder with ``size=s``, which
resizes the shorter side to s and centre-crops) are decoded once into the uint8 cache and
memory-mapped afterwards. Variable-size folders decode per item: directories and plain ``.tar``
files are read in place (tar members by byte offset, the file opened lazily per worker); a
compressed tar is extracted once into the cache directory, because random access into gzip is slow.

Decoding only what is needed: ``decode_side`` lets JPEGs decode at 1/2, 1/4 or 1/8 scale (Pillow's
draft mode) while the shorter side stays >= it (the trainer derives it from the views; see
:func:`~jointaug.data.io.decode_min_side`). ``max_resolution`` (like FFCV's max resolution) decodes
every image once, shrinks its shorter side to at most that many pixels (aspect kept, never
enlarged) and keeps the result in the cache: a fixed-size array when all sizes agree, else a packed
memory-mapped file (:class:`~jointaug.data.base.PackedImageDataset`); the bound is in the cache key.
Corrupt images raise :class:`~jointaug.data.io.ImageReadError` naming the file, or with
``on_error="skip"`` are left out and listed in ``dataset.skipped``.
"""

from __future__ import annotations

import os
import tarfile
import warnings
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from .base import (
    DirSource,
    FileImageDataset,
    ImageDataset,
    PackedImageDataset,
    TarSource,
    TensorImageDataset,
    bound_resize,
    clean_member_name,
    member_too_big,
    one_thread,
    resize_square,
    safe_member_name,
    stratified_subset,
)
from .cache import (
    ArrayWriter,
    PackedWriter,
    atomic_write_bytes,
    default_cache_dir,
    ensure_free_space,
    entry_stem,
    file_fingerprint,
    load_entry,
    load_images_mmap,
    load_packed_mmap,
    save_entry,
)
from .io import ImageReadError, is_image_name, load_image, max_image_pixels, max_member_bytes

__all__ = ["SPLIT_NAMES", "build_folder", "resolve_layout"]

#: Folder names recognised as splits at the top of the tree.
SPLIT_NAMES = ("train", "test", "val", "valid", "validation")
_ANNOTATIONS = "val_annotations.txt"


def _archive_kind(path: Path) -> str:
    """``"tar"`` for an uncompressed tar, ``"ztar"`` for a compressed one, else a clear error."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    compressed = head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ"))
    try:
        ok = tarfile.is_tarfile(path)
    except OSError:
        ok = False
    if not ok:
        raise ValueError(f"folder root {path} is neither a directory nor a tar archive")
    return "ztar" if compressed else "tar"


def _strip_wrapper(paths: list[str]) -> str:
    """Return a single wrapper folder shared by every path (``"x/"``), or ``""``."""
    tops = {p.split("/", 1)[0] for p in paths}
    if len(tops) != 1 or not all("/" in p for p in paths):
        return ""
    (top,) = tops
    if top in SPLIT_NAMES:
        return ""
    inner = [p.split("/", 1)[1] for p in paths]
    inner_tops = {p.split("/", 1)[0] for p in inner if "/" in p}
    # strip only if what is inside looks like a tree with split folders
    return f"{top}/" if inner_tops & set(SPLIT_NAMES) else ""


def resolve_layout(
    all_files: list[str],
    split: str,
    *,
    where: str,
    read_text: Callable[[str], str],
    test_is_val: bool = False,
    dirs: list[str] | None = None,
) -> tuple[list[str], list[int], list[str]]:
    """Map relative file paths to (image files, labels, classes) for ``split`` (module rules).

    ``dirs`` (folder paths, when known) lets class folders without images be reported: they are
    dropped with a warning naming them, never silently.
    """
    prefix = _strip_wrapper(all_files)
    files = [p[len(prefix):] for p in all_files] if prefix else list(all_files)
    folders = [d[len(prefix):] for d in (dirs or []) if d.startswith(prefix)] if prefix else list(dirs or [])
    images = [p for p in files if is_image_name(p)]
    present = {p.split("/", 1)[0] for p in files if "/" in p and p.split("/", 1)[0] in SPLIT_NAMES}
    want = split
    if split == "test" and (test_is_val or "test" not in present) and "val" in present:
        want = "val"

    def classes_of(top: str) -> list[str]:
        return sorted({p.split("/")[1] for p in images if p.startswith(top + "/") and p.count("/") >= 2})

    if want in present:
        train_classes = classes_of("train") if "train" in present else classes_of(want)
        annot = f"{want}/{_ANNOTATIONS}"
        annotations: dict[str, str] = {}
        if annot in files:
            for line in read_text(prefix + annot).splitlines():
                cols = line.split()
                if len(cols) >= 2:
                    annotations[cols[0]] = cols[1]
        _warn_empty(where, prefix, folders, "train" if "train" in present else want, train_classes)
        if want != "train":
            _warn_empty(where, prefix, folders, want, classes_of(want))
        index = {c: i for i, c in enumerate(train_classes)}
        out_files, out_labels, loose = [], [], []
        for p in sorted(images):
            if not p.startswith(want + "/"):
                continue
            parts = p.split("/")
            base = parts[-1]
            if annotations and base in annotations and (len(parts) == 2 or parts[1] == "images"):
                cls = annotations[base]
            elif len(parts) >= 3:
                cls = parts[1]
            else:
                loose.append(p)
                continue
            if cls not in index:
                raise ValueError(f"{where}: class {cls!r} of {prefix + p} is not among the {len(index)} "
                                 f"classes of the train folder (labels would not match; a train/{cls}/ folder "
                                 "with images is needed)")
            out_files.append(prefix + p)
            out_labels.append(index[cls])
        if loose:
            warnings.warn(f"{where}: ignoring {len(loose)} image(s) directly in {want}/ without a class folder "
                          f"(e.g. {prefix + loose[0]})", stacklevel=3)
        if not out_files:
            raise ValueError(f"{where}: no images in class folders under {prefix + want}/")
        return out_files, out_labels, train_classes
    if present:
        raise ValueError(f"{where}: no {split!r} split folder; found {', '.join(sorted(present))}")
    if split != "train":
        raise ValueError(f"{where}: no split folders (flat class/image layout), which is readable as split "
                         f"'train' only, not {split!r}")
    nested = sorted(p for p in images if "/" in p)
    classes = sorted({p.split("/", 1)[0] for p in nested})
    _warn_empty(where, prefix, folders, "", classes)
    if not classes:
        raise ValueError(f"{where}: no images in class folders (expected {where}/<split>/<class>/<image>)")
    index = {c: i for i, c in enumerate(classes)}
    return [prefix + p for p in nested], [index[p.split("/", 1)[0]] for p in nested], classes


def _warn_empty(where: str, prefix: str, folders: list[str], top: str, classes: list[str]) -> None:
    """Warn about class folders directly below ``top`` ("" = the root) that hold no image."""
    depth = 1 if not top else 2
    below = [d for d in folders if d and d.count("/") == depth - 1 and (not top or d.startswith(top + "/"))]
    if not top:
        below = [d for d in below if d not in SPLIT_NAMES]
    empty = sorted(d for d in below if d.split("/")[-1] not in classes and not d.split("/")[-1].startswith("."))
    if empty:
        shown = ", ".join(prefix + d + "/" for d in empty[:5])
        shown += f" and {len(empty) - 5} more" if len(empty) > 5 else ""
        warnings.warn(f"{where}: {len(empty)} class folder(s) hold no image and are dropped: {shown} "
                      f"({len(classes)} classes kept; labels follow the sorted names of the kept ones)", stacklevel=4)


def _walk(root: Path) -> tuple[list[str], list[str]]:
    """Relative POSIX paths of the files and of the folders under ``root`` (hidden entries skipped).

    Symbolic links to folders are followed. A folder that cannot be listed, or a link leading back
    to a folder above it (a loop), is a ``ValueError`` naming it: skipping it would silently drop
    its images, perhaps a whole class, and shift the labels of the others.
    """
    files: list[str] = []
    dirs: list[str] = []

    def visit(d: str, rel: str, ancestors: frozenset[tuple[int, int]]) -> None:
        try:
            st = os.stat(d)
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise ValueError(f"{root}: cannot list folder {d} ({exc.strerror or exc}); its images (perhaps a whole "
                             "class) would be lost and labels could shift: fix its permissions or remove it") from exc
        key = (st.st_dev, st.st_ino)
        if key in ancestors:
            raise ValueError(f"{root}: symbolic link loop at {d} (it leads back to a folder above it); "
                             "remove the link")
        inner = ancestors | {key}
        for e in entries:
            if e.name.startswith("."):
                continue
            r = f"{rel}/{e.name}" if rel else e.name
            try:
                is_dir = e.is_dir()  # follows symbolic links
            except OSError:
                is_dir = False
            if is_dir:
                dirs.append(r)
                visit(e.path, r, inner)
            else:
                files.append(r)  # regular or not: non-regular image files fail (or are skipped) when read

    visit(str(root), "", frozenset())
    return files, dirs


def _index_tar(path: Path) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Offsets of the regular members of an uncompressed tar and its folder names (members checked)."""
    offsets: dict[str, tuple[int, int]] = {}
    dirs: list[str] = []
    with tarfile.open(path, "r:") as tf:
        for m in tf.getmembers():
            name = safe_member_name(m, path)
            if name is None:
                dirs.append(clean_member_name(m.name))  # "" for the archive's "." entry: never a class
            else:
                offsets[name] = (m.offset_data, m.size)
    return offsets, dirs


def _refuse(desc: str, reason: str) -> Any:
    """Raise the ImageReadError of a member that was not decompressed (used as a deferred loader)."""
    raise ImageReadError(desc, reason)


def _iter_archive(path: Path, wanted: dict[str, int]) -> Iterator[tuple[int, str, bytes | None, str]]:
    """Stream a (compressed) tar once, yielding (row, member name, bytes, "") for wanted members;
    a member over the size limit yields (row, name, None, reason) and is never decompressed."""
    with tarfile.open(path, "r|*") as tf:
        for m in tf:
            name = safe_member_name(m, path)
            row = wanted.get(name) if name is not None else None
            if row is None or name is None:
                continue
            reason = member_too_big(m)
            if reason:
                yield row, name, None, reason
                continue
            fh = tf.extractfile(m)
            assert fh is not None
            yield row, name, fh.read(), ""


def _list_ztar(path: Path, keep_bytes: int = 1 << 30
               ) -> tuple[list[str], list[str], dict[str, str], dict[str, bytes] | None, dict[str, str]]:
    """One pass over a compressed tar: member and folder names, annotation texts, the image members'
    bytes while they fit in ``keep_bytes`` (so a small archive is decompressed only once), and the
    members over the size limit (name -> reason; never decompressed). Unsafe members are errors."""
    names, dirs, texts, too_big = [], [], {}, {}
    blobs: dict[str, bytes] | None = {}
    total = 0
    with tarfile.open(path, "r|*") as tf:
        for m in tf:
            name = safe_member_name(m, path)
            if name is None:
                dirs.append(clean_member_name(m.name))  # "" for the archive's "." entry: never a class
                continue
            names.append(name)
            reason = member_too_big(m)
            if name.endswith(_ANNOTATIONS):
                if reason:
                    raise ValueError(f"{path}:{name}: {reason}")
                fh = tf.extractfile(m)
                assert fh is not None
                texts[name] = fh.read().decode("utf-8", "replace")
            elif is_image_name(name) and reason:
                too_big[name] = reason
            elif blobs is not None and is_image_name(name):
                total += m.size
                if total > keep_bytes:
                    blobs = None
                    continue
                fh = tf.extractfile(m)
                assert fh is not None
                blobs[name] = fh.read()
    return names, dirs, texts, blobs, too_big


def _write_member(extract: Path, member: str, data: bytes) -> None:
    """Write one extracted member inside ``extract`` (checked, via a temporary file, space checked)."""
    root = os.path.realpath(extract)
    dest = Path(os.path.realpath(extract / member))
    if os.path.commonpath([root, str(dest)]) != root:  # defence in depth: names were already checked
        raise ValueError(f"archive member {member!r} would be written outside {extract}; refused")
    dest.parent.mkdir(parents=True, exist_ok=True)
    ensure_free_space(dest.parent, len(data), f"extracting {member}")
    atomic_write_bytes(dest, data)


class _Decoded:
    """Result of the attempt to decode a folder into one fixed-size array."""

    def __init__(self) -> None:
        self.writer: ArrayWriter | None = None
        self.valid: np.ndarray | None = None
        self.skipped: list[str] = []
        self.variable = False


def _decode_fixed(items: Iterator[tuple[int, str, Callable[[], Any]]], n: int, size: int | None,
                  on_error: str, cdir: Path, stem: str, max_resolution: int | None = None) -> _Decoded:
    """Decode every item into an [N, 3, H, W] writer; stop early when sizes differ (variable set)."""
    res = _Decoded()
    valid = np.zeros(n, dtype=bool)
    try:
        for row, desc, get in items:
            try:
                img = get()
            except ImageReadError:
                if on_error == "raise":
                    raise
                res.skipped.append(desc)
                continue
            if size is not None:
                img = resize_square(img[None], size)[0]
            elif max_resolution is not None:
                img = bound_resize(img, max_resolution)
            h, w = int(img.shape[1]), int(img.shape[2])
            if res.writer is None:
                res.writer = ArrayWriter(cdir, stem, (n, 3, h, w))
            elif res.writer.shape[2:] != (h, w):
                res.writer.discard()
                res.writer = None
                res.variable = True
                return res
            res.writer.array[row] = img.numpy()
            valid[row] = True
    except BaseException:
        if res.writer is not None:
            res.writer.discard()
        raise
    res.valid = valid
    return res


def build_folder(
    name: str,
    split: str,
    *,
    root: str | None = None,
    size: int | None = None,
    on_error: str = "raise",
    cache_dir: str | None = None,
    limit: int | None = None,
    test_is_val: bool = False,
    decode_side: int | None = None,
    max_resolution: int | None = None,
) -> ImageDataset:
    """Read an image-folder tree (directory, ``.tar`` or compressed tar) as ``split``.

    ``decode_side``: JPEG draft target (shorter side kept >= it; None: full decode).
    ``max_resolution``: decoded cache with shorter sides shrunk to at most this (None: off).
    """
    if root is None:
        raise ValueError(f"{name}: root=<folder or tar archive> is required")
    for key, val in (("decode_side", decode_side), ("max_resolution", max_resolution)):
        if val is not None and (not isinstance(val, int) or isinstance(val, bool) or val < 1):
            raise ValueError(f"{name}: {key} must be a positive integer or None, got {val!r}")
    if size is not None and max_resolution is not None:
        raise ValueError(f"{name}: give size (square images) or max_resolution (bounded shorter side), not both")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    path = Path(root).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{name} root {path} does not exist")
    kind = "dir" if path.is_dir() else _archive_kind(path)
    cdir = default_cache_dir(cache_dir)
    # what the build decodes at: a square size or the bound need no more; else the views' need
    draft = size if size is not None else max_resolution if max_resolution is not None else decode_side
    opts = {"split": split, "size": size, "limit": limit, "on_error": on_error, "test_is_val": test_is_val,
            "max_pixels": max_image_pixels(), "max_member": max_member_bytes()}
    if draft is not None:  # only then in the key, so entries made before these options stay valid
        opts.update(draft=draft, max_resolution=max_resolution)

    stem = ""
    if kind != "dir":  # archives: the key needs no listing, so a cache hit skips reading the archive
        stem = entry_stem("folder", dict(opts, source=file_fingerprint(path)))
        entry = load_entry(cdir, stem)
        if entry is not None:
            return _from_entry(entry, name, split, path, kind, decode_side)

    offsets: dict[str, tuple[int, int]] = {}
    blobs: dict[str, bytes] | None = None
    too_big: dict[str, str] = {}  # member -> reason it was not decompressed (over the size limit)
    if kind == "dir":
        all_files, dirs = _walk(path)

        def read_text(rel: str) -> str:
            return (path / rel).read_text(errors="replace")
    elif kind == "tar":
        offsets, dirs = _index_tar(path)
        all_files = list(offsets)
        tsrc = TarSource(path, offsets, min_side=draft)

        def read_text(rel: str) -> str:
            return tsrc.read_bytes(rel).decode("utf-8", "replace")
    else:
        all_files, dirs, texts, blobs, too_big = _list_ztar(path)

        def read_text(rel: str) -> str:
            return texts[rel]

    files, labels_list, classes = resolve_layout(all_files, split, where=str(path), read_text=read_text,
                                                 test_is_val=test_is_val, dirs=dirs)
    labels = np.asarray(labels_list, dtype=np.int64)
    if limit is not None:
        keep = stratified_subset(labels, limit)
        files, labels = [files[i] for i in keep], labels[keep]
    if kind == "dir":
        fps = []
        for rel in files:
            try:
                st = (path / rel).stat()
                fps.append((rel, st.st_size, st.st_mtime_ns))
            except OSError:  # broken link or vanished file: fails (or is skipped) when read
                fps.append((rel, -1, -1))
        stem = entry_stem("folder", dict(opts, source=str(path.resolve()), files=fps))
        entry = load_entry(cdir, stem)
        if entry is not None:
            return _from_entry(entry, name, split, path, kind, decode_side)

    rows = {f: i for i, f in enumerate(files)}

    def make_items() -> Iterator[tuple[int, str, Callable[[], Any]]]:
        """(row, description, decoder) of every image, in the order cheapest for the source."""
        if kind == "dir":
            return ((i, str(path / f), partial(load_image, path / f, name=str(path / f), min_side=draft))
                    for i, f in enumerate(files))
        if kind == "tar":
            order = sorted(range(len(files)), key=lambda i: offsets[files[i]][0])
            return ((i, tsrc.describe(files[i]), partial(tsrc.load, files[i])) for i in order)
        if blobs is not None:  # compressed tar already held in memory
            held = blobs
            return ((i, f"{path}:{f}", partial(_refuse, f"{path}:{f}", too_big[f]) if f in too_big
                     else partial(load_image, held[f], name=f"{path}:{f}", min_side=draft))
                    for i, f in enumerate(files))
        return ((row, f"{path}:{member}", partial(load_image, data, name=f"{path}:{member}", min_side=draft)
                 if data is not None else partial(_refuse, f"{path}:{member}", reason))
                for row, member, data, reason in _iter_archive(path, rows))

    with one_thread():
        dec = _decode_fixed(make_items(), len(files), size, on_error, cdir, stem, max_resolution)
    meta: dict[str, Any] = {"classes": classes, "source": str(path), "name": name, "split": split}
    if dec.variable and max_resolution is not None:
        with one_thread():
            return _decode_packed(make_items(), files, labels, max_resolution, on_error, cdir, stem, meta,
                                  name, split, path)
    if not dec.variable:
        blobs = None  # free the archive's bytes before committing
    if not dec.variable:
        assert dec.valid is not None
        if dec.writer is None:
            raise ValueError(f"{path}: none of the {len(files)} images in split {split!r} could be read "
                             f"(first: {dec.skipped[0] if dec.skipped else '?'})")
        valid_rows = np.flatnonzero(dec.valid)
        arr = dec.writer.array
        for pos, row in enumerate(valid_rows):  # compact rows of skipped images away (in place)
            if pos != row:
                arr[pos] = arr[row]
        meta["skipped"] = dec.skipped
        stored = dec.writer.commit(cdir, stem, meta, labels[valid_rows], count=len(valid_rows))
        if dec.writer.tmp_path is None:
            return TensorImageDataset(stored, labels[valid_rows], classes, name=name, split=split,
                                      skipped=dec.skipped, info={"source": str(path)})
        entry = load_entry(cdir, stem)
        assert entry is not None
        return _from_entry(entry, name, split, path, kind, decode_side)

    # variable-size: decode per item from the directory, the tar, or an extracted copy of a ztar
    if kind == "ztar":
        extract = cdir / f"{stem}.files"
        held = blobs
        stream = (((f, held.get(f), too_big.get(f, "")) for f in files) if held is not None else
                  ((member, data, reason) for _, member, data, reason in _iter_archive(path, rows)))
        for member, data, reason in stream:
            if data is None:  # over the size limit: never written
                too_big[member] = reason
                if on_error == "raise":
                    raise ImageReadError(f"{path}:{member}", reason)
                continue
            _write_member(extract, member, data)
        meta["extract_dir"] = str(extract)
    skipped: list[str] = []
    if on_error == "skip":
        source = _source(path, kind, meta.get("extract_dir"), offsets, decode_side)
        ok = []
        for i, f in enumerate(files):
            if f in too_big:
                skipped.append(f"{path}:{f}")
                continue
            try:
                source.load(f)
                ok.append(i)
            except ImageReadError:
                skipped.append(source.describe(f))
        files, labels = [files[i] for i in ok], labels[ok]
    meta.update(skipped=skipped, files=files, fixed=False)
    if kind == "tar":
        meta["offsets"] = [list(offsets[f]) for f in files]
    try:
        save_entry(cdir, stem, meta, labels)
    except OSError as exc:
        warnings.warn(f"could not write cache entry in {cdir}: {exc}", stacklevel=2)
        meta["labels"] = labels
        return _variable(meta, labels, name, split, path, kind, decode_side)
    entry = load_entry(cdir, stem)
    assert entry is not None
    return _from_entry(entry, name, split, path, kind, decode_side)


def _source(path: Path, kind: str, extract_dir: str | None, offsets: dict[str, tuple[int, int]],
            min_side: int | None = None) -> DirSource | TarSource:
    if kind == "dir":
        return DirSource(path, min_side)
    if kind == "tar":
        return TarSource(path, offsets, min_side)
    assert extract_dir is not None
    return DirSource(extract_dir, min_side)


def _decode_packed(items: Iterator[tuple[int, str, Callable[[], Any]]], files: list[str], labels: np.ndarray,
                   max_resolution: int, on_error: str, cdir: Path, stem: str, meta: dict[str, Any], name: str,
                   split: str, path: Path) -> PackedImageDataset:
    """Decode every image, bound its shorter side to ``max_resolution`` and pack them into one cache file."""
    decoded: dict[int, Tensor] = {}
    next_row, kept, skipped = 0, [], []
    writer = PackedWriter(cdir, stem, 3 * max_resolution * max_resolution * 4)  # aspect up to 4 assumed for the
    try:                                                                        # free-space check only
        for row, desc, get in items:  # rows may come out of order (tar offsets): write in row order
            try:
                decoded[row] = bound_resize(get(), max_resolution)
            except ImageReadError:
                if on_error == "raise":
                    raise
                skipped.append(desc)
                decoded[row] = None  # type: ignore[assignment]
            while next_row in decoded:
                img = decoded.pop(next_row)
                if img is not None:
                    writer.append(img.numpy())
                    kept.append(next_row)
                next_row += 1
        if not kept:
            raise ValueError(f"{path}: none of the {len(files)} images in split {split!r} could be read "
                             f"(first: {skipped[0] if skipped else '?'})")
        keep = np.asarray(kept, dtype=np.int64)
        meta = dict(meta, skipped=skipped, files=[files[i] for i in kept], max_resolution=max_resolution)
        flat, shapes = writer.commit(meta, labels[keep])
    except BaseException:
        writer.discard()
        raise
    return PackedImageDataset(flat if writer.tmp_path is None else None, shapes, labels[keep], meta["classes"],
                              name=name, split=split, files=meta["files"], skipped=skipped,
                              loader=None if writer.tmp_path is None else
                              partial(load_packed_mmap, str(cdir / f"{stem}.packed.bin")),
                              info={"source": str(path), "cache": str(cdir / f"{stem}.packed.bin")})


def _variable(meta: dict[str, Any], labels: Any, name: str, split: str, path: Path, kind: str,
              min_side: int | None = None) -> FileImageDataset:
    files = list(meta["files"])
    offsets = {f: (int(o[0]), int(o[1])) for f, o in zip(files, meta.get("offsets", []))}
    extract_dir = meta.get("extract_dir")
    if kind == "ztar" and (extract_dir is None or not Path(extract_dir).is_dir()):
        raise FileNotFoundError(f"{path}: extracted copy {extract_dir} is missing; clear the cache entry and reload")
    return FileImageDataset(_source(path, kind, extract_dir, offsets, min_side), files, labels, meta["classes"],
                            name=name,
                            split=split, skipped=meta.get("skipped", []), info={"source": str(path)})


def _from_entry(entry: dict[str, Any], name: str, split: str, path: Path, kind: str,
                min_side: int | None = None) -> ImageDataset:
    """Rebuild a data set from its cache entry (fixed: memory-mapped array; packed: memory-mapped file;
    variable: file list)."""
    if entry.get("packed"):
        return PackedImageDataset(None, entry["shapes"], entry["labels"], entry["classes"], name=name, split=split,
                                  loader=partial(load_packed_mmap, entry["images_path"]), files=entry["files"],
                                  skipped=entry.get("skipped", []),
                                  info={"source": str(path), "cache": entry["images_path"]})
    if entry["images_path"] is None:
        return _variable(entry, entry["labels"], name, split, path, kind, min_side)
    loader = partial(load_images_mmap, entry["images_path"], entry["count"])
    return TensorImageDataset(None, entry["labels"], entry["classes"], name=name, split=split, loader=loader,
                              skipped=entry.get("skipped", []),
                              info={"source": str(path), "cache": entry["images_path"]})
