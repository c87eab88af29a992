"""How the beta controller's default gain was chosen (issue 13): the controller of
``jointaug.train.difficulty`` against its simulated plant, SDF = 0.7 + 0.1 tanh(beta / 2) (SDF rises with
beta and saturates) followed by a first-order lag of 20, 50 or 150 steps (the encoder adapting to a new
law), batch noise std 0.03, from beta = 2 to the target SDF 0.66 (beta* = -0.85). Pure Python, a second.

Second table (added after the first real runs, issue 13 grids): the *measured* plant. On the synthetic set
the offline SDF of J-Crop(beta) (RandomCrop-trained encoder, benchmarks/results/sdf/, beta -4..4) is close to
linear, SDF = 0.9075 + 0.00575 beta (least squares, max residual 0.003): about 9x flatter around beta = 0 than
the model plant (slope 0.05), and the per-batch noise of ``sdf_online`` is about 0.005 (successive
differences of the logged 20-step means, second half of the J-Crop(0) cells: 0.0053 synthetic, 0.0045
CIFAR-10). Same controller, from beta = 2 to target 0.895 (beta* = -2.2).

    python benchmarks/controller_gains.py   # writes benchmarks/results/controller_gains.md
"""

from __future__ import annotations

import math
from pathlib import Path

from jointaug.train.difficulty import BetaController, simulate

TARGET, STEPS, SEED = 0.66, 4000, 3
GAINS, LAGS = (0.5, 1.0, 2.0, 4.0, 8.0), (20, 50, 150)
#: the measured plant (see the module docstring): slope, intercept, target, noise, gains
M_SLOPE, M_ICEPT, M_TARGET, M_NOISE = 0.00575, 0.9075, 0.895, 0.005
M_GAINS = (2.0, 4.0, 8.0, 16.0, 32.0, 64.0)


def plant(beta: float) -> float:
    """The model plant of tests/test_schedules.py."""
    return 0.7 + 0.1 * math.tanh(beta / 2)


def measured_plant(beta: float) -> float:
    """The linear fit of the measured SDF-vs-beta curve on the synthetic set."""
    return M_ICEPT + M_SLOPE * beta


def row(gain: float, lag: int, *, measured: bool = False) -> tuple[int | None, float, float]:
    """(settling step: the true SDF stays within +-band of the target from then on, undershoot below the
    target, largest |SDF - target| after step 1500); band 0.01 (model plant) or 0.002 (measured plant,
    whose whole range over beta in [-4, 4] is 0.046)."""
    target, band = (M_TARGET, 0.002) if measured else (TARGET, 0.01)
    hist = simulate(BetaController(target=target, beta=2.0, gain=gain), measured_plant if measured else plant,
                    STEPS, lag=lag, noise=M_NOISE if measured else 0.03, seed=SEED)
    sdf = [s for _, _, s in hist]
    settle = next((i for i in range(len(sdf)) if all(abs(v - target) < band for v in sdf[i:])), None)
    return settle, max(0.0, target - min(sdf)), max(abs(v - target) for v in sdf[1500:])


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
    lines = ["| gain | lag (steps) | settling step (within +-0.002) | undershoot | max error after step 1500 |",
             "|---:|---:|---:|---:|---:|"]
    for lag in LAGS:
        for gain in M_GAINS:
            settle, under, tail = row(gain, lag, measured=True)
            lines.append(f"| {gain:g} | {lag} | {settle if settle is not None else 'never'} | {under:.4f} | "
                         f"{tail:.4f} |")
    text += (f"\nThe measured plant of the synthetic set (SDF = {M_ICEPT} + {M_SLOPE} beta, noise {M_NOISE}, target "
             f"{M_TARGET}, start beta 2; otherwise as above)\n\n" + "\n".join(lines) + "\n")
    out = Path(__file__).resolve().parent / "results" / "controller_gains.md"
    out.write_text(text)
    return text


if __name__ == "__main__":
    print(main())
