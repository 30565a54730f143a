"""Slow within-person EEG variability that has nothing to do with migraine.

Real EEG band power of one person moves with vigilance, sleep, time awake and from day
to day; a prodromal signature has to be found on top of that. Without it, 5-min averages
separate prodrome from interictal far better than any study reports (the prodrome literature:
small, group-level effects). Every component is a multiplicative band-power
gain shared by all sites (log gains add):

* **Day-to-day drift**: per band an Ornstein-Uhlenbeck process in log power, correlation
  time ``drift_tau_h`` (2 days), SD ``drift_sd_log``, a share ``drift_shared_fraction`` of
  it common to all bands. Size: within-person spectral test-retest r = 0.84 over 12-16
  weeks (Salinsky et al. 1991, Electroencephalogr Clin Neurophysiol 79:382) means the
  within-person variance is ~0.16/0.84 = 0.19 of the between-person variance; with a
  between-person SD of log band power of ~0.35 (ASSUMPTION) that is an SD of ~0.15.
* **Vigilance** (wake): an OU drowsiness variable (``vigilance_tau_s`` ~15 min, unit SD);
  drowsiness lowers alpha and raises theta (Santamaria & Chiappa 1987, J Clin
  Neurophysiol 4:327); the loadings (log gain per SD) are ASSUMPTIONS.
* **Sleep-wake**: asleep from ``sleep_onset_h`` for ``sleep_duration_h`` each night
  (drawn per patient), entered and left with a lag ``sleep_transition_tau_s``; in sleep
  delta and theta rise and alpha and beta fall (NREM slow-wave activity, a textbook
  fact; the sizes, an average over sleep stages, are ASSUMPTIONS).
* **Time awake**: waking theta rises with time awake (Finelli et al. 2000, Neuroscience
  101:523), ``theta_per_waking_h`` log gain per hour since waking (ASSUMPTION: ~+15 %
  over a 16 h day).

The state advances once per modulation cell (seconds); all updates are exact for any
step (OU decay), so the result does not depend on how the caller splits time, only on
the seeded random stream.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from firmware_bridge.units import SECONDS_PER_DAY
from simulator.jit import NUMBA_AVAILABLE, jit
from simulator.physiology.state import BAND_NAMES

SECONDS_PER_HOUR = 3600.0

Loadings = tuple[float, float, float, float, float]


class VariabilityParams(BaseModel):
    """Per-patient slow variability (log power gains in BAND_NAMES order)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=True, description="off: the patient's baseline never moves")
    drift_sd_log: float = Field(default=0.15, ge=0.0, le=2.0)
    drift_tau_h: float = Field(default=48.0, gt=0.0, le=2400.0)
    drift_shared_fraction: float = Field(default=0.6, ge=0.0, le=1.0)
    vigilance_tau_s: float = Field(default=900.0, gt=0.0, le=SECONDS_PER_DAY)
    vigilance_loadings_log: Loadings = Field(
        default=(0.05, 0.15, -0.20, -0.05, 0.0), description="log gain per SD of drowsiness"
    )
    sleep_onset_h: float = Field(default=23.0, ge=0.0, lt=24.0, description="time of day")
    sleep_duration_h: float = Field(default=7.5, ge=0.0, le=16.0)
    sleep_transition_tau_s: float = Field(default=900.0, gt=0.0, le=SECONDS_PER_DAY)
    sleep_gain_log: Loadings = Field(
        default=(1.1, 0.4, -0.4, -0.3, -0.3), description="log gain when fully asleep"
    )
    theta_per_waking_h: float = Field(default=0.009, ge=-1.0, le=1.0)


def _step_loops(
    own: np.ndarray,
    own_draws: np.ndarray,
    drift_decay: float,
    drift_kick: float,
    drift_sd_log: float,
    shared_term: float,
    own_weight: float,
    vigilance: float,
    vigilance_loadings: np.ndarray,
    sleep: float,
    sleep_gains: np.ndarray,
    theta: int,
    theta_log: float,
    own_out: np.ndarray,
    log_gain: np.ndarray,
) -> None:
    """The array arithmetic of ``SlowVariability.step`` element by element, in one call
    (numba target; the products and sums of the array version in the same order): each
    band's own drift (``own_out``) and the log gains ``log_gain`` computes from it."""
    for b in range(own.shape[0]):
        drift_own = own[b] * drift_decay + drift_kick * own_draws[b]
        own_out[b] = drift_own
        drift = drift_sd_log * (shared_term + own_weight * drift_own)
        time_awake = theta_log if b == theta else 0.0
        log_gain[b] = (
            drift + vigilance * vigilance_loadings[b] + sleep * sleep_gains[b] + time_awake
        )


_step_numba: Callable[..., None] | None = jit(_step_loops) if NUMBA_AVAILABLE else None


class SlowVariability:
    """Stateful log band-power gains of one patient (shape (5,), shared across sites)."""

    def __init__(
        self, params: VariabilityParams, rng: np.random.Generator, start_time_of_day_h: float
    ) -> None:
        self.params = params
        self._rng = rng
        self._t_s = 0.0
        self._start_tod_s = start_time_of_day_h * SECONDS_PER_HOUR
        n = len(BAND_NAMES)
        self._shared = float(rng.standard_normal())
        self._own = rng.standard_normal(n)
        self._vigilance = float(rng.standard_normal())
        self._sleep = 1.0 if self.asleep_at(0.0) else 0.0
        self._zero = np.zeros(n)
        # The frozen parameters' loadings as arrays once, not at every step.
        self._vigilance_loadings = np.asarray(params.vigilance_loadings_log, dtype=np.float64)
        self._sleep_gains = np.asarray(params.sleep_gain_log, dtype=np.float64)
        self._theta = BAND_NAMES.index("theta")

    @property
    def sleep_depth(self) -> float:
        """0 awake .. 1 fully asleep (lagged)."""
        return self._sleep

    def time_of_day_h(self, t_s: float) -> float:
        return ((self._start_tod_s + t_s) % SECONDS_PER_DAY) / SECONDS_PER_HOUR

    def asleep_at(self, t_s: float) -> bool:
        p = self.params
        since_onset_h = (self.time_of_day_h(t_s) - p.sleep_onset_h) % 24.0
        return since_onset_h < p.sleep_duration_h

    def hours_awake(self, t_s: float) -> float:
        """Hours since this day's wake-up (0 while asleep)."""
        p = self.params
        if self.asleep_at(t_s):
            return 0.0
        wake_h = (p.sleep_onset_h + p.sleep_duration_h) % 24.0
        return (self.time_of_day_h(t_s) - wake_h) % 24.0

    def step(self, dt_s: float) -> np.ndarray:
        """Advance by ``dt_s``; the log band-power gains for the step that ends then."""
        p = self.params
        if not p.enabled:
            return self._zero
        self._t_s += dt_s
        rng = self._rng
        drift_decay = math.exp(-dt_s / (p.drift_tau_h * SECONDS_PER_HOUR))
        drift_kick = math.sqrt(1.0 - drift_decay * drift_decay)
        self._shared = self._shared * drift_decay + drift_kick * float(rng.standard_normal())
        own_draws = rng.standard_normal(self._own.size)
        kernel = _step_numba
        if kernel is None:
            self._own = self._own * drift_decay + drift_kick * own_draws
        vig_decay = math.exp(-dt_s / p.vigilance_tau_s)
        self._vigilance = self._vigilance * vig_decay + math.sqrt(
            1.0 - vig_decay * vig_decay
        ) * float(rng.standard_normal())
        target = 1.0 if self.asleep_at(self._t_s) else 0.0
        self._sleep += (target - self._sleep) * (1.0 - math.exp(-dt_s / p.sleep_transition_tau_s))
        if kernel is None:
            return self.log_gain()
        # The own drift and log_gain() in one compiled call (the same numbers; tested).
        own = np.empty(self._own.size)
        out = np.empty(self._own.size)
        awake = 1.0 - self._sleep
        kernel(
            self._own,
            own_draws,
            drift_decay,
            drift_kick,
            p.drift_sd_log,
            math.sqrt(p.drift_shared_fraction) * self._shared,
            math.sqrt(1.0 - p.drift_shared_fraction),
            awake * self._vigilance,
            self._vigilance_loadings,
            self._sleep,
            self._sleep_gains,
            self._theta,
            awake * p.theta_per_waking_h * self.hours_awake(self._t_s),
            own,
            out,
        )
        self._own = own
        return out

    def log_gain(self) -> np.ndarray:
        p = self.params
        if not p.enabled:
            return self._zero
        shared = math.sqrt(p.drift_shared_fraction)
        own = math.sqrt(1.0 - p.drift_shared_fraction)
        drift = p.drift_sd_log * (shared * self._shared + own * self._own)
        awake = 1.0 - self._sleep
        vigilance = awake * self._vigilance * self._vigilance_loadings
        sleep = self._sleep * self._sleep_gains
        time_awake = np.zeros(len(BAND_NAMES))
        time_awake[self._theta] = awake * p.theta_per_waking_h * self.hours_awake(self._t_s)
        return drift + vigilance + sleep + time_awake
