"""The HTML report of a tiny run, opened in headless Chromium (Debian's ``chromium``; ``.ci/run`` installs
it when missing): every figure decoded (naturalWidth > 0), one table row per cell, and a screenshot.

The page's own on-load snippet writes the counts into ``<body data-...>``; ``--dump-dom`` after a
virtual-time budget reads them back, so no browser-driver package is needed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from grid_helpers import run_tiny_grid

from jointaug.experiments.report import write_report

SCREENSHOT_COPY = Path(tempfile.gettempdir()) / "report_screenshot.png"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(browser: str, *args: str, home: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--disable-gpu", "--no-first-run", "--disable-extensions", "--hide-scrollbars",
             "--user-data-dir=" + str(home / "profile"), "--virtual-time-budget=10000"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        flags.append("--no-sandbox")  # Chromium refuses to run its sandbox as root (CI containers)
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HOME": str(home)})


def test_report_opens_in_headless_chromium(tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run installs it when it can)")
    out = run_tiny_grid(tmp_path, {"policy": ["random", "jcrop(0)"], "seed": [0]}, baseline={"policy": "random"})
    info = write_report(out)
    page = out / "report.html"
    n_img = page.read_text().count("<img ")
    assert n_img == info["images"] >= 4
    dom = _run(browser, "--dump-dom", page.as_uri(), home=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, f"no <body> in the dumped DOM: {dom.stdout[:500]!r} {dom.stderr[-1000:]}"
    attrs = dict(re.findall(r'data-([\w-]+)="(\d+)"', body.group(1)))
    assert attrs.get("images-total") == str(n_img), attrs  # the on-load snippet ran
    assert attrs.get("images-loaded") == str(n_img), f"figures that did not decode: {attrs}"
    assert attrs.get("cell-rows") == "2", attrs  # one row per cell
    shot = tmp_path / "report_screenshot.png"
    res = _run(browser, f"--screenshot={shot}", "--window-size=1280,2600", page.as_uri(), home=tmp_path)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    shutil.copy(shot, SCREENSHOT_COPY)
    print(f"\nreport screenshot: {shot} (copy: {SCREENSHOT_COPY})")
