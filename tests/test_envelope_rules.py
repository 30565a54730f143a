"""Safety envelope: intersection with the device, each clamp and refusal with its rule named."""

from __future__ import annotations

import math

import pytest

from controller.detector.types import DetectorState
from controller.envelope import (
    EnvelopeConfig,
    EnvelopeConflict,
    FallbackProgramConfig,
    Rule,
    SafetyEnvelope,
    effective_envelope,
    shannon_k,
    shannon_max_charge_uc,
    within_envelope,
)
from controller.policy import StimRequest
from firmware_bridge.messages import (
    ChannelInfo,
    DeviceInfo,
    DeviceLimits,
    FaultCode,
    Status,
    StimSet,
    StimSetting,
    StimState,
)


def sim_device(electrode_area_cm2: float = 0.06, **limit_overrides: float) -> DeviceInfo:
    """A device like the simulated one, passed through the codec (limits become float32)."""
    limits = {
        "max_amplitude_ma": 12.7,
        "min_pulse_width_us": 10,
        "max_pulse_width_us": 450,
        "min_frequency_hz": 2.0,
        "max_frequency_hz": 255.0,
        "max_ramp_rate_ma_per_s": 5.0,
        "max_charge_per_phase_uc": 3.0,
        "max_charge_density_uc_per_cm2": 30.0,
    }
    limits.update(limit_overrides)
    info = DeviceInfo(
        major=1,
        minor=0,
        device_id="ENV-1",
        firmware_version="t",
        sampling_rate_hz=250,
        samples_per_frame=10,
        heartbeat_interval_ms=250,
        watchdog_ms=1000,
        channels=tuple(ChannelInfo(f"ch{i}", 0.5, 0.0, 0.0) for i in range(4)),
        stim_channels=(0,),
        n_electrodes=4,
        electrode_area_cm2=electrode_area_cm2,
        limits=DeviceLimits(**limits),  # type: ignore[arg-type]
    )
    return DeviceInfo.decode(info.encode())


#: These rule tests run on the implant bench device (a 0.06 cm² DBS-like contact), where
#: the density and Shannon rules bind (the default device's 28 cm² skin electrode never
#: gets near them). This is the envelope that fits that device (docs/configuration.md).
IMPLANT_ENVELOPE: dict[str, float] = {
    "max_amplitude_ma": 12.7,
    "min_pulse_width_us": 10,
    "max_pulse_width_us": 450,
    "min_frequency_hz": 2.0,
    "max_frequency_hz": 255.0,
    "max_charge_per_phase_uc": 3.0,
    "daily_charge_budget_uc": 324_000.0,
    "impedance_min_ohm": 250.0,
    "impedance_max_ohm": 3000.0,
}


def implant_envelope(**overrides: object) -> EnvelopeConfig:
    return EnvelopeConfig(**{**IMPLANT_ENVELOPE, **overrides})  # type: ignore[arg-type]


def etns_device() -> DeviceInfo:
    """The default simulated device: external supraorbital e-TNS, 28.2 cm² skin electrode."""
    return sim_device(
        28.2,
        max_amplitude_ma=16.0,
        min_pulse_width_us=30,
        max_pulse_width_us=250,
        min_frequency_hz=1.0,
        max_frequency_hz=120.0,
        max_charge_per_phase_uc=4.0,
    )


def test_default_envelope_fits_the_default_device_and_its_labelled_therapy() -> None:
    env = SafetyEnvelope(EnvelopeConfig(), etns_device())
    ramp = env.effective.ramp_up_ma_per_s
    cefaly = StimSetting(True, 16.0, 250, 60.0, ramp)
    sham = StimSetting(True, 1.0, 30, 1.0, ramp)
    assert within_envelope(cefaly, env.effective, 0.0) == []
    assert within_envelope(sham, env.effective, 0.0) == []
    assert shannon_k(4.0, 28.2) < 0.0  # far from tissue damage (k >= 1.85)


GOOD_STATUS = Status(90, 0, (800, 900, 1000, 1100))


def on(
    amplitude_ma: float, pulse_width_us: int = 250, frequency_hz: float = 60.0, ramp: float = 0.0
) -> StimRequest:
    return StimRequest(StimSetting(True, amplitude_ma, pulse_width_us, frequency_hz, ramp), "test")


OFF = StimRequest(StimSetting(False, 0.0, 0, 0.0, 0.0), "test off")


def delivering(amplitude_ma: float, charge_uc: float = 0.0, enabled: bool = True) -> StimState:
    return StimState(
        enabled, False, False, False, amplitude_ma, amplitude_ma, 250, 60.0, charge_uc, 1
    )


def ready_envelope(
    config: EnvelopeConfig | None = None, device: DeviceInfo | None = None, closed_loop: bool = True
) -> SafetyEnvelope:
    env = SafetyEnvelope(
        config or implant_envelope(), device or sim_device(), closed_loop=closed_loop
    )
    env.observe_status(GOOD_STATUS, 0.0)
    env.observe_stim_state(delivering(0.0, enabled=False), 0.0)
    return env


# --- intersection and conflicts -------------------------------------------------------


def test_effective_envelope_is_the_tighter_of_config_and_device() -> None:
    # Ranges may be narrower than the device's (wider is a conflict, tested below).
    config = implant_envelope(
        max_amplitude_ma=8.0,
        max_pulse_width_us=300,
        min_frequency_hz=5.0,
        max_frequency_hz=200.0,
        ramp_up_ma_per_s=50.0,
    )
    eff = effective_envelope(config, sim_device())
    assert eff.max_amplitude_ma == 8.0
    assert eff.max_pulse_width_us == 300
    assert eff.min_pulse_width_us == 10
    assert eff.min_frequency_hz == 5.0
    assert eff.max_frequency_hz == 200.0
    assert eff.max_charge_density_uc_per_cm2 == 25.0  # config (device allows 30)
    assert eff.ramp_up_ma_per_s == 5.0  # min(configured 50, device 5): not a conflict
    assert eff.ramp_down_ma_per_s == 0.12
    assert eff.electrode_area_cm2 == pytest.approx(0.06)


def test_default_config_fits_the_float32_limits_the_device_reports() -> None:
    eff = effective_envelope(implant_envelope(), sim_device())
    assert eff.max_amplitude_ma < 12.7  # float32(12.7) as DEVICE_INFO carries it
    assert eff.max_amplitude_ma == pytest.approx(12.7, rel=1e-6)


def test_conflict_names_each_field_the_configured_value_and_the_device_limit() -> None:
    config = implant_envelope(
        max_amplitude_ma=15.0,
        min_pulse_width_us=5,
        max_frequency_hz=300.0,
        max_charge_density_uc_per_cm2=40.0,
    )
    with pytest.raises(EnvelopeConflict) as info:
        SafetyEnvelope(config, sim_device())
    message = str(info.value)
    assert len(info.value.conflicts) == 4
    assert (
        "envelope.max_amplitude_ma = 15.0 exceeds the device limit max_amplitude_ma = 12.7"
        in message
    )
    assert (
        "envelope.min_pulse_width_us = 5 is below the device limit min_pulse_width_us = 10"
        in message
    )
    assert "envelope.max_frequency_hz = 300.0 exceeds" in message and "= 255" in message
    assert "envelope.max_charge_density_uc_per_cm2 = 40.0 exceeds" in message and "= 30" in message


def test_fallback_program_outside_the_envelope_is_a_conflict() -> None:
    fallback = FallbackProgramConfig(enabled=True, amplitude_ma=10.0, pulse_width_us=250)
    with pytest.raises(EnvelopeConflict, match=r"envelope.fallback violates charge_density"):
        SafetyEnvelope(implant_envelope(fallback=fallback), sim_device())


def test_device_with_unusable_limits_is_refused() -> None:
    with pytest.raises(EnvelopeConflict, match="electrode_area_cm2"):
        SafetyEnvelope(implant_envelope(), sim_device(electrode_area_cm2=0.0))


def test_shannon_k_of_a_known_value() -> None:
    # Q = 1 µC on 0.1 cm²: D = 10 µC/cm², k = log10(10) + log10(1) = 1.
    assert shannon_k(1.0, 0.1) == pytest.approx(1.0)
    # Q = 3 µC on 0.06 cm²: D = 50, k = log10(50) + log10(3) = 2.176 (above 1.85: damage).
    assert shannon_k(3.0, 0.06) == pytest.approx(math.log10(150.0))
    # The largest charge at k = 1.5 on 0.06 cm² is sqrt(10**1.5 * 0.06) = 1.37745 µC.
    q_max = shannon_max_charge_uc(1.5, 0.06)
    assert q_max == pytest.approx(1.37745, rel=1e-5)
    assert shannon_k(q_max, 0.06) == pytest.approx(1.5)


def test_shannon_k_max_can_never_exceed_the_damage_level() -> None:
    with pytest.raises(ValueError, match="shannon_k_max"):
        implant_envelope(shannon_k_max=1.9)
    assert implant_envelope(shannon_k_max=1.85).shannon_k_max == 1.85


# --- clamps --------------------------------------------------------------------------


def _clamped(
    request: StimRequest, config: EnvelopeConfig | None = None, device: DeviceInfo | None = None
) -> tuple[StimSetting, list[str]]:
    env = ready_envelope(config, device)
    decision = env.review(request, 10.0)
    assert decision.setting is not None, decision
    assert decision.refused is None
    assert within_envelope(decision.setting, env.effective) == []
    return decision.setting, [c.rule for c in decision.clamps]


def test_amplitude_is_clamped_to_the_range() -> None:
    setting, rules = _clamped(on(20.0, pulse_width_us=10))
    assert rules == ["amplitude_range"]
    assert setting.amplitude_ma == pytest.approx(12.7, rel=1e-6)


def test_pulse_width_and_frequency_are_clamped_to_their_ranges() -> None:
    setting, rules = _clamped(on(1.0, pulse_width_us=1000, frequency_hz=500.0))
    assert setting.pulse_width_us == 450
    assert setting.frequency_hz == 255.0
    assert rules[:2] == ["pulse_width_range", "frequency_range"]
    setting, rules = _clamped(on(1.0, pulse_width_us=1, frequency_hz=0.5))
    assert (setting.pulse_width_us, setting.frequency_hz) == (10, 2.0)


def test_charge_per_phase_clamps_amplitude() -> None:
    # 1 cm² contact: density (25 µC) and Shannon (5.6 µC) are loose, 1 µC/phase binds.
    config = implant_envelope(max_charge_per_phase_uc=1.0)
    setting, rules = _clamped(on(10.0, pulse_width_us=200), config, sim_device(1.0))
    assert rules == ["charge_per_phase"]
    assert setting.amplitude_ma == pytest.approx(5.0)
    assert setting.amplitude_ma * 200e-3 <= 1.0


def test_charge_density_clamps_amplitude() -> None:
    config = implant_envelope(max_charge_density_uc_per_cm2=10.0, shannon_k_max=1.85)
    setting, rules = _clamped(on(5.0, pulse_width_us=200), config)
    assert rules == ["charge_density"]
    assert setting.amplitude_ma == pytest.approx(3.0)  # 10 µC/cm² × 0.06 cm² / 0.2 ms


def test_shannon_k_clamps_amplitude_after_density() -> None:
    setting, rules = _clamped(on(8.0, pulse_width_us=250))
    assert rules == ["charge_density", "shannon_k"]
    charge = setting.amplitude_ma * 250e-3
    assert shannon_k(charge, 0.06) <= 1.5
    assert setting.amplitude_ma == pytest.approx(1.37745 / 0.25, rel=1e-5)


def test_ramp_rate_is_the_configured_one_and_never_above_it() -> None:
    setting, rules = _clamped(on(1.0, ramp=0.0))
    assert setting.ramp_rate_ma_per_s == pytest.approx(0.03) and rules == []
    setting, rules = _clamped(on(1.0, ramp=4.0))
    assert setting.ramp_rate_ma_per_s == pytest.approx(0.03) and rules == ["ramp_rate"]
    setting, rules = _clamped(on(1.0, ramp=0.01))
    assert setting.ramp_rate_ma_per_s == pytest.approx(0.01) and rules == []


def test_ramp_down_rate_is_used_for_decreases_and_off() -> None:
    env = ready_envelope()
    env.review(on(3.0), 0.0)
    env.observe_stim_state(delivering(3.0), 100.0)
    lower = env.review(on(1.0, ramp=1.0), 101.0)
    assert lower.setting is not None
    assert lower.setting.ramp_rate_ma_per_s == pytest.approx(0.12)
    assert [c.rule for c in lower.clamps] == ["ramp_rate"]
    off = env.review(OFF, 102.0)
    assert off.setting is not None and not off.setting.enabled
    assert off.setting.ramp_rate_ma_per_s == pytest.approx(0.12)


def test_a_value_that_is_not_a_number_is_refused_not_clamped() -> None:
    env = ready_envelope()
    decision = env.review(on(math.nan), 10.0)
    assert decision.setting is None
    assert decision.refused == Rule.INVALID_VALUE == "invalid_value"
    assert env.review(on(2.0, frequency_hz=math.inf), 10.0).refused == "invalid_value"


def test_sent_settings_survive_float32_encoding_inside_the_envelope() -> None:
    env = ready_envelope(implant_envelope(min_change_interval_s=0.0))
    for t_s, amplitude in enumerate((0.1, 5.5, 5.509, 12.7, 3.3333333)):
        decision = env.review(on(amplitude, pulse_width_us=250), float(t_s))
        assert decision.setting is not None
        decoded = StimSet.decode(StimSet(1, decision.setting).encode()).setting
        assert decoded == decision.setting  # already float32: the device sees what we checked
        assert within_envelope(decoded, env.effective, from_amplitude_ma=0.0) == []


# --- refusals ------------------------------------------------------------------------


def test_min_change_interval_refuses_changes_but_never_stopping() -> None:
    env = ready_envelope()
    assert env.review(on(2.0), 10.0).setting is not None
    refused = env.review(on(2.5), 11.0)
    assert refused.setting is None and refused.refused == "min_change_interval"
    assert "since the last change" in refused.detail
    stop = env.review(OFF, 10.5)
    assert stop.setting is not None and not stop.setting.enabled
    assert env.review(on(2.5), 12.0).refused == "min_change_interval"  # 1.5 s after the off
    assert env.review(on(2.5), 12.6).setting is not None


def test_repeated_request_is_not_sent_twice() -> None:
    env = ready_envelope()
    assert env.review(on(2.0), 10.0).setting is not None
    again = env.review(on(2.0), 20.0)
    assert again.setting is None and again.refused is None and "unchanged" in again.detail


def test_session_longer_than_the_maximum_is_stopped() -> None:
    env = ready_envelope(implant_envelope(max_session_s=600.0))
    assert env.review(on(2.0), 0.0).setting is not None
    for t_s in range(1, 600):
        env.observe_stim_state(delivering(2.0), float(t_s))
        assert env.supervise(float(t_s)) is None
    stop = env.supervise(600.0)
    assert stop is not None and stop.setting is not None and not stop.setting.enabled
    assert stop.refused == "max_session_length" and stop.fallback
    change = env.review(on(2.5), 603.0)
    assert change.setting is None and change.refused == "max_session_length"
    env.observe_stim_state(delivering(0.0, enabled=False), 620.0)
    assert env.review(on(2.0), 621.0).setting is not None  # a new session


def _run_session(env: SafetyEnvelope, t_s: float, length_s: float = 10.0) -> bool:
    decision = env.review(on(1.0), t_s)
    if decision.setting is None or not decision.setting.enabled:
        return False
    env.observe_stim_state(delivering(1.0), t_s + 0.1)
    env.review(OFF, t_s + length_s)
    env.observe_stim_state(delivering(0.0, enabled=False), t_s + length_s + 0.1)
    return True


def test_sessions_per_24h_are_limited_in_a_rolling_window() -> None:
    env = ready_envelope(implant_envelope(max_sessions_per_24h=2))
    assert _run_session(env, 100.0)
    assert _run_session(env, 200.0)
    third = env.review(on(1.0), 300.0)
    assert third.refused == "max_sessions_per_24h" and third.fallback
    assert third.setting is None  # already off: nothing to send
    assert env.sessions_24h(300.0) == 2
    assert _run_session(env, 100.0 + 86_400.0 + 0.2)  # the first one left the window


def test_daily_on_time_budget_stops_and_refuses() -> None:
    env = ready_envelope(implant_envelope(daily_on_time_budget_s=100.0))
    env.review(on(1.0), 0.0)
    for t_s in range(0, 100):
        env.observe_stim_state(delivering(1.0), float(t_s))
    stop = env.supervise(100.5)
    assert stop is not None and stop.refused == "daily_on_time_budget"
    assert stop.setting is not None and not stop.setting.enabled
    env.observe_stim_state(delivering(0.0, enabled=False), 101.0)
    assert env.review(on(1.0), 200.0).refused == "daily_on_time_budget"
    assert env.on_time_s(200.0) == pytest.approx(100.0, abs=1.01)
    assert env.review(on(1.0), 86_400.0 + 200.0).setting is not None  # a day later


def test_daily_charge_budget_counts_the_device_counter_and_its_resets() -> None:
    env = SafetyEnvelope(implant_envelope(daily_charge_budget_uc=1000.0), sim_device())
    env.observe_status(GOOD_STATUS, 0.0)
    env.observe_stim_state(delivering(1.0, charge_uc=5000.0), 1.0)  # before us: not counted
    env.observe_stim_state(delivering(1.0, charge_uc=5600.0), 2.0)
    assert env.charge_uc(2.0) == pytest.approx(600.0)
    env.observe_stim_state(delivering(1.0, charge_uc=300.0), 3.0)  # device restarted
    assert env.charge_uc(3.0) == pytest.approx(900.0)
    env.observe_stim_state(delivering(1.0, charge_uc=math.nan), 3.5)  # ignored
    env.observe_stim_state(delivering(1.0, charge_uc=450.0), 4.0)
    stop = env.supervise(4.0)
    assert stop is not None and stop.refused == "daily_charge_budget"


def test_impedance_must_be_measured_and_inside_the_window() -> None:
    env = SafetyEnvelope(implant_envelope(), sim_device())
    first = env.review(on(1.0), 0.0)
    assert first.refused == "impedance_unmeasured" and first.fallback
    env.observe_status(Status(90, 0, (5000, 900, 900, 900)), 1.0)
    out = env.review(on(1.0), 3.0)
    assert out.refused == "impedance_window" and "5000 Ω" in out.detail
    env.observe_status(Status(90, 0, (900, 5000, 900, 900)), 4.0)  # not a stim electrode
    assert env.review(on(1.0), 6.0).setting is not None
    env.observe_status(Status(90, 0, (100, 900, 900, 900)), 7.0)
    stop = env.supervise(9.0)
    assert stop is not None and stop.refused == "impedance_window"
    assert stop.setting is not None and not stop.setting.enabled


def test_device_fault_forbids_stimulation() -> None:
    env = ready_envelope()
    env.observe_status(Status(90, 1 << FaultCode.IMPEDANCE, (800, 900, 900, 900)), 1.0)
    decision = env.review(on(1.0), 2.0)
    assert decision.refused == "device_fault" and "IMPEDANCE" in decision.detail


def test_link_down_sends_nothing_and_resends_after_reconnect() -> None:
    env = ready_envelope()
    assert env.review(on(1.0), 0.0).setting is not None
    env.observe_link(False, 5.0)
    down = env.review(on(1.0), 6.0)
    assert down.setting is None and down.refused == "link_down" and down.fallback
    assert env.supervise(6.0) is None
    env.observe_link(True, 10.0)
    again = env.review(on(1.0), 10.0)
    assert again.setting is not None and again.setting.enabled  # re-established


def test_unknown_detector_holds_the_fallback_for_closed_loop_only() -> None:
    closed = ready_envelope()
    closed.review(on(1.0), 0.0)
    closed.observe_detector(DetectorState.UNKNOWN)
    decision = closed.supervise(5.0)
    assert decision is not None and decision.fallback and decision.refused == "detector_unknown"
    assert decision.setting is not None and not decision.setting.enabled
    assert closed.review(on(1.0), 10.0).refused == "detector_unknown"
    opened = ready_envelope(closed_loop=False)
    opened.observe_detector(DetectorState.UNKNOWN)
    assert opened.review(on(1.0), 0.0).setting is not None


def test_enabled_fallback_program_is_sent_on_unknown() -> None:
    fallback = FallbackProgramConfig(
        enabled=True, amplitude_ma=1.0, pulse_width_us=120, frequency_hz=130.0
    )
    env = ready_envelope(implant_envelope(fallback=fallback))
    env.observe_detector(DetectorState.UNKNOWN)
    decision = env.review(on(3.0), 0.0)
    assert decision.fallback and decision.refused == "detector_unknown"
    setting = decision.setting
    assert setting is not None
    assert (setting.enabled, setting.amplitude_ma, setting.pulse_width_us) == (True, 1.0, 120)
    assert setting.frequency_hz == 130.0
    assert setting.ramp_rate_ma_per_s == pytest.approx(0.03)
    assert env.supervise(1.0) is None  # already running


def test_within_envelope_names_every_violated_rule() -> None:
    eff = effective_envelope(implant_envelope(), sim_device())
    bad = StimSetting(True, 13.0, 460, 300.0, 1.0)
    assert set(within_envelope(bad, eff)) == {
        "amplitude_range",
        "pulse_width_range",
        "frequency_range",
        "charge_per_phase",
        "charge_density",
        "shannon_k",
        "ramp_rate",
    }
    assert within_envelope(StimSetting(True, 1.0, 250, 60.0, 0.03), eff) == []
    assert within_envelope(StimSetting(True, 1.0, 250, 60.0, 0.0), eff) == ["ramp_rate"]
    assert (
        within_envelope(StimSetting(True, 1.0, 250, 60.0, 0.12), eff, from_amplitude_ma=2.0) == []
    )
    assert within_envelope(StimSetting(False, 0.0, 0, 0.0, 0.12), eff) == []
