"""Scoring of headless runs (insilico/scoring.py): hand-computed cases, chance, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from insilico.scoring import (
    mean_ci95,
    paired_reduction,
    responder_rate,
    score_prediction,
    score_therapy,
    surrogate_chance_sensitivity,
    teed_j,
)

H = 3600.0
DAY = 86_400.0
MIN = 60.0


# --- prediction: hand-computed cases ------------------------------------------------------


def test_perfect_predictor() -> None:
    attacks = [(72 * H, 78 * H), (144 * H, 150 * H), (216 * H, 222 * H)]
    alarms = [o - 6 * H for o, _ in attacks]
    s = score_prediction(alarms, attacks, 240 * H)
    assert (s.attacks, s.predicted, s.sensitivity) == (3, 3, 1.0)
    assert (s.alarms, s.false_alarms) == (3, 0)
    assert s.median_lead_h == pytest.approx(6.0)
    # judged until 240 - 48 = 192 h; not interictal: [24, 78] + [96, 150] + [168, 192] h
    assert s.interictal_days == pytest.approx((192 - 54 - 54 - 24) / 24)
    assert s.false_alarms_per_day == 0.0
    # warnings [66.5, 114] + [138.5, 186] + [210.5, 240 (end of run)] h
    assert s.time_in_warning == pytest.approx((47.5 + 47.5 + 29.5) / 240)
    assert s.chance_sensitivity == s.time_in_warning
    assert s.p_value == pytest.approx(s.time_in_warning**3)
    assert (s.max_lead_h, s.min_lead_min) == (48.0, 30.0)


def test_window_boundaries_are_inclusive() -> None:
    onset = 100 * H
    for alarm in (onset - 30 * MIN, onset - 48 * H):
        s = score_prediction([alarm], [(onset, onset + H)], 200 * H)
        assert (s.predicted, s.false_alarms) == (1, 0)


@pytest.mark.parametrize(
    "lead_s",
    [10 * MIN, 29.9 * MIN, 0.0, 48 * H + 1.0, 60 * H],
    ids=["10min", "just-inside-horizon", "at-onset", "just-too-early", "60h"],
)
def test_alarm_too_late_or_too_early_predicts_nothing_and_is_false(lead_s: float) -> None:
    onset = 100 * H
    s = score_prediction([onset - lead_s], [(onset, onset + H)], 300 * H)
    assert (s.attacks, s.predicted, s.sensitivity) == (1, 0, 0.0)
    assert (s.alarms, s.false_alarms) == (1, 1)
    assert s.median_lead_h is None


def test_false_alarms_per_interictal_day() -> None:
    # 10-day run, one attack at day 8 lasting 2 h: judged until 192 h, of which [144, 192] h
    # is the pre-attack window: 144 h interictal
    attacks = [(192 * H, 194 * H)]
    alarms = [10 * H, 50 * H, 100 * H, 186 * H]  # the last predicts, three are false
    s = score_prediction(alarms, attacks, 240 * H)
    assert (s.predicted, s.alarms, s.false_alarms) == (1, 4, 3)
    assert s.interictal_days == pytest.approx(144 / 24)
    assert s.false_alarms_per_day == pytest.approx(3 / (144 / 24))


def test_pending_alarms_at_the_end_are_not_false() -> None:
    duration = 240 * H
    # window reaches past the end, nothing happened yet: pending
    s = score_prediction([duration - 10 * H], [], duration)
    assert (s.alarms, s.false_alarms) == (1, 0)
    # the same alarm followed by an onset inside the run: true
    s = score_prediction([duration - 10 * H], [(duration - 1 * H, None)], duration)
    assert (s.predicted, s.false_alarms) == (1, 0)
    # whole window inside the run (a + 48 h = end - 1 h) and no attack: false
    s = score_prediction([duration - 49 * H], [], duration)
    assert (s.alarms, s.false_alarms) == (1, 1)
    # window ends exactly at the end of the run: judged, false
    s = score_prediction([duration - 48 * H], [], duration)
    assert s.false_alarms == 1


def test_multiple_alarms_per_attack_earliest_gives_the_lead() -> None:
    attacks = [(100 * H, 101 * H), (300 * H, 301 * H)]
    alarms = [60 * H, 90 * H, 99 * H, 290 * H, 299 * H]
    s = score_prediction(alarms, attacks, 400 * H)
    assert (s.attacks, s.predicted, s.alarms, s.false_alarms) == (2, 2, 5, 0)
    assert s.median_lead_h == pytest.approx((40 + 10) / 2)


def test_attacks_before_the_horizon_are_not_scored() -> None:
    s = score_prediction([], [(10 * MIN, 2 * H)], 100 * H)
    assert (s.attacks, s.predicted, s.sensitivity, s.p_value) == (0, 0, None, None)
    assert s.beats_chance is False
    # its time is still not interictal: [0, 2 h] of the judged [0, 52 h]
    assert s.interictal_days == pytest.approx(50 / 24)
    # an onset exactly at the horizon is scored, and an alarm at t = 0 predicts it
    s = score_prediction([0.0], [(30 * MIN, H)], 100 * H)
    assert (s.attacks, s.predicted) == (1, 1)


def test_no_attacks() -> None:
    s = score_prediction([10 * H, 20 * H], [], 100 * H)
    assert (s.attacks, s.predicted, s.sensitivity, s.p_value) == (0, 0, None, None)
    assert s.false_alarms == 2
    assert s.interictal_days == pytest.approx(52 / 24)  # judged until 100 - 48 h
    assert s.false_alarms_per_day == pytest.approx(2 / (52 / 24))
    assert s.median_lead_h is None
    assert s.beats_chance is False


def test_no_alarms() -> None:
    s = score_prediction([], [(50 * H, 60 * H)], 100 * H)
    assert (s.attacks, s.predicted, s.sensitivity) == (1, 0, 0.0)
    assert (s.alarms, s.false_alarms, s.false_alarms_per_day) == (0, 0, 0.0)
    assert (s.time_in_warning, s.chance_sensitivity) == (0.0, 0.0)
    assert s.p_value == 1.0
    assert s.beats_chance is False


def test_interictal_time_with_overlaps_clipping_and_running_attack() -> None:
    attacks = [(10 * H, 20 * H), (50 * H, 60 * H), (230 * H, None)]
    s = score_prediction([], attacks, 240 * H)
    # judged until 192 h; [-38, 20] -> [0, 20]; [2, 60] merges -> [0, 60]; [182, 192]
    assert s.interictal_days == pytest.approx((192 - 60 - 10) / 24)
    assert s.attacks == 3
    # attacks covering the whole run leave no interictal time
    s = score_prediction([5 * H], [(1 * H, None)], 100 * H)
    assert s.interictal_days == 0.0
    assert s.false_alarms_per_day is None


def test_chance_edge_cases_do_not_crash() -> None:
    # horizon 0 and an alarm at 0 whose window covers the whole run: chance = 1
    s = score_prediction([0.0], [(12 * H, 13 * H)], 24 * H, min_lead_min=0.0)
    assert (s.time_in_warning, s.chance_sensitivity, s.predicted) == (1.0, 1.0, 1)
    assert s.p_value == 1.0
    assert s.beats_chance is False


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="duration_s"):
        score_prediction([], [], 0.0)
    with pytest.raises(ValueError, match="horizon"):
        score_prediction([], [], 100 * H, max_lead_h=0.5, min_lead_min=30.0)
    with pytest.raises(ValueError, match="ends before"):
        score_prediction([], [(10 * H, 5 * H)], 100 * H)


# --- chance predictor ---------------------------------------------------------------------


def test_surrogate_agrees_with_analytic_chance() -> None:
    """Long run, sparse non-overlapping alarms, attacks far from the edges.

    There, time in warning = n·W/D (W = 47.5 h) and a surrogate attack is hit with
    probability 1 - (1 - W/D)^n; the two differ by ~C(n, 2)·(W/D)² ≈ 0.0008 (windows of
    random alarms overlap). Monte Carlo standard error with 2000 surrogates of 40 attacks
    is ≈ 0.0007. Tolerance 0.004 = bias + ~4.5 standard errors.
    """
    duration = 1000 * DAY
    attacks = [((10 + 25 * k) * DAY, (10 + 25 * k) * DAY + 6 * H) for k in range(40)]
    alarms = [(5 + 50 * k) * DAY for k in range(20)]  # windows 50 days apart, none pending
    analytic = score_prediction(alarms, attacks, duration).chance_sensitivity
    assert analytic == pytest.approx(20 * 47.5 / (1000 * 24))
    surrogate = surrogate_chance_sensitivity(alarms, attacks, duration, n_surrogates=2000, seed=0)
    assert surrogate is not None
    assert surrogate == pytest.approx(analytic, abs=0.004)


def test_surrogate_edge_cases() -> None:
    assert surrogate_chance_sensitivity([1.0], [], 100 * H) is None
    assert surrogate_chance_sensitivity([], [(50 * H, None)], 100 * H) == 0.0
    with pytest.raises(ValueError, match="n_surrogates"):
        surrogate_chance_sensitivity([1.0], [(50 * H, None)], 100 * H, n_surrogates=0)
    a = surrogate_chance_sensitivity([1.0], [(50 * H, None)], 100 * H, n_surrogates=50, seed=3)
    b = surrogate_chance_sensitivity([1.0], [(50 * H, None)], 100 * H, n_surrogates=50, seed=3)
    assert a == b


def _sparse_attacks() -> tuple[list[tuple[float, float | None]], float]:
    duration = 200 * DAY
    return [((10 + 20 * k) * DAY, (10 + 20 * k) * DAY + 8 * H) for k in range(10)], duration


def test_good_predictor_beats_chance() -> None:
    attacks, duration = _sparse_attacks()
    alarms = [o - 6 * H for o, _ in attacks]
    s = score_prediction(alarms, attacks, duration)
    assert s.chance_sensitivity == pytest.approx(10 * 47.5 / (200 * 24))
    assert s.sensitivity == 1.0
    assert s.p_value is not None and s.p_value < 1e-6
    assert s.beats_chance is True


def test_random_predictor_does_not_beat_chance() -> None:
    attacks, duration = _sparse_attacks()
    rng = np.random.default_rng(0)
    s = score_prediction(rng.uniform(0, duration, 10).tolist(), attacks, duration)
    assert s.beats_chance is False
    # and over many random predictors the test rejects at about its level (<= 5 %, the
    # binomial test is discrete and so conservative), not more
    rejections = sum(
        score_prediction(rng.uniform(0, duration, 10).tolist(), attacks, duration).beats_chance
        for _ in range(300)
    )
    assert rejections / 300 <= 0.08


# --- therapy ------------------------------------------------------------------------------


def test_attack_free_days_and_rate() -> None:
    attacks = [
        (0.5 * DAY, 0.6 * DAY),  # day 0
        (1.9 * DAY, 2.1 * DAY),  # days 1 and 2
        (4.5 * DAY, 5.0 * DAY),  # days 4 and 5 (the end instant belongs to day 5)
        (7.2 * DAY, None),  # in the trailing half day, which never counts
    ]
    t = score_therapy(attacks, 7.5 * DAY, stim_time_s=12.0, charge_uc=3.5, teed_j=0.25)
    assert t.days == 7.5
    assert t.attacks == 4
    assert t.attacks_per_30d == pytest.approx(4 / 7.5 * 30)
    assert t.attack_free_days == 2  # days 3 and 6
    assert (t.stim_time_s, t.charge_uc, t.teed_j) == (12.0, 3.5, 0.25)


def test_attacks_per_30_days() -> None:
    t = score_therapy([(DAY, DAY + H), (40 * DAY, 40 * DAY + H)], 60 * DAY, **_DOSE)
    assert t.attacks_per_30d == pytest.approx(1.0)
    assert t.attack_free_days == 58
    t = score_therapy([], 30 * DAY, **_DOSE)
    assert (t.attacks, t.attacks_per_30d, t.attack_free_days) == (0, 0.0, 30)
    # a clock that summed to a hair under 30 days still has 30 whole days (1e-9 d tolerance)
    assert score_therapy([], 30 * DAY - 1e-6, **_DOSE).attack_free_days == 30
    assert score_therapy([], 30 * DAY - 1.0, **_DOSE).attack_free_days == 29
    with pytest.raises(ValueError, match="positive duration"):
        score_therapy([], 0.0, **_DOSE)


_DOSE = {"stim_time_s": 0.0, "charge_uc": 0.0, "teed_j": 0.0}


# --- TEED ---------------------------------------------------------------------------------


def test_teed_constant_amplitude() -> None:
    # I² R f PW t = (2 mA)² · 1 kΩ · 50 Hz · 200 µs · 100 s
    expected = 0.002**2 * 1000 * 50 * 200e-6 * 100
    assert teed_j([0.0, 100.0], [2.0, 2.0], 1000.0, 50.0, 200.0) == pytest.approx(expected)
    assert expected == pytest.approx(4e-3)


def test_teed_linear_ramp_is_integrated_exactly() -> None:
    i_a, r, f, pw_s, t = 0.003, 800.0, 100.0, 250e-6, 60.0
    got = teed_j([0.0, t], [0.0, 3.0], r, f, 250.0)
    assert got == pytest.approx(i_a**2 * r * f * pw_s * t / 3)
    assert got != pytest.approx((i_a / 2) ** 2 * r * f * pw_s * t)  # not the mean, squared


def test_teed_per_segment_parameters_and_steps() -> None:
    # step 0 -> 2 mA at t = 10 s (repeated time), R changes at 20 s; the last value is unused
    times = [0.0, 10.0, 10.0, 20.0, 30.0]
    amps = [0.0, 0.0, 2.0, 2.0, 2.0]
    r = [1000.0, 1000.0, 1000.0, 500.0, 123456.0]
    got = teed_j(times, amps, r, 50.0, 100.0)
    unit = 0.002**2 * 50 * 100e-6 * 10  # I² f PW Δt
    assert got == pytest.approx(unit * 1000 + unit * 500)
    assert teed_j([5.0], [3.0], 1000.0, 50.0, 100.0) == 0.0
    with pytest.raises(ValueError, match="non-decreasing"):
        teed_j([0.0, 2.0, 1.0], [1.0, 1.0, 1.0], 1000.0, 50.0, 100.0)
    with pytest.raises(ValueError, match="one value per sample"):
        teed_j([0.0, 1.0], [1.0, 1.0], [1000.0], 50.0, 100.0)


# --- aggregation --------------------------------------------------------------------------


def test_mean_ci95() -> None:
    assert mean_ci95([4.2]) == (4.2, 4.2, 4.2)
    mean, low, high = mean_ci95([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) · s / √n with s = 1
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    with pytest.raises(ValueError):
        mean_ci95([])


def test_paired_reduction_and_responders() -> None:
    reductions = paired_reduction([10.0, 0.0, 4.0, 0.0, 2.0], [5.0, 0.0, 6.0, 3.0, 0.0])
    assert reductions == [0.5, None, -0.5, None, 1.0]
    assert responder_rate(reductions) == pytest.approx(2 / 3)
    assert responder_rate([None]) is None
    with pytest.raises(ValueError, match="length"):
        paired_reduction([1.0], [1.0, 2.0])


# --- properties ---------------------------------------------------------------------------


@st.composite
def runs(draw: st.DrawFn) -> tuple[list[float], list[tuple[float, float | None]], float]:
    duration = draw(st.floats(min_value=H, max_value=60 * DAY))
    times = st.floats(min_value=0.0, max_value=duration)
    alarms = draw(st.lists(times, max_size=30))
    lengths = st.none() | st.floats(min_value=0.0, max_value=3 * DAY)
    attacks = [
        (onset, None if length is None else onset + length)
        for onset, length in draw(st.lists(st.tuples(times, lengths), max_size=15))
    ]
    return alarms, attacks, duration


@given(
    runs(),
    st.floats(min_value=1.0, max_value=72.0),
    st.floats(min_value=0.0, max_value=59.0),
)
def test_scores_are_bounded(run, max_lead_h, min_lead_min) -> None:
    alarms, attacks, duration = run
    s = score_prediction(
        alarms, attacks, duration, max_lead_h=max_lead_h, min_lead_min=min_lead_min
    )
    assert 0 <= s.predicted <= s.attacks <= len(attacks)
    assert s.sensitivity is None or 0.0 <= s.sensitivity <= 1.0
    assert 0 <= s.false_alarms <= s.alarms == len(alarms)
    assert 0.0 <= s.time_in_warning <= 1.0
    assert 0.0 <= s.chance_sensitivity <= 1.0
    assert 0.0 <= s.interictal_days <= duration / DAY
    assert s.false_alarms_per_day is None or s.false_alarms_per_day >= 0.0
    assert s.p_value is None or 0.0 <= s.p_value <= 1.0
    if s.median_lead_h is not None:
        assert min_lead_min / 60 - 1e-9 <= s.median_lead_h <= max_lead_h + 1e-9

    t = score_therapy(attacks, duration, **_DOSE)
    assert t.attacks == len(attacks)
    assert 0 <= t.attack_free_days <= math.floor(duration / DAY + 1e-9)  # see score_therapy
    assert t.attacks_per_30d >= 0.0


def test_runs_no_longer_than_the_occurrence_period_have_no_false_alarm_rate() -> None:
    s = score_prediction([1 * H, 5 * H], [], 24 * H)
    assert (s.alarms, s.false_alarms) == (2, 0)  # both still pending at the end
    assert s.interictal_days == 0.0 and s.false_alarms_per_day is None
    # one day longer than M: the first day is judged
    s = score_prediction([1 * H, 30 * H], [], 72 * H)
    assert (s.false_alarms, s.interictal_days) == (1, 1.0)
    assert s.false_alarms_per_day == 1.0
