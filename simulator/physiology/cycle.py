"""The migraine cycle: a hidden, slowly varying susceptibility that drives the phases.

A pure stepping model (no clock, all state explicit). Susceptibility is

    s(t) = trend(t) + ou(t) + circadian(t) + triggers(t)

* ``trend`` rises linearly once the post-attack refractory period is over and is
  reset to ``reset_level`` at every attack onset (the attack "discharges" the
  load). Stimulation lowers it (``stim_dose``, the acute effect) and slows its rise
  (``rise_factor``, the preventive and placebo effects), both computed by
  ``simulator.physiology.response``. ASSUMPTION: a linear load that builds
  between attacks, the simplest model with a cycle length set by the patient's
  attack frequency.
* ``ou`` is Ornstein-Uhlenbeck noise (hours time constant), updated exactly for
  any step size. ASSUMPTION.
* ``circadian`` is a cosine with a 24 h period peaking at ``circadian_peak_h``
  (ASSUMPTION: attacks are commonly reported to start in the morning).
* ``triggers`` are Poisson-timed kicks that decay exponentially (ASSUMPTION:
  sleep loss, stress, menses... lumped into one random process).

Crossing ``threshold`` while interictal and not refractory starts a PRODROME of
a duration drawn per episode (hours to 2 days; pre-attack EEG windows of
24-48 h are reported, see docs/simulator.md). During the prodrome the trend
also escalates by ``prodrome_escalation`` (ASSUMPTION: once started, the
attack builds up, so noise alone rarely aborts it). If, during the prodrome,
susceptibility falls ``abort_margin`` below threshold (e.g. after effective
stimulation) the prodrome aborts; otherwise an ATTACK follows, with aura with
probability ``aura_probability``. Attack duration is drawn log-normally and
clamped to 4-72 h (ICHD-3, criterion 1.1 B; 2-72 h in children). Then POSTDROME,
then INTERICTAL with a refractory period.

Units: dimensionless susceptibility (threshold 1 by default), seconds, hours
only in parameter names that say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from firmware_bridge.units import SECONDS_PER_DAY
from simulator.signals import GroundTruthEvent

SECONDS_PER_HOUR = 3600.0
#: Mean length of a month in days (365.25 / 12), used for attack frequencies.
DAYS_PER_MONTH = 30.4375
#: Empirical correction for the head start noise gives the first passage of a
#: noisy ramp: the ramp needs to cover only about ``threshold - k * noise_sd``.
#: Calibrated by simulation: with k = 1 the simulated attack rate is within
#: about 8 % of the target for 1-14 attacks/month (docs/simulator.md, "Calibration").
FIRST_PASSAGE_NOISE_FACTOR = 1.0


class Phase(StrEnum):
    INTERICTAL = "interictal"
    PRODROME = "prodrome"
    ATTACK = "attack"
    POSTDROME = "postdrome"


class CycleParams(BaseModel):
    """Per-patient parameters of the migraine cycle (defaults: an episodic patient)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attacks_per_month: float = Field(
        default=4.0,
        gt=0.0,
        le=25.0,
        description="target attack frequency; sets the trend slope (ICHD-3: episodic < 15 "
        "headache days/month, chronic >= 15)",
    )
    threshold: float = Field(
        default=1.0, gt=0.0, le=10.0, description="prodrome starts at s >= threshold"
    )
    reset_level: float = Field(
        default=0.0, ge=-5.0, le=5.0, description="trend after an attack onset"
    )
    abort_margin: float = Field(
        default=0.2, ge=0.0, le=5.0, description="prodrome aborts when s < threshold - abort_margin"
    )
    prodrome_escalation: float = Field(
        default=0.3,
        ge=0.0,
        le=5.0,
        description="trend added linearly over a prodrome (the attack builds up once started)",
    )
    ou_sd: float = Field(default=0.08, ge=0.0, le=2.0, description="stationary SD of the OU noise")
    ou_tau_h: float = Field(default=12.0, gt=0.0, le=240.0, description="OU correlation time")
    circadian_amplitude: float = Field(default=0.05, ge=0.0, le=2.0)
    circadian_peak_h: float = Field(
        default=6.0, ge=0.0, lt=24.0, description="time of day of the peak"
    )
    trigger_rate_per_day: float = Field(default=0.3, ge=0.0, le=20.0)
    trigger_mean_amplitude: float = Field(
        default=0.1, ge=0.0, le=5.0, description="exponential mean"
    )
    trigger_decay_h: float = Field(default=6.0, gt=0.0, le=240.0)
    prodrome_mean_h: float = Field(default=24.0, ge=1.0, le=72.0)
    prodrome_cv: float = Field(
        default=0.3, ge=0.0, le=2.0, description="episode-to-episode variation"
    )
    prodrome_min_h: float = Field(default=2.0, ge=0.0, le=72.0)
    prodrome_max_h: float = Field(default=48.0, ge=1.0, le=96.0)
    attack_median_h: float = Field(default=12.0, ge=1.0, le=72.0)
    attack_sigma: float = Field(
        default=0.5, ge=0.0, le=2.0, description="log-normal sigma of duration"
    )
    attack_min_h: float = Field(
        default=4.0, ge=0.5, le=72.0, description="ICHD-3: 4 h (2 h children)"
    )
    attack_max_h: float = Field(default=72.0, ge=1.0, le=168.0, description="ICHD-3: 72 h")
    aura_probability: float = Field(default=0.0, ge=0.0, le=1.0, description="per attack")
    postdrome_mean_h: float = Field(default=12.0, ge=0.0, le=72.0)
    postdrome_cv: float = Field(default=0.3, ge=0.0, le=2.0)
    refractory_mean_h: float = Field(default=36.0, ge=0.0, le=720.0)
    refractory_cv: float = Field(default=0.3, ge=0.0, le=2.0)
    abort_refractory_h: float = Field(
        default=6.0, ge=0.0, le=240.0, description="no new prodrome this long after an abort"
    )
    min_rise_h: float = Field(
        default=6.0, gt=0.0, le=720.0, description="floor on the interictal rise"
    )

    @model_validator(mode="after")
    def _check_ranges(self) -> CycleParams:
        if self.prodrome_min_h > self.prodrome_max_h:
            raise ValueError("prodrome_min_h must be <= prodrome_max_h")
        if self.attack_min_h > self.attack_max_h:
            raise ValueError("attack_min_h must be <= attack_max_h")
        return self

    @property
    def noise_sd(self) -> float:
        """SD of the stationary noise terms (OU, circadian, triggers)."""
        trigger_rate_per_s = self.trigger_rate_per_day / SECONDS_PER_DAY
        tau_s = self.trigger_decay_h * SECONDS_PER_HOUR
        # Shot noise with exponential amplitudes: Var = rate * E[A^2] * tau / 2 (Campbell).
        trigger_var = trigger_rate_per_s * 2.0 * self.trigger_mean_amplitude**2 * tau_s / 2.0
        return math.sqrt(self.ou_sd**2 + self.circadian_amplitude**2 / 2.0 + trigger_var)

    @property
    def mean_episode_h(self) -> float:
        """Mean time from prodrome onset to the end of the refractory period."""
        attack_mean_h = self.attack_median_h * math.exp(self.attack_sigma**2 / 2.0)
        attack_mean_h = min(max(attack_mean_h, self.attack_min_h), self.attack_max_h)
        prodrome_mean_h = min(max(self.prodrome_mean_h, self.prodrome_min_h), self.prodrome_max_h)
        return prodrome_mean_h + attack_mean_h + self.postdrome_mean_h + self.refractory_mean_h

    @property
    def rise_per_s(self) -> float:
        """Trend slope that gives ``attacks_per_month`` on average.

        The interictal rise lasts what the cycle length leaves after the episode
        (floored at ``min_rise_h``); it has to cover reset -> threshold, minus the
        head start that noise gives a first passage.
        """
        cycle_h = DAYS_PER_MONTH * 24.0 / self.attacks_per_month
        rise_h = max(cycle_h - self.mean_episode_h, self.min_rise_h)
        distance = self.threshold - self.reset_level - FIRST_PASSAGE_NOISE_FACTOR * self.noise_sd
        distance = max(distance, 0.05 * (self.threshold - self.reset_level))
        return distance / (rise_h * SECONDS_PER_HOUR)


@dataclass(frozen=True)
class PhaseChange:
    """One transition of the cycle (``reason``: threshold, duration, abort, forced)."""

    t_s: float
    from_phase: Phase
    to_phase: Phase
    reason: str
    aura: bool = False
    duration_s: float = 0.0

    def ground_truth(self) -> list[GroundTruthEvent]:
        """The ground-truth events this transition stands for."""
        events = [
            GroundTruthEvent(
                self.t_s,
                "phase_change",
                None,
                {"from": self.from_phase.value, "to": self.to_phase.value, "reason": self.reason},
            )
        ]
        if self.to_phase is Phase.PRODROME:
            events.append(
                GroundTruthEvent(
                    self.t_s,
                    "prodrome_onset",
                    None,
                    {"planned_duration_s": self.duration_s, "reason": self.reason},
                )
            )
        elif self.to_phase is Phase.ATTACK:
            events.append(
                GroundTruthEvent(
                    self.t_s,
                    "attack_onset",
                    None,
                    {
                        "aura": "yes" if self.aura else "no",
                        "planned_duration_s": self.duration_s,
                        "reason": self.reason,
                    },
                )
            )
        elif self.to_phase is Phase.POSTDROME:
            events.append(
                GroundTruthEvent(
                    self.t_s, "postdrome_onset", None, {"planned_duration_s": self.duration_s}
                )
            )
        elif self.from_phase is Phase.PRODROME and self.reason == "abort":
            events.append(GroundTruthEvent(self.t_s, "prodrome_aborted", None, {}))
        elif self.to_phase is Phase.INTERICTAL:
            events.append(GroundTruthEvent(self.t_s, "interictal_onset", None, {}))
        return events


@dataclass(frozen=True)
class TriggerKick:
    """A trigger event that raised susceptibility (ground truth ``trigger``)."""

    t_s: float
    amplitude: float

    def ground_truth(self) -> GroundTruthEvent:
        return GroundTruthEvent(self.t_s, "trigger", None, {"amplitude": self.amplitude})


@dataclass(frozen=True)
class _Forcing:
    t_s: float
    to_phase: Phase
    aura: bool


_NOISE_BLOCK = 4096


class MigraineCycle:
    """Steps the susceptibility and the phase machine; see the module docstring.

    ``rng`` is used for the per-patient initial condition, per-episode durations,
    trigger times and the OU noise (two child streams, so the noise stream does
    not depend on how many episodes were drawn).
    """

    def __init__(
        self,
        params: CycleParams,
        rng: np.random.Generator,
        start_time_of_day_h: float = 8.0,
    ) -> None:
        self.params = params
        noise_rng, event_rng = rng.spawn(2)
        self._noise_rng = noise_rng
        self._event_rng = event_rng
        self._noise = np.empty(0)
        self._noise_i = 0
        self._t_s = 0.0
        self._start_tod_s = (start_time_of_day_h % 24.0) * SECONDS_PER_HOUR
        self._rise_per_s = params.rise_per_s
        self._phase = Phase.INTERICTAL
        self._phase_start_s = 0.0
        self._phase_end_s = math.inf
        self._escalation_per_s = 0.0
        self._aura = False
        self._refractory_until_s = 0.0
        # Start somewhere along the interictal rise (not at threshold, not at reset).
        span = params.threshold - params.reset_level
        self._trend = params.reset_level + float(event_rng.uniform(0.0, 0.7)) * span
        self._ou = float(noise_rng.normal(0.0, params.ou_sd)) if params.ou_sd > 0 else 0.0
        self._kick = 0.0
        self._next_trigger_s = self._draw_trigger_gap_s()
        self._forcings: list[_Forcing] = []
        self._s = self._trend + self._ou + self._circadian(0.0)
        self.triggers: list[TriggerKick] = []

    # ----------------------------------------------------------------- state
    @property
    def t_s(self) -> float:
        return self._t_s

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def susceptibility(self) -> float:
        return self._s

    @property
    def trend(self) -> float:
        return self._trend

    @property
    def aura(self) -> bool:
        """Whether the current (or last) attack has an aura."""
        return self._aura

    @property
    def phase_elapsed_s(self) -> float:
        return self._t_s - self._phase_start_s

    @property
    def phase_progress(self) -> float:
        """0..1 through the current phase (0 for the open-ended interictal phase)."""
        if math.isinf(self._phase_end_s):
            return 0.0
        length = self._phase_end_s - self._phase_start_s
        if length <= 0.0:
            return 1.0
        return min(max((self._t_s - self._phase_start_s) / length, 0.0), 1.0)

    @property
    def refractory(self) -> bool:
        return self._t_s < self._refractory_until_s

    # --------------------------------------------------------------- forcing
    def force_prodrome(self, t_s: float) -> None:
        """At ``t_s`` (or the first step ending after it) start a prodrome.

        Susceptibility is lifted to ``threshold`` (as if it had just crossed it);
        the prodrome escalation then carries it into an attack unless something
        lowers it. Ignored (with a ``forcing_ignored`` event) if the patient is
        then not interictal.
        """
        self._schedule(_Forcing(t_s, Phase.PRODROME, False))

    def force_attack(self, t_s: float, aura: bool) -> None:
        """At ``t_s`` start an attack (with or without aura), from any phase but ATTACK."""
        self._schedule(_Forcing(t_s, Phase.ATTACK, aura))

    def _schedule(self, forcing: _Forcing) -> None:
        self._forcings.append(forcing)
        self._forcings.sort(key=lambda f: f.t_s)

    # -------------------------------------------------------------- stepping
    def advance(
        self, dt_s: float, stim_dose: float = 0.0, rise_factor: float = 1.0
    ) -> tuple[list[PhaseChange], list[GroundTruthEvent]]:
        """Advance by ``dt_s`` seconds; ``stim_dose`` lowers the trend (susceptibility units)
        and ``rise_factor`` scales the load's rise (a preventive effect slows it, < 1).

        Returns the phase changes and any other ground-truth events (triggers,
        ignored forcings). Phase transitions are evaluated at the end of the step.
        """
        if dt_s <= 0.0:
            raise ValueError(f"dt_s must be > 0, got {dt_s}")
        p = self.params
        t = self._t_s + dt_s
        self._t_s = t
        other: list[GroundTruthEvent] = []

        if p.ou_sd > 0.0:
            decay = math.exp(-dt_s / (p.ou_tau_h * SECONDS_PER_HOUR))
            self._ou = self._ou * decay + p.ou_sd * math.sqrt(1.0 - decay * decay) * self._normal()
        self._kick *= math.exp(-dt_s / (p.trigger_decay_h * SECONDS_PER_HOUR))
        while self._next_trigger_s <= t:
            amplitude = float(self._event_rng.exponential(p.trigger_mean_amplitude))
            kick = TriggerKick(self._next_trigger_s, amplitude)
            self.triggers.append(kick)
            other.append(kick.ground_truth())
            self._kick += amplitude
            self._next_trigger_s += self._draw_trigger_gap_s()

        if self._phase in (Phase.INTERICTAL, Phase.PRODROME):
            rise_from_s = max(t - dt_s, self._refractory_until_s)
            if t > rise_from_s:
                self._trend += self._rise_per_s * rise_factor * (t - rise_from_s)
        if self._phase is Phase.PRODROME:
            self._trend += self._escalation_per_s * dt_s
        self._trend -= stim_dose
        self._s = self._trend + self._ou + self._kick + self._circadian(t)

        changes: list[PhaseChange] = []
        while self._forcings and self._forcings[0].t_s <= t:
            forcing = self._forcings.pop(0)
            change = self._apply_forcing(forcing, t)
            if change is None:
                other.append(
                    GroundTruthEvent(
                        t,
                        "forcing_ignored",
                        None,
                        {"forced": forcing.to_phase.value, "phase": self._phase.value},
                    )
                )
            else:
                changes.append(change)
        natural = self._natural_transition(t)
        if natural is not None:
            changes.append(natural)
        return changes, other

    def _natural_transition(self, t: float) -> PhaseChange | None:
        p = self.params
        phase = self._phase
        if phase is Phase.INTERICTAL:
            if t >= self._refractory_until_s and self._s >= p.threshold:
                return self._enter(Phase.PRODROME, t, "threshold")
        elif phase is Phase.PRODROME:
            if self._s < p.threshold - p.abort_margin:
                change = self._enter(Phase.INTERICTAL, t, "abort")
                self._refractory_until_s = t + p.abort_refractory_h * SECONDS_PER_HOUR
                return change
            if t >= self._phase_end_s:
                return self._enter(Phase.ATTACK, t, "duration", aura=self._draw_aura())
        elif phase is Phase.ATTACK:
            if t >= self._phase_end_s:
                return self._enter(Phase.POSTDROME, t, "duration")
        elif phase is Phase.POSTDROME and t >= self._phase_end_s:
            change = self._enter(Phase.INTERICTAL, t, "duration")
            refractory_s = self._draw_lognormal_s(p.refractory_mean_h, p.refractory_cv, 0.0, 1e4)
            self._refractory_until_s = t + refractory_s
            return change
        return None

    def _apply_forcing(self, forcing: _Forcing, t: float) -> PhaseChange | None:
        p = self.params
        if forcing.to_phase is Phase.PRODROME:
            if self._phase is not Phase.INTERICTAL:
                return None
            # Lift the load so that s sits at threshold (no-op if already above).
            lift = max(p.threshold - self._s, 0.0)
            self._trend += lift
            self._s += lift
            self._refractory_until_s = min(self._refractory_until_s, t)
            return self._enter(Phase.PRODROME, t, "forced")
        if self._phase is Phase.ATTACK:
            return None
        return self._enter(Phase.ATTACK, t, "forced", aura=forcing.aura)

    def _enter(self, to_phase: Phase, t: float, reason: str, aura: bool = False) -> PhaseChange:
        p = self.params
        from_phase = self._phase
        duration_s = math.inf
        if to_phase is Phase.PRODROME:
            duration_s = self._draw_lognormal_s(
                p.prodrome_mean_h, p.prodrome_cv, p.prodrome_min_h, p.prodrome_max_h
            )
            self._escalation_per_s = p.prodrome_escalation / max(duration_s, 1.0)
        elif to_phase is Phase.ATTACK:
            duration_s = self._draw_attack_s()
            self._aura = aura
            self._trend = p.reset_level
            self._s = self._trend + self._ou + self._kick + self._circadian(t)
        elif to_phase is Phase.POSTDROME:
            duration_s = self._draw_lognormal_s(p.postdrome_mean_h, p.postdrome_cv, 0.0, 1e4)
        self._phase = to_phase
        self._phase_start_s = t
        self._phase_end_s = t + duration_s
        return PhaseChange(
            t,
            from_phase,
            to_phase,
            reason,
            aura=aura if to_phase is Phase.ATTACK else False,
            duration_s=0.0 if math.isinf(duration_s) else duration_s,
        )

    # ---------------------------------------------------------------- draws
    def _normal(self) -> float:
        if self._noise_i >= self._noise.size:
            self._noise = self._noise_rng.standard_normal(_NOISE_BLOCK)
            self._noise_i = 0
        value = float(self._noise[self._noise_i])
        self._noise_i += 1
        return value

    def _circadian(self, t_s: float) -> float:
        p = self.params
        if p.circadian_amplitude == 0.0:
            return 0.0
        tod_h = ((self._start_tod_s + t_s) % SECONDS_PER_DAY) / SECONDS_PER_HOUR
        return p.circadian_amplitude * math.cos(2.0 * math.pi * (tod_h - p.circadian_peak_h) / 24.0)

    def _draw_trigger_gap_s(self) -> float:
        rate = self.params.trigger_rate_per_day
        if rate <= 0.0:
            return math.inf
        return float(self._event_rng.exponential(SECONDS_PER_DAY / rate))

    def _draw_aura(self) -> bool:
        return bool(self._event_rng.random() < self.params.aura_probability)

    def _draw_lognormal_s(self, mean_h: float, cv: float, lo_h: float, hi_h: float) -> float:
        """Log-normal with the given mean and coefficient of variation, clamped."""
        if mean_h <= 0.0:
            return 0.0
        sigma2 = math.log1p(cv * cv)
        mu = math.log(mean_h) - sigma2 / 2.0
        value_h = float(self._event_rng.lognormal(mu, math.sqrt(sigma2)))
        return min(max(value_h, lo_h), hi_h) * SECONDS_PER_HOUR

    def _draw_attack_s(self) -> float:
        p = self.params
        value_h = float(self._event_rng.lognormal(math.log(p.attack_median_h), p.attack_sigma))
        return min(max(value_h, p.attack_min_h), p.attack_max_h) * SECONDS_PER_HOUR
