"""The method zoo (MoCo v1/v2/v3, BYOL, SimSiam; SimCLR multi-crop): losses against loop formulas, one
training step with the exact EMA rule, the queue, the fixed predictor lr, config errors, DDP equality
with one process on the same global batch, and resume with the method's state."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from ddp_helpers import assert_states_match, train_one_process, train_two_processes

from jointaug.config import ConfigError, load_config
from jointaug.methods import build_method
from jointaug.methods.losses import info_nce_queue, moco_v3_contrastive, negative_cosine, normalized_mse
from jointaug.methods.momentum import KeyQueue, MomentumSchedule, ema_update, momentum_copy
from jointaug.models import build_backbone
from jointaug.train.optim import build_optimizer, build_scheduler

CACHE = Path(tempfile.gettempdir()) / "jointaug-test-cache"
ZOO = ["mocov1", "mocov2", "mocov3", "byol", "simsiam"]


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.dot(a, b) / (a.norm() * b.norm())


# ------------------------------------------------------------------------------------------ losses
def _loop_info_nce(q, k, queue, t):
    total = q.new_zeros(())
    for i in range(q.shape[0]):
        pos = torch.exp(_cos(q[i], k[i]) / t)
        neg = sum(torch.exp(_cos(q[i], queue[j]) / t) for j in range(queue.shape[0]))
        total = total - torch.log(pos / (pos + neg))
    return total / q.shape[0]


def _loop_moco_v3(q, k, t):
    total = q.new_zeros(())
    for i in range(q.shape[0]):
        logits = torch.stack([_cos(q[i], k[j]) / t for j in range(k.shape[0])])
        total = total - (logits[i] - torch.logsumexp(logits, 0))
    return total / q.shape[0] * 2 * t


def _loop_nmse(p, z):
    return sum(((p[i] / p[i].norm() - z[i] / z[i].norm()) ** 2).sum() for i in range(p.shape[0])) / p.shape[0]


def _loop_negcos(p, z):
    return -sum(_cos(p[i], z[i]) for i in range(p.shape[0])) / p.shape[0]


def _rand(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(True)


@pytest.mark.parametrize("t", [0.07, 0.2, 1.0])
def test_info_nce_queue_matches_loop(t):
    q, k, queue = _rand(5, 6, seed=1), _rand(5, 6, seed=2), F.normalize(_rand(7, 6, seed=3).detach(), dim=1)
    out = info_nce_queue(q, k, queue, t)  # float64 in, float64 out: rounding ~1e-16, tolerance 1e-12
    ref = _loop_info_nce(q, k, queue, t)
    torch.testing.assert_close(out.loss, ref, rtol=1e-12, atol=1e-12)
    g, r = torch.autograd.grad(out.loss, q)[0], torch.autograd.grad(ref, q)[0]
    torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)
    assert out.logits.shape == (5, 8) and (out.targets == 0).all()


@pytest.mark.parametrize("t", [0.2, 1.0])
def test_moco_v3_contrastive_matches_loop(t):
    q, k = _rand(6, 5, seed=4), _rand(6, 5, seed=5)
    out = moco_v3_contrastive(q, k, t)
    ref = _loop_moco_v3(q, k, t)
    torch.testing.assert_close(out.loss, ref, rtol=1e-12, atol=1e-12)
    g, r = torch.autograd.grad(out.loss, q)[0], torch.autograd.grad(ref, q)[0]
    torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_byol_and_simsiam_losses_match_loop():
    p, z = _rand(4, 3, seed=6), _rand(4, 3, seed=7)
    for fn, loop in ((normalized_mse, _loop_nmse), (negative_cosine, _loop_negcos)):
        out, ref = fn(p, z), loop(p, z)
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
        g, r = torch.autograd.grad(out, p)[0], torch.autograd.grad(ref, p)[0]
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)
    assert normalized_mse(p, p).abs() < 1e-12 and (negative_cosine(p, p) + 1).abs() < 1e-12


# ------------------------------------------------------------------------------------------ pieces
def test_momentum_schedule_and_ema_rule():
    s = MomentumSchedule(0.996, 1.0, "cosine")
    assert s(1, 100) == pytest.approx(0.996) and s(101, 100) == pytest.approx(1.0)
    assert s(51, 100) == pytest.approx(0.998)
    assert MomentumSchedule(0.999, schedule="constant")(50, 100) == 0.999
    with pytest.raises(ValueError, match="base"):
        MomentumSchedule(1.5)
    online = torch.nn.Linear(3, 2)
    target = momentum_copy(online)
    assert all(not p.requires_grad for p in target.parameters())
    with torch.no_grad():
        online.weight.add_(1.0)
    before = [p.clone() for p in target.parameters()]
    ema_update(target, online, 0.9)
    for b, t, o in zip(before, target.parameters(), online.parameters()):
        assert torch.equal(t, b.mul(0.9).add(o, alpha=0.1))


def test_key_queue_fifo():
    torch.manual_seed(0)
    q = KeyQueue(8, 3)
    assert torch.allclose(q.keys.norm(dim=1), torch.ones(8))
    a, b = torch.ones(4, 3), 2 * torch.ones(4, 3)
    q.push(a)
    assert int(q.ptr) == 4 and torch.equal(q.keys[:4], a)
    q.push(b)
    assert int(q.ptr) == 0 and torch.equal(q.keys[4:], b)
    with pytest.raises(ValueError, match="not divisible"):
        q.push(torch.ones(3, 3))
    assert set(dict(q.named_buffers())) == {"keys", "ptr"}  # in state_dict: checkpointed


# ------------------------------------------------------------------------------------------ one step
def _tiny(name: str, **kw):
    torch.manual_seed(0)
    params = dict(proj_hidden_dim=16, proj_out_dim=8)
    if name in ("mocov1", "mocov2"):
        params["queue_size"] = 32
    if name in ("mocov3", "byol", "simsiam"):
        params["pred_hidden_dim"] = 8
    params.update(kw)
    return build_method(name, build_backbone("convnet4", width=4), **params)


def _views(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 16, 16, generator=g)
    return [x, x + 0.3 * torch.randn(x.shape, generator=g)]


@pytest.mark.parametrize("name", ZOO)
def test_one_step_changes_online_weights_and_momentum_by_the_ema_rule_exactly(name):
    m = _tiny(name)
    opt = build_optimizer(m, "sgd", 0.5, momentum=0.0)
    online_before = {k: v.clone() for k, v in m.named_parameters() if v.requires_grad}
    momentum_before = {k: v.clone() for k, v in m.named_parameters() if not v.requires_grad}
    assert (len(momentum_before) > 0) == (name != "simsiam")
    m.train()
    m.on_train_step_start(1, 10, 5)
    out = m(_views())
    assert torch.isfinite(out["loss"]) and "out_std" in out
    out["loss"].backward()
    m.on_before_optimizer_step(1, 10, 5)
    opt.step()
    online_after = dict(m.named_parameters())
    changed = [k for k, v in online_before.items() if not torch.equal(v, online_after[k])]
    assert len(changed) >= 0.8 * len(online_before), (name, len(changed), len(online_before))
    m.on_train_step_end(1, 10)
    if momentum_before:
        mom = m.momentum(1, 10)
        params = dict(m.named_parameters())
        for k, old in momentum_before.items():
            src = k.replace("momentum_", "", 1)
            want = old.clone().mul_(mom).add_(params[src].detach(), alpha=1.0 - mom)
            assert torch.equal(params[k], want), k


@pytest.mark.parametrize("name", ["mocov1", "mocov2"])
def test_moco_queue_receives_this_steps_keys(name):
    m = _tiny(name)
    m.train()
    x1, x2 = _views()
    m([x1, x2])
    with torch.no_grad():  # keys of this step from the momentum encoder (before its update)
        keys = F.normalize(m.momentum_projector(m.momentum_backbone(x2)), dim=1)
    assert int(m.queue.ptr) == 0
    m.on_train_step_end(1, 10)
    assert int(m.queue.ptr) == 8
    torch.testing.assert_close(m.queue.keys[:8], keys)


def test_moco_bn_splits_emulates_shuffled_bn():
    m = _tiny("mocov2", bn_splits=2)
    m.train()
    x1, x2 = _views()
    out = m([x1, x2])
    assert torch.isfinite(out["loss"])
    # keys come back in the original order: each equals its own split's encoding, whatever the shuffle
    torch.manual_seed(1)
    k = m._keys(x2)
    torch.manual_seed(1)
    perm = torch.randperm(8)
    parts = [m._key_net(c) for c in x2[perm].chunk(2)]
    want = torch.empty_like(k)
    want[perm] = torch.cat(parts)
    assert torch.equal(k, want)


def test_simsiam_predictor_keeps_a_fixed_learning_rate():
    m = _tiny("simsiam")
    groups = m.parameter_groups(1e-4)
    fixed = [g for g in groups if g.get("fixed_lr")]
    assert {id(p) for g in fixed for p in g["params"]} == {id(p) for p in m.predictor.parameters()}
    opt = build_optimizer(m, "sgd", 0.1)
    sched = build_scheduler(opt, total_steps=10, warmup_steps=0)
    for _ in range(6):
        opt.step()
        sched.step()
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["decay_fixed_lr"] == 0.1 and lrs["decay"] < 0.05
    assert not any(g.get("fixed_lr") for g in _tiny("simsiam", fix_pred_lr=False).parameter_groups(1e-4))


def test_simclr_and_byol_multicrop():
    x1, x2 = _views()
    small = [torch.randn(8, 3, 8, 8) for _ in range(4)]
    for name in ("simclr", "byol", "simsiam"):
        m = _tiny(name) if name != "simclr" else build_method("simclr", build_backbone("convnet4", width=4),
                                                              proj_hidden_dim=16, proj_out_dim=8)
        out = m([x1, x2, *small])
        assert torch.isfinite(out["loss"])
        out["loss"].backward()
    with pytest.raises(ValueError, match="expects a list of 2 view batches, got 3"):
        _tiny("mocov3")([x1, x2, x1])


def test_simsiam_multicrop_loss_is_the_mean_over_global_pairs():
    m = _tiny("simsiam")
    m.train()
    x1, x2 = _views()
    small = [torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    views = [x1, x2, *small]
    loss = m(views)["loss"]
    # by hand: BN batches as the method forms them (globals together, locals together)
    zg = m.projector(m.backbone(torch.cat([x1, x2])))
    zl = m.projector(m.backbone(torch.cat(small)))
    z = [zg[:8], zg[8:], zl[:8], zl[8:]]
    pg, pl = m.predictor(zg), m.predictor(zl)
    p = [pg[:8], pg[8:], pl[:8], pl[8:]]
    pairs = [(g, v) for g in (0, 1) for v in range(4) if v != g]
    want = sum(-F.cosine_similarity(p[v], z[g].detach(), dim=1).mean() for g, v in pairs) / len(pairs)
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)
    # two views: the paper's 0.5 D(p1, sg z2) + 0.5 D(p2, sg z1)
    z2 = m.projector(m.backbone(torch.cat([x1, x2])))
    p2 = m.predictor(z2)
    want2 = (-0.5 * F.cosine_similarity(p2[:8], z2[8:].detach(), dim=1).mean()
             - 0.5 * F.cosine_similarity(p2[8:], z2[:8].detach(), dim=1).mean())
    torch.testing.assert_close(m([x1, x2])["loss"], want2, rtol=1e-5, atol=1e-6)


def test_byol_two_views_is_the_symmetric_sum():
    m = _tiny("byol")
    m.train()
    x1, x2 = _views()
    torch.manual_seed(3)
    loss = m([x1, x2])["loss"]
    # recompute by hand with the same BN batches (online: both views together; target: one view at a time)
    m2 = _tiny("byol")
    m2.load_state_dict(_tiny("byol").state_dict())
    f = m2.backbone(torch.cat([x1, x2]))
    p = m2.predictor(m2.projector(f))
    with torch.no_grad():
        z1 = m2.momentum_projector(m2.momentum_backbone(x1))
        z2 = m2.momentum_projector(m2.momentum_backbone(x2))
    want = normalized_mse(p[:8], z2) + normalized_mse(p[8:], z1)
    torch.testing.assert_close(loss, want)


# ------------------------------------------------------------------------------------------ config
def _err(*ov: str) -> str:
    """The ConfigError of ``<method>/synthetic`` (method from the first override) with the overrides."""
    name = ov[0].split("=")[1]
    with pytest.raises(ConfigError) as info:
        load_config(f"{name}/synthetic", list(ov[1:]))
    return str(info.value)


def test_config_errors_name_the_key_and_value():
    msg = _err("method.name=mocov2", "method.params.queue_size=1000")
    assert "method.params.queue_size" in msg and "1000" in msg and "optim.batch_size=128" in msg
    msg = _err("method.name=mocov1", "method.params.temperature=0")
    assert "method.params.temperature" in msg and "(0, inf)" in msg
    msg = _err("method.name=byol", "method.params.momentum=1.5")
    assert "method.params.momentum" in msg and "1.5" in msg
    msg = _err("method.name=mocov3", "method.params.momentum=0.99", "method.params.momentum_final=0.9")
    assert "momentum_final" in msg
    msg = _err("method.name=simsiam", "method.params.queue_size=4096")
    assert "unknown hyperparameter" in msg and "simsiam" in msg
    msg = _err("method.name=simclr", "method.name=byol")  # the simclr recipe's temperature is not BYOL's
    assert "method.params.temperature" in msg and "byol" in msg
    msg = _err("method.name=mocov2", "aug.recipe=dino")
    assert "aug.recipe" in msg and "multi-crop" in msg
    for name in ZOO:
        assert load_config(f"{name}/synthetic").method.name == name


# ------------------------------------------------------------------------------------------ DDP, resume
def _overrides(name: str, out: Path, steps: int = 3) -> list[str]:
    ov = ["data.limit=256", "data.test_limit=200", f"data.cache_dir={CACHE}", "model.backbone=convnet4",
          "model.backbone_kwargs.width=8", "method.params.proj_hidden_dim=32", "method.params.proj_out_dim=16",
          "optim.batch_size=32", "optim.epochs=1", "optim.warmup_epochs=0", f"train.max_steps={steps}",
          "train.knn_every=0", "train.log_every=1", "train.tensorboard=false", "train.progress=false",
          "train.threads=1", "eval.final=false", f"train.out_dir={out}", "train.dtype=float64"]
    if name in ("mocov1", "mocov2"):
        ov.append("method.params.queue_size=128")
    if name in ("mocov3", "byol", "simsiam"):
        ov.append("method.params.pred_hidden_dim=16")
    return ov


def _load(path: Path) -> dict:
    from jointaug.train.checkpoint import load_checkpoint

    return load_checkpoint(path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mocov2", "mocov3", "byol"])
def test_two_process_ddp_equals_one_process(tmp_path: Path, name: str) -> None:
    """Queue contents, gathered keys and synchronised BN: 2 gloo ranks == 1 process on the global batch."""

    train_two_processes(f"{name}/synthetic", _overrides(name, tmp_path / "ddp"))
    train_one_process(f"{name}/synthetic", _overrides(name, tmp_path / "one"))
    a, b = _load(tmp_path / "ddp" / "checkpoints" / "last.pt"), _load(tmp_path / "one" / "checkpoints" / "last.pt")
    assert a["world_size"] == 2 and b["world_size"] == 1 and a["global_step"] == b["global_step"] == 3
    assert_states_match(a["model"], b["model"])  # float64 runs, tolerance: see tests/ddp_helpers.py
    if name == "mocov2":  # 3 steps of 32 keys entered the 128-key queue
        assert int(a["model"]["queue.ptr"]) == 96


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mocov2", "byol"])
def test_resume_is_bit_identical_with_the_methods_state(tmp_path: Path, name: str) -> None:
    from jointaug.train.trainer import train

    ov = [o for o in _overrides(name, tmp_path) if not o.startswith(("train.max_steps", "train.out_dir",
                                                                       "train.dtype"))]
    ov += ["optim.epochs=2", "train.dtype=float32"]
    train(load_config(f"{name}/synthetic", [*ov, f"train.out_dir={tmp_path / 'full'}"]))
    train(load_config(f"{name}/synthetic", [*ov, f"train.out_dir={tmp_path / 'cut'}", "train.max_steps=5"]))
    train(load_config(f"{name}/synthetic", [*ov, f"train.out_dir={tmp_path / 'cut'}"]))
    a, b = _load(tmp_path / "full" / "checkpoints" / "last.pt"), _load(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert a["global_step"] == b["global_step"] == 16
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_out_std_is_about_one_over_sqrt_d_for_spread_outputs_and_zero_for_collapse():
    from jointaug.methods.base import output_std

    z = torch.randn(4096, 64, generator=torch.Generator().manual_seed(0))
    assert output_std(z) == pytest.approx(1 / math.sqrt(64), rel=0.05)
    assert output_std(torch.ones(16, 64)) == 0


def test_every_recipe_validates_and_names_its_method():
    """Each configs/<method>/<data>.yaml loads and validates (real data sets: as if downloadable)."""
    root = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(p for p in root.glob("*/*.yaml") if p.parent.name != "grids")  # grids: tests/test_grid.py
    methods = {p.parent.name for p in files}
    assert {"simclr", "mocov1", "mocov2", "mocov3", "byol", "simsiam", "dino", "looc"} <= methods
    for name in ("simclr", "mocov1", "mocov2", "mocov3", "byol", "simsiam", "dino"):
        have = {p.stem for p in (root / name).glob("*.yaml")}
        assert {"synthetic", "cifar10", "cifar100", "stl10", "tiny-imagenet", "imagenet"} <= have, name
    for p in files:
        ov = [] if "synthetic" in p.stem or "subset" in p.stem else ["data.download=true"]
        cfg = load_config(p, ov)
        assert cfg.method.name == ("simclr" if p.parent.name == "simclr" else p.parent.name), p
