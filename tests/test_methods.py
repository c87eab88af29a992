"""NT-Xent against a loop-based formula, SimCLR outputs, the method registry and parameter groups."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from jointaug.methods import METHODS, Method, SimCLR, build_method, method_hyperparameters
from jointaug.methods.losses import nt_xent, nt_xent_detailed
from jointaug.models import build_backbone


def _loop_nt_xent(z1: torch.Tensor, z2: torch.Tensor, t: float) -> torch.Tensor:
    """Direct SimCLR formula: anchors i in 0..2n-1, positive (i + n) mod 2n, 2n - 2 negatives."""
    z = torch.cat([z1, z2])
    n2 = z.shape[0]
    total = z.new_zeros(())
    for i in range(n2):
        pos = (i + n2 // 2) % n2
        sim = [torch.dot(z[i], z[k]) / (z[i].norm() * z[k].norm()) / t for k in range(n2)]
        denom = sum(torch.exp(sim[k]) for k in range(n2) if k != i)
        total = total - torch.log(torch.exp(sim[pos]) / denom)
    return total / n2


@pytest.mark.parametrize("n, d, t", [(1, 3, 0.5), (5, 7, 0.5), (6, 4, 0.1)])
def test_nt_xent_matches_loop_formula_values_and_gradients(n, d, t):
    g = torch.Generator().manual_seed(n * 10 + d)
    z1 = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    loss = nt_xent(z1, z2, t)
    ref = _loop_nt_xent(z1, z2, t)
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
    g1, g2 = torch.autograd.grad(loss, (z1, z2))
    r1, r2 = torch.autograd.grad(ref, (z1, z2))
    torch.testing.assert_close(g1, r1, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g2, r2, rtol=1e-10, atol=1e-12)


def test_nt_xent_properties():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    # symmetric in the two views, invariant to scaling (cosine similarity)
    torch.testing.assert_close(nt_xent(z1, z2, 0.5), nt_xent(z2, z1, 0.5))
    torch.testing.assert_close(nt_xent(3 * z1, 0.5 * z2, 0.5), nt_xent(z1, z2, 0.5))
    # identical views of orthogonal images: positive sim 1, negatives 0 -> log(1 + (2n-2) e^{-1/t})
    eye = torch.eye(8, 16)
    out = nt_xent_detailed(eye, eye, 0.1)
    torch.testing.assert_close(out.loss, torch.tensor(math.log(1 + 14 * math.exp(-10.0))))
    assert out.top1() == 1.0
    assert out.logits.shape == (16, 16) and torch.isinf(out.logits.diagonal()).all()
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(z1, z2, 0.0)
    with pytest.raises(ValueError, match="equal shape"):
        nt_xent(z1, z2[:4], 0.5)


def _tiny_simclr(**kw) -> SimCLR:
    torch.manual_seed(0)
    return build_method("simclr", build_backbone("convnet4", width=4), proj_hidden_dim=16, proj_out_dim=8, **kw)


def test_simclr_forward_outputs_and_backward():
    model = _tiny_simclr()
    x = torch.randn(6, 3, 16, 16)
    out = model([x, x + 0.01 * torch.randn_like(x)])
    assert {"loss", "pos_sim", "acc"} <= set(out)
    assert out["loss"].dim() == 0 and out["loss"].requires_grad
    assert not out["pos_sim"].requires_grad and not out["acc"].requires_grad
    assert out["pos_sim"] > 0.9 and 0.0 <= out["acc"] <= 1.0
    out["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.num_views == 2 and model.name == "simclr" and model.temperature == 0.5
    assert isinstance(model.backbone, nn.Module) and model.feature_dim == 32


def test_simclr_view_checks():
    model = _tiny_simclr()
    x = torch.randn(4, 3, 16, 16)
    with pytest.raises(ValueError, match="2 or more view batches, got 1"):
        model([x])
    with pytest.raises(ValueError, match="different batch sizes"):
        model([x, x[:2]])


def test_registry_and_hyperparameter_errors():
    assert METHODS["simclr"] is SimCLR and issubclass(SimCLR, Method)
    hp = method_hyperparameters("simclr")
    assert hp["temperature"] == 0.5 and hp["proj_hidden_dim"] == 2048 and hp["proj_out_dim"] == 128
    backbone = build_backbone("convnet4", width=4)
    with pytest.raises(ValueError, match="unknown method 'simclr2'.*simclr"):
        build_method("simclr2", backbone)
    with pytest.raises(ValueError, match="unknown hyperparameter.*'tau'"):
        build_method("simclr", backbone, tau=0.2)
    model = build_method("simclr", backbone, temperature=0.2, proj_layers=3, proj_hidden_dim=8)
    assert model.temperature == 0.2 and sum(isinstance(m, nn.Linear) for m in model.projector.modules()) == 3


def test_parameter_groups_exclude_bias_and_norm():
    model = _tiny_simclr()
    groups = model.parameter_groups(weight_decay=1e-4)
    by_name = {g["name"]: g for g in groups}
    decay, no_decay = by_name["decay"], by_name["no_decay"]
    assert decay["weight_decay"] == 1e-4 and not decay["lars_exclude"]
    assert no_decay["weight_decay"] == 0.0 and no_decay["lars_exclude"]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))  # every parameter exactly once
    norm_ids = {id(p) for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)
                for p in m.parameters(recurse=False)}
    bias_ids = {id(m.bias) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)) and m.bias is not None}
    assert norm_ids and bias_ids
    assert {id(p) for p in no_decay["params"]} == norm_ids | bias_ids
    assert all(p.ndim >= 2 for p in decay["params"])
    torch.optim.SGD(groups, lr=0.1)  # extra keys are accepted by torch optimisers
    model.on_train_step_end(0, 10)  # default hook: no-op
