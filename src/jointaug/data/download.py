"""Downloading official archives with urllib and verifying their MD5 (no extra dependency)."""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["ChecksumError", "check_md5", "download_url", "md5sum"]


class ChecksumError(ValueError):
    """A file's MD5 differs from the expected one; the message names the file and both sums."""


def md5sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex MD5 of a file, read in chunks."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_md5(path: str | os.PathLike, expected: str, *, hint: str = "") -> None:
    """Raise :class:`ChecksumError` naming ``path`` and both checksums when they differ."""
    actual = md5sum(path)
    if actual != expected.lower():
        msg = f"checksum mismatch for {path}: expected MD5 {expected.lower()}, got {actual}"
        raise ChecksumError(f"{msg}{'; ' + hint if hint else ''}")


def download_url(url: str, dest: str | os.PathLike, md5: str | None = None, *, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` (via a ``.part`` file), verify ``md5``, return the path.

    Network failures raise ``OSError`` saying where to put the file by hand; a checksum mismatch
    raises :class:`ChecksumError` and leaves the bad download as ``<dest>.part`` for inspection.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(part, "wb") as out:  # noqa: S310
            shutil.copyfileobj(resp, out, length=1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        try:
            part.unlink()
        except OSError:
            pass
        reason = getattr(exc, "reason", exc)
        raise OSError(f"could not download {url} ({reason}); download it by hand and put it at {dest}") from exc
    if md5 is not None:
        check_md5(part, md5, hint=f"downloaded from {url}; the partial file is kept at {part}")
    os.replace(part, dest)
    return dest
