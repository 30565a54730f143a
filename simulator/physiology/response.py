"""Stimulation response: how sessions change the migraine cycle.

Three separate effects, because the trials report them separately. Dose is counted in
*labelled-session equivalents* (SE): 1 SE = the charge of one labelled session of the
device (``session_charge_uc``; the default is Cefaly's, 20 min at 16 mA, 250 µs,
60 Hz = 288 000 µC, Schoenen et al. 2013, Neurology 80:697). The conversion per device
preset is in ``simulator.devices``.

* **Prophylaxis** (calibrated). Regular sessions between attacks slowly lower the rate at
  which the migraine load builds. A leaky average P of the daily dose (SE per day) follows
  dP/dt = (dose rate - P) / tau with ``prophylaxis_tau_days``: weeks to build up and the
  same to wash out. tau = 87 days is the first-order time constant that gives Nerivio's
  prevention gain over sham of 0.84 days at 2 weeks and 2.68 days at 8 weeks
  (Blumenfeld et al. 2023): (1 - e^(-14/tau)) / (1 - e^(-56/tau)) = 0.84 / 2.68. The
  fraction by which the load's rise is slowed is ``prophylactic_efficacy * S(P)`` with a
  saturating dose-response S(P) = P (1 + k) / (k + P), S(1 SE/day) = 1, half of the
  plateau at ``dose_half_se_per_day`` = k (ASSUMPTION: Emax shape). The per-patient
  efficacy is continuous (drawn in patient.py), its population mean calibrated to PREMICE
  (Schoenen et al. 2013: 38.1 % vs 12.1 % 50 %-responders, -2.06 vs -0.32 monthly
  migraine days) and to nothing else.
* **Placebo** (calibrated on the PREMICE sham arm). Using a device regularly, whatever it
  delivers, slows the rise by ``placebo_efficacy * R``: R is a leaky average of sessions
  per day (any session counts: a trial's sham device is on at a sub-therapeutic setting),
  capped at 1, time constant ``placebo_tau_days`` (ASSUMPTION: expectation builds faster
  than the biological effect).
* **Acute** (UNCALIBRATED: no open-loop trial reports stimulation in the prodrome). Charge
  delivered while the patient is in PRODROME lowers susceptibility by an Emax (Hill)
  function of the prodrome's accumulated dose in SE, scaled by ``acute_efficacy``, with
  habituation to sustained exposure (leaky integrator of on-time). Kept from the earlier
  model so closed-loop policies have something to act on; its size is an ASSUMPTION.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from firmware_bridge.units import SECONDS_PER_DAY
from simulator.signals import StimulationInput

#: Cefaly's labelled prevention session: 16 mA x 0.25 ms x 60 Hz x 1200 s (µC).
CEFALY_SESSION_CHARGE_UC = 16.0 * 0.25 * 60.0 * 1200.0
#: Nerivio prevention gain over sham at 2 and 8 weeks (Blumenfeld et al. 2023), in days.
NERIVIO_GAIN_2_WEEKS_DAYS = 0.84
NERIVIO_GAIN_8_WEEKS_DAYS = 2.68


def build_up_tau_days(
    gain_early: float, gain_late: float, t_early_d: float, t_late_d: float
) -> float:
    """First-order time constant with (1 - e^(-t1/tau)) / (1 - e^(-t2/tau)) = g1 / g2."""
    target = gain_early / gain_late
    lo, hi = 1.0, 10_000.0
    for _ in range(200):  # bisection: the ratio falls monotonically from 1 to t1/t2 with tau
        mid = 0.5 * (lo + hi)
        ratio = (1.0 - math.exp(-t_early_d / mid)) / (1.0 - math.exp(-t_late_d / mid))
        lo, hi = (mid, hi) if ratio > target else (lo, mid)
    return 0.5 * (lo + hi)


#: ~87 days (Blumenfeld et al. 2023, first-order fit of the 2- and 8-week gains).
PROPHYLAXIS_TAU_DAYS = round(
    build_up_tau_days(NERIVIO_GAIN_2_WEEKS_DAYS, NERIVIO_GAIN_8_WEEKS_DAYS, 14.0, 56.0), 1
)


class ResponseParams(BaseModel):
    """Per-patient stimulation-response parameters (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    session_charge_uc: float = Field(
        default=CEFALY_SESSION_CHARGE_UC,
        gt=0.0,
        le=1e9,
        description="charge of one labelled session (1 SE) of the device",
    )
    prophylactic_efficacy: float = Field(
        default=0.4,
        ge=0.0,
        le=1.0,
        description="fraction the load's rise slows at the labelled daily dose, built up",
    )
    prophylaxis_tau_days: float = Field(default=PROPHYLAXIS_TAU_DAYS, gt=0.0, le=3650.0)
    dose_half_se_per_day: float = Field(
        default=1.0, gt=0.0, le=1e6, description="k of S(P) = P (1 + k) / (k + P)"
    )
    placebo_efficacy: float = Field(
        default=0.1, ge=0.0, le=1.0, description="fraction the rise slows with regular use"
    )
    placebo_tau_days: float = Field(default=14.0, gt=0.0, le=3650.0)
    acute_efficacy: float = Field(
        default=0.4, ge=0.0, le=1.0, description="scales the acute (prodrome) effect"
    )
    emax: float = Field(
        default=1.0, ge=0.0, le=5.0, description="acute: max susceptibility drop per prodrome"
    )
    q50_se: float = Field(
        default=0.5, gt=0.0, le=100.0, description="acute: prodrome dose for half effect (SE)"
    )
    hill_n: float = Field(default=1.5, gt=0.0, le=10.0, description="acute: Hill exponent")
    habituation_tau_s: float = Field(
        default=12 * 3600.0,
        gt=0.0,
        le=30 * SECONDS_PER_DAY,
        description="memory of recent exposure",
    )
    habituation_half_s: float = Field(
        default=2 * 3600.0,
        gt=0.0,
        le=30 * SECONDS_PER_DAY,
        description="recent exposure that halves the acute effect",
    )


class StimulationResponse:
    """Integrates delivered stimulation: acute drop (prodrome) and the slowing of the rise."""

    def __init__(self, params: ResponseParams) -> None:
        self.params = params
        self._prodrome_charge_uc = 0.0
        self._exposure_s = 0.0
        self._in_prodrome = False
        self._total_reduction = 0.0
        self._dose_se_per_day = 0.0  # P
        self._sessions_per_day = 0.0  # R
        self._step_was_on = False

    @property
    def prodrome_charge_uc(self) -> float:
        """Charge delivered in the current (or last) prodrome."""
        return self._prodrome_charge_uc

    @property
    def exposure_s(self) -> float:
        """Habituation state H: leaky-integrated stimulation-on time in seconds."""
        return self._exposure_s

    @property
    def efficacy(self) -> float:
        """Current multiplier on the acute dose-response (acute efficacy x habituation)."""
        p = self.params
        return p.acute_efficacy / (1.0 + self._exposure_s / p.habituation_half_s)

    @property
    def total_reduction(self) -> float:
        """Sum of all acute reductions returned so far (for reporting)."""
        return self._total_reduction

    @property
    def dose_se_per_day(self) -> float:
        """P: the leaky average of the daily dose in labelled-session equivalents."""
        return self._dose_se_per_day

    @property
    def sessions_per_day(self) -> float:
        """R: the leaky average of sessions started per day (any setting)."""
        return self._sessions_per_day

    @property
    def rise_factor(self) -> float:
        """Multiplier on the load's rise rate: (1 - prophylaxis) x (1 - placebo)."""
        p = self.params
        k = p.dose_half_se_per_day
        dose = self._dose_se_per_day
        saturation = dose * (1.0 + k) / (k + dose) if dose > 0.0 else 0.0
        prophylaxis = min(p.prophylactic_efficacy * saturation, 0.95)
        placebo = p.placebo_efficacy * min(self._sessions_per_day, 1.0)
        return (1.0 - prophylaxis) * (1.0 - placebo)

    def dose_response(self, charge_uc: float) -> float:
        """Acute E(Q) without habituation or efficacy (susceptibility units)."""
        if charge_uc <= 0.0:
            return 0.0
        p = self.params
        ratio = (charge_uc / p.session_charge_uc / p.q50_se) ** p.hill_n
        return p.emax * ratio / (1.0 + ratio)

    def step(self, stim: StimulationInput, dt_s: float, in_prodrome: bool) -> float:
        """Deliver ``stim`` for ``dt_s``; return the acute susceptibility reduction."""
        charge_uc = stim.charge_per_phase_uc * stim.frequency_hz * dt_s if stim.active else 0.0
        on_s = dt_s if stim.active else 0.0
        return self.step_dose(charge_uc, on_s, dt_s, in_prodrome)

    def step_dose(self, charge_uc: float, on_s: float, dt_s: float, in_prodrome: bool) -> float:
        """Like ``step`` for a step in which ``charge_uc`` was delivered during ``on_s`` seconds.

        Used when stimulation changed within the step (the composition integrates
        the delivered charge exactly across device blocks).
        """
        if dt_s <= 0.0:
            raise ValueError(f"dt_s must be > 0, got {dt_s}")
        p = self.params
        self._update_slow_effects(charge_uc, on_s, dt_s)
        if in_prodrome and not self._in_prodrome:
            self._prodrome_charge_uc = 0.0
        self._in_prodrome = in_prodrome
        # Habituation first (exact update of dH/dt = on_fraction - H/tau over the step).
        decay = math.exp(-dt_s / p.habituation_tau_s)
        on_fraction = min(max(on_s / dt_s, 0.0), 1.0)
        self._exposure_s = self._exposure_s * decay + on_fraction * p.habituation_tau_s * (
            1.0 - decay
        )
        if not in_prodrome or charge_uc <= 0.0:
            return 0.0
        before = self.dose_response(self._prodrome_charge_uc)
        self._prodrome_charge_uc += charge_uc
        after = self.dose_response(self._prodrome_charge_uc)
        reduction = (after - before) * self.efficacy
        self._total_reduction += reduction
        return reduction

    def _update_slow_effects(self, charge_uc: float, on_s: float, dt_s: float) -> None:
        """Leaky averages of dose (SE/day) and of sessions per day; a session starts at the
        first step with output after a step without."""
        p = self.params
        on = on_s > 0.0
        started = on and not self._step_was_on
        self._step_was_on = on
        days = dt_s / SECONDS_PER_DAY
        dose_se = charge_uc / p.session_charge_uc
        # Impulse input (dose delivered within the step) into a first-order filter.
        self._dose_se_per_day = (
            self._dose_se_per_day * math.exp(-days / p.prophylaxis_tau_days)
            + dose_se / p.prophylaxis_tau_days
        )
        self._sessions_per_day = self._sessions_per_day * math.exp(-days / p.placebo_tau_days) + (
            1.0 / p.placebo_tau_days if started else 0.0
        )
