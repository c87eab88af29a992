"""The benchmark room: smoke tests of the commands (tiny sizes; no timing assertions) and its import rules."""

from __future__ import annotations

import json

from jointaug.bench.augment import Case, markdown, run, write
from jointaug.cli import main as cli_main


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
    assert "| 32 -> 32 px |" in table and "fast / baseline" in table and "QUICK MODE" in table
    # before/after from the same run: the dense path forced against the automatic choice
    for mode in ("fast", "exact"):
        assert case["pairs_per_s"][f"jointaug {mode} random dense (cpu)"] > 0
        assert case["ratios"][f"{mode} after / before (auto / dense)"] > 0
    assert "Before / after banded resampling" in table and "after / before" in table
    # the baseline is stated: torchvision's own transforms where torchvision imports, else the PIL stand-in
    assert result["baseline"] in ("torchvision v1 (PIL)", "PIL per-image")
    assert f"Baseline of the ratios: **{result['baseline']}**" in table
    assert case["ratios"]["fast random / baseline"] > 0
    assert markdown(result, "x").startswith("# Augmentation throughput")


def test_cli_bench_augment_quick(tmp_path, capsys):
    rc = cli_main(["bench", "augment", "--quick", "--no-kornia", "--device", "cpu", "--data", "/nonexistent",
                   "--out", str(tmp_path)])
    assert rc == 0
    assert (tmp_path / "augment.json").is_file() and (tmp_path / "augment.md").is_file()
    assert "Augmentation throughput" in capsys.readouterr().out
    assert cli_main(["bench", "augment", "--threads", "0", "--out", str(tmp_path)]) == 2


def test_cli_bench_backbone_writes_files(tmp_path, capsys):
    stem = tmp_path / "backbone"
    rc = cli_main(["bench", "backbone", "--models", "convnet4", "--batch", "2", "--size", "16", "--steps", "1",
                   "--threads", "1", "--out", str(stem)])
    assert rc == 0
    rec = json.loads((tmp_path / "backbone.json").read_text())
    assert rec["command"].startswith("jointaug bench backbone --models convnet4")
    assert rec["runs"][0]["model"] == "convnet4" and rec["runs"][0]["images_per_s"] > 0
    assert "load_average" in rec["machine"] and "torch" in rec["machine"]
    assert "| convnet4 | cifar | contiguous | 2 | 16 |" in (tmp_path / "backbone.md").read_text()
    assert "img/s" in capsys.readouterr().out
    assert cli_main(["bench", "backbone", "--steps", "0"]) == 2
    # both memory layouts, alternately: the second carries its speed ratio to the first
    rc = cli_main(["bench", "backbone", "--models", "convnet4", "--batch", "2", "--size", "16", "--steps", "1",
                   "--threads", "1", "--formats", "contiguous,channels_last", "--rounds", "2", "--json"])
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert rc == 0 and [r["memory_format"] for r in recs] == ["contiguous", "channels_last"]
    assert recs[1]["speedup_vs_contiguous"] > 0 and recs[1]["rounds"] == 2
    assert cli_main(["bench", "backbone", "--formats", "nchw"]) == 2


def test_cli_bench_rejects_unknown_benchmark_and_bad_train_options(capsys):
    import pytest

    with pytest.raises(SystemExit):
        cli_main(["bench", "nosuch"])
    assert cli_main(["bench", "train", "--models", "vgg99"]) == 2
    assert "vgg99" in capsys.readouterr().err


def test_bench_room_is_imported_by_no_lower_room():
    """Only the CLI (and the room itself) may import jointaug.bench; constants import nothing."""
    import ast
    from pathlib import Path

    import jointaug

    root = Path(jointaug.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("bench/") or rel == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [("." * node.level) + (node.module or "")] if isinstance(node, ast.ImportFrom) else [])
            if any(n.startswith("jointaug.bench") or n.lstrip(".").startswith("bench") and n.startswith(".")
                   for n in names):
                offenders.append(rel)
    assert offenders == []
    consts = ast.parse((root / "constants.py").read_text())
    assert [n for n in ast.walk(consts) if isinstance(n, ast.Import | ast.ImportFrom)
            and not (isinstance(n, ast.ImportFrom) and n.module == "__future__")] == []


def test_imagenet_constants_one_object_everywhere():
    from jointaug import augment, constants
    from jointaug.eval import features

    assert augment.IMAGENET_MEAN is constants.IMAGENET_MEAN is features.IMAGENET_MEAN
    assert augment.IMAGENET_STD is constants.IMAGENET_STD is features.IMAGENET_STD
    assert constants.IMAGENET_MEAN == (0.485, 0.456, 0.406) and constants.IMAGENET_STD == (0.229, 0.224, 0.225)
