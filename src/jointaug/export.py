"""Export a trained backbone to the layouts other ecosystems load: torchvision, timm, detectron2.

Only the online backbone leaves: the ``backbone.*`` entries of the checkpoint's Method state dict
(heads, predictors, momentum / teacher copies and queues stay behind). jointaug's ResNet names its
modules as torchvision does except the projection shortcut (``shortcut.0/1`` here,
``downsample.0/1`` there), so the formats are:

- ``torchvision``: ``torchvision.models.resnet{18,34,50}`` state dict without ``fc`` (a backbone has
  no classifier): load with ``model.fc = nn.Identity(); model.load_state_dict(sd)`` or with
  ``strict=False`` (missing keys: exactly ``fc.weight``, ``fc.bias``); written with ``torch.save``.
- ``timm``: timm's ``resnet18/34/50`` use torchvision's parameter names (timm's resnet.py keeps them
  "for weight compatibility"); ``timm.create_model(name, num_classes=0)`` has no ``fc`` and loads
  the file strictly.
- ``detectron2``: the conversion MoCo documents for VOC/COCO transfer (stem.conv1, stem.conv1.norm,
  res2-res5, shortcut, convK.norm), BN as the four frozen-BN buffers (weight, bias, running_mean,
  running_var; no num_batches_tracked), float32 numpy arrays in a pickle
  ``{"model": ..., "__author__": "jointaug", "matching_heuristics": True}`` that
  ``DetectionCheckpointer`` reads; load with ``MODEL.WEIGHTS file.pkl`` (docs/transfer.md).

Refused, with the reason: backbones that are not a standard-width ResNet with BatchNorm (ConvNet-4,
GroupNorm, width != 64), the CIFAR stem in detectron2 (its stem is the 7x7 conv + max-pool), and
the CIFAR stem in torchvision/timm unless ``allow_cifar_stem=True`` (then ``conv1`` is [64, 3, 3, 3]
and the receiving model needs ``conv1 = Conv2d(3, 64, 3, 1, 1, bias=False)``,
``maxpool = Identity()``; a warning says so).
"""

from __future__ import annotations

import io
import os
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

FORMATS = ("torchvision", "timm", "detectron2")
_BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_FROZEN_BN_KEYS = ("weight", "bias", "running_mean", "running_var")
_KNOWN_DEPTHS = {("basic", (2, 2, 2, 2)): "resnet18", ("basic", (3, 4, 6, 3)): "resnet34",
                 ("bottleneck", (3, 4, 6, 3)): "resnet50", ("bottleneck", (3, 4, 23, 3)): "resnet101",
                 ("bottleneck", (3, 8, 36, 3)): "resnet152"}


class ExportError(ValueError):
    """The backbone has no counterpart in the requested format (the message says why)."""


@dataclass(frozen=True)
class ResNetLayout:
    """What identifies a torchvision-style ResNet: block type, blocks per stage, stem."""

    block: str  # "basic" or "bottleneck"
    layers: tuple[int, int, int, int]
    cifar_stem: bool

    @property
    def arch(self) -> str:
        """torchvision/timm model name (``resnetXX``), or a description for unusual depths."""
        return _KNOWN_DEPTHS.get((self.block, self.layers), f"resnet({self.block}, {list(self.layers)})")

    @property
    def detectron2_depth(self) -> int:
        """MODEL.RESNETS.DEPTH: 2 + (convs per block) x (number of blocks)."""
        return 2 + (2 if self.block == "basic" else 3) * sum(self.layers)


# ---------------------------------------------------------------------------------- layouts
def torchvision_layout(layout: ResNetLayout) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of torchvision's ResNet (base width 64, BatchNorm, no ``fc``) for ``layout``."""
    out: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, c: int) -> None:
        for k in _BN_KEYS:
            out[f"{prefix}.{k}"] = () if k == "num_batches_tracked" else (c,)

    k = 3 if layout.cifar_stem else 7
    out["conv1.weight"] = (64, 3, k, k)
    bn("bn1", 64)
    expansion = 1 if layout.block == "basic" else 4
    cin = 64
    for stage, n in enumerate(layout.layers):
        planes = 64 * 2**stage
        cout = planes * expansion
        for b in range(n):
            p = f"layer{stage + 1}.{b}"
            if layout.block == "basic":
                convs = [(cin if b == 0 else cout, planes, 3), (planes, cout, 3)]
            else:
                convs = [(cin if b == 0 else cout, planes, 1), (planes, planes, 3), (planes, cout, 1)]
            for j, (ci, co, ks) in enumerate(convs, start=1):
                out[f"{p}.conv{j}.weight"] = (co, ci, ks, ks)
                bn(f"{p}.bn{j}", co)
            if b == 0 and (stage > 0 or cin != cout):
                out[f"{p}.downsample.0.weight"] = (cout, cin, 1, 1)
                bn(f"{p}.downsample.1", cout)
        cin = cout
    return out


def infer_layout(state: dict[str, Tensor]) -> ResNetLayout:
    """Block type, depth and stem of a torchvision-named ResNet state dict (ExportError if it is none)."""
    if "conv1.weight" not in state or "layer1.0.conv1.weight" not in state:
        raise ExportError("the backbone is not a ResNet (no conv1 / layer1 weights); only ResNet-18/34/50 "
                          "backbones have a torchvision, timm or detectron2 counterpart")
    block = "bottleneck" if "layer1.0.conv3.weight" in state else "basic"
    counts = []
    for stage in range(1, 5):
        idx = {int(m.group(1)) for key in state if (m := re.match(rf"layer{stage}\.(\d+)\.", key))}
        if not idx:
            raise ExportError(f"the ResNet has no layer{stage}: not a four-stage ResNet")
        counts.append(max(idx) + 1)
    kernel = int(state["conv1.weight"].shape[-1])
    return ResNetLayout(block, tuple(counts), cifar_stem=(kernel == 3))


def _check_layout(state: dict[str, Tensor], layout: ResNetLayout, what: str) -> None:
    expected = torchvision_layout(layout)
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {expected[k]})" for k in expected
             if k in state and tuple(state[k].shape) != expected[k]]
    if not (missing or extra or wrong):
        return
    hints = []
    if any(k.endswith("running_mean") for k in missing):
        hints.append("its norm layers keep no running statistics (GroupNorm?); the target ResNets use BatchNorm")
    conv1 = state.get("conv1.weight")
    if conv1 is not None and int(conv1.shape[0]) != 64:
        hints.append(f"its base width is {int(conv1.shape[0])}; torchvision/timm/detectron2 ResNets have 64")
    if conv1 is not None and int(conv1.shape[1]) != 3:
        hints.append(f"it takes {int(conv1.shape[1])} input channels, not 3")
    parts = [f"missing {missing[:4]}" if missing else "", f"unexpected {extra[:4]}" if extra else "",
             f"shapes differ: {wrong[:3]}" if wrong else ""]
    detail = "; ".join(p for p in parts if p)
    raise ExportError(f"{what} does not match {layout.arch}'s layout ({detail})"
                      + (f": {'; '.join(hints)}" if hints else ""))


# ---------------------------------------------------------------------------------- renaming
def _strip_wrappers(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop the ``net.`` prefix of a pooled external backbone (``wrap_backbone``)."""
    if state and all(k.startswith("net.") for k in state):
        return {k[len("net."):]: v for k, v in state.items()}
    return dict(state)


def to_torchvision_names(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """jointaug ResNet names -> torchvision names (``shortcut.0/1`` -> ``downsample.0/1``); others kept."""
    out = {}
    for key, val in _strip_wrappers(state).items():
        out[re.sub(r"\.shortcut\.([01])\.", r".downsample.\1.", key)] = val
    return out


def from_torchvision_names(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """torchvision / timm names -> jointaug ResNet names (``fc.*`` dropped)."""
    return {re.sub(r"\.downsample\.([01])\.", r".shortcut.\1.", k): v for k, v in state.items()
            if not k.startswith("fc.")}


def _detectron2_name(key: str) -> str:
    """One torchvision key -> detectron2's (the renaming MoCo's conversion documents)."""
    if not key.startswith("layer"):
        key = "stem." + key
    key = re.sub(r"^layer([1-4])\.", lambda m: f"res{int(m.group(1)) + 1}.", key)
    key = re.sub(r"(^|\.)bn([1-3])\.", r"\1conv\2.norm.", key)
    key = key.replace(".downsample.0.", ".shortcut.").replace(".downsample.1.", ".shortcut.norm.")
    return key


def to_detectron2(state: dict[str, Tensor]) -> dict[str, np.ndarray]:
    """torchvision-named ResNet state dict -> detectron2 names, frozen-BN buffers, float32 numpy."""
    return {_detectron2_name(k): v.detach().cpu().float().numpy() for k, v in state.items()
            if not k.endswith("num_batches_tracked")}


def from_detectron2(model: dict[str, Any]) -> dict[str, Tensor]:
    """detectron2-named ResNet weights (as :func:`to_detectron2` writes them) -> torchvision names."""
    out: dict[str, Tensor] = {}
    for key, val in model.items():
        k = key.removeprefix("backbone.bottom_up.").removeprefix("backbone.")
        k = re.sub(r"^stem\.conv1\.norm\.", "bn1.", k)
        k = k.removeprefix("stem.")
        k = re.sub(r"^res([2-5])\.", lambda m: f"layer{int(m.group(1)) - 1}.", k)
        k = re.sub(r"\.conv([1-3])\.norm\.", r".bn\1.", k)
        k = k.replace(".shortcut.norm.", ".downsample.1.").replace(".shortcut.weight", ".downsample.0.weight")
        out[k] = torch.as_tensor(np.asarray(val))
    for key in [k for k in out if k.endswith(".running_var")]:  # detectron2 keeps no batch counter
        out.setdefault(key[: -len("running_var")] + "num_batches_tracked", torch.tensor(0, dtype=torch.long))
    return out


# ---------------------------------------------------------------------------------- export
def _describe(backbone: nn.Module) -> str:
    return type(backbone).__name__


def export_state_dict(backbone: nn.Module, fmt: str, *, allow_cifar_stem: bool = False) -> dict[str, Any]:
    """The weights of ``backbone`` in format ``fmt`` (a state dict; detectron2: name -> numpy array)."""
    if fmt not in FORMATS:
        raise ValueError(f"export format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    from jointaug.models.convnet import ConvNet4

    if isinstance(backbone, ConvNet4):
        raise ExportError("ConvNet-4 has no counterpart in torchvision, timm or detectron2; "
                          "use jointaug.load_backbone(CHECKPOINT) to get it as an nn.Module")
    state = to_torchvision_names({k: v.detach().cpu() for k, v in backbone.state_dict().items()})
    layout = infer_layout(state)
    _check_layout(state, layout, f"backbone {_describe(backbone)}")
    if layout.cifar_stem:
        if fmt == "detectron2":
            raise ExportError("a ResNet with the CIFAR stem (3x3 conv, stride 1, no max-pool) has no detectron2 "
                              "counterpart: detectron2's stem is the 7x7 stride-2 conv with max-pool")
        if not allow_cifar_stem:
            raise ExportError(f"the backbone has the CIFAR stem (conv1 {tuple(state['conv1.weight'].shape)}, no "
                              f"max-pool); {fmt}'s {layout.arch} has a 7x7 conv1 and a max-pool, so its weights "
                              "do not load there as they are. Pass --allow-cifar-stem (allow_cifar_stem=True) to "
                              "export anyway and replace conv1 / maxpool in the receiving model")
        warnings.warn(f"exporting a CIFAR-stem ResNet to {fmt}: conv1.weight is {tuple(state['conv1.weight'].shape)}; "
                      "build the receiving model with conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False) and "
                      "maxpool = nn.Identity() before loading", stacklevel=2)
    if fmt == "detectron2":
        return to_detectron2(state)
    return state


def default_output(checkpoint: str | os.PathLike, fmt: str) -> Path:
    """``<checkpoint stem>.<fmt>.pth`` (``.pkl`` for detectron2) next to the checkpoint."""
    path = Path(checkpoint)
    return path.with_name(f"{path.stem}.{fmt}.{'pkl' if fmt == 'detectron2' else 'pth'}")


def save_export(weights: dict[str, Any], fmt: str, out: str | os.PathLike) -> Path:
    """Write exported weights: ``torch.save`` of the state dict, or detectron2's pickle."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "detectron2":
        blob = {"model": weights, "__author__": "jointaug", "matching_heuristics": True}
        with open(out, "wb") as fh:
            _PortablePickler(fh, protocol=4).dump(blob)
    else:
        torch.save(weights, out)
    return out


def export_checkpoint(
    checkpoint: str | os.PathLike, fmt: str, out: str | os.PathLike | None = None, *, allow_cifar_stem: bool = False
) -> tuple[Path, ResNetLayout]:
    """Export the online backbone of a jointaug training checkpoint to ``fmt``; returns (file, layout)."""
    backbone = load_backbone(checkpoint)
    weights = export_state_dict(backbone, fmt, allow_cifar_stem=allow_cifar_stem)
    layout = infer_layout(to_torchvision_names(backbone.state_dict()))
    return save_export(weights, fmt, out or default_output(checkpoint, fmt)), layout


def load_backbone(checkpoint: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """The trained online backbone of a jointaug checkpoint as an ``nn.Module`` (eval mode).

    Only ``backbone.*`` weights are read: heads and momentum / teacher copies are ignored.
    """
    from jointaug.eval.checkpoint import load_backbone as _load

    return _load(checkpoint, map_location)[0]


class _PortablePickler(pickle.Pickler):
    """Pickles arrays as ``numpy.ndarray(shape, dtype, bytearray)``: readable by numpy 1.x and 2.x alike
    (numpy 2's own pickles name ``numpy._core``, which older numpy, e.g. in detectron2 setups, lacks)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            arr = np.ascontiguousarray(obj)
            return np.ndarray, (arr.shape, arr.dtype.str, bytearray(arr.tobytes()))
        return NotImplemented


# ---------------------------------------------------------------------------------- reading exports back
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Reads detectron2 weight pickles without running arbitrary code: numpy arrays and builtins only."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("collections", "OrderedDict"), ("builtins", "bytearray")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights pickle")


def read_export(path: str | os.PathLike) -> tuple[str, dict[str, Tensor]]:
    """Read an exported file: ("detectron2", torchvision-named weights) or ("torchvision", state dict)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported weights {path} do not exist")
    raw = path.read_bytes()
    if not raw.startswith(b"PK"):  # not torch.save's zip: detectron2's bare pickle
        try:
            blob = _NumpyOnlyUnpickler(io.BytesIO(raw)).load()
        except Exception as exc:
            raise ValueError(f"{path}: neither a torch state dict nor a detectron2 weights pickle: {exc}") from exc
        if not isinstance(blob, dict) or not isinstance(blob.get("model"), dict):
            raise ValueError(f"{path}: a detectron2 weights pickle needs a dict with a 'model' dict")
        return "detectron2", from_detectron2(blob["model"])
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: cannot be loaded as a state dict (weights_only=True): {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    return "torchvision", dict(state)


def load_exported(path: str | os.PathLike) -> nn.Module:
    """Rebuild a jointaug ResNet from an exported file of any format (eval mode), e.g. to check a round trip."""
    from jointaug.models.resnet import BasicBlock, Bottleneck, ResNet

    _, state = read_export(path)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    layout = infer_layout(state)
    _check_layout(state, layout, f"exported file {path}")
    block = BasicBlock if layout.block == "basic" else Bottleneck
    net = ResNet(block, layout.layers, cifar_stem=layout.cifar_stem)
    net.load_state_dict(from_torchvision_names(state), strict=True)
    return net.eval()


# ---------------------------------------------------------------------------------- command line
def add_arguments(parser: Any) -> None:
    """Arguments of ``jointaug export``."""
    parser.add_argument("checkpoint", help="a jointaug training checkpoint (.pt)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="target ecosystem")
    parser.add_argument("--out", default=None, help="output file (default: next to the checkpoint, "
                                                    "<stem>.<format>.pth, or .pkl for detectron2)")
    parser.add_argument("--allow-cifar-stem", action="store_true",
                        help="export a CIFAR-stem ResNet to torchvision/timm (conv1 is 3x3; see the warning)")


_HOW_TO_LOAD = {
    "torchvision": "m = torchvision.models.{arch}(weights=None); m.fc = torch.nn.Identity(); "
                   "m.load_state_dict(torch.load('{out}'))",
    "timm": "m = timm.create_model('{arch}', num_classes=0); m.load_state_dict(torch.load('{out}'))",
    "detectron2": "MODEL.WEIGHTS {out} MODEL.RESNETS.DEPTH {depth} MODEL.RESNETS.STRIDE_IN_1X1 False "
                  "MODEL.PIXEL_MEAN '[123.675, 116.280, 103.530]' MODEL.PIXEL_STD '[58.395, 57.120, 57.375]' "
                  "INPUT.FORMAT RGB (docs/transfer.md)",
}


def main(args: Any) -> int:
    """``jointaug export``: write the backbone of a checkpoint in another ecosystem's layout."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out, layout = export_checkpoint(args.checkpoint, args.format, args.out,
                                        allow_cifar_stem=args.allow_cifar_stem)
    for w in caught:
        print(f"jointaug export: warning: {w.message}")
    print(f"wrote {out} ({args.format}, {layout.arch}{', CIFAR stem' if layout.cifar_stem else ''})")
    how = _HOW_TO_LOAD[args.format].format(arch=layout.arch, out=out, depth=layout.detectron2_depth)
    if args.format == "detectron2" and layout.block == "basic":  # R18/R34: detectron2's res2 width is 256 by default
        how = how.replace(" MODEL.RESNETS.STRIDE_IN_1X1",
                          " MODEL.RESNETS.RES2_OUT_CHANNELS 64 MODEL.RESNETS.STRIDE_IN_1X1")
    print("load with: " + how)
    return 0


__all__ = [
    "FORMATS", "ExportError", "ResNetLayout", "default_output", "export_checkpoint", "export_state_dict",
    "from_detectron2", "from_torchvision_names", "infer_layout", "load_backbone", "load_exported", "read_export",
    "save_export", "to_detectron2", "to_torchvision_names", "torchvision_layout",
]
