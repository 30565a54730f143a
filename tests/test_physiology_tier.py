"""The physiology-only trial tier: its schedules, and agreement with the full simulation."""

from __future__ import annotations

import numpy as np
import pytest

from controller.config import ControllerConfig
from controller.envelope import EnvelopeConfig
from insilico.physiology_tier import Schedule, SessionPlan, migraine_days, run_course
from insilico.runner import SimSpec, run_sim, with_policy
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
        "prodrome_mean_h": 2.0,
        "prodrome_min_h": 1.0,
        "prodrome_cv": 0.0,
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


#: A patient whose first prodrome (6.5 h) and attack (8.5 h) follow the 08:00 session,
#: which moves them by ~29 min (found with the tier; cheap to simulate).
AGREEMENT_SEED, AGREEMENT_DAYS = 40, 0.4


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
    times, amps = CEFALY.breakpoints(0.0)  # 08:00 on the patient's clock
    for k in range(int(days * 86_400.0 / 2.0)):
        amplitude = float(np.interp(k * 2.0, times, amps, left=0.0, right=0.0))
        stim = StimulationInput(amplitude, 250.0, 60.0) if amplitude > 0 else StimulationInput()
        sim.read(200, stim)
    return [e.t_s for e in sim.drain_ground_truth() if e.kind == "prodrome_onset"]


def test_the_tier_steps_the_same_physiology_as_the_signal_simulation() -> None:
    """Same patient, seed and 2 s step: the same prodrome onsets, to the step."""
    seed = AGREEMENT_SEED
    patient = VirtualPatient.from_phenotype("episodic-without-aura", seed, FAST_CYCLE)
    tier = run_course(patient, seed, AGREEMENT_DAYS, Schedule("daily", CEFALY), step_s=2.0)
    unstimulated = run_course(patient, seed, AGREEMENT_DAYS, Schedule.none(), step_s=2.0)
    assert tier.prodrome_onsets  # the session at 08:00 (t = 0) precedes the prodrome
    assert tier.prodrome_onsets != unstimulated.prodrome_onsets  # the session mattered
    assert sampled_schedule_run(patient, seed, AGREEMENT_DAYS) == tier.prodrome_onsets


@pytest.mark.timeout(1200)  # ~15 s on an idle machine; minutes when the cores are shared
def test_open_loop_through_the_full_closed_loop_gives_the_tiers_attacks() -> None:
    """Tier agreement: the open-loop policy through the real controller, codec and device
    against the physiology tier, same patient and seed, 0.4 virtual days.

    Measured: the same onsets to the 2 s step (prodrome 23,546 s, attack 30,746 s). The
    2 min tolerance covers what can differ: the full loop starts its first session a few
    seconds late (handshake, first impedance report), samples the ramp once per 2 s device
    block (0.2 % less charge) and its device may report a start as two off-on transitions,
    each of which the placebo term counts (another patient moved by 16 s that way),
    against the ~29 min that the session itself moves this patient's onsets.
    """
    seed, days = AGREEMENT_SEED, AGREEMENT_DAYS
    scenario = scenario_from_dict(
        {
            "name": "tier-agreement",
            "duration_s": days * 86_400.0,
            "seed": seed,
            "patient": {
                "phenotype": "episodic-without-aura",
                "seed": seed,
                "overrides": FAST_CYCLE,
            },
        }
    )
    config = with_policy(ControllerConfig(), "open-loop")
    report = run_sim(SimSpec(scenario, scenario.duration_s, config, timeline_points=10))
    loop_prodromes = [g.t_s for g in report.ground_truth if g.kind == "prodrome_onset"]
    loop_attacks = [a.t_s for a in report.attacks]

    tier = run_course(scenario.patient(), seed, days, Schedule("daily", CEFALY), step_s=2.0)
    unstimulated = run_course(scenario.patient(), seed, days, Schedule.none(), step_s=2.0)
    assert len(loop_attacks) == len(tier.attacks) >= 1
    assert len(loop_prodromes) == len(tier.prodrome_onsets)
    for loop_t, tier_t in zip(loop_attacks, tier.attack_onsets(), strict=True):
        assert abs(loop_t - tier_t) <= 120.0
    for loop_t, tier_t in zip(loop_prodromes, tier.prodrome_onsets, strict=True):
        assert abs(loop_t - tier_t) <= 120.0
    # The tolerance is far below what the session does: without it the onsets differ more.
    assert abs(unstimulated.prodrome_onsets[0] - tier.prodrome_onsets[0]) > 600.0
    assert report.stimulation.charge_uc == pytest.approx(tier.charge_uc, rel=0.01)
