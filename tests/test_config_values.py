"""Config and command-line values that used to crash or pass silently (issue 9, item 11)."""

from __future__ import annotations

import argparse
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from jointaug.config import MAX_SEED, ConfigError, _param_type_error, load_config


@pytest.mark.parametrize("override, message", [
    ("method.params.temperature=inf", "method.params.temperature='inf' .*must be a number"),
    ("method.params.temperature=nan", "method.params.temperature='nan' .*must be a number"),
    ("method.params.temperature=abc", "method.params.temperature='abc' .*must be a number"),
    ("method.params.temperature=.inf", "method.params.temperature=inf .*must be a finite number"),
    ("method.params.temperature=.nan", "method.params.temperature=nan .*must be a finite number"),
    ("method.params.proj_hidden_dim=64.5", "method.params.proj_hidden_dim=64.5 .*must be an integer"),
    ("method.params.proj_hidden_dim=true", "method.params.proj_hidden_dim=True .*must be an integer"),
    ("method.params.proj_batch_norm=1", "method.params.proj_batch_norm=1 .*must be true or false"),
    ("aug.size=1", "aug.size=1 .*must be >= 8"),
    ("aug.size=100000", "aug.size=100000 .*must be <= 2048"),
    ("data.size=100000", "data.size=100000 .*must be <= 2048"),
    ("train.seed=100000000000000000000", "train.seed=100000000000000000000 .*must be <= 9223372036854775807"),
    ("train.seed=1e20", "train.seed=1e\\+20 .*could not be converted to Integer"),
    ("train.keep_checkpoints=0", "train.keep_checkpoints=0 .*must be >= 1"),
])
def test_bad_values_are_config_errors_naming_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("simclr/synthetic", [override])


def test_good_values_still_pass() -> None:
    cfg = load_config("simclr/synthetic", ["method.params.temperature=1", "method.params.proj_hidden_dim=64",
                                           "aug.size=8", f"train.seed={MAX_SEED}", "data.verify=false"])
    assert cfg.method.params.temperature == 1 and cfg.train.seed == MAX_SEED and cfg.data.verify is False


def test_generic_hyperparameter_check_follows_the_default_type() -> None:
    assert _param_type_error(3, 0.5) is None  # an int is a fine float
    assert _param_type_error(float("inf"), 0.5) == "must be a finite number"
    assert _param_type_error(True, 0.5) == "must be a number"
    assert _param_type_error(3.0, 2) == "must be an integer"
    assert _param_type_error("x", "y") is None and _param_type_error(1, "y") == "must be a string"
    assert _param_type_error(object(), None) is None  # no default type to follow
    # works for every registered method (the lead's new methods included)
    from jointaug.methods import METHODS, method_hyperparameters

    for name in METHODS:
        for key, default in method_hyperparameters(name).items():
            assert _param_type_error(default, default) is None, (name, key)


def test_eval_normalisation_flags() -> None:
    from jointaug.eval.cli import _norm_stats

    ckpt = {"config": {}, "mean": [0.5] * 3, "std": [0.25] * 3}
    with pytest.raises(ValueError, match="--std was given without --mean"):
        _norm_stats(ckpt, argparse.Namespace(mean=None, std=[1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="--mean was given without --std"):
        _norm_stats(ckpt, argparse.Namespace(mean=[0.0, 0.0, 0.0], std=None))
    with pytest.raises(ValueError, match="--std nan 1.0 1.0: must be finite"):
        _norm_stats(ckpt, argparse.Namespace(mean=[0.0, 0.0, 0.0], std=[float("nan"), 1.0, 1.0]))
    assert _norm_stats(ckpt, argparse.Namespace(mean=None, std=None))[2] == "checkpoint (training normalisation)"
    assert _norm_stats(ckpt, argparse.Namespace(mean=[0.0] * 3, std=[1.0] * 3))[:2] == ([0.0] * 3, [1.0] * 3)


def _fake_cifar10(path: Path) -> Path:
    rng = np.random.default_rng(0)

    def batch() -> bytes:
        return pickle.dumps({b"data": rng.integers(0, 256, size=(10, 3072), dtype=np.uint8),
                             b"labels": [int(x) for x in rng.integers(0, 10, size=10)]}, protocol=2)

    members = {f"data_batch_{i}": batch() for i in range(1, 6)}
    members["test_batch"] = batch()
    members["batches.meta"] = pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}, protocol=2)
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return path


def test_cifar_checksum_error_names_data_verify_and_the_key_works(tmp_path: Path) -> None:
    from jointaug.train.trainer import Trainer

    archive = _fake_cifar10(tmp_path / "cifar-10-python.tar.gz")
    base = ["data.name=cifar10", f"data.root={archive}", f"data.cache_dir={tmp_path / 'cache'}",
            "train.device=cpu", f"train.out_dir={tmp_path / 'run'}"]
    with pytest.raises(ValueError, match="data.verify=false"):
        Trainer(load_config("simclr/cifar10", base))._build_dataset("train", None)
    ds = Trainer(load_config("simclr/cifar10", [*base, "data.verify=false"]))._build_dataset("train", None)
    assert len(ds) == 50
