"""Checkpoint files, shared by training and evaluation: atomic save with a checksum, keep-last-k, verified load.

Everything stored is a tensor or a plain Python value (dict, list, tuple, int, float, str, bool,
None), so checkpoints load with ``torch.load(..., weights_only=True)`` and never need pickle's
arbitrary-object loading.

- **Checksum.** :func:`save_checkpoint` stores ``state["integrity"] = {"algorithm", "sha256"}``: the
  SHA-256 of the checkpoint's *content* (every tensor's dtype, shape and bytes, every plain value,
  in order; :func:`state_digest`). :func:`load_checkpoint` recomputes it, so bytes overwritten
  anywhere in the file are detected, whatever they hit (tensor data or the pickle). The file stays
  a plain dict (``torch.load`` still works on it without jointaug).
- **Atomic, with space checked.** The state is serialised in memory first; when the file system has
  fewer free bytes than that, nothing is written (:class:`CheckpointWriteError` names the path and
  both sizes). Otherwise it goes to a temporary file in the same directory, ``fsync``, then
  ``os.replace``: a kill leaves the old or the new checkpoint, never a torn one; a failed write
  (full disk, quota) removes the temporary file and leaves the previous checkpoints untouched.
- **Keep the last k.** With ``keep=k`` the previous files move down a chain ``last.pt`` ->
  ``last-1.pt`` -> ... -> ``last-<k-1>.pt`` (oldest dropped). :func:`checkpoint_candidates` lists
  them newest first; :func:`select_checkpoint` returns the newest one that loads, matches its
  checksum and passes the caller's checks, with the reasons the newer ones were rejected.
- :func:`remove_stale_temporaries` deletes temporary files left by killed writers.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import random
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "INTEGRITY_KEY",
    "CheckpointError",
    "CheckpointWriteError",
    "checkpoint_candidates",
    "get_rng_state",
    "load_checkpoint",
    "non_finite_tensors",
    "remove_stale_temporaries",
    "save_checkpoint",
    "select_checkpoint",
    "set_rng_state",
    "state_digest",
    "verify_checkpoint",
]

#: key of the checksum record inside a checkpoint dict
INTEGRITY_KEY = "integrity"
_ALGORITHM = "sha256-content-v1"
_TMP_RE = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)$")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path, self.reason = str(path), reason
        self.rejected: list[tuple[Path, str]] = []  # select_checkpoint: every file tried and why it failed
        super().__init__(f"checkpoint {path} {reason}")


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (full disk, quota, I/O error); nothing was replaced."""

    def __init__(self, message: str, err: int | None = None) -> None:
        super().__init__(message)
        self.errno = err


# --------------------------------------------------------------------------------------------- RNG state
def get_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generator states as tensors and plain values."""
    version, mt, gauss = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": int(version), "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {"kind": str(np_state[0]), "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` captured (CUDA states only when CUDA is present)."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        cuda = state["cuda"][: torch.cuda.device_count()]
        for i, s in enumerate(cuda):
            torch.cuda.set_rng_state(s, i)


# --------------------------------------------------------------------------------------------- checksum
def _feed(h: Any, obj: Any) -> None:
    """Add ``obj`` to hash ``h`` unambiguously (type tags and lengths before contents)."""
    if isinstance(obj, Tensor):
        t = obj.detach()
        if t.layout != torch.strided:
            t = t.to_dense()
        t = t.cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, Mapping):
        h.update(f"D{len(obj)}".encode())
        for k, v in obj.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for v in obj:
            _feed(h, v)
    elif obj is None:
        h.update(b"N")
    elif isinstance(obj, bool):
        h.update(b"B1" if obj else b"B0")
    elif isinstance(obj, int):
        h.update(f"I{obj};".encode())
    elif isinstance(obj, float):
        h.update(f"F{obj.hex()};".encode())
    elif isinstance(obj, str):
        b = obj.encode("utf-8", "surrogatepass")
        h.update(f"S{len(b)}:".encode() + b)
    elif isinstance(obj, bytes):
        h.update(f"Y{len(obj)}:".encode() + obj)
    else:
        raise TypeError(f"checkpoint state holds a {type(obj).__name__} ({obj!r:.60}); only tensors and plain "
                        "values (dict, list, tuple, int, float, str, bool, None) can be stored")


def state_digest(state: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a checkpoint's content, its ``integrity`` entry excluded; device-independent."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != INTEGRITY_KEY})
    return h.hexdigest()


def non_finite_tensors(tensors: Mapping[str, Any], limit: int = 5) -> list[str]:
    """Names of floating-point tensors in ``tensors`` holding NaN or inf, as ``"name (k of n values)"``."""
    bad = []
    for name, t in tensors.items():
        if isinstance(t, Tensor) and (t.is_floating_point() or t.is_complex()):
            n_bad = int((~torch.isfinite(t.detach())).sum())
            if n_bad:
                bad.append(f"{name} ({n_bad} of {t.numel()} values non-finite)")
                if len(bad) >= limit:
                    break
    return bad


# --------------------------------------------------------------------------------------------- files
def _rotated(path: Path, i: int) -> Path:
    return path if i == 0 else path.with_name(f"{path.stem}-{i}{path.suffix}")


def checkpoint_candidates(path: str | os.PathLike) -> list[Path]:
    """``path`` and its kept predecessors (``last-1.pt``, ``last-2.pt`` ...) that exist, newest first."""
    path = Path(path)
    found: dict[int, Path] = {}
    if path.is_file():
        found[0] = path
    if path.parent.is_dir():
        pat = re.compile(rf"^{re.escape(path.stem)}-(\d+){re.escape(path.suffix)}$")
        for p in path.parent.iterdir():
            m = pat.match(p.name)
            if m and p.is_file():
                found[int(m.group(1))] = p
    return [found[i] for i in sorted(found)]


def _fsync_dir(directory: Path) -> None:
    try:  # make renames durable
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _rotate(path: Path, keep: int) -> None:
    """Shift ``path`` -> ``-1`` -> ... -> ``-(keep-1)``, dropping older files; ``path`` itself stays in place."""
    for p in checkpoint_candidates(path):
        m = re.search(r"-(\d+)$", p.stem)
        if p != path and m and int(m.group(1)) >= keep:
            p.unlink(missing_ok=True)
    if keep < 2:
        return
    for i in range(keep - 1, 1, -1):
        if _rotated(path, i - 1).is_file():
            os.replace(_rotated(path, i - 1), _rotated(path, i))
    if path.is_file():
        prev = _rotated(path, 1)
        link_tmp = prev.with_name(f".{prev.name}.tmp-{os.getpid()}")
        try:  # a hard link keeps `path` in place until the new file replaces it
            link_tmp.unlink(missing_ok=True)
            os.link(path, link_tmp)
            os.replace(link_tmp, prev)
        except OSError:
            link_tmp.unlink(missing_ok=True)
            os.replace(path, prev)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any], *, keep: int = 1) -> Path:
    """Write ``state`` (with its checksum) to ``path`` atomically, keeping ``keep`` files in all.

    Raises :class:`CheckpointWriteError` (an ``OSError``) naming the path and the bytes needed when
    the file system is too full or the write fails; the temporary file is removed and the previous
    checkpoint files are left exactly as they were.
    """
    if int(keep) < 1:
        raise ValueError(f"keep must be >= 1 (checkpoint files to keep), got {keep!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {k: v for k, v in state.items() if k != INTEGRITY_KEY}
    payload[INTEGRITY_KEY] = {"algorithm": _ALGORITHM, "sha256": state_digest(payload)}
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getbuffer()
    size = len(data)
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    if free is not None and free < size:
        raise CheckpointWriteError(
            f"cannot write checkpoint {path}: it needs {size:,} bytes but the file system holding {path.parent} "
            f"has {free:,} bytes free; nothing was written and the previous checkpoint is unchanged "
            "(free some space, or set train.out_dir elsewhere, and rerun to resume)", errno.ENOSPC)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CheckpointWriteError(
            f"cannot write checkpoint {path} ({size:,} bytes): {exc.strerror or exc}; the temporary file was "
            "removed and the previous checkpoint is unchanged", exc.errno) from exc
    finally:
        data.release()
        buf.close()
    try:
        _rotate(path, int(keep))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return path


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete ``.<name>.tmp-<pid>`` files in ``directory`` whose writer process no longer runs."""
    directory = Path(directory)
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for p in directory.iterdir():
        m = _TMP_RE.match(p.name)
        if not m or not p.is_file():
            continue
        pid = int(m.group("pid"))
        if pid != os.getpid():
            try:
                os.kill(pid, 0)
                continue  # the writer still runs
            except ProcessLookupError:
                pass
            except (PermissionError, OverflowError, OSError):
                continue  # another user's process (or an odd pid): leave it alone
        try:
            p.unlink()
            removed.append(p)
        except FileNotFoundError:
            pass
    return removed


def verify_checkpoint(path: str | os.PathLike, state: Mapping[str, Any], *, require_checksum: bool = False) -> None:
    """Raise :class:`CheckpointError` unless ``state`` matches the checksum stored in it.

    Without a stored checksum (files written before checksums, or by hand) it passes unless
    ``require_checksum``.
    """
    record = state.get(INTEGRITY_KEY)
    if record is None:
        if require_checksum:
            raise CheckpointError(path, "has no checksum (written by an older jointaug or by hand)")
        return
    if not isinstance(record, Mapping) or record.get("algorithm") != _ALGORITHM or "sha256" not in record:
        raise CheckpointError(path, f"has an unknown checksum record {record!r:.120}")
    try:
        digest = state_digest(state)
    except TypeError as exc:
        raise CheckpointError(path, f"holds unexpected content: {exc}") from None
    if digest != record["sha256"]:
        raise CheckpointError(path, f"is corrupt: its content does not match its SHA-256 checksum "
                                    f"(stored {str(record['sha256'])[:16]}..., computed {digest[:16]}...)")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", *, verify: bool = True,
                    require_checksum: bool = False) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` and verify its checksum.

    A missing file is a ``FileNotFoundError``; an unreadable, foreign or corrupt one a
    :class:`CheckpointError` (a ``ValueError``) naming the file and what is wrong. The returned
    dict no longer holds the ``integrity`` entry.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torn/corrupt files, foreign pickles
        raise CheckpointError(path, f"cannot be loaded (weights_only=True): {str(exc).splitlines()[0]}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(path, f"holds a {type(state).__name__}, expected a dict")
    if verify:
        verify_checkpoint(path, state, require_checksum=require_checksum)
    state.pop(INTEGRITY_KEY, None)
    return state


def select_checkpoint(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    check: Callable[[dict[str, Any]], str | None] | None = None,
    *,
    require_checksum: bool = True,
) -> tuple[dict[str, Any], Path, list[tuple[Path, str]]] | None:
    """The newest usable checkpoint among ``path`` and its kept predecessors.

    A file is usable when it loads, matches its checksum and ``check(state)`` returns None (else
    the reason). Returns ``(state, chosen_path, rejected)`` with ``rejected`` the newer files that
    were passed over and why, or None when no file exists; raises :class:`CheckpointError`
    listing every file and its reason when none is usable.
    """
    candidates = checkpoint_candidates(path)
    if not candidates:
        return None
    rejected: list[tuple[Path, str]] = []
    for cand in candidates:
        try:
            state = load_checkpoint(cand, map_location, require_checksum=require_checksum)
        except CheckpointError as exc:
            rejected.append((cand, exc.reason))
            continue
        except FileNotFoundError:  # removed between listing and reading
            continue
        reason = check(state) if check is not None else None
        if reason:
            rejected.append((cand, reason))
            continue
        return state, cand, rejected
    listing = "; ".join(f"{p}: {r}" for p, r in rejected)
    err = CheckpointError(path, f"and its kept predecessors are all unusable ({listing})")
    err.rejected = rejected
    raise err
