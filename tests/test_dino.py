"""DINO: the loss against a loop formula, one step (exact EMA and centre rules, teacher on the global views
only), the frozen last layer, the teacher-temperature schedule, multi-crop joint pairs and their config
errors, 2-process DDP == 1 process, and bit-identical resume including the centre."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from ddp_helpers import assert_states_match, train_one_process, train_two_processes

from jointaug.config import ConfigError, build_policy, load_config
from jointaug.methods import build_method
from jointaug.methods.dino import DINO, teacher_temperature
from jointaug.methods.losses import dino_cross_entropy
from jointaug.models import build_backbone
from jointaug.sampling.recipes import make_policy, multicrop_pairs
from jointaug.train.optim import build_optimizer

CACHE = Path(tempfile.gettempdir()) / "jointaug-test-cache"


# ------------------------------------------------------------------------------------------ loss
def _loop_dino(student, teacher, center, ts, tt):
    """Mean over pairs (t, s != t) of the batch mean of -sum_k P_t[k] log Q_s[k], written with exp/log."""
    total, pairs = 0.0, 0
    for ti, t in enumerate(teacher):
        for si, s in enumerate(student):
            if si == ti:
                continue
            term = 0.0
            for i in range(t.shape[0]):
                et = torch.exp((t[i] - center[0]) / tt)
                p = et / et.sum()
                es = torch.exp(s[i] / ts)
                log_q = s[i] / ts - torch.log(es.sum())
                term = term - (p * log_q).sum()
            total = total + term / t.shape[0]
            pairs += 1
    return total / pairs


@pytest.mark.parametrize("tt", [0.04, 0.07])
def test_dino_cross_entropy_matches_loop_values_and_gradients(tt):
    g = torch.Generator().manual_seed(0)
    student = [torch.randn(5, 7, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    teacher = [torch.randn(5, 7, generator=g, dtype=torch.float64) for _ in range(2)]
    center = torch.randn(1, 7, generator=g, dtype=torch.float64) * 0.1
    got = dino_cross_entropy(student, teacher, center, 0.1, tt)
    want = _loop_dino(student, teacher, center, 0.1, tt)
    assert got.dtype == torch.float64
    tol = 1e3 * torch.finfo(torch.float64).eps
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    g_got = torch.autograd.grad(got, student)
    g_want = torch.autograd.grad(want, student)
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    # 2 teacher views x 3 other student views = 6 pairs: the first view's gradient has 1 teacher, others 2 / 1
    assert all(gr.abs().sum() > 0 for gr in g_got)


# ------------------------------------------------------------------------------------------ one step
def _tiny(**kw) -> DINO:
    torch.manual_seed(0)
    params = dict(out_dim=16, hidden_dim=16, bottleneck_dim=8, warmup_teacher_temp_epochs=0)
    params.update(kw)
    return build_method("dino", build_backbone("convnet4", width=4), **params).double()


def _views(n=6, n_local=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 16, 16, generator=g, dtype=torch.float64)
    glob = [x, x + 0.3 * torch.randn(x.shape, generator=g, dtype=torch.float64)]
    return glob + [torch.randn(n, 3, 8, 8, generator=g, dtype=torch.float64) for _ in range(n_local)]


def test_one_step_exact_ema_and_centre_rules_teacher_sees_globals_only():
    m = _tiny(freeze_last_layer=0)
    assert m.multicrop and m.num_views == 2
    opt = build_optimizer(m, "sgd", 0.5, momentum=0.0)
    student_before = {k: v.clone() for k, v in m.named_parameters() if v.requires_grad}
    teacher_before = {k: v.clone() for k, v in m.named_parameters() if k.startswith("teacher_")}
    assert teacher_before and not any(v.requires_grad for v in m.teacher_backbone.parameters())
    center_before = m.center.clone()
    seen: dict[str, list] = {"teacher": [], "student": []}
    m.teacher_backbone.register_forward_pre_hook(lambda mod, a: seen["teacher"].append(tuple(a[0].shape)))
    m.backbone.register_forward_pre_hook(lambda mod, a: seen["student"].append(tuple(a[0].shape)))
    views = _views()
    m.train()
    m.on_train_step_start(1, 10, 5)
    out = m(views)
    # multi-crop: the student encodes the 2 globals together and the 4 locals together; the teacher the globals only
    assert seen["student"] == [(12, 3, 16, 16), (24, 3, 8, 8)]
    assert seen["teacher"] == [(12, 3, 16, 16)]
    assert set(out) >= {"loss", "out_std", "teacher_temp", "entropy", "marginal_entropy"}
    assert torch.isfinite(out["loss"]) and 0 < float(out["entropy"]) <= 1
    pending = m._pending_center.clone()
    with torch.no_grad():
        t_out = torch.cat(m.teacher_forward(views[:2]))
    torch.testing.assert_close(pending, t_out, rtol=0, atol=0)
    out["loss"].backward()
    m.on_before_optimizer_step(1, 10, 5)
    opt.step()
    params = dict(m.named_parameters())
    changed = [k for k, v in student_before.items() if not torch.equal(v, params[k])]
    assert len(changed) == len(student_before), set(student_before) - set(changed)
    assert torch.equal(m.center, center_before)  # the centre moves after the step, not in the forward
    m.on_train_step_end(1, 10)
    mom = m.momentum(1, 10)
    assert mom == 0.996
    for k, old in teacher_before.items():
        src = k.replace("teacher_", "", 1)
        want = old.clone().mul_(mom).add_(params[src].detach(), alpha=1.0 - mom)
        assert torch.equal(params[k], want), k
    count = torch.tensor(float(pending.shape[0]), dtype=torch.float64)  # the global batch count (all-reduced)
    want_c = center_before.clone().mul_(0.9).add_(pending.sum(dim=0, keepdim=True) / count, alpha=1 - 0.9)
    assert torch.equal(m.center, want_c)
    torch.testing.assert_close(m.center, 0.1 * pending.mean(dim=0, keepdim=True))  # from a zero centre
    assert m._pending_center is None


def test_last_layer_norm_is_fixed_and_rows_are_unit_vectors():
    m = _tiny()
    w = m.head.last_layer.weight
    torch.testing.assert_close(w.norm(dim=1), torch.ones(16, dtype=torch.float64))
    assert not m.head.last_layer.weight_g.requires_grad
    assert _tiny(norm_last_layer=False).head.last_layer.weight_g.requires_grad


def test_last_layer_frozen_during_the_first_epochs():
    m = _tiny(freeze_last_layer=1)
    opt = build_optimizer(m, "sgd", 0.1, momentum=0.9, weight_decay=0.1)
    m.train()
    spe = 2
    for step in range(1, 2 * spe + 1):
        v_before = m.head.last_layer.weight_v.clone()
        mlp_before = m.head.mlp[0].weight.clone()
        m.on_train_step_start(step, 2 * spe, spe)
        m(_views(n=4, n_local=2, seed=step))["loss"].backward()
        assert m.head.last_layer.weight_v.grad is not None  # the loss does reach it ...
        m.on_before_optimizer_step(step, 2 * spe, spe)
        frozen = step <= spe
        assert (m.head.last_layer.weight_v.grad is None) == frozen  # ... but epoch 1 drops it
        opt.step()
        opt.zero_grad(set_to_none=True)
        m.on_train_step_end(step, 2 * spe)
        assert torch.equal(m.head.last_layer.weight_v, v_before) == frozen, step  # not even weight decay
        assert not torch.equal(m.head.mlp[0].weight, mlp_before)


def test_teacher_temperature_schedule():
    want = np.concatenate([np.linspace(0.04, 0.07, 30), np.full(20, 0.07)])  # the reference code's schedule
    got = [teacher_temperature(e, 0.04, 0.07, 30) for e in range(50)]
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)
    assert teacher_temperature(0, 0.04, 0.07, 1) == 0.04 and teacher_temperature(1, 0.04, 0.07, 1) == 0.07
    assert teacher_temperature(0, 0.04, 0.07, 0) == 0.07
    m = _tiny(warmup_teacher_temp_epochs=4)
    spe = 10
    for step, epoch in ((1, 0), (10, 0), (11, 1), (25, 2), (31, 3), (41, 4), (1000, 99)):
        m.on_train_step_start(step, 1000, spe)
        assert m.current_teacher_temp == pytest.approx(0.04 + 0.01 * min(epoch, 3), abs=1e-15), (step, epoch)
    out = m(_views(n_local=0))  # two global views, no locals: also valid
    assert float(out["teacher_temp"]) == pytest.approx(0.07)


def test_dino_with_two_global_views_only_and_bad_views():
    m = _tiny()
    out = m(_views(n_local=0))
    assert torch.isfinite(out["loss"])
    with pytest.raises(ValueError, match="2 or more"):
        m(_views(n_local=0)[:1])


def test_hyperparameter_errors_name_the_parameter():
    bb = build_backbone("convnet4", width=4)
    for kw, text in ((dict(teacher_temp=0.0), "teacher_temp=0.0"), (dict(student_temp=-1), "student_temp=-1"),
                     (dict(center_momentum=1.0), "center_momentum=1.0"), (dict(momentum=1.5), "momentum=1.5"),
                     (dict(out_dim=0), "out_dim=0"), (dict(warmup_teacher_temp=0), "warmup_teacher_temp=0")):
        with pytest.raises(ValueError, match=text):
            build_method("dino", bb, **{"out_dim": 8, **kw})


# ------------------------------------------------------------------------------------------ joint pairs
def test_multicrop_pairs_modes():
    assert multicrop_pairs("global", 6) == [(0, 1)]
    assert multicrop_pairs("local", 6) == [(2, 3), (4, 5), (6, 7)]
    assert multicrop_pairs("both", 4) == [(0, 1), (2, 3), (4, 5)]
    assert multicrop_pairs("cross", 4) == [(0, 2), (1, 3)]
    with pytest.raises(ValueError, match="n_local=3"):
        multicrop_pairs("local", 3)
    with pytest.raises(ValueError, match="one of"):
        multicrop_pairs("all", 4)
    with pytest.raises(ValueError, match="view 0 is in two pairs"):
        make_policy("dino", crop="joint", joint_views=[(0, 2), (0, 3)], size=32)


@pytest.mark.parametrize("mode,coupled", [("global", [0, 1]), ("local", [2, 3, 4, 5]),
                                          ("both", [0, 1, 2, 3, 4, 5])])
def test_joint_crop_on_the_chosen_pairs(mode, coupled):
    pol = make_policy("dino", crop="joint", beta=0.0, size=32, n_local=4, local_size=16, joint_views=mode)
    assert [v.size for v in pol.views] == [(32, 32)] * 2 + [(16, 16)] * 4
    params = pol.sample(torch.tensor([[48, 48]] * 64), torch.Generator().manual_seed(0))
    flags = params.extra["coupled_area"]
    assert flags.shape == (64, 6)
    assert flags.all(dim=0).tolist() == [k in coupled for k in range(6)]
    area = params.extra["target_area"]
    assert bool((area[:, 2:] <= 0.4 + 1e-9).all()) and bool((area[:, :2] >= 0.4 - 1e-9).all())


def test_other_recipes_take_local_views():
    pol = make_policy("simclr", n_local=4, size=32)
    assert [v.size for v in pol.views][2:] == [(14, 14)] * 4  # round(32 * 96 / 224)
    assert all(v.scale == (0.05, 0.4) and v.blur_p == 0.5 and v.solarize_p == 0.0 for v in pol.views[2:])
    byol = make_policy("byol", n_local=2, size=64, local_size=24, local_scale=(0.05, 0.3))
    assert [v.size for v in byol.views][2:] == [(24, 24)] * 2 and byol.views[2].scale == (0.05, 0.3)
    assert byol.views[2].blur_p == pytest.approx(0.55)  # the mean of BYOL's global 1.0 / 0.1
    with pytest.raises(ValueError, match="local views need crop=random"):
        make_policy("gcc", crop="gcc", n_local=2)
    with pytest.raises(ValueError, match="local_size=16"):
        make_policy("simclr", local_size=16)


def _err(recipe: str, *ov: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(recipe, list(ov))
    return str(info.value)


def test_config_errors_name_the_key_and_value():
    msg = _err("dino/synthetic", "method.params.teacher_temp=0")
    assert "method.params.teacher_temp" in msg and "(0, inf)" in msg
    msg = _err("dino/synthetic", "method.params.center_momentum=1.0")
    assert "method.params.center_momentum" in msg and "[0, 1)" in msg
    msg = _err("dino/synthetic", "method.params.out_dim=0")
    assert "method.params.out_dim" in msg
    msg = _err("dino/synthetic", "method.params.momentum=0.999", "method.params.momentum_final=0.99")
    assert "method.params.momentum_final" in msg
    msg = _err("dino/synthetic", "aug.crop=joint", "aug.joint_pairs=local", "aug.n_local=3")
    assert "aug.n_local=3" in msg and "even number" in msg
    msg = _err("dino/synthetic", "aug.joint_pairs=pairs")
    assert "aug.joint_pairs='pairs'" in msg and "global, local, both, cross" in msg
    msg = _err("dino/synthetic", "aug.joint_pairs=local")  # crop, blur and colour all independent
    assert "aug.joint_pairs='local'" in msg and "no joint law" in msg
    msg = _err("dino/synthetic", "aug.crop=joint", "aug.joint_pairs=cross")
    assert "aug.joint_pairs='cross'" in msg and "aug.local_scale" in msg
    msg = _err("simclr/synthetic", "aug.n_local=2", "aug.crop=fixed")
    assert "aug.n_local=2" in msg and "fixed-size crops" in msg
    msg = _err("simclr/synthetic", "aug.local_size=16")
    assert "aug.local_size=16" in msg and "set aug.n_local" in msg
    msg = _err("simclr/synthetic", "method.name=mocov2", "method.params={}", "aug.n_local=2")
    assert "aug.n_local=2" in msg and "multi-crop" in msg
    msg = _err("simclr/synthetic", "aug.n_local=-1")
    assert "aug.n_local=-1" in msg
    cfg = load_config("dino/synthetic", ["aug.crop=joint", "aug.joint_pairs=both"])
    assert build_policy(cfg).name == "small J-Crop(0) on 0-1,2-3,4-5 multi-crop 2x32+4x16px"


# ------------------------------------------------------------------------------------------ trainer, DDP, resume
def _overrides(out: Path, steps: int | None = 3, dtype: str = "float64") -> list[str]:
    ov = ["data.limit=256", "data.test_limit=200", f"data.cache_dir={CACHE}", "model.backbone_kwargs.width=8",
          "method.params.out_dim=32", "method.params.hidden_dim=32", "method.params.bottleneck_dim=16",
          "method.params.warmup_teacher_temp_epochs=2", "optim.batch_size=32", "optim.epochs=2",
          "optim.warmup_epochs=0", "train.knn_every=0", "train.log_every=1", "train.tensorboard=false",
          "train.progress=false", "train.threads=1", "eval.final=false", f"train.out_dir={out}",
          f"train.dtype={dtype}", "aug.crop=joint", "aug.joint_pairs=local"]
    return ov + ([f"train.max_steps={steps}"] if steps else [])


def _load(path: Path) -> dict:
    from jointaug.train.checkpoint import load_checkpoint

    return load_checkpoint(path)


def test_simclr_trains_with_local_views(tmp_path: Path) -> None:
    from jointaug.train.trainer import train

    ov = [o for o in _overrides(tmp_path, steps=2, dtype="float32") if not o.startswith(("method.params",
                                                                                         "aug.joint_pairs"))]
    train(load_config("simclr/synthetic", [*ov, "aug.n_local=4", "optim.epochs=1"]))
    from jointaug.train.logger import read_metrics

    steps = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["type"] == "step"]
    assert len(steps) == 2 and all(math.isfinite(r["loss"]) for r in steps)


@pytest.mark.slow
def test_two_process_ddp_equals_one_process(tmp_path: Path) -> None:
    """Centre (all-reduced batch mean), teacher EMA and synchronised BN: 2 gloo ranks == 1 process."""

    extra = ["method.params.freeze_last_layer=1"]
    train_two_processes("dino/synthetic", [*_overrides(tmp_path / "ddp", steps=10), *extra])
    train_one_process("dino/synthetic", [*_overrides(tmp_path / "one", steps=10), *extra])
    a, b = _load(tmp_path / "ddp" / "checkpoints" / "last.pt"), _load(tmp_path / "one" / "checkpoints" / "last.pt")
    assert a["world_size"] == 2 and b["world_size"] == 1 and a["global_step"] == b["global_step"] == 10
    # 8 steps per epoch: the 10 steps cross from the frozen-last-layer epoch into the next, warm-up temperatures
    assert float(a["model"]["center"].abs().max()) > 0
    assert_states_match(a["model"], b["model"])  # float64 runs, tolerance: see tests/ddp_helpers.py


@pytest.mark.slow
def test_resume_is_bit_identical_including_the_centre(tmp_path: Path) -> None:
    from jointaug.train.trainer import train

    ov = _overrides(tmp_path, steps=None, dtype="float32")
    ov = [o for o in ov if not o.startswith("train.out_dir")]
    train(load_config("dino/synthetic", [*ov, f"train.out_dir={tmp_path / 'full'}"]))
    train(load_config("dino/synthetic", [*ov, f"train.out_dir={tmp_path / 'cut'}", "train.max_steps=5"]))
    cut = _load(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert cut["global_step"] == 5 and float(cut["model"]["center"].abs().max()) > 0
    train(load_config("dino/synthetic", [*ov, f"train.out_dir={tmp_path / 'cut'}"]))
    a, b = _load(tmp_path / "full" / "checkpoints" / "last.pt"), _load(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert a["global_step"] == b["global_step"] == 16
    assert not torch.equal(a["model"]["center"], cut["model"]["center"])
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
