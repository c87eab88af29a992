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
              "j-crop/checkpoints/last.pt", "random-crop/metrics.jsonl", "j-crop/summary.json", "report.html",
              "report.md"):
        assert (out / f).is_file(), f
    assert (out / "pairs.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "report.html").read_text()  # the report: one row per policy, every figure embedded
    assert "| RandomCrop | done |" in (out / "report.md").read_text() and page.count("data:image/png;base64,") >= 3
    assert "aug.crop" in (out / "config.yaml").read_text() or "crop:" in (out / "config.yaml").read_text()


def test_format_table_handles_missing_values() -> None:
    table = format_table([{"label": "A", "knn_top1": 50.0, "linear_top1": None, "train_time_s": 1.0,
                           "images_per_s": 10.0, "data_wait": 0.25}])
    assert "| A | 50.00 | n/a | 1.0 | 10 | 25.0% |" in table


def test_parse_policies_labels_folders_and_errors() -> None:
    import pytest

    from jointaug.train.main_job import POLICIES, parse_policies

    assert parse_policies("random,jcrop(0)") == POLICIES  # the default comparison
    got = parse_policies("random, jcrop(-1), jblur(0.5), jcolor, coin(0)")
    assert [g[0] for g in got] == ["RandomCrop", "J-Crop(-1)", "J-Blur(0.5)", "J-Color(0)", "J-Crop/J-Blur coin(0)"]
    assert [g[1] for g in got] == ["random-crop", "jcrop-1", "jblur0p5", "jcolor", "coin"]
    assert got[1][2] == ["aug.crop=joint", "aug.beta=-1.0"]
    gcc = parse_policies("fixed,gcc(1.5),mcgcc")
    assert [g[0] for g in gcc] == ["RandomCrop(fixed size)", "GCC(alpha=1.5)", "MCGCC(alpha=1)"]
    assert [g[1] for g in gcc] == ["fixed", "gcc1p5", "mcgcc"] and gcc[1][2] == ["aug.crop=gcc", "aug.alpha=1.5"]
    for bad, msg in (("gcc2", "unknown view policy"), ("gcc(0)", "alpha must be > 0"), ("fixed(1)", "no beta"),
                     ("jcrop(x)", "beta must be a number"), ("random(1)", "takes no beta"),
                     ("random,random", "listed twice"), ("", "at least one"),
                     ("jcrop(inf)", "finite")):
        with pytest.raises(ValueError, match=msg):
            parse_policies(bad)


def test_run_quick_other_method_and_three_policies(tmp_path: Path, capsys) -> None:
    out = tmp_path / "job"
    rc = cli_main(["run", "--quick", "--method", "byol", "--policies", "random,jcrop(0),jcrop(-2)",
                   "--out", str(out), f"data.cache_dir={CACHE}", "train.progress=false", "optim.epochs=1",
                   "method.params.pred_hidden_dim=32", "eval.linear=false"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| J-Crop(-2) |" in printed and "| untrained (initial weights) |" in printed
    result = json.loads((out / "metrics.json").read_text())
    assert result["method"] == "byol" and [r["label"] for r in result["runs"]] == ["RandomCrop", "J-Crop(0)",
                                                                                  "J-Crop(-2)"]
    assert all(r["method"] == "byol" for r in result["runs"])
    assert (out / "jcrop-2" / "summary.json").is_file()
