"""Per-group learning-rate multipliers: groups marked ``"lr_scale"`` get ``lr * scale`` and keep that ratio
under the warm-up + cosine schedule; BYOL's / SimSiam's ``pred_lr_scale`` marks the predictor's groups."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from jointaug.methods import METHODS, build_method
from jointaug.models import build_backbone
from jointaug.train.optim import build_optimizer, build_scheduler, lr_factor


def _byol(**kw: object) -> nn.Module:
    return build_method("byol", build_backbone("convnet4", width=4), proj_hidden_dim=16, proj_out_dim=8,
                        pred_hidden_dim=16, **kw)


def _simsiam(**kw: object) -> nn.Module:
    return build_method("simsiam", build_backbone("convnet4", width=4), proj_hidden_dim=16, proj_out_dim=8,
                        pred_hidden_dim=4, **kw)


@pytest.mark.parametrize("opt_name", ["sgd", "adamw", "lars"])
def test_lr_scale_groups_get_scaled_lr_under_the_schedule(opt_name: str) -> None:
    m = _byol(pred_lr_scale=10.0)
    groups = m.parameter_groups(1e-4)
    scaled = [g for g in groups if "lr_scale" in g]
    assert {id(p) for g in scaled for p in g["params"]} == {id(p) for p in m.predictor.parameters()}
    assert all(g["lr_scale"] == 10.0 and g["name"].endswith("_lr_scale") for g in scaled)
    # the predictor's weights still decay, its biases / BN parameters still do not
    assert {g["name"]: g["weight_decay"] for g in scaled} == {"decay_lr_scale": 1e-4, "no_decay_lr_scale": 0.0}
    opt = build_optimizer(m, opt_name, 0.05, weight_decay=1e-4)
    sched = build_scheduler(opt, total_steps=20, warmup_steps=4)
    for step in range(1, 12):
        opt.step()
        sched.step()
        f = lr_factor(step, 20, 4)
        for g in opt.param_groups:
            want = 0.05 * f * (10.0 if g.get("lr_scale") else 1.0)
            assert math.isclose(g["lr"], want, rel_tol=1e-9), (step, g["name"])


def test_lr_scale_one_changes_nothing_and_bad_values_are_refused() -> None:
    assert not any("lr_scale" in g for g in _byol().parameter_groups(1e-4))
    assert not any("lr_scale" in g for g in _simsiam().parameter_groups(1e-4))
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="pred_lr_scale"):
            _byol(pred_lr_scale=bad)
        with pytest.raises(ValueError, match="pred_lr_scale"):
            _simsiam(pred_lr_scale=bad)
    model = nn.Linear(2, 2)
    model.parameter_groups = lambda wd: [{"params": list(model.parameters()), "weight_decay": wd,  # type: ignore
                                          "lr_scale": 0.0, "name": "x"}]
    with pytest.raises(ValueError, match="lr_scale must be a positive finite number"):
        build_optimizer(model, "sgd", 0.1)


def test_simsiam_fixed_lr_and_lr_scale_combine() -> None:
    m = _simsiam(pred_lr_scale=4.0)
    opt = build_optimizer(m, "sgd", 0.1)
    sched = build_scheduler(opt, total_steps=10, warmup_steps=0)
    for _ in range(6):
        opt.step()
        sched.step()
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert math.isclose(lrs["decay_fixed_lr_lr_scale"], 0.4) and lrs["decay"] < 0.05
    moved = {id(p) for g in opt.param_groups if g.get("fixed_lr") and g.get("lr_scale") for p in g["params"]}
    assert moved == {id(p) for p in m.predictor.parameters()}


def test_config_validation_names_pred_lr_scale() -> None:
    for name in ("byol", "simsiam"):
        errors = METHODS[name].config_errors({"pred_lr_scale": -2.0}, batch_size=8, num_views=None)
        assert [k for k, _ in errors] == ["pred_lr_scale"]
    assert torch.isfinite(_byol(pred_lr_scale=3.0)([torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)])["loss"])
