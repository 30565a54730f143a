"""The physiology-only trial tier: migraine cycle + therapy response, no signals, no controller.

A fixed stimulation schedule drives the very code the full simulation steps
(``simulator.physiology.course.PatientCourse``, with the same seed streams), so an
open-loop arm here and through the full closed loop sees the same patient. What the
full loop adds - device latency, the amplitude sampled once per device block instead
of the exact ramp - changes the delivered charge by a fraction of a percent; the tier
agreement test (tests/test_physiology_tier.py) bounds what that does to the attacks.

Schedules:

* ``daily``: sessions at fixed times of the patient's day, as the ``open-loop`` and
  ``sham`` policies run them (the runner aligns their day to the patient's clock), from
  ``treatment_start_s`` on. Each session
  ramps up at the envelope's ramp-up rate, holds, and ramps down at its ramp-down rate
  after ``session_s`` (the envelope and the device slew the same way).
* ``prodrome``: a perfect detector - one session at every true prodrome onset (ground
  truth), then the ``prodrome-session`` policy's lockout. A ceiling for closed loop.

Time steps of minutes are fine for trials (the cycle's noise is exact for any step, the
phase changes are evaluated at step ends); the agreement test uses the full
simulation's 2 s step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from simulator.devices import DevicePreset, skin_impedance_ohm
from simulator.physiology.course import PatientCourse, patient_streams
from simulator.physiology.cycle import SECONDS_PER_DAY, MigraineCycle, Phase
from simulator.physiology.patient import VirtualPatient
from simulator.physiology.response import StimulationResponse

ScheduleMode = Literal["none", "daily", "prodrome"]


@dataclass(frozen=True)
class SessionPlan:
    """One session's waveform and its ramps (mA, µs, Hz, s, mA/s)."""

    amplitude_ma: float
    pulse_width_us: float
    frequency_hz: float
    session_s: float = 1200.0
    ramp_up_ma_per_s: float = 0.03
    ramp_down_ma_per_s: float = 0.12

    def breakpoints(self, start_s: float) -> tuple[list[float], list[float]]:
        """The piecewise-linear amplitude of a session starting at ``start_s``."""
        rise_s = self.amplitude_ma / self.ramp_up_ma_per_s
        end_s = start_s + self.session_s
        if rise_s <= self.session_s:
            times = [start_s, start_s + rise_s, end_s]
            amps = [0.0, self.amplitude_ma, self.amplitude_ma]
            peak = self.amplitude_ma
        else:  # the session ends before the ramp reaches the target
            peak = self.ramp_up_ma_per_s * self.session_s
            times, amps = [start_s, end_s], [0.0, peak]
        times.append(end_s + peak / self.ramp_down_ma_per_s)
        amps.append(0.0)
        return times, amps

    def amplitude_integral(self, start_s: float, t0: float, t1: float) -> tuple[float, float]:
        """(∫ amplitude dt in mA·s, seconds with output) over [t0, t1] of one session."""
        times, amps = self.breakpoints(start_s)
        lo, hi = max(t0, times[0]), min(t1, times[-1])
        if hi <= lo:
            return 0.0, 0.0
        grid = sorted({lo, hi, *(t for t in times if lo < t < hi)})
        values = np.interp(grid, times, amps)
        return float(np.trapezoid(values, grid)), hi - lo

    def squared_integral(self, start_s: float, t0: float, t1: float) -> float:
        """∫ amplitude² dt (mA²·s) over [t0, t1]: exact for linear pieces."""
        times, amps = self.breakpoints(start_s)
        lo, hi = max(t0, times[0]), min(t1, times[-1])
        if hi <= lo:
            return 0.0
        grid = sorted({lo, hi, *(t for t in times if lo < t < hi)})
        values = np.interp(grid, times, amps)
        a, b = values[:-1], values[1:]
        total = float(np.sum(np.diff(grid) * (a * a + a * b + b * b) / 3.0))
        return total


@dataclass(frozen=True)
class Schedule:
    """When sessions happen. ``times_of_day_s``: the patient's clock, for ``daily`` (the
    runner aligns the open-loop schedule's day to it: device t = 0 is the start time of
    day, 08:00 by default)."""

    mode: ScheduleMode
    plan: SessionPlan | None = None
    times_of_day_s: tuple[float, ...] = (28_800.0,)
    treatment_start_s: float = 0.0
    lockout_s: float = 28_800.0

    @classmethod
    def none(cls) -> Schedule:
        return cls("none")


@dataclass
class CourseResult:
    """What one patient did under one schedule."""

    attacks: list[tuple[float, float]] = field(default_factory=list)  # (onset, end) s
    prodrome_onsets: list[float] = field(default_factory=list)
    sessions: int = 0
    stim_time_s: float = 0.0
    charge_uc: float = 0.0
    teed_j: float = 0.0

    def attack_onsets(self) -> list[float]:
        return [a for a, _ in self.attacks]


def run_course(
    patient: VirtualPatient,
    seed: int,
    days: float,
    schedule: Schedule,
    *,
    step_s: float = 300.0,
    start_time_of_day_h: float = 8.0,
    device: DevicePreset | None = None,
) -> CourseResult:
    """Step one patient for ``days`` under ``schedule`` (the seed streams of the full sim)."""
    streams = patient_streams(seed, patient.seed)
    cycle = MigraineCycle(
        patient.cycle, np.random.default_rng(streams["cycle"]), start_time_of_day_h
    )
    course = PatientCourse(cycle, StimulationResponse(patient.response))
    plan = schedule.plan
    result = CourseResult()
    n_steps = round(days * SECONDS_PER_DAY / step_s)
    starts: list[float] = []  # session starts still delivering
    start_tod_s = start_time_of_day_h * 3600.0
    next_daily = _next_daily_start(schedule, 0.0, start_tod_s)
    lockout_until = -math.inf
    attack_onset: float | None = None
    charge_per_ma_s = 0.0 if plan is None else plan.pulse_width_us * 1e-3 * plan.frequency_hz
    for k in range(n_steps):
        t0, t1 = k * step_s, (k + 1) * step_s
        if plan is not None and schedule.mode == "daily":
            while next_daily < t1:
                starts.append(next_daily)
                result.sessions += 1
                next_daily = _next_daily_start(schedule, next_daily + 1e-6, start_tod_s)
        ma_s = on_s = ma2_s = 0.0
        if plan is not None:
            for start in starts:
                amp, on = plan.amplitude_integral(start, t0, t1)
                ma_s += amp
                on_s = max(on_s, on)
                if device is not None:
                    ma2_s += plan.squared_integral(start, t0, t1)
            starts = [s for s in starts if plan.breakpoints(s)[0][-1] > t1]
        charge = ma_s * charge_per_ma_s
        result.charge_uc += charge
        result.stim_time_s += on_s
        if device is not None and ma2_s > 0.0 and plan is not None:
            ohm = skin_impedance_ohm(device, t0) if device.impedance_dry_ohm else 1000.0
            # TEED = ∫ I² R f PW dt (Koss 2005): mA² s -> A² s.
            result.teed_j += ma2_s * 1e-6 * ohm * plan.frequency_hz * plan.pulse_width_us * 1e-6
        changes, _ = course.step(charge, on_s, step_s)
        for change in changes:
            if change.to_phase is Phase.ATTACK:
                attack_onset = change.t_s
            elif change.from_phase is Phase.ATTACK and attack_onset is not None:
                result.attacks.append((attack_onset, change.t_s))
                attack_onset = None
            if change.to_phase is Phase.PRODROME:
                result.prodrome_onsets.append(change.t_s)
                if (
                    plan is not None
                    and schedule.mode == "prodrome"
                    and change.t_s >= schedule.treatment_start_s
                    and change.t_s >= lockout_until
                ):
                    starts.append(change.t_s)
                    result.sessions += 1
                    lockout_until = change.t_s + plan.session_s + schedule.lockout_s
    if attack_onset is not None:
        result.attacks.append((attack_onset, n_steps * step_s))
    return result


def _next_daily_start(schedule: Schedule, after_s: float, start_tod_s: float) -> float:
    """The first daily session start (device time) at or after ``after_s`` and the
    treatment start; ``start_tod_s`` is the patient's time of day at device t = 0."""
    if schedule.mode != "daily" or not schedule.times_of_day_s:
        return math.inf
    t = max(after_s, schedule.treatment_start_s)
    day = math.floor(t / SECONDS_PER_DAY)
    best = math.inf
    for d in (day, day + 1):
        for tod in schedule.times_of_day_s:
            candidate = d * SECONDS_PER_DAY + (tod - start_tod_s) % SECONDS_PER_DAY
            if candidate >= t:
                best = min(best, candidate)
    return best


def migraine_days(
    attacks: Sequence[tuple[float, float]],
    start_s: float,
    end_s: float,
    start_time_of_day_h: float = 8.0,
) -> int:
    """Calendar days (patient clock) in [start_s, end_s) with any part of an attack."""
    offset = start_time_of_day_h * 3600.0
    first_day = math.floor((start_s + offset) / SECONDS_PER_DAY)
    last_day = math.ceil((end_s + offset) / SECONDS_PER_DAY) - 1
    days: set[int] = set()
    for onset, end in attacks:
        lo, hi = max(onset, start_s), min(end, end_s)
        if hi <= lo:
            continue
        a = math.floor((lo + offset) / SECONDS_PER_DAY)
        b = math.floor((hi + offset - 1e-9) / SECONDS_PER_DAY)
        days.update(d for d in range(a, b + 1) if first_day <= d <= last_day)
    return len(days)
