"""``jointaug eval``: checkpoint loading (trainer's format) and the end-to-end command on toy data."""

from __future__ import annotations

import json

import pytest
import torch

import jointaug.eval.cli as eval_cli
from jointaug.cli import main as jointaug_main
from jointaug.eval.checkpoint import config_get, load_backbone
from jointaug.eval.features import extract_features
from jointaug.methods import build_method
from jointaug.models import build_backbone


def _save_checkpoint(path, *, flat: bool = False, ddp: bool = False, backbone: str = "convnet4"):
    torch.manual_seed(3)
    model = build_method("simclr", build_backbone(backbone, width=4), proj_hidden_dim=8, proj_out_dim=4)
    state = model.state_dict()
    if ddp:
        state = {f"module.{k}": v for k, v in state.items()}
    if flat:
        config = {"model.backbone": "convnet4", "model.cifar_stem": False, "model.width": 4, "method.name": "simclr"}
    else:
        config = {"model": {"backbone": "convnet4", "cifar_stem": False, "backbone_kwargs": {"width": 4}},
                  "method": {"name": "simclr", "params": {"temperature": 0.5}},
                  "data": {"name": "toy", "eval_train_split": "train", "test_split": "test"},
                  "eval": {"knn_k": 10, "knn_t": 0.1}}
    # the trainer stores the normalisation it used at the top level
    torch.save({"model": state, "config": config, "epoch": 1, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
               path)
    return model


@pytest.mark.parametrize("flat, ddp", [(False, False), (True, True)])
def test_load_backbone_restores_weights(tmp_path, flat, ddp):
    path = tmp_path / "ckpt.pt"
    model = _save_checkpoint(path, flat=flat, ddp=ddp)
    backbone, config = load_backbone(path)
    assert config_get(config, "model.backbone") == "convnet4" and not backbone.training
    x = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    torch.testing.assert_close(extract_features(backbone, x), extract_features(model.backbone, x))


def test_load_backbone_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_backbone(tmp_path / "missing.pt")
    torch.save({"model": {}}, tmp_path / "noconfig.pt")
    with pytest.raises(KeyError, match="'config'"):
        load_backbone(tmp_path / "noconfig.pt")
    torch.save({"model": build_backbone("convnet4", width=8).state_dict(),
                "config": {"model": {"backbone": "convnet4"}}}, tmp_path / "nobackbone.pt")
    with pytest.raises(KeyError, match="backbone"):
        load_backbone(tmp_path / "nobackbone.pt")
    _save_checkpoint(tmp_path / "ok.pt")
    ckpt = torch.load(tmp_path / "ok.pt", weights_only=True)
    ckpt["config"]["model"]["backbone_kwargs"] = {"width": 8}  # wrong architecture for the weights
    torch.save(ckpt, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="does not match"):
        load_backbone(tmp_path / "wrong.pt")


class _Toy(torch.utils.data.Dataset):
    num_classes = 2
    fixed_size = (16, 16)

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, 2, (n,), generator=g)
        self.images = torch.randint(0, 100, (n, 3, 16, 16), generator=g, dtype=torch.uint8)
        self.images[self.labels == 1, 0] += 140

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


def test_eval_command_end_to_end(tmp_path, monkeypatch, capsys):
    path = tmp_path / "ckpt.pt"
    _save_checkpoint(path)
    seen = []

    def fake_split(name, split, **kw):
        seen.append((name, split))
        return _Toy(64 if split == "train" else 32, seed=0 if split == "train" else 1)

    monkeypatch.setattr(eval_cli, "build_split", fake_split)
    out = tmp_path / "res.json"
    rc = jointaug_main(["eval", str(path), "--linear", "--linear-epochs", "20",
                        "--linear-augmented", "--batch-size", "16", "--out", str(out)])
    assert rc == 0
    assert seen == [("toy", "train"), ("toy", "test")]  # data.name from the checkpoint config
    res = json.loads(out.read_text())
    assert res["normalisation"]["mean"] == [0.5, 0.5, 0.5] and "checkpoint" in res["normalisation"]["source"]
    assert res["knn"]["k"] == 10  # from the config's eval section
    assert res["num_train"] == 64 and res["num_test"] == 32 and res["feature_dim"] == 32
    assert res["knn"]["top1"] >= 90.0 and res["linear"]["top1"] >= 90.0 and res["linear_augmented"]["top1"] >= 80.0
    assert "kNN" in capsys.readouterr().out


def test_eval_command_reports_bad_input(tmp_path):
    assert jointaug_main(["eval", str(tmp_path / "nope.pt")]) == 2
