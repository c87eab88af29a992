"""Self-supervised methods behind one interface (:class:`~jointaug.methods.base.Method`) and a registry.

Adding a method (MoCo, BYOL, SimSiam, DINO, LooC ...) = a ``Method`` subclass decorated with
``@register_method("name")``, imported below; the trainer builds it with :func:`build_method`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from jointaug.methods.base import Method

#: name -> Method subclass
METHODS: dict[str, type[Method]] = {}


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator registering a Method subclass under ``name``."""

    def deco(cls: type[Method]) -> type[Method]:
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise TypeError(f"register_method({name!r}): {cls!r} is not a Method subclass")
        if name in METHODS and METHODS[name] is not cls:
            raise ValueError(f"register_method: name {name!r} already used by {METHODS[name].__name__}")
        cls.name = name
        METHODS[name] = cls
        return cls

    return deco


def method_hyperparameters(name: str) -> dict[str, Any]:
    """The hyperparameters a registered method accepts, with their defaults."""
    cls = _lookup(name)
    params = list(inspect.signature(cls.__init__).parameters.values())[2:]  # skip self, backbone
    return {p.name: p.default for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _lookup(name: str) -> type[Method]:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(sorted(METHODS))}")
    return METHODS[name]


def build_method(name: str, backbone: nn.Module, **hyperparams: Any) -> Method:
    """Instantiate the method registered as ``name`` on ``backbone``; unknown hyperparameters are an error."""
    cls = _lookup(name)
    accepted = method_hyperparameters(name)
    unknown = [k for k in hyperparams if k not in accepted]
    if unknown:
        raise ValueError(
            f"method {name!r}: unknown hyperparameter(s) {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(f'{k}={v!r}' for k, v in accepted.items())}"
        )
    return cls(backbone, **hyperparams)


# Register the built-in methods (import at the end: they use register_method).
from jointaug.methods.byol import BYOL  # noqa: E402
from jointaug.methods.dino import DINO  # noqa: E402
from jointaug.methods.looc import LooC  # noqa: E402
from jointaug.methods.moco import MoCo, MoCoV1  # noqa: E402
from jointaug.methods.mocov3 import MoCoV3  # noqa: E402
from jointaug.methods.simclr import SimCLR  # noqa: E402
from jointaug.methods.simsiam import SimSiam  # noqa: E402

register_method("simclr")(SimCLR)
register_method("mocov1")(MoCoV1)
register_method("mocov2")(MoCo)
register_method("mocov3")(MoCoV3)
register_method("byol")(BYOL)
register_method("simsiam")(SimSiam)
register_method("looc")(LooC)
register_method("dino")(DINO)

__all__ = ["BYOL", "DINO", "METHODS", "LooC", "Method", "MoCo", "MoCoV1", "MoCoV3", "SimCLR", "SimSiam", "build_method",
           "method_hyperparameters", "register_method"]
