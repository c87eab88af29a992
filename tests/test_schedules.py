"""Schedules of view-policy parameters and the beta controller on a simulated plant (issue 13 groundwork)."""

import math

import pytest

from jointaug.sampling.schedules import ScheduleError, parse_schedule
from jointaug.train.difficulty import BetaController, ControllerError, simulate


def test_schedule_values_at_chosen_progress():
    assert parse_schedule(0.5)(0.3) == 0.5
    lin = parse_schedule({"kind": "linear", "start": 2.0, "end": -2.0})
    assert [lin(p) for p in (0.0, 0.25, 0.5, 1.0)] == [2.0, 1.0, 0.0, -2.0]
    cos = parse_schedule({"kind": "cosine", "start": 0.0, "end": 1.0})
    assert cos(0.5) == pytest.approx(0.5, abs=1e-12) and cos(0.25) == pytest.approx(0.5 - 0.5 * math.sqrt(0.5))
    win = parse_schedule({"kind": "linear", "start": 1.0, "end": 0.0, "warmup": [0.2, 0.6]})
    assert (win(0.1), win(0.4), win(0.9)) == (1.0, pytest.approx(0.5), 0.0)
    step = parse_schedule({"kind": "step", "values": [2, 0, -1], "milestones": [0.3, 0.7]})
    assert [step(p) for p in (0.0, 0.29, 0.3, 0.69, 0.7, 1.0)] == [2, 2, 0, 0, -1, -1]
    pw = parse_schedule({"kind": "piecewise", "points": [[0.0, 0.0], [0.5, -2.0], [1.0, -2.0]]})
    assert (pw(0.25), pw(0.75), pw(2.0)) == (-1.0, -2.0, -2.0)
    assert parse_schedule(1.0).is_constant and not lin.is_constant


@pytest.mark.parametrize("spec, words", [
    ({"kind": "exp"}, "kind"),
    ({"kind": "linear", "start": 1}, "needs end"),
    ({"kind": "linear", "start": 1, "end": 0, "speed": 2}, "speed"),
    ({"kind": "step", "values": [1, 2], "milestones": [0.5, 0.6]}, "milestones"),
    ({"kind": "piecewise", "points": [[0.5, 1], [0.2, 2]]}, "increase"),
    ({"kind": "piecewise", "points": [[0, 1], [1.5, 2]]}, "[0, 1]"),
    ("fast", "finite number"),
])
def test_bad_schedule_names_key_and_value(spec, words):
    with pytest.raises(ScheduleError, match=r"aug\.beta") as err:
        parse_schedule(spec, "aug.beta")
    assert words in str(err.value)


def _plant(beta: float) -> float:
    return 0.7 + 0.1 * math.tanh(beta / 2)  # SDF rises with beta (easier pairs), saturating


def test_controller_reaches_target_and_stays_in_band():
    c = BetaController(target=0.66, beta=2.0, gain=2.0)  # the gain that suits this steep model plant
    hist = simulate(c, _plant, 3000, lag=50, noise=0.03, seed=3)
    tail = [s for _, _, s in hist[1500:]]
    assert max(abs(s - 0.66) for s in tail) < 0.015          # settled within the band
    assert abs(sum(tail) / len(tail) - 0.66) < 0.003          # no offset (integral action)
    expected_beta = 2 * math.atanh((0.66 - 0.7) / 0.1)
    assert abs(hist[-1][1] - expected_beta) < 0.3


def test_default_gain_settles_on_the_measured_plant():
    """The default gain on the plant measured on the synthetic set (SDF = 0.9075 + 0.00575 beta, batch noise
    0.005; benchmarks/controller_gains.py): settles within +-0.002 of the target without offset or swinging."""
    c = BetaController(target=0.895, beta=2.0)

    def plant(b: float) -> float:
        return 0.9075 + 0.00575 * b

    hist = simulate(c, plant, 3000, lag=50, noise=0.005, seed=3)
    tail = [s for _, _, s in hist[1000:]]
    assert max(abs(s - 0.895) for s in tail) < 0.002
    assert abs(sum(tail) / len(tail) - 0.895) < 0.0005
    assert abs(hist[-1][1] - (0.895 - 0.9075) / 0.00575) < 0.3
    # gain 2 (the model plant's) is still far off after 1,000 steps on this flatter plant
    slow = simulate(BetaController(target=0.895, beta=2.0, gain=2.0), plant, 1000, lag=50, noise=0.005, seed=3)
    assert abs(slow[-1][2] - 0.895) > 0.003


def test_controller_respects_bounds_and_rate():
    c = BetaController(target=0.5, beta=0.0, beta_min=-1.0, max_change=0.1, every=5)  # unreachable target
    hist = simulate(c, _plant, 600, lag=10, noise=0.0)
    betas = [b for _, b, _ in hist]
    assert min(betas) == -1.0 and all(-1.0 <= b <= 4.0 for b in betas)
    assert max(abs(b1 - b0) for b0, b1 in zip(betas, betas[1:])) <= 0.1 + 1e-12


def test_controller_follows_a_target_schedule_and_resumes_exactly():
    target = parse_schedule({"kind": "linear", "start": 0.75, "end": 0.65})
    a = BetaController(target=target)
    b = BetaController(target=target)
    feed = [0.7 + 0.01 * math.sin(i) for i in range(400)]
    for i, s in enumerate(feed[:200]):
        a.update(s, i / 399)
        b.update(s, i / 399)
    c = BetaController(target=target)
    c.load_state_dict(b.state_dict())
    for i, s in enumerate(feed[200:], start=200):
        a.update(s, i / 399)
        c.update(s, i / 399)
    assert a.state_dict() == c.state_dict()


def test_controller_refuses_bad_settings():
    with pytest.raises(ControllerError, match="gain"):
        BetaController(target=0.7, gain=0)
    with pytest.raises(ControllerError, match="beta=9"):
        BetaController(target=0.7, beta=9)
