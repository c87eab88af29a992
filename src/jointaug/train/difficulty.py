"""Online pair difficulty and a controller that moves beta to hold a target difficulty.

The signal is the running mean cosine similarity of the positive pairs' features (SDF measured on the
training batches, paper Eq. 2 on the fly). Higher beta makes JC(beta) pairs more alike, so SDF rises
with beta: the controller lowers beta when pairs are too easy (SDF above target) and raises it when
they are too hard. It is an integral controller on an exponentially smoothed signal, with bounds on
beta and on its change per update (the rate limit keeps a noisy signal from swinging the law):

    sdf_ema <- (1 - a) * sdf_ema + a * sdf_batch                    every step
    beta    <- clip(beta - clip(gain * (sdf_ema - target), +-max_change), beta_min, beta_max)   every k steps

State (beta, sdf_ema, step) is a plain dict for the checkpoint, so resume is exact. ``simulate`` runs
the controller against a model plant (SDF = f(beta) followed by a first-order lag, plus noise), which
is how the default gain was chosen (16: on the plant measured on the synthetic set, SDF = 0.9075 + 0.00575
beta; 2 on the steeper model plant SDF = 0.7 + 0.1 tanh(beta / 2)) and how the tests check that it settles
without oscillating.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BetaController", "ControllerError", "simulate"]


class ControllerError(ValueError):
    """Invalid controller settings; the message names the setting and its value."""


@dataclass
class BetaController:
    """Integral controller on beta with bounds and a rate limit (see the module docstring)."""

    target: float | Callable[[float], float]
    beta: float = 0.0
    gain: float = 16.0  # chosen on the measured plant (J-Crop, 32 px): benchmarks/results/controller_gains.md
    every: int = 10
    smoothing: float = 0.05
    beta_min: float = -4.0
    beta_max: float = 4.0
    max_change: float = 0.25
    sdf_ema: float | None = None
    step: int = 0
    history: list[tuple[int, float, float]] = field(default_factory=list)  # (step, beta, sdf_ema)

    def __post_init__(self) -> None:
        checks = [("gain", self.gain > 0), ("every", int(self.every) >= 1), ("smoothing", 0 < self.smoothing <= 1),
                  ("max_change", self.max_change > 0), ("beta_max", self.beta_max > self.beta_min)]
        for name, ok in checks:
            if not ok:
                raise ControllerError(f"difficulty controller: invalid {name}={getattr(self, name)!r}")
        if not self.beta_min <= self.beta <= self.beta_max:
            raise ControllerError(f"difficulty controller: beta={self.beta!r} outside "
                                  f"[beta_min={self.beta_min!r}, beta_max={self.beta_max!r}]")

    def target_at(self, progress: float) -> float:
        """The target SDF in force at this training progress (a number or a schedule)."""
        return float(self.target(progress) if callable(self.target) else self.target)

    def update(self, sdf_batch: float, progress: float) -> float:
        """Feed one step's mean positive-pair cosine; return the beta to use from the next step on."""
        if not math.isfinite(sdf_batch):
            return self.beta  # a non-finite batch (the trainer stops on NaN losses anyway) is ignored
        a = self.smoothing
        self.sdf_ema = float(sdf_batch) if self.sdf_ema is None else (1 - a) * self.sdf_ema + a * float(sdf_batch)
        self.step += 1
        if self.step % int(self.every) == 0:
            error = self.sdf_ema - self.target_at(progress)
            change = max(-self.max_change, min(self.max_change, -self.gain * error))
            self.beta = max(self.beta_min, min(self.beta_max, self.beta + change))
            self.history.append((self.step, self.beta, self.sdf_ema))
        return self.beta

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint stores for an exact resume."""
        return {"beta": self.beta, "sdf_ema": self.sdf_ema, "step": self.step, "history": list(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.beta, self.sdf_ema, self.step = float(state["beta"]), state["sdf_ema"], int(state["step"])
        self.history = [tuple(h) for h in state.get("history", [])]


def simulate(controller: BetaController, plant: Callable[[float], float], steps: int, *, lag: float = 50.0,
             noise: float = 0.02, seed: int = 0) -> list[tuple[int, float, float]]:
    """Run ``controller`` against a model plant: the SDF the network shows relaxes towards ``plant(beta)``
    with a time constant of ``lag`` steps (the encoder adapts to a new law gradually), and each batch's
    measurement adds Gaussian noise of std ``noise``. Returns ``(step, beta, true_sdf)`` per step."""
    rng = random.Random(seed)
    sdf = plant(controller.beta)
    out = []
    for step in range(steps):
        sdf += (plant(controller.beta) - sdf) / max(lag, 1.0)
        controller.update(sdf + rng.gauss(0.0, noise), step / max(steps - 1, 1))
        out.append((step, controller.beta, sdf))
    return out
