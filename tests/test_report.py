"""``jointaug report``: a self-contained HTML report (every figure embedded, no network) and its
Markdown twin, of a grid folder and of a `jointaug run` folder, with missing and unfinished runs listed."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from grid_helpers import run_tiny_grid

from jointaug.experiments.report import write_report


@pytest.fixture(scope="module")
def grid_dir(tmp_path_factory) -> Path:
    return run_tiny_grid(tmp_path_factory.mktemp("report"), {"policy": ["random", "jcrop(-1)"], "seed": [0]},
                         baseline={"policy": "random"})


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_grid_report_is_self_contained_and_lists_missing_cells(grid_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "grid"
    shutil.copytree(grid_dir, out)
    # the grid grows a seed (two cells never run) and one cell carries `jointaug sdf` output
    g = yaml.safe_load((out / "grid.yaml").read_text())
    g["axes"]["seed"] = [0, 1]
    (out / "grid.yaml").write_text(yaml.safe_dump(g))
    cell = out / "cells" / "policy=jcrop-1__seed=0"
    (cell / "sdf").mkdir()
    shutil.copy(out / "loss.png", cell / "sdf" / "sdf_ratio.png")
    (cell / "sdf" / "sdf.json").write_text(json.dumps({"ratio": {"1": 0.9, "5": 0.4}}))
    info = write_report(out)
    page = (out / "report.html").read_text()
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', page) and "<link" not in page  # nothing to fetch
    imgs = _images(page)
    # Fig. 5 loss, per-run curves, pairs gallery, log-ratio densities, the cell's SDF figure
    assert len(imgs) == page.count("<img ") == info["images"] == 5
    assert all(b[:8] == b"\x89PNG\r\n\x1a\n" for b in imgs)
    assert "sdf_ratio" in page and "&quot;ratio&quot;" in page  # SDF figure and numbers
    rows = re.search(r'<table id="cells">.*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    assert rows.count("<tr") == 4
    assert set(info["unfinished"]) == {"policy=random-crop__seed=1", "policy=jcrop-1__seed=1"}
    assert "policy=jcrop-1__seed=1 (missing)" in page and "Missing or unfinished" in page
    assert "jointaug train simclr/synthetic" in page and "aug.beta=-1.0" in page  # commands
    assert page.count("<details><summary>config (cells/") == 2  # configs of the cells that ran
    md = (out / "report.md").read_text()
    figs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(figs) == 5 and all((out / f).is_file() for f in figs)
    assert "| policy=jcrop-1__seed=0 | done |" in md


def test_report_of_an_unfinished_run_folder(grid_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copytree(grid_dir / "cells" / "policy=random-crop__seed=0", run / "random-crop")
    (run / "j-crop").mkdir()  # started: config written, nothing else
    shutil.copy(run / "random-crop" / "config.yaml", run / "j-crop" / "config.yaml")
    info = write_report(run)
    page = (run / "report.html").read_text()
    assert info["unfinished"] == ["j-crop"] and "j-crop (missing)" in page
    assert "metrics.json is missing" in page
    assert len(_images(page)) == 3  # curves, pairs, densities


def test_report_refuses_a_folder_that_is_no_run(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="neither a `jointaug run` folder"):
        write_report(tmp_path)
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "nope")
