"""Policies on synthetic detector streams: what each requests, when, and what it holds."""

from __future__ import annotations

import pytest

from controller.detector.types import DetectorOutput, DetectorState
from controller.policy import (
    POLICY_NAMES,
    DualThresholdConfig,
    DualThresholdPolicy,
    OffPolicy,
    OpenLoopConfig,
    OpenLoopPolicy,
    Policy,
    PolicyConfig,
    ProdromeSessionConfig,
    ProdromeSessionPolicy,
    SingleThresholdConfig,
    SingleThresholdPolicy,
    StimRequest,
    TherapySettingConfig,
    build_policy,
)
from firmware_bridge.messages import STIM_OFF, StimState

THERAPY = TherapySettingConfig()
N, S, P, U, C = (
    DetectorState.NORMAL,
    DetectorState.SUSPECT,
    DetectorState.PRODROME,
    DetectorState.UNKNOWN,
    DetectorState.CALIBRATING,
)


def out(
    t_s: float, state: DetectorState, score: float | None = 0.0, blanked: bool = False
) -> DetectorOutput:
    return DetectorOutput(t_s, state, score, changed=False, blanked=blanked, good_channels=8)


def delivered(enabled: bool, amplitude_ma: float = 0.0) -> StimState:
    return StimState(enabled, False, False, False, amplitude_ma, amplitude_ma, 250, 60.0, 0.0, 1)


def is_on(request: StimRequest | None) -> bool | None:
    """True/False for an on/off request, None for no request."""
    return None if request is None else request.setting.enabled


def run(policy: Policy, stream: list[DetectorOutput]) -> list[bool | None]:
    return [is_on(policy.decide(o.t_s, o, None)) for o in stream]


def test_factory_builds_every_policy_by_name() -> None:
    assert set(POLICY_NAMES) == {
        "off",
        "open-loop",
        "sham",
        "single-threshold",
        "dual-threshold",
        "prodrome-session",
    }
    for name in POLICY_NAMES:
        policy = build_policy(PolicyConfig(name=name))  # type: ignore[arg-type]
        assert policy.name == name
    assert build_policy(PolicyConfig()).name == "prodrome-session"  # the default closed loop
    assert not build_policy(PolicyConfig(name="open-loop")).closed_loop
    assert not build_policy(PolicyConfig(name="sham")).closed_loop
    assert build_policy(PolicyConfig(name="dual-threshold")).closed_loop


def test_off_requests_off_once_and_whenever_something_is_delivered() -> None:
    policy = OffPolicy()
    first = policy.decide(0.0, None, None)
    assert first is not None and first.setting == STIM_OFF
    assert policy.decide(1.0, out(1.0, P, 5.0), delivered(False)) is None
    again = policy.decide(2.0, None, delivered(True, 2.0))
    assert again is not None and not again.setting.enabled


def test_open_loop_continuous_requests_the_therapy_and_repeats_if_the_device_stops() -> None:
    policy = OpenLoopPolicy(OpenLoopConfig(mode="continuous"), THERAPY)
    first = policy.decide(0.0, out(0.0, U, None), None)  # ignores the detector
    assert first is not None and first.setting == THERAPY.setting()
    assert policy.decide(1.0, None, delivered(True, 3.0)) is None
    assert is_on(policy.decide(2.0, None, delivered(False))) is True  # e.g. watchdog stopped it


def test_open_loop_scheduled_runs_the_daily_session_at_its_time_of_day() -> None:
    # t_s = 0 is 07:00; the session is 08:00-08:20.
    config = OpenLoopConfig(
        session_times_of_day_s=[8 * 3600.0], session_s=1200.0, day_start_offset_s=7 * 3600.0
    )
    policy = OpenLoopPolicy(config, THERAPY)
    assert is_on(policy.decide(0.0, None, None)) is False
    assert policy.decide(3599.0, None, None) is None
    assert is_on(policy.decide(3600.0, None, None)) is True
    assert policy.decide(3600.0 + 1199.0, None, None) is None
    assert is_on(policy.decide(3600.0 + 1200.0, None, None)) is False
    assert is_on(policy.decide(3600.0 + 86_400.0, None, None)) is True  # the next day


def test_open_loop_session_may_cross_midnight() -> None:
    config = OpenLoopConfig(session_times_of_day_s=[23 * 3600.0 + 3000.0], session_s=1200.0)
    policy = OpenLoopPolicy(config, THERAPY)
    assert policy.session_start_s(86_400.0 + 300.0) == pytest.approx(23 * 3600.0 + 3000.0)
    assert policy.session_start_s(86_400.0 + 700.0) is None


def test_open_loop_rejects_overlapping_sessions() -> None:
    with pytest.raises(ValueError, match="overlap"):
        OpenLoopConfig(session_times_of_day_s=[0.0, 600.0], session_s=1200.0)


def test_single_threshold_follows_the_score_and_holds_while_blanked() -> None:
    policy = SingleThresholdPolicy(SingleThresholdConfig(threshold=1.0), THERAPY)
    stream = [
        out(0, N, 0.2),  # off (first request)
        out(1, S, 1.5),  # on
        out(2, P, 2.0),  # still on: no new request
        out(3, N, 0.0, blanked=True),  # blanked: hold on
        out(4, N, 0.9),  # off
        out(5, N, 1.0),  # not above: stays off
        out(6, S, 1.2),  # on
        out(7, U, None),  # UNKNOWN: safe program
        out(8, C, None),  # CALIBRATING: stays off
    ]
    assert run(policy, stream) == [False, True, None, None, False, None, True, False, None]


def test_dual_threshold_steps_once_per_interval_between_its_limits() -> None:
    config = DualThresholdConfig(
        lower_threshold=0.5,
        upper_threshold=1.0,
        step_ma=1.0,
        min_amplitude_ma=0.0,
        max_amplitude_ma=2.5,
        update_interval_s=30.0,
    )
    policy = DualThresholdPolicy(config, THERAPY)
    amplitudes = []
    for t_s, score in [
        (0, 2.0),
        (10, 2.0),
        (30, 2.0),
        (60, 2.0),
        (90, 2.0),
        (120, 0.7),
        (150, 0.1),
        (160, 0.1),
        (180, 0.1),
        (210, 0.1),
        (240, 0.1),
    ]:
        request = policy.decide(float(t_s), out(float(t_s), S, score), None)
        amplitudes.append(None if request is None else request.setting.amplitude_ma)
    # Amplitudes sit on the lattice min + n × step, capped at max: up 1 -> (10 s: too soon)
    # -> 2 -> 2.5 (capped) -> hold at max -> hold between thresholds -> down 2 -> (too soon)
    # -> 1 -> 0 = off -> stays off
    assert amplitudes == [1.0, None, 2.0, 2.5, None, None, 2.0, None, 1.0, 0.0, None]
    request = policy.decide(300.0, out(300.0, S, 3.0), None)
    assert request is not None and request.setting.amplitude_ma == 1.0
    assert request.setting.pulse_width_us == THERAPY.pulse_width_us


def test_dual_threshold_drops_to_off_and_restarts_from_the_minimum_after_unknown() -> None:
    config = DualThresholdConfig(
        step_ma=1.0, min_amplitude_ma=1.0, max_amplitude_ma=3.0, update_interval_s=1.0
    )
    policy = DualThresholdPolicy(config, THERAPY)
    policy.decide(0.0, out(0.0, S, 2.0), None)
    policy.decide(1.0, out(1.0, S, 2.0), None)
    assert policy.amplitude_ma == 3.0
    hold = policy.decide(2.0, out(2.0, U, None), None)
    assert hold is not None and not hold.setting.enabled
    back = policy.decide(3.0, out(3.0, N, 0.7), None)  # between thresholds: the minimum
    assert back is not None and back.setting.amplitude_ma == 1.0


def test_prodrome_session_runs_one_session_then_locks_out() -> None:
    config = ProdromeSessionConfig(session_s=1200.0, lockout_s=3600.0)
    policy = ProdromeSessionPolicy(config, THERAPY)
    stream = [
        out(0, N),  # off (first request)
        out(100, S),
        out(200, P),  # entering PRODROME: session on until 1400
        out(300, N),  # the session runs its full length
        out(1399, P),  # re-entering during the session: nothing new
        out(1400, P),  # session over: off, lockout until 5000
        out(2000, N),
        out(2100, P),  # entering during the lockout: ignored
        out(5000, P),  # lockout over, but PRODROME was not entered now
        out(5100, N),
        out(5200, P),  # entering after the lockout: a new session
    ]
    assert run(policy, stream) == [
        False,
        None,
        True,
        None,
        None,
        False,
        None,
        None,
        None,
        None,
        True,
    ]


def test_prodrome_session_is_aborted_by_unknown_and_the_lockout_starts() -> None:
    policy = ProdromeSessionPolicy(
        ProdromeSessionConfig(session_s=1200.0, lockout_s=600.0), THERAPY
    )
    assert is_on(policy.decide(0.0, out(0.0, P), None)) is True
    abort = policy.decide(100.0, out(100.0, U, None), None)
    assert abort is not None and not abort.setting.enabled and "aborted" in abort.reason
    assert policy.lockout_until_s == 700.0
    assert policy.decide(200.0, out(200.0, P), None) is None  # locked out
    assert policy.decide(800.0, out(800.0, N), None) is None
    assert is_on(policy.decide(900.0, out(900.0, P), None)) is True


@pytest.mark.parametrize("name", ["single-threshold", "dual-threshold", "prodrome-session"])
def test_closed_loop_policies_hold_off_until_the_detector_decides(name: str) -> None:
    policy = build_policy(PolicyConfig(name=name))  # type: ignore[arg-type]
    for detector in (None, out(0.0, C, None), out(0.0, U, None)):
        fresh = build_policy(PolicyConfig(name=name))  # type: ignore[arg-type]
        request = fresh.decide(0.0, detector, None)
        assert request is not None and not request.setting.enabled
        assert "safe program" in request.reason
    assert policy.decide(0.0, out(0.0, C, None), delivered(True, 2.0)) is not None


def test_closed_loop_policy_repeats_its_wish_when_the_device_disagrees() -> None:
    policy = SingleThresholdPolicy(SingleThresholdConfig(threshold=1.0), THERAPY)
    assert is_on(policy.decide(0.0, out(0.0, S, 2.0), None)) is True
    assert policy.decide(0.5, out(0.5, S, 2.0), delivered(True, 1.0)) is None  # clamped: fine
    assert is_on(policy.decide(1.0, out(1.0, S, 2.0), delivered(False))) is True  # refused
