"""The migraine cycle and the stimulation response, run without any signal model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.physiology.cycle import (
    DAYS_PER_MONTH,
    SECONDS_PER_DAY,
    SECONDS_PER_HOUR,
    CycleParams,
    MigraineCycle,
    Phase,
    PhaseChange,
)
from simulator.physiology.patient import Phenotype, VirtualPatient
from simulator.physiology.response import (
    CEFALY_SESSION_CHARGE_UC,
    ResponseParams,
    StimulationResponse,
)
from simulator.signals import StimulationInput

# A Cefaly-like session (device labelling): 16 mA, 250 µs, 60 Hz.
CEFALY = StimulationInput(amplitude_ma=16.0, pulse_width_us=250.0, frequency_hz=60.0)
OFF = StimulationInput()


def run_cycle(
    cycle: MigraineCycle,
    days: float,
    dt_s: float,
    response: StimulationResponse | None = None,
    policy_on: bool = False,
) -> list[PhaseChange]:
    """Step the cycle; with ``policy_on`` stimulate 20 min every 4 h while in prodrome."""
    changes: list[PhaseChange] = []
    prodrome_start_s = 0.0
    for _ in range(int(days * SECONDS_PER_DAY / dt_s)):
        dose = 0.0
        if response is not None:
            in_prodrome = cycle.phase is Phase.PRODROME
            since_s = cycle.t_s - prodrome_start_s
            stim_now = policy_on and in_prodrome and (since_s % (4 * 3600.0)) < 20 * 60.0
            dose = response.step(CEFALY if stim_now else OFF, dt_s, in_prodrome)
        step_changes, _ = cycle.advance(dt_s, dose)
        for change in step_changes:
            if change.to_phase is Phase.PRODROME:
                prodrome_start_s = change.t_s
        changes.extend(step_changes)
    return changes


def attack_intervals_s(changes: list[PhaseChange], end_s: float) -> list[tuple[float, float]]:
    intervals: list[tuple[float, float]] = []
    onset: float | None = None
    for change in changes:
        if change.to_phase is Phase.ATTACK:
            onset = change.t_s
        elif change.from_phase is Phase.ATTACK and onset is not None:
            intervals.append((onset, change.t_s))
            onset = None
    if onset is not None:
        intervals.append((onset, end_s))
    return intervals


def headache_days(intervals: list[tuple[float, float]], start_time_of_day_h: float) -> int:
    offset_s = start_time_of_day_h * SECONDS_PER_HOUR
    days: set[int] = set()
    for on, off in intervals:
        first = int((on + offset_s) // SECONDS_PER_DAY)
        last = int((off + offset_s) // SECONDS_PER_DAY)
        days.update(range(first, last + 1))
    return len(days)


@pytest.mark.parametrize(
    ("phenotype", "seed", "chronic"),
    [
        (Phenotype.EPISODIC_WITHOUT_AURA, 11, False),
        (Phenotype.EPISODIC_WITH_AURA, 12, False),
        (Phenotype.CHRONIC, 13, True),
        (Phenotype.PEDIATRIC, 15, False),
        (Phenotype.POST_TRAUMATIC, 14, None),  # ICHD-3 5.2: not split by headache days
    ],
)
def test_attack_rate_matches_the_phenotype_over_months(
    phenotype: Phenotype, seed: int, chronic: bool | None
) -> None:
    patient = VirtualPatient.from_phenotype(phenotype, seed)
    months = 12
    days = months * DAYS_PER_MONTH
    cycle = MigraineCycle(patient.cycle, np.random.default_rng(seed), start_time_of_day_h=8.0)
    changes = run_cycle(cycle, days, dt_s=300.0)
    attacks = [c for c in changes if c.to_phase is Phase.ATTACK]
    rate_per_month = len(attacks) / months
    target = patient.cycle.attacks_per_month
    assert 0.75 * target <= rate_per_month <= 1.25 * target, (rate_per_month, target)

    days_per_month = headache_days(attack_intervals_s(changes, cycle.t_s), 8.0) / months
    if chronic is True:
        assert days_per_month >= 15.0  # ICHD-3 1.3 chronic migraine
    elif chronic is False:
        assert days_per_month < 15.0  # episodic
    min_h = patient.cycle.attack_min_h  # ICHD-3: 4 h, 2 h in children
    for on, off in attack_intervals_s(changes, math.inf)[:-1]:
        assert min_h * SECONDS_PER_HOUR - 300.0 <= off - on <= 72.0 * SECONDS_PER_HOUR + 300.0


def test_aura_share_follows_the_patient_probability() -> None:
    params = CycleParams(
        attacks_per_month=12.0,
        aura_probability=0.3,
        refractory_mean_h=4.0,
        prodrome_mean_h=6.0,
        attack_median_h=8.0,
        postdrome_mean_h=4.0,
    )
    cycle = MigraineCycle(params, np.random.default_rng(5))
    changes = run_cycle(cycle, 365.0, dt_s=600.0)
    attacks = [c for c in changes if c.to_phase is Phase.ATTACK]
    assert len(attacks) > 100
    share = np.mean([c.aura for c in attacks])
    assert 0.2 < share < 0.4


def test_phases_follow_the_cycle_order() -> None:
    patient = VirtualPatient.from_phenotype(Phenotype.EPISODIC_WITH_AURA, 3)
    cycle = MigraineCycle(patient.cycle, np.random.default_rng(3))
    changes = run_cycle(cycle, 120.0, dt_s=120.0)
    allowed = {
        (Phase.INTERICTAL, Phase.PRODROME),
        (Phase.PRODROME, Phase.ATTACK),
        (Phase.PRODROME, Phase.INTERICTAL),  # abort
        (Phase.ATTACK, Phase.POSTDROME),
        (Phase.POSTDROME, Phase.INTERICTAL),
    }
    assert len(changes) >= 8
    for change in changes:
        assert (change.from_phase, change.to_phase) in allowed
    prodromes = [c for c in changes if c.to_phase is Phase.PRODROME]
    for c in prodromes:  # drawn per episode, clamped to the configured 2-48 h
        assert 2.0 * SECONDS_PER_HOUR <= c.duration_s <= 48.0 * SECONDS_PER_HOUR


def test_phase_changes_are_ground_truth_events() -> None:
    cycle = MigraineCycle(CycleParams(), np.random.default_rng(0))
    cycle.force_prodrome(100.0)
    cycle.force_attack(500.0, aura=True)
    kinds: list[tuple[float, str, dict[str, float | str]]] = []
    for _ in range(60):
        changes, _ = cycle.advance(10.0)
        for change in changes:
            kinds.extend((e.t_s, e.kind, e.detail) for e in change.ground_truth())
    assert [k[:2] for k in kinds] == [
        (100.0, "phase_change"),
        (100.0, "prodrome_onset"),
        (500.0, "phase_change"),
        (500.0, "attack_onset"),
    ]
    assert kinds[0][2]["from"] == "interictal" and kinds[0][2]["to"] == "prodrome"
    assert kinds[3][2]["aura"] == "yes"
    assert cycle.phase is Phase.ATTACK and cycle.aura


def test_forced_prodrome_runs_into_an_attack_without_intervention() -> None:
    params = CycleParams(prodrome_mean_h=3.0, prodrome_cv=0.0)
    cycle = MigraineCycle(params, np.random.default_rng(1))
    cycle.force_prodrome(60.0)
    changes = run_cycle(cycle, 0.25, dt_s=30.0)
    assert [c.to_phase for c in changes[:2]] == [Phase.PRODROME, Phase.ATTACK]
    assert changes[1].t_s - changes[0].t_s == pytest.approx(3.0 * SECONDS_PER_HOUR, abs=30.0)


def test_forced_prodrome_is_ignored_during_an_attack() -> None:
    cycle = MigraineCycle(CycleParams(), np.random.default_rng(2))
    cycle.force_attack(10.0, aura=False)
    cycle.force_prodrome(20.0)
    _, other1 = cycle.advance(15.0)
    _, other2 = cycle.advance(15.0)
    assert cycle.phase is Phase.ATTACK
    assert [e.kind for e in other1 + other2 if e.kind == "forcing_ignored"] == ["forcing_ignored"]


def test_same_seed_same_cycle_different_seed_different_cycle() -> None:
    params = VirtualPatient.from_phenotype(Phenotype.CHRONIC, 4).cycle

    def onsets(seed: int) -> list[float]:
        cycle = MigraineCycle(params, np.random.default_rng(seed))
        return [c.t_s for c in run_cycle(cycle, 60.0, 300.0) if c.to_phase is Phase.ATTACK]

    assert onsets(1) == onsets(1)
    assert onsets(1) != onsets(2)


# ------------------------------------------------------------------ stimulation response


def test_acute_dose_response_is_saturating_with_half_effect_at_q50() -> None:
    params = ResponseParams(emax=0.6, q50_se=0.5, hill_n=1.5)
    response = StimulationResponse(params)
    half_session_uc = 0.5 * CEFALY_SESSION_CHARGE_UC
    assert response.dose_response(0.0) == 0.0
    assert response.dose_response(half_session_uc) == pytest.approx(0.3)
    doses = np.geomspace(1e3, 1e9, 30)
    effects = [response.dose_response(q) for q in doses]
    assert all(np.diff(effects) > 0)
    assert effects[-1] == pytest.approx(0.6, rel=1e-3)


def test_charge_only_counts_in_prodrome() -> None:
    response = StimulationResponse(ResponseParams())
    assert response.step(CEFALY, 60.0, in_prodrome=False) == 0.0
    reduction = response.step(CEFALY, 60.0, in_prodrome=True)
    expected_charge_uc = 16.0 * 0.25 * 60.0 * 60.0  # I * PW * f * t
    assert response.prodrome_charge_uc == pytest.approx(expected_charge_uc)
    assert reduction > 0.0


def test_acute_effect_scales_with_the_patients_continuous_efficacy() -> None:
    def total(acute_efficacy: float) -> float:
        response = StimulationResponse(ResponseParams(acute_efficacy=acute_efficacy))
        return sum(response.step(CEFALY, 60.0, in_prodrome=True) for _ in range(20))

    assert total(0.0) == 0.0
    assert total(0.4) == pytest.approx(2.0 * total(0.2))


def daily_sessions(
    response: StimulationResponse, days: int, setting: StimulationInput = CEFALY
) -> None:
    """One 20-min session a day (Cefaly prevention), in 10-min steps, outside prodromes."""
    for _ in range(days):
        for step in range(144):
            response.step(setting if step < 2 else OFF, 600.0, in_prodrome=False)


def test_labelled_daily_sessions_build_the_dose_to_one_session_per_day() -> None:
    response = StimulationResponse(ResponseParams(prophylactic_efficacy=0.5, placebo_efficacy=0.0))
    daily_sessions(response, 7)
    week = response.dose_se_per_day
    daily_sessions(response, 365 * 2)
    # Steady state of dP/dt = (dose - P) / tau at one labelled session a day: P = 1 SE/day.
    assert response.dose_se_per_day == pytest.approx(1.0, rel=0.02)
    assert week < 0.1  # weeks to build up (tau ~ 87 days)
    # At the labelled dose the rise slows by the patient's efficacy.
    assert response.rise_factor == pytest.approx(0.5, abs=0.01)


def test_prophylaxis_builds_over_weeks_as_in_the_nerivio_trial_and_washes_out() -> None:
    """Gain at 2 vs 8 weeks: 0.84 vs 2.68 days (Blumenfeld 2023) -> the same ratio here."""
    params = ResponseParams(
        prophylactic_efficacy=0.3, placebo_efficacy=0.0, dose_half_se_per_day=1e3
    )
    response = StimulationResponse(params)
    effects = {}
    for day in range(1, 57):
        daily_sessions(response, 1)
        effects[day] = 1.0 - response.rise_factor
    assert effects[14] / effects[56] == pytest.approx(0.84 / 2.68, rel=0.05)
    built = effects[56]
    for _ in range(60):
        response.step(OFF, 86_400.0, in_prodrome=False)
    assert 1.0 - response.rise_factor < 0.6 * built  # washes out over weeks, not at once
    assert 1.0 - response.rise_factor > 0.4 * built


def test_sham_sessions_give_the_placebo_effect_and_almost_no_dose() -> None:
    sham = StimulationInput(amplitude_ma=1.0, pulse_width_us=30.0, frequency_hz=1.0)
    params = ResponseParams(prophylactic_efficacy=0.5, placebo_efficacy=0.2)
    response = StimulationResponse(params)
    daily_sessions(response, 200, sham)
    assert response.sessions_per_day == pytest.approx(1.0, rel=0.05)  # sampled between sessions
    assert response.dose_se_per_day < 1e-3
    assert response.rise_factor == pytest.approx(0.8, abs=0.01)


def test_prophylaxis_lowers_the_attack_rate_in_proportion_to_efficacy() -> None:
    params = CycleParams(attacks_per_month=6.0, refractory_mean_h=24.0)
    days = 240

    def attacks(efficacy: float, stimulate: bool) -> int:
        cycle = MigraineCycle(params, np.random.default_rng(5))
        response = StimulationResponse(
            ResponseParams(prophylactic_efficacy=efficacy, placebo_efficacy=0.0, acute_efficacy=0.0)
        )
        count = 0
        for step in range(days * 144):
            stim = CEFALY if stimulate and step % 144 < 2 else OFF
            in_prodrome = cycle.phase is Phase.PRODROME
            dose = response.step(stim, 600.0, in_prodrome)
            changes, _ = cycle.advance(600.0, dose, response.rise_factor)
            count += sum(c.to_phase is Phase.ATTACK for c in changes if step >= 120 * 144)
        return count

    untreated = attacks(0.6, stimulate=False)
    assert untreated >= 15
    assert attacks(0.0, stimulate=True) == untreated
    assert attacks(0.6, stimulate=True) < 0.75 * untreated


def test_sustained_stimulation_habituates_and_recovers() -> None:
    params = ResponseParams()
    fresh = StimulationResponse(params)
    habituated = StimulationResponse(params)
    for _ in range(8 * 60):  # 8 h of continuous stimulation outside the prodrome
        habituated.step(CEFALY, 60.0, in_prodrome=False)
    assert habituated.efficacy < 0.4 * fresh.efficacy

    def session(response: StimulationResponse) -> float:
        return sum(response.step(CEFALY, 60.0, in_prodrome=True) for _ in range(20))

    effect_fresh = session(fresh)
    effect_habituated = session(habituated)
    assert effect_habituated < 0.5 * effect_fresh

    rested = StimulationResponse(params)
    for _ in range(8 * 60):
        rested.step(CEFALY, 60.0, in_prodrome=False)
    for _ in range(4 * 24):  # four days off
        rested.step(OFF, 3600.0, in_prodrome=False)
    assert rested.efficacy > 0.9 * fresh.efficacy


def test_continuous_stimulation_works_less_per_charge_than_spaced_sessions() -> None:
    params = ResponseParams(emax=5.0, q50_se=50.0)  # far from saturation: isolate habituation
    continuous = StimulationResponse(params)
    spaced = StimulationResponse(params)
    total_continuous = sum(continuous.step(CEFALY, 60.0, True) for _ in range(6 * 60))
    total_spaced = 0.0
    for _ in range(6):  # the same charge as 6 x 1 h sessions, 6 h apart
        total_spaced += sum(spaced.step(CEFALY, 60.0, True) for _ in range(60))
        for _ in range(6 * 60):
            total_spaced += spaced.step(OFF, 60.0, True)
    assert continuous.prodrome_charge_uc == pytest.approx(spaced.prodrome_charge_uc)
    assert total_spaced > 1.3 * total_continuous


@pytest.mark.parametrize(("acute_efficacy", "expect_fewer"), [(1.0, True), (0.0, False)])
def test_stimulation_in_prodrome_lowers_attack_count_only_with_acute_efficacy(
    acute_efficacy: float, expect_fewer: bool
) -> None:
    params = CycleParams(attacks_per_month=6.0, prodrome_mean_h=20.0, refractory_mean_h=24.0)
    days = 120.0

    def count_attacks(stimulate: bool) -> int:
        cycle = MigraineCycle(params, np.random.default_rng(21))
        response = StimulationResponse(
            ResponseParams(acute_efficacy=acute_efficacy, prophylactic_efficacy=0.0)
        )
        changes = run_cycle(cycle, days, 120.0, response, policy_on=stimulate)
        return sum(c.to_phase is Phase.ATTACK for c in changes)

    untreated = count_attacks(stimulate=False)
    treated = count_attacks(stimulate=True)
    assert untreated >= 15
    if expect_fewer:
        assert treated <= 0.5 * untreated
    else:
        assert treated == untreated
