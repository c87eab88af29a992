"""Export of trained backbones to torchvision / timm / detectron2 layouts, and ``jointaug.load_backbone``.

The expected layouts are written here from each ecosystem's published model definition (torchvision's
models/resnet.py, timm's models/resnet.py which keeps torchvision's names, detectron2's ResNet as
MoCo's convert-pretrain-to-detectron2.py names it), independently of jointaug.export's own code.
"""

from __future__ import annotations

import importlib.util
import pickle
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import jointaug
from jointaug import export as E
from jointaug.checkpoint import save_checkpoint
from jointaug.cli import main as cli_main
from jointaug.models import resnet18, resnet50

# ---------------------------------------------------------------- torchvision resnet18, written out
# (name, shape) of every conv weight and (name, channels) of every BatchNorm in torchvision.models.resnet18;
# fc.weight [1000, 512] / fc.bias [1000] are the classifier, which a backbone has not.
_TV18_CONVS = {
    "conv1": (64, 3, 7, 7),
    "layer1.0.conv1": (64, 64, 3, 3), "layer1.0.conv2": (64, 64, 3, 3),
    "layer1.1.conv1": (64, 64, 3, 3), "layer1.1.conv2": (64, 64, 3, 3),
    "layer2.0.conv1": (128, 64, 3, 3), "layer2.0.conv2": (128, 128, 3, 3), "layer2.0.downsample.0": (128, 64, 1, 1),
    "layer2.1.conv1": (128, 128, 3, 3), "layer2.1.conv2": (128, 128, 3, 3),
    "layer3.0.conv1": (256, 128, 3, 3), "layer3.0.conv2": (256, 256, 3, 3), "layer3.0.downsample.0": (256, 128, 1, 1),
    "layer3.1.conv1": (256, 256, 3, 3), "layer3.1.conv2": (256, 256, 3, 3),
    "layer4.0.conv1": (512, 256, 3, 3), "layer4.0.conv2": (512, 512, 3, 3), "layer4.0.downsample.0": (512, 256, 1, 1),
    "layer4.1.conv1": (512, 512, 3, 3), "layer4.1.conv2": (512, 512, 3, 3),
}
_TV18_BNS = {
    "bn1": 64,
    "layer1.0.bn1": 64, "layer1.0.bn2": 64, "layer1.1.bn1": 64, "layer1.1.bn2": 64,
    "layer2.0.bn1": 128, "layer2.0.bn2": 128, "layer2.0.downsample.1": 128, "layer2.1.bn1": 128, "layer2.1.bn2": 128,
    "layer3.0.bn1": 256, "layer3.0.bn2": 256, "layer3.0.downsample.1": 256, "layer3.1.bn1": 256, "layer3.1.bn2": 256,
    "layer4.0.bn1": 512, "layer4.0.bn2": 512, "layer4.0.downsample.1": 512, "layer4.1.bn1": 512, "layer4.1.bn2": 512,
}
BN_BUFFERS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _tv18_layout() -> dict[str, tuple]:
    out = {f"{k}.weight": v for k, v in _TV18_CONVS.items()}
    for name, c in _TV18_BNS.items():
        out.update({f"{name}.{b}": (() if b == "num_batches_tracked" else (c,)) for b in BN_BUFFERS})
    return out


def _tv_bottleneck_layout(layers=(3, 4, 6, 3)) -> dict[str, tuple]:
    """torchvision's ResNet._make_layer with Bottleneck (expansion 4, stride on the 3x3: v1.5), no fc."""
    out = {"conv1.weight": (64, 3, 7, 7)}
    out.update({f"bn1.{b}": (() if b == "num_batches_tracked" else (64,)) for b in BN_BUFFERS})
    inplanes = 64
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers), start=1):
        for b in range(n):
            cin = inplanes if b == 0 else planes * 4
            for conv, shape in (("conv1", (planes, cin, 1, 1)), ("conv2", (planes, planes, 3, 3)),
                                ("conv3", (planes * 4, planes, 1, 1))):
                out[f"layer{i}.{b}.{conv}.weight"] = shape
                bn = f"layer{i}.{b}.bn{conv[-1]}"
                out.update({f"{bn}.{k}": (() if k == "num_batches_tracked" else (shape[0],)) for k in BN_BUFFERS})
            if b == 0:  # stride != 1 or inplanes != planes * 4 holds for every first block of a Bottleneck net
                out[f"layer{i}.0.downsample.0.weight"] = (planes * 4, cin, 1, 1)
                out.update({f"layer{i}.0.downsample.1.{k}": (() if k == "num_batches_tracked" else (planes * 4,))
                            for k in BN_BUFFERS})
        inplanes = planes * 4
    return out


def _d2_r50_layout() -> dict[str, tuple]:
    """detectron2's build_resnet_backbone for R-50 (BottleneckBlock, FrozenBN: 4 buffers per norm)."""
    out = {"stem.conv1.weight": (64, 3, 7, 7)}
    out.update({f"stem.conv1.norm.{k}": (64,) for k in BN_BUFFERS[:4]})
    in_ch, bott, out_ch = 64, 64, 256
    for stage, n in zip(range(2, 6), (3, 4, 6, 3)):
        for b in range(n):
            cin = in_ch if b == 0 else out_ch
            convs = {"conv1": (bott, cin, 1, 1), "conv2": (bott, bott, 3, 3), "conv3": (out_ch, bott, 1, 1)}
            if b == 0:
                convs["shortcut"] = (out_ch, cin, 1, 1)
            for name, shape in convs.items():
                out[f"res{stage}.{b}.{name}.weight"] = shape
                out.update({f"res{stage}.{b}.{name}.norm.{k}": (shape[0],) for k in BN_BUFFERS[:4]})
        in_ch, bott, out_ch = out_ch, bott * 2, out_ch * 2
    return out


def _shapes(sd) -> dict[str, tuple]:
    return {k: tuple(np.shape(v)) for k, v in sd.items()}


def _randomise_bn(net: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine terms, so a lost or misplaced buffer changes the features."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.2 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.num_batches_tracked.fill_(7)
    return net.eval()


def _checkpoint(tmp_path, backbone: nn.Module, config_model: dict, name: str = "ckpt.pt"):
    """A trainer-style checkpoint: the online backbone, a head, and momentum / teacher copies that differ."""
    model = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    model["projector.0.weight"] = torch.randn(16, 8)
    for prefix in ("momentum_backbone.", "teacher.backbone."):
        model.update({prefix + k: (v + 1 if v.is_floating_point() else v) for k, v in backbone.state_dict().items()})
    # written by the trainer's own writer (atomic, with its content checksum)
    return save_checkpoint(tmp_path / name, {"model": model, "config": {"model": config_model}, "epoch": 3})


@pytest.fixture(scope="module")
def r18():
    torch.manual_seed(0)
    return _randomise_bn(resnet18(), 1)


@pytest.fixture(scope="module")
def r50():
    torch.manual_seed(0)
    return _randomise_bn(resnet50(), 2)


# ---------------------------------------------------------------- layouts
def test_written_layouts_are_consistent():
    assert len(_tv18_layout()) == 120  # torchvision resnet18: 122 entries with fc.weight and fc.bias
    assert len(_tv_bottleneck_layout()) == 318  # resnet50: 320 with fc
    assert len(_d2_r50_layout()) == 265  # 53 convs x (weight + 4 frozen-BN buffers)
    assert _tv_bottleneck_layout()["layer3.5.conv2.weight"] == (256, 256, 3, 3)


@pytest.mark.parametrize("fmt", ["torchvision", "timm"])
def test_resnet18_export_matches_torchvision_and_timm_layout(r18, fmt):
    sd = E.export_state_dict(r18, fmt)
    assert _shapes(sd) == _tv18_layout()


def test_resnet50_export_matches_torchvision_layout(r50):
    assert _shapes(E.export_state_dict(r50, "torchvision")) == _tv_bottleneck_layout()


def test_resnet50_export_matches_detectron2_layout(r50):
    sd = E.export_state_dict(r50, "detectron2")
    assert _shapes(sd) == _d2_r50_layout()
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in sd.values())
    # values moved, not just renamed: spot checks against the source modules
    np.testing.assert_array_equal(sd["res3.0.shortcut.norm.running_var"], r50.layer2[0].shortcut[1].running_var.numpy())
    np.testing.assert_array_equal(sd["res5.2.conv3.weight"], r50.layer4[2].conv3.weight.detach().numpy())
    np.testing.assert_array_equal(sd["stem.conv1.norm.bias"], r50.bn1.bias.detach().numpy())


def test_detectron2_frozen_bn_gives_the_same_stem_output(r50):
    """detectron2's FrozenBatchNorm2d computes x * w / sqrt(var + eps) + (b - mean * scale) from the buffers."""
    sd = E.export_state_dict(r50, "detectron2")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    y = nn.functional.conv2d(x, torch.from_numpy(sd["stem.conv1.weight"]), stride=2, padding=3)
    w, b, m, v = (torch.from_numpy(sd[f"stem.conv1.norm.{k}"]) for k in BN_BUFFERS[:4])
    scale = w * (v + 1e-5).rsqrt()
    frozen = y * scale[:, None, None] + (b - m * scale)[:, None, None]
    with torch.no_grad():
        ours = r50.bn1(r50.conv1(x))
    # same products, regrouped: a few float32 roundings of values of size |ours| (eps32 ~ 1.2e-7)
    tol = 8 * torch.finfo(torch.float32).eps * float(ours.abs().max())
    torch.testing.assert_close(frozen, ours, rtol=0, atol=tol)


# ---------------------------------------------------------------- files, CLI, round trip
@pytest.mark.parametrize("fmt", E.FORMATS)
def test_cli_export_round_trip_gives_identical_features(tmp_path, r18, fmt, capsys):
    ckpt = _checkpoint(tmp_path, r18, {"backbone": "resnet18", "cifar_stem": False})
    out = tmp_path / f"r18.{fmt}"
    assert cli_main(["export", str(ckpt), "--format", fmt, "--out", str(out)]) == 0
    assert "resnet18" in capsys.readouterr().out
    back = E.load_exported(out)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(back(x), r18(x))


def test_files_hold_what_each_ecosystem_reads(tmp_path, r18):
    ckpt = _checkpoint(tmp_path, r18, {"backbone": "resnet18", "cifar_stem": False})
    tv, _ = E.export_checkpoint(ckpt, "torchvision")
    assert tv == tmp_path / "ckpt.torchvision.pth"
    sd = torch.load(tv, weights_only=True)  # a plain state dict of tensors
    assert set(sd) == set(_tv18_layout())
    assert torch.equal(sd["layer2.0.downsample.1.running_mean"], r18.layer2[0].shortcut[1].running_mean)
    d2, _ = E.export_checkpoint(ckpt, "detectron2")
    assert d2.suffix == ".pkl"
    with open(d2, "rb") as fh:
        blob = pickle.load(fh, encoding="latin1")  # as detectron2's checkpointer opens .pkl files
    assert blob["__author__"] == "jointaug" and blob["matching_heuristics"] is True
    assert not any(k.endswith("num_batches_tracked") for k in blob["model"])
    assert blob["model"]["stem.conv1.weight"].shape == (64, 3, 7, 7)


def test_only_the_online_backbone_is_exported(tmp_path, r18):
    ckpt = _checkpoint(tmp_path, r18, {"backbone": "resnet18", "cifar_stem": False})
    sd = E.export_state_dict(jointaug.load_backbone(ckpt), "torchvision")
    for k, v in r18.state_dict().items():  # the momentum / teacher copies hold v + 1
        assert torch.equal(sd[k.replace(".shortcut.0.", ".downsample.0.").replace(".shortcut.1.", ".downsample.1.")], v)
    net = jointaug.load_backbone(ckpt)
    assert isinstance(net, nn.Module) and not net.training


# ---------------------------------------------------------------- refusals
def test_convnet4_is_refused_everywhere(tmp_path):
    from jointaug.models import ConvNet4

    ckpt = _checkpoint(tmp_path, ConvNet4(width=8), {"backbone": "convnet4", "width": 8})
    for fmt in E.FORMATS:
        with pytest.raises(E.ExportError, match="ConvNet-4 has no counterpart"):
            E.export_checkpoint(ckpt, fmt)


def test_cifar_stem(tmp_path, capsys):
    net = _randomise_bn(resnet18(cifar_stem=True))
    ckpt = _checkpoint(tmp_path, net, {"backbone": "resnet18", "cifar_stem": True})
    with pytest.raises(E.ExportError, match="no detectron2 counterpart"):
        E.export_checkpoint(ckpt, "detectron2", allow_cifar_stem=True)
    with pytest.raises(E.ExportError, match="--allow-cifar-stem"):
        E.export_checkpoint(ckpt, "torchvision")
    assert cli_main(["export", str(ckpt), "--format", "timm"]) == 2
    assert "CIFAR stem" in capsys.readouterr().err
    with pytest.warns(UserWarning, match=r"nn.Conv2d\(3, 64, 3, 1, 1"):
        out, layout = E.export_checkpoint(ckpt, "torchvision", tmp_path / "c.pth", allow_cifar_stem=True)
    assert layout.cifar_stem and layout.arch == "resnet18"
    sd = torch.load(out, weights_only=True)
    assert sd["conv1.weight"].shape == (64, 3, 3, 3)
    assert set(sd) == set(_tv18_layout())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(E.load_exported(out)(x), net(x))


def test_other_widths_and_bad_input_are_refused(tmp_path):
    ckpt = _checkpoint(tmp_path, resnet18(width=16), {"backbone": "resnet18", "width": 16})
    with pytest.raises(E.ExportError, match="base width is 16"):
        E.export_checkpoint(ckpt, "timm")
    with pytest.raises(ValueError, match="export format must be one of"):
        E.export_state_dict(resnet18(), "onnx")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        E.export_checkpoint(tmp_path / "nope.pt", "timm")
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps({"model": {"x": np.zeros(1)}, "evil": print}))
    with pytest.raises(ValueError, match="refusing to load builtins.print"):
        E.load_exported(bad)


# ---------------------------------------------------------------- the real libraries, where installed
_NO_TV = importlib.util.find_spec("torchvision") is None
_NO_TIMM = importlib.util.find_spec("timm") is None


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    # the same float32 convolutions and BN in the same order; only kernel choice may reorder sums
    # (~sqrt(fan-in) roundings per layer, a few 1e-6 relative): 1e-4 of the feature scale covers it
    torch.testing.assert_close(a, b, rtol=0, atol=1e-4 * float(b.abs().max()))


@pytest.mark.skipif(_NO_TV, reason="torchvision is not importable here (its PyPI build fails against this torch)")
@pytest.mark.parametrize("cifar_stem", [False, True])
def test_export_loads_into_real_torchvision(r18, cifar_stem):
    import torchvision

    net = r18 if not cifar_stem else _randomise_bn(resnet18(cifar_stem=True), 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sd = E.export_state_dict(net, "torchvision", allow_cifar_stem=cifar_stem)
    tv = torchvision.models.resnet18(weights=None)
    missing, unexpected = tv.load_state_dict(sd, strict=False) if not cifar_stem else ([], [])
    if cifar_stem:
        tv.conv1, tv.maxpool = nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.Identity()
        tv.fc = nn.Identity()
        tv.load_state_dict(sd, strict=True)
    else:
        assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected
        tv.fc = nn.Identity()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        _close(tv.eval()(x), net(x))


@pytest.mark.skipif(_NO_TIMM, reason="timm is not importable here (installing it would replace this torch)")
@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_export_loads_into_real_timm(r18, r50, arch):
    import timm

    net = r18 if arch == "resnet18" else r50
    m = timm.create_model(arch, pretrained=False, num_classes=0)
    m.load_state_dict(E.export_state_dict(net, "timm"), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        _close(m.eval()(x), net(x))
