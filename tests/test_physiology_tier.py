"""The physiology-only trial tier: its schedules, and agreement with the full simulation."""

from __future__ import annotations

import numpy as np
import pytest

from controller.envelope import EnvelopeConfig
from insilico.physiology_tier import Schedule, SessionPlan, migraine_days, run_course
from simulator.physiology.patient import VirtualPatient
from simulator.physiology.scenario import scenario_from_dict
from simulator.signals import StimulationInput

ENVELOPE = EnvelopeConfig()
CEFALY = SessionPlan(
    16.0, 250, 60.0, 1200.0, ENVELOPE.ramp_up_ma_per_s, ENVELOPE.ramp_down_ma_per_s
)
#: A patient with short cycles, so prodromes and attacks fall within hours.
FAST_CYCLE = {
    "cycle": {
        "attacks_per_month": 25.0,
        "prodrome_mean_h": 4.0,
        "prodrome_min_h": 1.0,
        "attack_median_h": 4.0,
        "postdrome_mean_h": 2.0,
        "refractory_mean_h": 2.0,
    }
}


def test_a_session_delivers_its_ramped_charge() -> None:
    rise_s = 16.0 / ENVELOPE.ramp_up_ma_per_s
    fall_s = 16.0 / ENVELOPE.ramp_down_ma_per_s
    ma_s, on_s = CEFALY.amplitude_integral(1000.0, 0.0, 10_000.0)
    assert ma_s == pytest.approx(16.0 * (1200.0 - rise_s / 2 + fall_s / 2))
    assert on_s == pytest.approx(1200.0 + fall_s)
    # Split into steps, the pieces add up to the whole.
    pieces = [CEFALY.amplitude_integral(1000.0, t, t + 7.0)[0] for t in np.arange(0, 10_000, 7.0)]
    assert sum(pieces) == pytest.approx(ma_s)
    assert CEFALY.squared_integral(1000.0, 0.0, 10_000.0) == pytest.approx(
        16.0**2 * (1200.0 - rise_s + rise_s / 3 + fall_s / 3)
    )


def test_migraine_days_count_calendar_days_touched_by_an_attack() -> None:
    day = 86_400.0
    # Patient clock starts at 08:00: an attack from 20:00 to 04:00 touches two days.
    assert migraine_days([(12 * 3600.0, 20 * 3600.0)], 0.0, 3 * day) == 2
    assert migraine_days([(3600.0, 7200.0), (3 * 3600.0, 4 * 3600.0)], 0.0, day) == 1
    assert migraine_days([(3600.0, 7200.0)], 2 * 3600.0, day) == 0  # outside the window


def test_daily_schedule_runs_one_session_a_day_from_the_treatment_start() -> None:
    patient = VirtualPatient.from_phenotype("episodic-without-aura", 3)
    schedule = Schedule("daily", CEFALY, treatment_start_s=5 * 86_400.0)
    result = run_course(patient, 3, 12.0, schedule, step_s=600.0)
    assert result.sessions == 7
    session_uc = CEFALY.amplitude_integral(0.0, 0.0, 1e5)[0] * 0.25 * 60.0
    assert result.charge_uc == pytest.approx(7 * session_uc)


def test_perfect_detector_starts_a_session_at_every_true_prodrome_onset() -> None:
    patient = VirtualPatient.from_phenotype("episodic-without-aura", 5, FAST_CYCLE)
    schedule = Schedule("prodrome", CEFALY, lockout_s=0.0)
    result = run_course(patient, 5, 10.0, schedule, step_s=60.0)
    assert len(result.prodrome_onsets) >= 3
    assert result.sessions == len(result.prodrome_onsets)


def sampled_schedule_run(patient: VirtualPatient, seed: int, days: float) -> list[float]:
    """The full signal simulation fed the schedule's amplitude once per 2 s block."""
    scenario = scenario_from_dict(
        {
            "duration_s": days * 86_400.0,
            "seed": seed,
            "patient": {
                "phenotype": patient.phenotype.value,
                "seed": seed,
                "overrides": FAST_CYCLE,
            },
        }
    )
    sim = scenario.build_source(sampling_rate_hz=100.0)
    times, amps = CEFALY.breakpoints(28_800.0)
    for k in range(int(days * 86_400.0 / 2.0)):
        amplitude = float(np.interp(k * 2.0, times, amps, left=0.0, right=0.0))
        stim = StimulationInput(amplitude, 250.0, 60.0) if amplitude > 0 else StimulationInput()
        sim.read(200, stim)
    return [e.t_s for e in sim.drain_ground_truth() if e.kind == "prodrome_onset"]


def test_the_tier_steps_the_same_physiology_as_the_signal_simulation() -> None:
    """Same patient, seed and 2 s step: the same prodrome onsets, to the step."""
    seed = 1
    patient = VirtualPatient.from_phenotype("episodic-without-aura", seed, FAST_CYCLE)
    tier = run_course(patient, seed, 0.9, Schedule("daily", CEFALY), step_s=2.0)
    unstimulated = run_course(patient, seed, 0.9, Schedule.none(), step_s=2.0)
    assert tier.prodrome_onsets  # the session at 08:00 device time precedes the prodrome
    assert tier.prodrome_onsets != unstimulated.prodrome_onsets  # the session mattered
    assert sampled_schedule_run(patient, seed, 0.9) == tier.prodrome_onsets
