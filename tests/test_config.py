"""Config loading and validation: recipes load, bad keys and values are errors naming key, value, source."""

from __future__ import annotations

from pathlib import Path

import pytest

from jointaug.config import ConfigError, build_policy, find_config, load_config, scaled_lr

RECIPES = ["synthetic", "cifar10", "cifar100", "stl10", "tiny-imagenet", "imagenet"]


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_loads_and_builds_its_policy(name: str, tmp_path: Path) -> None:
    overrides = [] if name == "synthetic" else [f"data.root={tmp_path}"]
    cfg = load_config(f"simclr/{name}", overrides)
    assert cfg.method.name == "simclr"
    assert cfg.name == f"simclr/{name}"
    policy = build_policy(cfg)
    assert policy.num_views == 2
    assert policy.out_hw[0][0] == cfg.aug.size


def test_recipe_by_path_and_overrides_merge() -> None:
    path = find_config("simclr/cifar10")
    assert path.name == "cifar10.yaml"
    cfg = load_config(path, [f"data.root={path.parent}", "optim.lr=0.1", "method.params.temperature=0.2",
                             "aug.scale=[0.3,1.0]"])
    assert cfg.optim.lr == 0.1 and cfg.method.params.temperature == 0.2
    assert list(cfg.aug.scale) == [0.3, 1.0]
    assert cfg.optim.batch_size == 512  # from the file
    assert scaled_lr(cfg) == pytest.approx(0.1 * 512 / 256)


def test_scaled_lr_modes() -> None:
    assert scaled_lr(load_config(None, ["optim.lr=0.2", "optim.batch_size=1024"])) == pytest.approx(0.8)
    assert scaled_lr(load_config(None, ["optim.lr=0.2", "optim.batch_size=1024", "optim.lr_scaling=sqrt"])) \
        == pytest.approx(0.4)
    assert scaled_lr(load_config(None, ["optim.lr=0.2", "optim.lr_scaling=none"])) == pytest.approx(0.2)


def _error(path, overrides) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    assert isinstance(info.value, ValueError)
    return str(info.value)


def test_unknown_key_in_file_names_key_and_file(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("optim:\n  lrr: 0.1\n")
    msg = _error(f, [])
    assert "optim.lrr" in msg and str(f) in msg and "unknown key" in msg
    assert "'lr'" in msg  # the suggestion


def test_unknown_key_on_command_line() -> None:
    msg = _error(None, ["train.epochs=3"])
    assert "train.epochs" in msg and "command-line override" in msg


@pytest.mark.parametrize(
    "override, key, words",
    [
        ("optim.lr=-0.1", "optim.lr", "> 0"),
        ("optim.lr=abc", "optim.lr", "abc"),
        ("optim.batch_size=1.5", "optim.batch_size", "1.5"),
        ("method.name=simclrr", "method.name", "unknown method"),
        ("method.params.temprature=0.1", "method.params.temprature", "unknown hyperparameter"),
        ("model.backbone=resnet19", "model.backbone", "unknown backbone"),
        ("aug.recipe=simclrr", "aug.recipe", "unknown recipe"),
        ("aug.crop=jointt", "aug.crop", "random, joint"),
        ("aug.beta=nan", "aug.beta", "finite"),
        ("aug.beta=inf", "aug.beta", "finite"),
        ("aug.scale=[0.5,0.2]", "aug.scale", "min <= max"),
        ("optim.name=adam", "optim.name", "sgd, lars, adamw"),
        ("optim.momentum=1.0", "optim.momentum", "< 1"),
        ("train.device=gpu", "train.device", "cuda"),
        ("data.name=mnist", "data.name", "unknown data set"),
        ("eval.knn_t=0", "eval.knn_t", "> 0"),
        ("data.limit=0", "data.limit", ">= 1"),
    ],
)
def test_bad_values_name_the_key_and_value(override: str, key: str, words: str) -> None:
    msg = _error(None, [override])
    assert msg.startswith(key), msg
    assert words in msg, msg
    assert override.split("=", 1)[1].split(",")[0].strip("[") in msg, msg  # the value is echoed
    assert "command-line override" in msg


def test_bad_value_in_file_names_file(tmp_path: Path) -> None:
    f = tmp_path / "typo.yaml"
    f.write_text("method:\n  name: simclrr\n")
    msg = _error(f, [])
    assert "method.name='simclrr'" in msg and str(f) in msg


def test_missing_data_root_and_wrong_path(tmp_path: Path) -> None:
    assert "needs data.root" in _error(None, ["data.name=cifar10"])
    msg = _error(None, ["data.name=folder", f"data.root={tmp_path / 'nope'}"])
    assert "data.root" in msg and "no such file" in msg and "nope" in msg


def test_malformed_inputs(tmp_path: Path) -> None:
    assert "key=value" in _error(None, ["optim.lr"])
    assert "no such file" in _error("simclr/does-not-exist", [])
    f = tmp_path / "broken.yaml"
    f.write_text("optim: [unclosed\n")
    assert "cannot parse" in _error(f, [])
    g = tmp_path / "list.yaml"
    g.write_text("- 1\n- 2\n")
    assert "mapping" in _error(g, [])


def test_views_must_match_the_method() -> None:
    msg = _error(None, ["method.name=mocov2", "aug.recipe=dino"])  # 8 views for a 2-view method
    assert "views" in msg and "mocov2" in msg and "multi-crop" in msg
