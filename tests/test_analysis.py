"""The analysis commands (jointaug stats / plot / pairs): figures, bad input, CLI smoke tests."""

from __future__ import annotations

import json
import math
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from jointaug.analysis import pairs as pairs_mod
from jointaug.analysis.common import box_iou, corner_distance, realised_area
from jointaug.analysis.plots import corner_distance_data, log_ratio_density_data
from jointaug.analysis.sample_image import draw_elephant, sample_image_path
from jointaug.analysis.stats import blur_stats, crop_stats
from jointaug.cli import main
from jointaug.sampling import IndependentUniformLaw, JCLaw, crop_policy, identity_params


def _renderer_available() -> bool:
    try:
        from jointaug.render.batched import render_views_list  # noqa: F401
    except ImportError:
        return False
    return True


def _stub_render_views_list(images, params, **kwargs):
    """Crop + resize + flip only: enough to test the gallery's layout without the real renderer."""
    out = []
    for v, (oh, ow) in enumerate(params.out_hw):
        views = []
        for i, im in enumerate(images):
            x0, y0, w, h = (int(t) for t in params.box[i, v].tolist())
            crop = im[:, y0:y0 + h, x0:x0 + w].float()[None] / 255.0
            r = F.interpolate(crop, size=(oh, ow), mode="bilinear", align_corners=False)[0]
            views.append(r.flip(-1) if bool(params.flip[i, v]) else r)
        out.append(torch.stack(views))
    return out


@pytest.fixture
def stub_renderer(monkeypatch):
    mod = types.ModuleType("jointaug.render.batched")
    mod.render_views_list = _stub_render_views_list
    monkeypatch.setitem(sys.modules, "jointaug.render.batched", mod)


# ---------------------------------------------------------------------------------------------- statistics
def test_iou_and_corner_distance_on_known_boxes():
    p = identity_params(torch.tensor([[100, 100], [50, 80]]), [(8, 8), (8, 8)])
    p.box[0] = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 10.0, 10.0]])
    p.box[1] = torch.tensor([[0.0, 0.0, 20.0, 10.0], [30.0, 40.0, 10.0, 10.0]])
    np.testing.assert_allclose(box_iou(p).numpy(), [25 / 175, 0.0])
    np.testing.assert_allclose(corner_distance(p).numpy(), [math.sqrt(50), 50.0])
    np.testing.assert_allclose(realised_area(p)[1].numpy(), [200 / 4000, 100 / 4000])


def test_crop_stats_agree_with_the_exact_law():
    s = crop_stats("joint", -1.0, pairs=40_000, seed=3)
    assert s["analytic"]["beyond_2"] == pytest.approx(JCLaw(-1.0, 0.2, 1.0).prob_beyond(2.0))
    assert abs(s["law"]["beyond_2"] - s["analytic"]["beyond_2"]) < 0.015
    assert abs(s["law"]["beyond_3"] - s["analytic"]["beyond_3"]) < 0.015
    assert abs(s["corner_distance_px"]["mean"] - 61.7) < 2.0
    assert s["paper"]["corner_distance_px"] == 61.7
    assert 0.0 < s["fallback_rate"] < 0.1 and 0.0 < s["iou_mean"] < 1.0
    r = crop_stats("random", 0.0, pairs=40_000, seed=3)
    assert r["analytic"]["beyond_2"] == pytest.approx(0.28125)
    assert r["realised"]["beyond_2"] < r["law"]["beyond_2"]  # retries redraw the area: fewer extreme pairs
    assert r["paper"]["beyond_2_text"] == 0.1875 and r["paper"]["corner_distance_px"] == 46.0


def test_crop_stats_outside_the_papers_setting_has_no_reference():
    s = crop_stats("joint", 0.0, image_hw=(100, 300), scale=(0.08, 1.0), pairs=2_000)
    assert s["paper"]["corner_distance_px"] is None
    assert s["image_hw"] == [100, 300]


def test_blur_stats_agree_with_the_exact_law():
    s = blur_stats("joint", 0.0, pairs=40_000, seed=1)
    exact = JCLaw(0.0, 0.1, 2.0).prob_beyond(2.0)
    assert s["analytic"]["beyond_2"] == pytest.approx(exact)
    assert abs(s["law"]["beyond_2"] - exact) < 0.015
    r = blur_stats("random", 0.0, pairs=40_000, seed=1)
    assert abs(r["law"]["beyond_2"] - IndependentUniformLaw(0.1, 2.0).prob_beyond(2.0)) < 0.015


def test_stats_chunking_covers_every_pair(monkeypatch):
    import jointaug.analysis.stats as st

    monkeypatch.setattr(st, "CHUNK", 700)
    s = st.crop_stats("joint", 0.0, pairs=2_000)
    assert s["pairs"] == 2_000 and 0.0 <= s["law"]["beyond_2"] <= 1.0


def test_degenerate_range_is_not_an_error():
    s = crop_stats("joint", 0.0, scale=(1.0, 1.0), pairs=500)
    assert s["analytic"]["beyond_2"] == 0.0 and s["law"]["beyond_2"] == 0.0


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs,needle", [
    (dict(scale=(0.9, 0.2)), "0.9"),
    (dict(scale=(0.0, 1.0)), "0.0"),
    (dict(scale=(-0.1, 1.0)), "-0.1"),
    (dict(scale=(0.2, 1.5)), "1.5"),
    (dict(beta=float("nan")), "nan"),
    (dict(beta=float("inf")), "inf"),
    (dict(beta=float("-inf")), "-inf"),
    (dict(image_hw=(0, 224)), "0 224"),
    (dict(image_hw=(224, -3)), "-3"),
    (dict(pairs=0), "0"),
])
def test_crop_stats_bad_input_names_the_value(kwargs, needle):
    kw = dict(pairs=100) | kwargs
    with pytest.raises(ValueError, match=needle.replace(".", r"\.").replace("-", r"\-")):
        crop_stats("joint", **kw)


@pytest.mark.parametrize("sigma,needle", [((0.0, 2.0), "0.0"), ((-1.0, 2.0), "-1.0"), ((2.0, 0.1), "2.0")])
def test_blur_stats_bad_sigma_names_the_value(sigma, needle):
    with pytest.raises(ValueError, match=needle.replace(".", r"\.").replace("-", r"\-")):
        blur_stats("joint", 0.0, sigma=sigma, pairs=100)


def test_sampling_core_rejects_bad_values():
    with pytest.raises(ValueError, match="nan"):
        JCLaw(float("nan"), 0.2, 1.0)
    with pytest.raises(ValueError, match="inf"):
        JCLaw(float("inf"), 0.2, 1.0)
    with pytest.raises(ValueError, match="0.9"):
        JCLaw(0.0, 0.9, 0.2)
    with pytest.raises(ValueError, match="1.5"):
        crop_policy("joint", scale=(0.2, 1.5))
    with pytest.raises(ValueError, match="0"):
        crop_policy("joint").sample(torch.tensor([[0, 224]]))


@pytest.mark.parametrize("argv,needle", [
    (["stats", "--beta", "nan"], "nan"),
    (["stats", "--beta", "inf"], "inf"),
    (["stats", "--scale", "0.9", "0.2"], "0.9"),
    (["stats", "--scale", "0.2", "1.5"], "1.5"),
    (["stats", "--scale", "0", "1"], "min 0"),
    (["stats", "--aug", "blur", "--sigma", "0", "2"], "min 0"),
    (["stats", "--aug", "blur", "--sigma", "-1", "2"], "-1"),
    (["stats", "--image-size", "0", "224"], "0 224"),
    (["stats", "--pairs", "0"], "--pairs"),
    (["plot", "--betas", "nan", "--pairs", "10"], "nan"),
    (["plot", "--scale", "0.5", "0.2", "--pairs", "10"], "0.5"),
    (["pairs", "--policies", "joint:abc"], "abc"),
    (["pairs", "--policies", "joint:inf"], "inf"),
    (["pairs", "--policies", "sometimes"], "sometimes"),
    (["pairs", "--recipe", "nosuchrecipe"], "nosuchrecipe"),
    (["pairs", "--rows", "0"], "--rows"),
])
def test_cli_bad_input_exit_code_2_and_one_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert needle in err and "error" in err


# ---------------------------------------------------------------------------------------------- CLI smoke
def test_cli_stats_crop_and_blur_json(tmp_path, capsys):
    js = tmp_path / "out" / "s.json"
    assert main(["stats", "--pairs", "3000", "--beta", "-2", "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "P(area ratio > 2:1)" in out and "18.75" in out and "28.125" in out and "mean corner distance" in out
    d = json.loads(js.read_text())
    assert d["aug"] == "crop" and d["pairs"] == 3000 and d["beta"] == -2.0
    for level in ("law", "realised", "analytic"):
        assert 0.0 <= d[level]["beyond_2"] <= 1.0 and d[level]["beyond_3"] <= d[level]["beyond_2"]
    assert main(["stats", "--aug", "blur", "--kind", "random", "--pairs", "3000", "--json", str(js)]) == 0
    assert json.loads(js.read_text())["aug"] == "blur"
    assert main(["stats", "--kind", "random", "--pairs", "1000", "--image-size", "64", "200", "--fallback",
                 "center", "--bound", "code"]) == 0


def test_cli_plot_writes_figures_and_json(tmp_path, capsys):
    out = tmp_path / "plots"
    assert main(["plot", "--out", str(out), "--pairs", "2000", "--betas", "-1", "1",
                 "--distance-betas", "-2", "0", "2"]) == 0
    for name in ("fig3_log_ratio_density.png", "fig7_corner_distance.png", "plots.json"):
        assert (out / name).stat().st_size > 1000
    with Image.open(out / "fig3_log_ratio_density.png") as im:
        assert im.size[0] > 300
    d = json.loads((out / "plots.json").read_text())
    assert [law["name"] for law in d["fig3"]["laws"]] == ["RandomCrop (iid uniform)", "J-Crop(-1)", "J-Crop(1)"]
    assert d["fig7"]["betas"] == [-2.0, 0.0, 2.0] and len(d["fig7"]["mean"]) == 3
    assert "paper 59.2" in capsys.readouterr().out


def test_density_data_histograms_match_the_exact_curve():
    d = log_ratio_density_data((0.0,), pairs=20_000, bins=20)
    edges = np.asarray(d["bin_edges"])
    for law in d["laws"]:
        hist = np.asarray(law["law_density"])
        assert np.sum(hist * np.diff(edges)) == pytest.approx(1.0)
        centres = (edges[1:] + edges[:-1]) / 2
        exact = (JCLaw(0.0, 0.2, 1.0) if law["kind"] == "joint" else IndependentUniformLaw(0.2, 1.0)).log_ratio_pdf(
            centres)
        assert np.abs(hist - exact).max() < 0.08


def test_corner_distance_data_is_monotone_in_beta():
    d = corner_distance_data((-4.0, 0.0, 4.0), pairs=5_000)
    assert d["mean"][0] > d["mean"][1] > d["mean"][2]
    assert d["mean"][2] < d["random"]["mean"] < d["mean"][1]


# ---------------------------------------------------------------------------------------------- pairs
def test_sample_image_is_shipped_small_and_rgb():
    path = sample_image_path()
    assert path.is_file() and path.stat().st_size < 50_000
    img = pairs_mod.read_image(path)
    assert img.dtype == torch.uint8 and img.shape[0] == 3 and min(img.shape[1:]) >= 100
    drawn = draw_elephant(64, 48)
    assert drawn.mode == "RGB" and drawn.size == (64, 48)
    with pytest.raises(ValueError, match="3x3"):
        draw_elephant(3, 3)


def _write_mixed_folder(root):
    sub = root / "a" / "b"
    sub.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 90), dtype=np.uint8), mode="L").save(root / "gray.png")
    Image.fromarray(rng.integers(0, 255, (120, 50, 4), dtype=np.uint8), mode="RGBA").save(sub / "rgba.png")
    Image.fromarray(rng.integers(0, 255, (7, 300, 3), dtype=np.uint8)).save(sub / "thin.jpg")
    (root / "notes.txt").write_text("not an image")
    return root


def test_collect_images_recursive_and_errors(tmp_path):
    root = _write_mixed_folder(tmp_path / "imgs")
    names = [p.name for p in pairs_mod.collect_images(root)]
    assert sorted(names) == ["gray.png", "rgba.png", "thin.jpg"]
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        pairs_mod.collect_images(tmp_path / "missing_dir")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        pairs_mod.collect_images(tmp_path / "empty")
    imgs = [pairs_mod.read_image(p) for p in pairs_mod.collect_images(root)]
    assert all(im.dtype == torch.uint8 and im.shape[0] == 3 for im in imgs)


def test_parse_policies():
    pols = pairs_mod.parse_policies("random, joint, joint:-2.5", size=32)
    assert [p.name for p in pols] == ["RandomResizedCrop", "J-Crop(0)", "J-Crop(-2.5)"]
    rec = pairs_mod.parse_policies("joint:1", recipe="simclr", blur="joint", size=32)
    assert len(rec) == 1 and rec[0].alternatives  # J-Crop or J-Blur by a coin per image
    with pytest.raises(ValueError, match="random:1"):
        pairs_mod.parse_policies("random:1")
    with pytest.raises(ValueError, match="empty"):
        pairs_mod.parse_policies(" , ")


def test_pair_caption_mentions_ratio_blur_and_coin():
    pol = pairs_mod.parse_policies("joint:0", recipe="simclr", blur="joint", size=32)[0]
    params = pol.sample(torch.tensor([[100, 100]]).expand(64, 2), torch.Generator().manual_seed(0))
    caps = [pairs_mod.pair_caption(params, i, pol) for i in range(64)]
    assert all(c.startswith("area ") and ":1 (" in c for c in caps)
    assert any("blur sigma" in c for c in caps) and any("coin: J-Crop" in c for c in caps)
    assert any("coin: J-Blur" in c for c in caps)


def test_cli_pairs_gallery_with_a_stub_renderer(tmp_path, stub_renderer, capsys):
    root = _write_mixed_folder(tmp_path / "imgs")
    out = tmp_path / "g" / "pairs.png"
    assert main(["pairs", "--images", str(root), "--rows", "4", "--size", "48", "--out", str(out)]) == 0
    assert "4 rows x 3 policies" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.size[0] > im.size[1] > 100
    out2 = tmp_path / "sample.png"
    assert main(["pairs", "--recipe", "simclr", "--crop", "joint", "--blur", "joint", "--rows", "2",
                 "--size", "48", "--out", str(out2)]) == 0
    assert out2.stat().st_size > 1000


def test_cli_pairs_errors_name_the_folder_or_file(tmp_path, capsys):
    assert main(["pairs", "--images", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.jpg").write_bytes(b"definitely not a jpeg")
    assert main(["pairs", "--images", str(bad), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "broken.jpg" in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(not _renderer_available(), reason="jointaug.render.batched is not available yet")
def test_cli_pairs_with_the_real_renderer(tmp_path):
    root = _write_mixed_folder(tmp_path / "imgs")
    out = tmp_path / "real.png"
    assert main(["pairs", "--images", str(root), "--rows", "3", "--size", "48", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    assert main(["pairs", "--recipe", "simclr", "--blur", "joint", "--rows", "2", "--size", "48",
                 "--out", str(out)]) == 0


def test_pil_fallback_decoder_converts_to_rgb_and_names_bad_files(tmp_path, monkeypatch):
    monkeypatch.setattr(pairs_mod, "load_image", None)  # as if jointaug.data.io were missing
    root = _write_mixed_folder(tmp_path / "imgs")
    for p in pairs_mod.collect_images(root):
        im = pairs_mod.read_image(p)
        assert im.dtype == torch.uint8 and im.shape[0] == 3
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="broken.png"):
        pairs_mod.read_image(root / "broken.png")


def test_pairs_without_a_renderer_says_so(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "jointaug.render.batched", None)  # import fails
    assert main(["pairs", "--rows", "1", "--out", str(tmp_path / "x.png")]) == 1
    assert "renderer" in capsys.readouterr().err
