"""How the beta controller's default gain was chosen (issue 13): the controller of
``jointaug.train.difficulty`` against its simulated plant, SDF = 0.7 + 0.1 tanh(beta / 2) (SDF rises with
beta and saturates) followed by a first-order lag of 20, 50 or 150 steps (the encoder adapting to a new
law), batch noise std 0.03, from beta = 2 to the target SDF 0.66 (beta* = -0.85). Pure Python, a second.

    python benchmarks/controller_gains.py   # writes benchmarks/results/controller_gains.md
"""

from __future__ import annotations

import math
from pathlib import Path

from jointaug.train.difficulty import BetaController, simulate

TARGET, STEPS, SEED = 0.66, 4000, 3
GAINS, LAGS = (0.5, 1.0, 2.0, 4.0, 8.0), (20, 50, 150)


def plant(beta: float) -> float:
    """The model plant of tests/test_schedules.py."""
    return 0.7 + 0.1 * math.tanh(beta / 2)


def row(gain: float, lag: int) -> tuple[int | None, float, float]:
    """(settling step: the true SDF stays within +-0.01 of the target from then on, undershoot below the
    target, largest |SDF - target| after step 1500)."""
    hist = simulate(BetaController(target=TARGET, beta=2.0, gain=gain), plant, STEPS, lag=lag, noise=0.03,
                    seed=SEED)
    sdf = [s for _, _, s in hist]
    settle = next((i for i in range(len(sdf)) if all(abs(v - TARGET) < 0.01 for v in sdf[i:])), None)
    return settle, max(0.0, TARGET - min(sdf)), max(abs(v - TARGET) for v in sdf[1500:])


def main() -> str:
    """The Markdown table (also written to benchmarks/results/controller_gains.md)."""
    lines = ["| gain | lag (steps) | settling step (within +-0.01) | undershoot | max error after step 1500 |",
             "|---:|---:|---:|---:|---:|"]
    for lag in LAGS:
        for gain in GAINS:
            settle, under, tail = row(gain, lag)
            lines.append(f"| {gain:g} | {lag} | {settle if settle is not None else 'never'} | {under:.4f} | "
                         f"{tail:.4f} |")
    text = (f"Beta controller on the simulated plant (every=10, smoothing=0.05, max_change=0.25, target {TARGET}, "
            f"start beta 2, noise 0.03, seed {SEED}, {STEPS} steps)\n\n" + "\n".join(lines) + "\n")
    out = Path(__file__).resolve().parent / "results" / "controller_gains.md"
    out.write_text(text)
    return text


if __name__ == "__main__":
    print(main())
