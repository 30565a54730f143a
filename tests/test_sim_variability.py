"""Slow within-person EEG variability: sleep, vigilance, time awake, day-to-day drift."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.jit import NUMBA_AVAILABLE
from simulator.physiology import variability
from simulator.physiology.state import BAND_NAMES
from simulator.physiology.variability import SlowVariability, VariabilityParams

DELTA, THETA, ALPHA = (BAND_NAMES.index(b) for b in ("delta", "theta", "alpha"))


def trace(params: VariabilityParams, hours: float, seed: int = 1, dt_s: float = 60.0) -> np.ndarray:
    slow = SlowVariability(params, np.random.default_rng(seed), start_time_of_day_h=8.0)
    return np.array([slow.step(dt_s) for _ in range(int(hours * 3600 / dt_s))])


def test_sleep_raises_delta_and_lowers_alpha_at_night() -> None:
    params = VariabilityParams(sleep_onset_h=23.0, sleep_duration_h=8.0, drift_sd_log=0.0)
    gains = trace(params, 24.0)
    hour_of_day = (8.0 + np.arange(len(gains)) / 60.0) % 24.0
    night = (hour_of_day >= 1.0) & (hour_of_day < 6.0)
    day = (hour_of_day >= 10.0) & (hour_of_day < 20.0)
    assert gains[night, DELTA].mean() > gains[day, DELTA].mean() + 0.8
    assert gains[night, ALPHA].mean() < gains[day, ALPHA].mean() - 0.2


def test_waking_theta_rises_with_time_awake() -> None:
    params = VariabilityParams(drift_sd_log=0.0, vigilance_loadings_log=(0.0,) * 5)
    gains = trace(params, 14.0)  # 08:00 to 22:00, awake since 06:30
    assert gains[-1, THETA] > gains[0, THETA] + 0.1


def test_day_to_day_drift_has_its_size_and_is_slow() -> None:
    params = VariabilityParams(
        vigilance_loadings_log=(0.0,) * 5, sleep_gain_log=(0.0,) * 5, theta_per_waking_h=0.0
    )
    gains = trace(params, 24.0 * 200, dt_s=3600.0)
    assert 0.1 < gains[:, ALPHA].std() < 0.2  # drift_sd_log 0.15 (Salinsky 1991 r = 0.84)
    lag_1h = np.corrcoef(gains[:-1, ALPHA], gains[1:, ALPHA])[0, 1]
    assert lag_1h > 0.95  # correlation time of days, not minutes


def test_disabled_variability_is_flat_and_the_same_seed_repeats() -> None:
    assert not np.any(trace(VariabilityParams(enabled=False), 5.0))
    params = VariabilityParams()
    assert np.array_equal(trace(params, 5.0, seed=3), trace(params, 5.0, seed=3))
    assert not np.array_equal(trace(params, 5.0, seed=3), trace(params, 5.0, seed=4))


@pytest.mark.skipif(not NUMBA_AVAILABLE, reason="numba not installed")
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_compiled_step_is_the_numpy_step_bit_for_bit(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two days of 4 s steps, asleep and awake: the compiled step's log gains and drift
    state equal the array version's to the last bit."""
    params = VariabilityParams()
    compiled = SlowVariability(params, np.random.default_rng(seed), 21.0)
    reference = SlowVariability(params, np.random.default_rng(seed), 21.0)
    got = [compiled.step(4.0).tobytes() for _ in range(43_200)]
    monkeypatch.setattr(variability, "_step_numba", None)
    want = [reference.step(4.0).tobytes() for _ in range(43_200)]
    assert got == want
    assert compiled._own.tobytes() == reference._own.tobytes()
