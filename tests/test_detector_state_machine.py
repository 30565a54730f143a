"""The state machine on synthetic score sequences (controller/detector/state_machine.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.detector import (
    DetectorState,
    ProdromeStateMachine,
    ScoreSmoother,
    Transition,
    WindowInput,
)

N = DetectorState.NORMAL
S = DetectorState.SUSPECT
P = DetectorState.PRODROME
HI, MID, LO = 2.0, 0.7, 0.0  # above upper (1.0), between thresholds, below lower (0.5)


def machine(onset_s: float = 5.0, termination_s: float = 10.0) -> ProdromeStateMachine:
    return ProdromeStateMachine(1.0, 0.5, onset_s, termination_s, calibrated=True)


def run(
    m: ProdromeStateMachine,
    scores: Sequence[float | None],
    dt_s: float = 0.5,
    blanked: set[int] | None = None,
    unknown: set[int] | None = None,
) -> list[Transition]:
    blanked = blanked or set()
    unknown = unknown or set()
    return [
        m.step(
            WindowInput(dt_s=dt_s, score=s, blanked=i in blanked, enough_channels=i not in unknown)
        )
        for i, s in enumerate(scores)
    ]


def first_index(transitions: list[Transition], state: DetectorState, start: int = 0) -> int:
    return next(i for i in range(start, len(transitions)) if transitions[i].state is state)


def test_calibrating_until_calibrated_then_normal() -> None:
    m = ProdromeStateMachine(1.0, 0.5, 5.0, 10.0)
    assert m.state is DetectorState.CALIBRATING
    t = m.step(WindowInput(dt_s=0.5, score=None, calibrated=False))
    assert (t.state, t.changed) == (DetectorState.CALIBRATING, False)
    t = m.step(WindowInput(dt_s=0.5, score=0.0, calibrated=True))
    assert (t.state, t.changed) == (N, True)


@pytest.mark.parametrize(
    ("dt_s", "onset_s", "termination_s"),
    [(0.5, 5.0, 10.0), (0.1, 3.0, 2.0), (0.5, 0.0, 0.0), (1.0, 7.0, 1.0)],
)
def test_onset_and_termination_are_exact_in_window_counts(
    dt_s: float, onset_s: float, termination_s: float
) -> None:
    m = machine(onset_s, termination_s)
    scores = [LO] * 3 + [HI] * 200 + [LO] * 300
    tr = run(m, scores, dt_s)
    suspect = first_index(tr, S)
    prodrome = first_index(tr, P)
    assert suspect == 3
    # PRODROME on the window whose time since the first window above reaches onset_s,
    # and never on the window that entered SUSPECT.
    assert prodrome - suspect == max(round(onset_s / dt_s), 1)
    normal_again = first_index(tr, N, start=203)
    assert normal_again - 203 == round(termination_s / dt_s)
    assert all(t.state is P for t in tr[prodrome:normal_again])
    assert [i for i, t in enumerate(tr) if t.changed] == [suspect, prodrome, normal_again]


def test_hysteresis_between_thresholds_holds_normal_and_prodrome() -> None:
    m = machine()
    tr = run(m, [MID] * 50)
    assert all(t.state is N for t in tr)  # NORMAL needs > upper to move
    run(m, [HI] * 11)
    assert m.state is P
    tr = run(m, [MID] * 100)
    assert all(t.state is P for t in tr)  # PRODROME needs < lower to end
    assert m.termination_timer_s is None


def test_suspect_needs_the_score_above_continuously_and_falls_back_below_lower() -> None:
    m = machine(onset_s=5.0)
    tr = run(m, [HI] * 8 + [MID] + [HI] * 10)
    # The dip between thresholds stays SUSPECT but clears the timer: PRODROME needs 10 more
    # windows after the window that restarts it (index 9).
    assert all(t.state is S for t in tr[:19])
    t = m.step(WindowInput(dt_s=0.5, score=HI))
    assert t.state is P
    m2 = machine()
    tr = run(m2, [HI, HI, LO])
    assert [t.state for t in tr] == [S, S, N]
    assert m2.onset_timer_s is None


def test_termination_timer_restarts_when_score_returns_above_lower() -> None:
    m = machine(onset_s=0.0, termination_s=5.0)
    run(m, [HI, HI])
    assert m.state is P
    tr = run(m, [LO] * 8 + [MID] + [LO] * 10)
    assert all(t.state is P for t in tr)
    assert m.step(WindowInput(dt_s=0.5, score=LO)).state is N


def test_blanked_windows_pause_the_onset_and_termination_timers() -> None:
    dt = 0.5
    m = machine(onset_s=5.0, termination_s=5.0)
    scores = [HI] * 40
    tr = run(m, scores, dt, blanked=set(range(4, 10)))  # 6 blanked windows, score even ignored
    assert first_index(tr, P) == 10 + 6
    assert all(t.state is S and "blanked" in t.reason for t in tr[4:10])
    # Blanked windows with a low score change nothing either.
    tr = run(m, [LO] * 3 + [LO] * 5 + [LO] * 20, dt, blanked=set(range(3, 8)))
    assert all(t.state is P for t in tr[:8])
    assert first_index(tr, N) == 10 + 5
    # A blanked score of None behaves the same.
    m2 = machine()
    tr = run(m2, [HI, None, None, HI])
    assert m2.onset_timer_s == pytest.approx(0.5)


def test_unknown_on_too_few_channels_and_recovery_resumes_the_paused_state() -> None:
    m = machine(onset_s=5.0)
    tr = run(m, [HI] * 4 + [HI] * 6 + [HI] * 20, unknown=set(range(4, 10)))
    assert [t.state for t in tr[3:5]] == [S, DetectorState.UNKNOWN]
    assert tr[4].changed and not tr[5].changed
    assert tr[10].state is S and tr[10].changed  # recovered: SUSPECT again
    # Onset timer paused during UNKNOWN: 4 windows before, so PRODROME 10 - 3 windows after.
    assert first_index(tr, P) == 10 + 10 - 4
    assert all(t.state is DetectorState.UNKNOWN for t in tr[4:10])


def test_unknown_takes_precedence_over_calibrating() -> None:
    m = ProdromeStateMachine(1.0, 0.5, 5.0, 10.0)
    t = m.step(WindowInput(dt_s=0.5, score=None, enough_channels=False, calibrated=False))
    assert t.state is DetectorState.UNKNOWN
    t = m.step(WindowInput(dt_s=0.5, score=None, calibrated=False))
    assert t.state is DetectorState.CALIBRATING


def test_invalid_thresholds_and_durations_are_refused() -> None:
    with pytest.raises(ValueError, match="lower_threshold"):
        ProdromeStateMachine(1.0, 1.0, 5.0, 5.0)
    with pytest.raises(ValueError, match="onset_s"):
        ProdromeStateMachine(1.0, 0.5, -1.0, 5.0)


windows = st.lists(
    st.tuples(
        st.floats(allow_nan=False, allow_infinity=False),  # raw score
        st.sampled_from([0.0, 0.1, 0.5, 2.0, 30.0]),  # dt_s
        st.booleans(),  # blanked
        st.integers(0, 9),  # 0 -> too few channels
    ),
    max_size=300,
)


@given(windows, st.sampled_from([0.0, 1.0, 300.0]), st.sampled_from([0.0, 2.0, 600.0]))
def test_property_never_normal_to_prodrome_and_never_nan(
    sequence: list[tuple[float, float, bool, int]], smoothing_s: float, onset_s: float
) -> None:
    m = ProdromeStateMachine(1.0, 0.5, onset_s, 1.0, calibrated=False)
    smoother = ScoreSmoother(smoothing_s)
    previous = m.state
    previous_core = m.core_state
    for i, (raw, dt_s, blanked, channels) in enumerate(sequence):
        smoothed = smoother.update(raw, dt_s) if not blanked else smoother.value
        assert smoothed is None or math.isfinite(smoothed)
        t = m.step(
            WindowInput(
                dt_s=dt_s,
                score=smoothed,
                blanked=blanked,
                enough_channels=channels > 0,
                calibrated=i >= 3,
            )
        )
        assert isinstance(t.state, DetectorState)
        assert t.changed == (t.state is not previous)
        assert not (previous_core is N and m.core_state is P)
        assert not (previous is N and t.state is P)
        for timer in (m.onset_timer_s, m.termination_timer_s):
            assert timer is None or math.isfinite(timer)
        previous, previous_core = t.state, m.core_state
