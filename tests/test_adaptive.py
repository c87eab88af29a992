"""Adaptive difficulty wired into training (issue 13): aug.schedule / aug.controller config checks, the
values and policies in force per step, the coin probability, the online SDF read from the backbone during
the training forward (equal to the offline SDF of the same batch), logging and exact resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from train_helpers import tiny as _tiny

from jointaug.analysis.sdf import pair_cosines
from jointaug.augment import BatchViews
from jointaug.checkpoint import save_checkpoint
from jointaug.config import ConfigError, aug_schedules, build_policy, load_config
from jointaug.methods import build_method
from jointaug.models import build_backbone
from jointaug.sampling import make_policy
from jointaug.train.adaptive import AdaptiveViews, PairProbe
from jointaug.train.data import InMemoryViews, LoaderViews, derive_seed, epoch_permutation
from jointaug.train.logger import read_metrics
from jointaug.train.trainer import train

TIMING = {"img_per_s", "data_wait", "train_time", "setup_time", "time", "wall_time"}
LINEAR_BETA = ["aug.schedule.beta.kind=linear", "aug.schedule.beta.start=2", "aug.schedule.beta.end=-2"]


def tiny(out_dir: Path, *extra: str) -> list[str]:
    """The shared tiny CPU run (tests/train_helpers.py) on one thread, without the final evaluation."""
    return _tiny(out_dir, "train.threads=1", "eval.final=false", *extra)


# ------------------------------------------------------------------------------------------ config
def test_schedule_keys_nested_or_dotted_and_policy_values() -> None:
    cfg = load_config(None, ["aug.crop=joint", *LINEAR_BETA, "aug.schedule.scale.0=0.3"])
    sched = aug_schedules(cfg)
    assert sorted(sched) == ["beta", "scale.0"] and sched["scale.0"](0.7) == 0.3
    policy = build_policy(cfg, {"beta": -1.5, "scale.0": 0.3})
    assert policy.views[0].scale == (0.3, 1.0)  # the recipe's upper bound kept
    assert {c.law.beta for c in policy.couplings if c.param == "scale"} == {-1.5}


@pytest.mark.parametrize("overrides, key, words", [
    (["aug.schedule.speed=1"], "aug.schedule.speed", "unknown schedulable key"),
    (["aug.crop=joint", "aug.schedule.beta.kind=exp"], "aug.schedule.beta.kind", "expected one of"),
    (["aug.schedule.beta=1"], "aug.schedule.beta", "has no effect"),
    (["aug.blur=joint", "aug.blur_p=[0.5,0.5]", "aug.blur_beta=1", "aug.schedule.beta=1"], "aug.schedule.beta",
     "has no effect"),
    (["aug.crop=joint", "aug.controller.target=1.5"], "aug.controller.target", "[-1, 1]"),
    (["aug.schedule.crop_size=0.5"], "aug.schedule.crop_size", "fixed-size crops"),
    (["aug.schedule.rotate_p.kind=linear", "aug.schedule.rotate_p.start=0", "aug.schedule.rotate_p.end=1.5"],
     "aug.schedule.rotate_p", "reaches 1.5"),
    (["aug.scale=[0.2,0.5]", "aug.schedule.scale.0.kind=linear", "aug.schedule.scale.0.start=0.2",
      "aug.schedule.scale.0.end=0.8"], "aug.schedule.scale.0", "min must stay <= max"),
    (["aug.crop=joint", *LINEAR_BETA, "aug.where=workers"], "aug.where", "aug.where=main"),
    (["aug.crop=joint", *LINEAR_BETA, "aug.where=batches"], "aug.where", "aug.where=main"),
    (["aug.crop=joint", *LINEAR_BETA, "aug.ccrop=true", "optim.epochs=30"], "aug.ccrop", "ContrastiveCrop"),
    (["aug.crop=joint", "aug.controller.target=0.7", "aug.schedule.beta=1"], "aug.controller", "use one of them"),
    (["aug.crop=joint", "aug.controller.target=0.7", "aug.controller.gain=0"], "aug.controller.gain", "> 0"),
    (["aug.crop=joint", "aug.controller.target=0.7", "aug.controller.every=2.5"], "aug.controller.every",
     "integer"),
    (["aug.crop=joint", "aug.controller.kp=1", "aug.controller.target=0.7"], "aug.controller.kp", "unknown key"),
    (["aug.crop=joint", "aug.controller.gain=1"], "aug.controller", "needs a target"),
    (["aug.crop=joint", "aug.controller.target.kind=linear", "aug.controller.target.start=0.8"],
     "aug.controller.target", "needs end"),
    (["aug.controller.target=0.7"], "aug.controller", "has no effect"),
    (["aug.crop=joint", "aug.controller.target=0.7", "aug.beta=5"], "aug.beta", "beta_min"),
    (["aug.crop=joint", "aug.controller.target=0.7", "method.name=mocov2", "aug.recipe=mocov2",
      "method.params.queue_size=512"], "aug.controller", "symmetric=true"),
    (["aug.crop=joint", "aug.controller.target=0.7", "method.name=looc", "aug.recipe=mocov2",
      "method.params.queue_size=512"], "aug.controller", "query view"),
    (["aug.coin_p=0.3"], "aug.coin_p", "coin"),
    (["aug.crop=joint", "aug.blur=joint", "aug.coin_p=1.5"], "aug.coin_p", "<= 1"),
])
def test_bad_adaptive_config_names_the_key(overrides: list[str], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    msg = str(err.value)
    assert msg.startswith(key) and words in msg, msg


def test_controller_with_symmetric_moco_is_accepted() -> None:
    cfg = load_config(None, ["aug.crop=joint", "aug.controller.target=0.7", "method.name=mocov2",
                             "aug.recipe=mocov2", "method.params.queue_size=512", "method.params.symmetric=true"])
    assert cfg.aug.controller.target == 0.7


# ------------------------------------------------------------------------------------------ values and policies
def test_values_and_policies_at_chosen_steps() -> None:
    cfg = load_config(None, ["aug.crop=joint", *LINEAR_BETA, "aug.schedule.scale.0.kind=step",
                             "aug.schedule.scale.0.values=[0.5,0.2]", "aug.schedule.scale.0.milestones=[0.5]"])
    ad = AdaptiveViews(cfg, total_steps=9, steps_per_epoch=3)
    assert ad.active and ad.keys == ["beta", "scale.0"]
    assert [ad.values_at(i)["beta"] for i in (0, 2, 4, 8)] == [2.0, 1.0, 0.0, -2.0]  # first step: start, last: end
    assert [ad.values_at(i)["scale.0"] for i in (0, 3, 4, 8)] == [0.5, 0.5, 0.2, 0.2]
    p = ad.policy_at(1, 1)  # epoch 1, step 1 = global step 4
    assert p.views[0].scale == (0.2, 1.0) and {c.law.beta for c in p.couplings if c.param == "scale"} == {0.0}
    assert ad.policy_at(1, 1) is p  # cached by value tuple
    assert ad.log_values(ad.values_at(4)) == {"aug_beta": 0.0, "aug_scale_0": 0.2}
    none = AdaptiveViews(load_config(None, []), total_steps=9, steps_per_epoch=3)
    assert not none.active and none.values_at(5) == {} and none.policy_at(0, 0) is none.base_policy


def test_coin_probability() -> None:
    hw = torch.tensor([[32, 32]]).expand(4000, 2)
    kw = dict(crop="joint", blur="joint", blur_p=(0.5, 0.5))
    fair = make_policy("small", **kw).sample(hw, torch.Generator().manual_seed(0)).extra["alternative"]
    assert abs(float((fair == 0).float().mean()) - 0.5) < 0.03
    for p in (0.0, 0.8, 1.0):
        alt = make_policy("small", coin_p=p, **kw).sample(hw, torch.Generator().manual_seed(0)).extra["alternative"]
        assert abs(float((alt == 0).float().mean()) - p) < 0.03
    with pytest.raises(ValueError, match="coin_p"):
        make_policy("small", crop="joint", coin_p=0.5)


def test_in_memory_views_draw_with_the_policy_in_force() -> None:
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    base = make_policy("small", crop="joint")
    bv = BatchViews(base, mode="fast", mean=(0.5,) * 3, std=(0.25,) * 3)
    betas = {0: 3.0, 1: -3.0}
    policies = {s: make_policy("small", crop="joint", beta=b) for s, b in betas.items()}
    data = InMemoryViews(images, bv, global_batch=8, rank=0, world=1, seed=5, device=torch.device("cpu"),
                         policy_at=lambda epoch, step: policies[step])
    it = data.epoch(0)
    for step in range(2):
        views = next(it)
        gen = torch.Generator().manual_seed(derive_seed(5, "aug", 0, step))
        params = policies[step].sample(torch.tensor([[32, 32]]).expand(8, 2), gen)
        assert torch.equal(params.extra["target_area"], data.last_params.extra["target_area"])
        perm = torch.randperm(16, generator=torch.Generator().manual_seed(derive_seed(5, "shuffle", 0)))
        ref = bv.replay(images[perm[step * 8:(step + 1) * 8]], params)
        assert all(torch.equal(a, b) for a, b in zip(views, ref))
    # the fixed policy would have drawn other areas for step 1 (the law in force matters)
    gen = torch.Generator().manual_seed(derive_seed(5, "aug", 0, 1))
    fixed = base.sample(torch.tensor([[32, 32]]).expand(8, 2), gen)
    assert not torch.equal(fixed.extra["target_area"], data.last_params.extra["target_area"])


class _Sizes(torch.utils.data.Dataset):
    """Images of different sizes (the DataLoader path's input)."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(2)
        self.images = [torch.randint(0, 256, (3, 30 + i % 5, 40 - i % 7), generator=g, dtype=torch.uint8)
                       for i in range(12)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], 0


def test_loader_views_draw_with_the_policy_in_force() -> None:
    ds = _Sizes()
    base = make_policy("small", crop="joint")
    bv = BatchViews(base, mode="fast", mean=(0.5,) * 3, std=(0.25,) * 3)
    policies = {s: make_policy("small", crop="joint", beta=b, scale=(0.3 + 0.2 * s, 1.0))
                for s, b in ((0, 3.0), (1, -3.0))}
    data = LoaderViews(ds, bv, global_batch=6, rank=0, world=1, seed=4, device=torch.device("cpu"), num_workers=0,
                       policy_at=lambda epoch, step: policies[step])
    perm = epoch_permutation(12, 4, 0)
    for step, views in enumerate(data.epoch(0)):
        gen = torch.Generator().manual_seed(derive_seed(4, "aug", 0, step, 0))
        ref, params = bv.from_list([ds.images[i] for i in perm[step * 6:(step + 1) * 6].tolist()], gen,
                                   policy=policies[step])
        assert all(torch.equal(a, b) for a, b in zip(views, ref))
        assert torch.equal(data.last_params.box, params.box)
        assert float(params.extra["target_area"].min()) >= 0.3 + 0.2 * step - 1e-6  # the scheduled area bound


# ------------------------------------------------------------------------------------------ online SDF
def _views(n: int, local: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(n, 3, 32, 32, generator=g) for _ in range(2)] + \
        [torch.randn(n, 3, 16, 16, generator=g) for _ in range(local)]


@pytest.mark.parametrize("name, params, local", [
    ("simclr", {}, 2),  # one backbone call per run of equal-sized views (globals, then locals)
    ("simsiam", {"pred_hidden_dim": 16}, 0),  # torch.cat(views) in one call
    ("byol", {"pred_hidden_dim": 16}, 0),
    ("mocov3", {"pred_hidden_dim": 16}, 0),  # one call per view
    ("mocov2", {"symmetric": True, "bn_splits": 2, "queue_size": 64}, 0),  # chunks of view 0, then of view 1
    ("dino", {"out_dim": 32, "hidden_dim": 32, "bottleneck_dim": 16}, 2),  # student only; teacher not captured
])
def test_online_sdf_equals_offline_sdf_of_the_same_batch(name: str, params: dict, local: int) -> None:
    torch.manual_seed(0)
    backbone = build_backbone("convnet4", width=8)
    hp = {"proj_hidden_dim": 32, "proj_out_dim": 16} if name != "dino" else {}
    method = build_method(name, backbone, **hp, **params).eval()
    probe = PairProbe(method.backbone)
    views = _views(8, local)
    with torch.no_grad():
        with probe.capture():
            method(views)
        online = probe.pair_cosines(8)
        f0, f1 = method.backbone(views[0]), method.backbone(views[1])
        offline = pair_cosines(f0, f1)  # analysis.sdf's per-image cosines, one backbone call per view
        wrong = pair_cosines(f0, f1.roll(1, dims=0))  # a mispairing the check must tell apart
    assert online is not None and online.shape == (8,)
    assert float(online.mean()) == pytest.approx(float(offline.mean()), abs=1e-6)
    assert torch.allclose(online, offline, rtol=0, atol=1e-6)
    assert float((online - wrong).abs().max()) > 1e-4
    with torch.no_grad():  # calls outside the capture block are not recorded
        method.backbone(views[0])
    assert probe.outputs == []
    probe.close()


@pytest.mark.parametrize("name, params", [("looc", {"queue_size": 64}), ("mocov2", {"queue_size": 64})])
def test_online_sdf_is_unavailable_when_the_backbone_sees_one_view(name: str, params: dict) -> None:
    method = build_method(name, build_backbone("convnet4", width=8), proj_hidden_dim=32, proj_out_dim=16,
                          **params).eval()
    probe = PairProbe(method.backbone)
    n_views = 4 if name == "looc" else 2
    views = [torch.randn(8, 3, 32, 32) for _ in range(n_views)]
    with torch.no_grad(), probe.capture():
        method(views)
    assert probe.pair_cosines(8) is None


# ------------------------------------------------------------------------------------------ training
def _strip(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k not in TIMING}


def _records(out: Path) -> list[dict]:
    return [_strip(r) for r in read_metrics(out / "metrics.jsonl") if r["type"] in ("step", "epoch")]


@pytest.mark.parametrize("kind", ["schedule", "controller"])
def test_stop_and_resume_is_exact_and_values_are_logged(tmp_path: Path, kind: str) -> None:
    extra = ([*LINEAR_BETA, "aug.crop=joint"] if kind == "schedule" else
             ["aug.crop=joint", "aug.blur=joint", "aug.blur_p=[0.5,0.5]", "aug.coin_p=0.7",
              "aug.controller.target=0.5", "aug.controller.every=2", "aug.controller.smoothing=0.5"])
    ref, run = tmp_path / "ref", tmp_path / "run"
    train(load_config(None, tiny(ref, *extra)))
    train(load_config(None, tiny(run, *extra, "train.max_steps=3")))  # stops mid-epoch, checkpoint at step 3
    mid = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert mid["global_step"] == 3 and "adaptive" in mid
    train(load_config(None, tiny(run, *extra)))
    a = torch.load(ref / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["adaptive"] == b["adaptive"]
    assert _records(run) == _records(ref)
    epochs = [r for r in read_metrics(ref / "metrics.jsonl") if r["type"] == "epoch"]
    step_recs = [r for r in read_metrics(ref / "metrics.jsonl") if r["type"] == "step"]
    assert len(step_recs) == 8 and all(0 < r["sdf_online"] <= 1 for r in step_recs)
    # the epoch's online SDF is the mean of its steps' (equal batches)
    assert epochs[0]["sdf_online"] == pytest.approx(sum(r["sdf_online"] for r in step_recs[:4]) / 4, abs=1e-12)
    if kind == "schedule":  # 8 steps, beta from 2 (first step) to -2 (last step)
        assert [r["aug_beta"] for r in step_recs] == pytest.approx([2 - 4 * i / 7 for i in range(8)])
        assert [r["aug_beta"] for r in epochs] == pytest.approx([2 - 4 * 3 / 7, -2.0])
        assert a["adaptive"]["controller"] is None
    else:  # SDF far above the target: beta falls by max_change every 2 steps, within its bounds
        betas = [r["aug_beta"] for r in step_recs]
        assert betas == pytest.approx([0, 0, -0.25, -0.25, -0.5, -0.5, -0.75, -0.75])
        assert a["adaptive"]["controller"]["beta"] == pytest.approx(-1.0)
        assert all(k in epochs[-1] for k in ("sdf_online_jcrop", "sdf_online_jblur", "controller_sdf_ema"))
        assert not math.isclose(epochs[-1]["sdf_online_jcrop"], epochs[-1]["sdf_online_jblur"])
        assert epochs[-1]["controller_target"] == 0.5


def test_resume_from_a_checkpoint_written_before_the_adaptive_keys(tmp_path: Path) -> None:
    """A checkpoint whose stored config lacks aug.schedule / aug.controller / aug.coin_p (an older run) resumes
    when those keys hold their defaults; a run that sets one is refused, naming it."""
    out = tmp_path / "run"
    train(load_config(None, tiny(out, "train.max_steps=2")))
    path = out / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    for key in ("schedule", "controller", "coin_p"):
        del state["config"]["aug"][key]
    state.pop("adaptive")
    save_checkpoint(path, state, keep=1)
    assert train(load_config(None, tiny(out, "train.max_steps=3")))["steps"] == 3
    with pytest.raises(ValueError, match="aug.schedule"):
        train(load_config(None, tiny(out, "aug.crop=joint", *LINEAR_BETA)))


def test_report_plots_beta_and_online_sdf_only_for_adaptive_runs(tmp_path: Path) -> None:
    import json

    from jointaug.experiments.report import Entry, _difficulty

    def run(name: str, beta: bool) -> Entry:
        d = tmp_path / name
        d.mkdir()
        recs = [{"type": "epoch", "epoch": e, "step": 4 * e, "loss": 1.0, "sdf_online": 0.8 - 0.01 * e,
                 **({"aug_beta": 2.0 - e} if beta else {})} for e in (1, 2, 3)]
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        return Entry(id=name, label=name, dir=d, state="done")

    fixed, sched = run("fixed", False), run("schedule", True)
    assert _difficulty([fixed], tmp_path / "none.png") is None
    out = _difficulty([fixed, sched], tmp_path / "difficulty.png")
    assert out is not None and out.stat().st_size > 1000
    # a fixed joint law is drawn at its aug.beta (flat line); independent crops have no beta
    from jointaug.experiments.report import _fixed_beta

    (fixed.dir / "config.yaml").write_text("aug: {crop: joint, beta: 1.5}\n")
    assert _fixed_beta(fixed.dir) == 1.5
    (fixed.dir / "config.yaml").write_text("aug: {crop: random, beta: 1.5}\n")
    assert _fixed_beta(fixed.dir) is None
