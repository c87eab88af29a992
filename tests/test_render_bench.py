"""Smoke test of the augment benchmark (tiny sizes; no timing assertions)."""

from __future__ import annotations

import json

from jointaug.cli import main as cli_main
from jointaug.render.benchmark import Case, markdown, run, write


def test_benchmark_quick_run_writes_json_and_table(tmp_path):
    result = run(quick=True, cases=(Case(32, 32, 6), Case(24, 16, 4)), rounds=1, cifar="/nonexistent.tar.gz",
                 log=lambda s: None)
    assert result["images"].startswith("procedural")
    assert [(c["src"], c["out"]) for c in result["cases"]] == [(32, 32), (24, 16)]
    case = result["cases"][0]
    for name in ("PIL per-image", "jointaug fast random (cpu)", "jointaug exact joint (cpu)", "sampling joint"):
        assert case["pairs_per_s"][name] > 0
    assert case["ratios"]["fast random / PIL"] > 0
    diff = result["fast_vs_exact"]["simclr"]
    assert 0 < diff["mean"] <= diff["p99"] <= diff["max"]
    assert set(result["summary"]["met"]) >= {"fast_vs_pil_32", "exact_vs_pil_32", "joint_overhead_pct"}
    pj, pm = write(result, tmp_path, "jointaug bench augment --quick")
    loaded = json.loads(pj.read_text())
    assert loaded["machine"]["threads"] == 1 and loaded["command"] == "jointaug bench augment --quick"
    table = pm.read_text()
    assert "| 32 -> 32 px |" in table and "fast / PIL" in table and "QUICK MODE" in table
    assert markdown(result, "x").startswith("# Augmentation throughput")


def test_cli_bench_augment_quick(tmp_path, capsys):
    rc = cli_main(["bench", "augment", "--quick", "--no-kornia", "--device", "cpu", "--data", "/nonexistent",
                   "--out", str(tmp_path)])
    assert rc == 0
    assert (tmp_path / "augment.json").is_file() and (tmp_path / "augment.md").is_file()
    assert "Augmentation throughput" in capsys.readouterr().out
    assert cli_main(["bench", "augment", "--threads", "0", "--out", str(tmp_path)]) == 2
