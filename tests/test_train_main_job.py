"""Smoke test of ``jointaug run --quick``: both policies trained and evaluated, run folder complete."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from jointaug.cli import main as cli_main
from jointaug.train.main_job import format_table

CACHE = Path(tempfile.gettempdir()) / "jointaug-test-cache"


def test_run_quick_writes_the_run_folder(tmp_path: Path, capsys) -> None:
    out = tmp_path / "job"
    rc = cli_main(["run", "--quick", "--out", str(out), f"data.cache_dir={CACHE}", "train.progress=false"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| RandomCrop |" in printed and "| J-Crop(0) |" in printed and "kNN top-1" in printed
    assert "| untrained (initial weights) |" in printed
    result = json.loads((out / "metrics.json").read_text())
    runs = {r["label"]: r for r in result["runs"]}
    assert 0 <= result["untrained"]["knn_top1"] <= 100
    assert set(runs) == {"RandomCrop", "J-Crop(0)"}
    assert "J-Crop" in runs["J-Crop(0)"]["policy"] and "J-Crop" not in runs["RandomCrop"]["policy"]
    for r in runs.values():
        assert 0 <= r["knn_top1"] <= 100 and 0 <= r["linear_top1"] <= 100
        assert r["train_time_s"] > 0 and r["images_per_s"] > 0 and 0 <= r["data_wait"] <= 1
        assert len(r["knn_history"]) == 2
    for f in ("config.yaml", "table.md", "loss.png", "knn.png", "pairs.png", "random-crop/checkpoints/last.pt",
              "j-crop/checkpoints/last.pt", "random-crop/metrics.jsonl", "j-crop/summary.json"):
        assert (out / f).is_file(), f
    assert (out / "pairs.png").read_bytes()[:4] == b"\x89PNG"
    assert "aug.crop" in (out / "config.yaml").read_text() or "crop:" in (out / "config.yaml").read_text()


def test_format_table_handles_missing_values() -> None:
    table = format_table([{"label": "A", "knn_top1": 50.0, "linear_top1": None, "train_time_s": 1.0,
                           "images_per_s": 10.0, "data_wait": 0.25}])
    assert "| A | 50.00 | n/a | 1.0 | 10 | 25.0% |" in table
