"""LooC: the leave-one-out views share exactly the parameters they should (checked on ViewParams), the
space losses equal a direct formula, one step updates the momentum copy and the queues, config errors."""

from __future__ import annotations

import pytest
import torch

from jointaug.config import ConfigError, build_policy, load_config
from jointaug.methods import build_method
from jointaug.methods.looc import looc_space_loss
from jointaug.models import build_backbone
from jointaug.sampling import make_policy
from jointaug.sampling.couplings import GROUPS

COLOR = GROUPS["color"]
ROT = GROUPS["rotation"]


def _params(share: str = "one", n: int = 512):
    pol = make_policy("small", size=32, rotate_p=0.75, leave_one_out=("color", "rotation"), loo_share=share)
    assert pol.num_views == 4
    return pol.sample(torch.tensor([[32, 32]]).expand(n, 2), torch.Generator().manual_seed(0))


def _same(p, field: str, a: int, b: int) -> torch.Tensor:
    """Per image: does view ``b`` have view ``a``'s value of ``field``?"""
    x = getattr(p, field)
    eq = x[:, a] == x[:, b]
    return eq.reshape(eq.shape[0], -1).all(dim=1)


def test_leave_one_out_views_share_exactly_their_augmentation():
    p = _params("one")
    # k_color (view 2) shares every colour parameter of q, k_rotation (view 3) its rotation
    for f in COLOR:
        assert _same(p, f, 0, 2).all(), f
    assert _same(p, "rotation", 0, 3).all()
    # ... and no more: crops, flips and the other augmentation are redrawn (they differ for many images)
    assert (~_same(p, "box", 0, 2)).float().mean() > 0.9 and (~_same(p, "box", 0, 3)).float().mean() > 0.9
    assert (~_same(p, "rotation", 0, 2)).float().mean() > 0.5  # P(equal) = 1/4 for independent quarter turns
    assert (~_same(p, "brightness", 0, 3)).float().mean() > 0.7
    # k_0 (view 1) shares nothing with q
    assert (~_same(p, "rotation", 0, 1)).float().mean() > 0.5 and (~_same(p, "brightness", 0, 1)).float().mean() > 0.7


def test_all_but_one_is_the_other_reading():
    p = _params("all_but_one")
    assert _same(p, "rotation", 0, 2).all()  # k_color shares everything but colour: the rotation
    for f in COLOR:
        assert _same(p, f, 0, 3).all(), f  # k_rotation shares the colour
    assert (~_same(p, "brightness", 0, 2)).float().mean() > 0.7 and (~_same(p, "rotation", 0, 3)).float().mean() > 0.5


def test_policy_errors():
    with pytest.raises(ValueError, match="rotate_p=0"):
        make_policy("small", size=32, leave_one_out=("rotation",))
    with pytest.raises(ValueError, match="distinct names"):
        make_policy("small", size=32, leave_one_out=("texture",))
    with pytest.raises(ValueError, match="loo_share"):
        make_policy("small", size=32, leave_one_out=("color",), loo_share="some")


def _loop_space(q, keys, positive, queue, t):
    qn = q / q.norm(dim=1, keepdim=True)
    kn = [k / k.norm(dim=1, keepdim=True) for k in keys]
    total = q.new_zeros(())
    for i in range(q.shape[0]):
        neg_q = [torch.dot(qn[i], queue[j]) / t for j in range(queue.shape[0])]
        if positive is None:
            per = []
            for k in kn:
                pos = torch.dot(qn[i], k[i]) / t
                per.append(-(pos - torch.logsumexp(torch.stack([pos, *neg_q]), 0)))
            total = total + sum(per) / len(per)
        else:
            pos = torch.dot(qn[i], kn[positive][i]) / t
            others = [torch.dot(qn[i], kn[m][i]) / t for m in range(len(kn)) if m != positive]
            total = total - (pos - torch.logsumexp(torch.stack([pos, *others, *neg_q]), 0))
    return total / q.shape[0]


@pytest.mark.parametrize("positive", [None, 1, 2])
def test_space_loss_matches_direct_formula(positive):
    g = torch.Generator().manual_seed(3)
    q = torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    keys = [torch.randn(4, 5, generator=g, dtype=torch.float64) for _ in range(3)]
    queue = torch.nn.functional.normalize(torch.randn(6, 5, generator=g, dtype=torch.float64), dim=1)
    out = looc_space_loss(q, keys, positive, queue, 0.2)
    ref = _loop_space(q, keys, positive, queue, 0.2)
    torch.testing.assert_close(out.loss, ref, rtol=1e-12, atol=1e-12)  # float64 throughout
    torch.testing.assert_close(torch.autograd.grad(out.loss, q)[0], torch.autograd.grad(ref, q)[0],
                               rtol=1e-10, atol=1e-12)


def _tiny(**kw):
    torch.manual_seed(0)
    return build_method("looc", build_backbone("convnet4", width=4), proj_hidden_dim=16, proj_out_dim=8,
                        queue_size=16, **kw)


def test_one_step_ema_queues_and_features():
    m = _tiny()
    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    views = [x + 0.1 * k for k in range(4)]
    before = {k: v.clone() for k, v in m.named_parameters() if not v.requires_grad}
    out = m(views)
    assert {"loss", "loss_z0", "loss_z_color", "loss_z_rotation", "out_std"} <= set(out)
    torch.testing.assert_close(out["loss"].detach(), out["loss_z0"] + out["loss_z_color"] + out["loss_z_rotation"])
    out["loss"].backward()
    torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5).step()
    with torch.no_grad():  # this step's keys, from the momentum copy before its update
        f = m.momentum_backbone(torch.cat(views[1:]))
        k0 = torch.nn.functional.normalize(m.momentum_heads[0](f)[:8], dim=1)
        k_rot = torch.nn.functional.normalize(m.momentum_heads[2](f)[16:24], dim=1)
    m.on_train_step_end(1, 10)
    params = dict(m.named_parameters())
    for k, old in before.items():
        want = old.clone().mul_(0.999).add_(params[k.replace("momentum_", "", 1)].detach(), alpha=0.001)
        assert torch.equal(params[k], want), k
    torch.testing.assert_close(m.queues[0].keys[:8], k0)
    torch.testing.assert_close(m.queues[2].keys[:8], k_rot)
    assert all(int(q.ptr) == 8 for q in m.queues)
    m.eval()
    assert m.features(x, "backbone").shape == (8, 32)
    assert m.features(x, "heads").shape == (8, 3 * 16)
    z = m.features(x, "z_rotation")
    assert z.shape == (8, 8) and torch.allclose(z.norm(dim=1), torch.ones(8))
    with pytest.raises(ValueError, match="unknown feature kind"):
        m.features(x, "z_texture")
    with pytest.raises(ValueError, match="expects 4 view batches"):
        m(views[:3])


def _err(*ov: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config("looc/synthetic", list(ov))
    return str(info.value)


def test_recipe_and_config_errors():
    cfg = load_config("looc/synthetic")
    pol = build_policy(cfg)
    assert pol.num_views == 4 and "LooC" in pol.name and pol.views[0].rotate_p == 0.75
    assert "method.params.augmentations" in _err("method.params.augmentations=[texture]")
    assert "method.params.queue_size" in _err("method.params.queue_size=1000")
    assert "method.params.share" in _err("method.params.share=some")


def test_eval_cli_selects_looc_features(tmp_path, capsys):
    import json

    from jointaug.cli import main as cli_main
    from jointaug.train.trainer import train

    out = tmp_path / "looc"
    cache = tmp_path / "cache"
    train(load_config("looc/synthetic", [
        "data.limit=256", "data.test_limit=100", f"data.cache_dir={cache}", "model.backbone_kwargs.width=4",
        "method.params.proj_hidden_dim=16", "method.params.proj_out_dim=8", "method.params.queue_size=128",
        "optim.batch_size=32", "optim.epochs=1", "train.max_steps=2", "train.knn_every=0", "eval.final=false",
        "train.tensorboard=false", "train.progress=false", f"train.out_dir={out}"]))
    ckpt = out / "checkpoints" / "last.pt"
    dims = {}
    for kind in ("backbone", "heads", "z_rotation"):
        rc = cli_main(["eval", str(ckpt), "--features", kind, "--out", str(tmp_path / f"{kind}.json"),
                       "--knn-k", "5"])
        assert rc == 0
        res = json.loads((tmp_path / f"{kind}.json").read_text())
        assert res["features"] == kind and 0 <= res["knn"]["top1"] <= 100
        dims[kind] = res["feature_dim"]
    assert dims == {"backbone": 32, "heads": 3 * 16, "z_rotation": 8}  # convnet4 width 4: 32 features
    capsys.readouterr()
    assert cli_main(["eval", str(ckpt), "--features", "z_texture"]) == 2
    assert "no feature kind 'z_texture'" in capsys.readouterr().err
