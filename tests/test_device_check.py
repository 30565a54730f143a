"""The device-misbehaviour monitor: each kind of finding on a hand-made misbehaving device,
and none ever for the simulated device, which follows its commands."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.device_check import (
    DeviceCheck,
    DeviceFinding,
    FindingKind,
    Severity,
)
from firmware_bridge.clock import VirtualClock
from firmware_bridge.events import StatusReceived, StimStateReceived
from firmware_bridge.lockstep import LockstepPump
from firmware_bridge.messages import Status, StimSetting, StimState
from firmware_bridge.session import ControllerSession
from simulator.firmware import FirmwareConfig, VirtualFirmware, firmware_config_for
from simulator.signals import NoiseSource


def implant_config(seed: int) -> FirmwareConfig:
    """The implant bench device (3 µC/phase, 0.06 cm²): the checks' hard-limit cases need
    limits a few mA reach; the checks themselves do not depend on the device."""
    return firmware_config_for("implant", seed=seed)


FW = VirtualFirmware(NoiseSource(seed=0), implant_config(seed=0))
INFO = FW.info  # max ramp 5 mA/s, 3 µC/phase, 30 µC/cm² on 0.06 cm²


def _state(
    amplitude_ma: float,
    target_ma: float | None = None,
    charge_uc: float = 0.0,
    pw: int = 100,
    f: float = 130.0,
    enabled: bool = True,
    estop: bool = False,
) -> StimState:
    target = amplitude_ma if target_ma is None else target_ma
    on = amplitude_ma > 0 or enabled
    return StimState(
        enabled,
        amplitude_ma != target,
        estop,
        False,
        amplitude_ma,
        target,
        pw if on else 0,
        f if on else 0.0,
        charge_uc,
        1,
    )


def _started(setting: StimSetting, t: float = 10.0) -> DeviceCheck:
    check = DeviceCheck(INFO)
    check.connected(0.0)
    assert check.stim_state(_state(0.0, enabled=False), 0.0) == []  # the baseline
    check.commanded(1, setting, t)
    return check


def _kinds(findings: list[DeviceFinding]) -> list[tuple[FindingKind, Severity]]:
    return [(f.kind, f.severity) for f in findings]


def test_a_jump_to_the_target_in_one_step_is_a_dangerous_ramp() -> None:
    check = _started(StimSetting(True, 3.0, 100, 130.0, 0.0))  # device maximum: 5 mA/s
    findings = check.stim_state(_state(3.0), 10.01)
    assert _kinds(findings) == [(FindingKind.RAMP_TOO_FAST, Severity.DANGEROUS)]
    assert findings[0].measured == 3.0 and findings[0].limit < 0.1


def test_slewing_at_4_ma_per_s_where_0_03_was_asked_is_a_fault() -> None:
    check = _started(StimSetting(True, 3.0, 100, 130.0, 0.03))
    assert check.stim_state(_state(0.0, 3.0), 10.01) == []
    findings = check.stim_state(_state(3.0, charge_uc=3.0 * 0.5 * 0.1 * 130 * 0.75), 10.76)
    assert _kinds(findings) == [(FindingKind.RAMP_TOO_FAST, Severity.FAULT)]
    assert findings[0].limit < 0.05  # 0.03 mA/s over 0.76 s + 0.1 s latency + tolerance


def test_a_ramp_at_the_commanded_rate_is_no_finding() -> None:
    check = _started(StimSetting(True, 2.0, 100, 130.0, 1.0))
    charge = 0.0
    for i in range(1, 5):  # reports every 0.5 s while ramping at 1 mA/s
        amp_before, amp = min(2.0, 0.5 * (i - 1)), min(2.0, 0.5 * i)
        charge += 0.5 * (amp_before + amp) * 0.1 * 130.0 * 0.5
        assert check.stim_state(_state(amp, 2.0, charge), 10.0 + 0.5 * i) == []


def test_output_above_what_was_commanded_is_a_fault_and_above_hard_limits_dangerous() -> None:
    check = _started(StimSetting(True, 2.0, 100, 130.0, 0.0))
    assert check.stim_state(_state(0.0, 2.0), 10.01) == []
    assert check.stim_state(_state(2.0, charge_uc=10.0), 11.0) == []
    over = check.stim_state(_state(2.0, 2.5, charge_uc=10.0 + 26.0), 12.0)
    assert _kinds(over) == [(FindingKind.ABOVE_COMMANDED, Severity.FAULT)]
    assert (over[0].measured, over[0].limit) == (2.5, 2.0)
    high = _started(StimSetting(True, 2.0, 450, 130.0, 0.0))
    high.stim_state(_state(0.0, 2.0, pw=450), 10.01)
    found = high.stim_state(_state(0.0, 8.0, pw=450), 10.02)  # 3.6 µC/phase > 3
    assert _kinds(found) == [(FindingKind.ABOVE_COMMANDED, Severity.DANGEROUS)]


def test_output_continuing_after_an_off_is_dangerous_once_the_ramp_had_time() -> None:
    check = _started(StimSetting(True, 2.0, 100, 130.0, 0.0))
    check.stim_state(_state(0.0, 2.0), 10.01)
    check.stim_state(_state(2.0, charge_uc=26.0 * 0.6), 11.0)
    check.commanded(2, StimSetting.off(1.0), 12.0)  # 2 s down at 1 mA/s (+0.3 s margins)
    at_13 = 26.0 * 0.6 + 26.0 + 19.5  # 1 s at 2 mA, 1 s ramp to 1 mA (13 µC/s per mA)
    assert check.stim_state(_state(1.0, 0.0, at_13, enabled=False), 13.0) == []
    late = check.stim_state(_state(1.0, 0.0, at_13 + 1.5 * 13.0, enabled=False), 14.5)
    assert _kinds(late) == [(FindingKind.OUTPUT_AFTER_STOP, Severity.DANGEROUS)]


def test_output_after_an_estop_is_dangerous_and_a_missing_latch_a_fault() -> None:
    check = _started(StimSetting(True, 2.0, 100, 130.0, 0.0))
    check.stim_state(_state(0.0, 2.0), 10.01)
    check.stim_state(_state(2.0, charge_uc=26.0 * 0.6), 11.0)
    check.estop_sent(2, 11.5)
    assert check.stim_state(_state(0.0, 0.0, 26.0 * 1.1, enabled=False, estop=True), 11.51) == []
    still = check.stim_state(_state(2.0, 2.0, 26.0 * 1.1 + 0.6 * 26.0, estop=True), 12.1)
    assert (FindingKind.OUTPUT_AFTER_STOP, Severity.DANGEROUS) in _kinds(still)
    unlatched = check.status(Status(90, 0), 12.2)
    assert _kinds(unlatched) == [(FindingKind.ESTOP_NOT_LATCHED, Severity.FAULT)]
    check.latch_cleared(12.3)
    assert check.status(Status(90, 0), 12.4) == []


def test_no_report_of_zero_output_after_an_off_is_found_by_the_clock() -> None:
    check = _started(StimSetting(True, 2.0, 100, 130.0, 0.0))
    check.stim_state(_state(0.0, 2.0), 10.01)
    check.stim_state(_state(2.0, charge_uc=26.0 * 0.6), 11.0)
    check.commanded(2, StimSetting.off(), 12.0)  # 0.4 s at 5 mA/s + 0.3 s margins
    assert check.check_time(13.5) == []
    findings = check.check_time(14.0)
    assert _kinds(findings) == [(FindingKind.OUTPUT_AFTER_STOP, Severity.DANGEROUS)]
    assert check.check_time(15.0) == []  # reported once


def test_the_clock_check_says_when_it_can_next_find_something() -> None:
    check = _started(StimSetting(True, 2.0, 100, 130.0, 0.0))
    check.stim_state(_state(0.0, 2.0), 10.01)
    check.stim_state(_state(2.0, charge_uc=26.0 * 0.6), 11.0)
    assert check.next_check_s == float("inf")  # no stop to watch
    check.commanded(2, StimSetting.off(), 12.0)
    due_s = check.next_check_s
    assert 13.5 < due_s <= 14.0
    assert check.check_time(math.nextafter(due_s, 0.0)) == []
    assert _kinds(check.check_time(due_s)) == [(FindingKind.OUTPUT_AFTER_STOP, Severity.DANGEROUS)]
    assert check.next_check_s == float("inf")  # reported once


def test_a_stop_answered_by_a_report_at_zero_needs_no_clock_check_until_a_reconnect() -> None:
    check = _started(StimSetting(True, 2.0, 100, 130.0, 0.0))
    check.stim_state(_state(0.0, 2.0), 10.01)
    check.stim_state(_state(2.0, charge_uc=26.0 * 0.6), 11.0)
    check.commanded(2, StimSetting.off(), 12.0)
    check.stim_state(_state(0.0, 0.0, 26.0 * 1.5, enabled=False), 12.5)
    assert check.next_check_s == float("inf")
    assert check.check_time(20.0) == []
    check.connected(21.0)  # no report since: the stop is unanswered again
    assert check.next_check_s <= 21.0
    assert _kinds(check.check_time(21.0)) == [(FindingKind.OUTPUT_AFTER_STOP, Severity.DANGEROUS)]


def test_a_charge_counter_that_does_not_match_the_output_is_a_fault() -> None:
    per_s = 2.0 * 0.1 * 130.0  # 26 µC/s at 2 mA, 100 µs, 130 Hz
    for delta, found in ((per_s, False), (0.0, True), (2 * per_s, True), (-1.0, True)):
        check = _started(StimSetting(True, 2.0, 100, 130.0, 0.0), t=0.0)
        check.stim_state(_state(2.0, charge_uc=100.0), 1.0)
        findings = check.stim_state(_state(2.0, charge_uc=100.0 + delta), 2.0)
        expected = [(FindingKind.CHARGE_INCONSISTENT, Severity.FAULT)] if found else []
        assert _kinds(findings) == expected, delta


def test_a_device_already_stimulating_at_connect_is_the_baseline() -> None:
    check = DeviceCheck(INFO)
    check.connected(0.0)
    assert check.stim_state(_state(2.0, charge_uc=500.0), 0.0) == []
    assert check.stim_state(_state(2.0, charge_uc=526.0), 1.0) == []


# -- a device that follows its commands never produces a finding ------------------------------


class _CheckedController:
    """A controller session whose reports feed a DeviceCheck as they arrive."""

    def __init__(self, check: DeviceCheck) -> None:
        self.session = ControllerSession()
        self.check = check
        self.findings: list[DeviceFinding] = []

    def _feed(self, events: list[Any], now: float) -> None:
        for e in events:
            if isinstance(e, StimStateReceived):
                self.findings += self.check.stim_state(e.state, now)
            elif isinstance(e, StatusReceived):
                self.findings += self.check.status(e.status, now)

    def receive_data(self, data: bytes, now: float) -> None:
        self._feed(self.session.receive_data(data, now), now)

    def data_to_send(self) -> bytes:
        return self.session.data_to_send()

    def next_deadline(self) -> float | None:
        return self.session.next_deadline()

    def on_time(self, now: float) -> None:
        self._feed(self.session.handle_timeout(now), now)
        due_s = self.check.next_check_s
        found = self.check.check_time(now)
        assert now >= due_s or not found  # the loop skips it before
        self.findings += found


_on = st.builds(
    lambda a, pw, f, r: ("on", StimSetting(True, a, pw, f, r)),
    st.floats(0.0, 4.0),
    st.integers(60, 200),
    st.floats(20.0, 200.0),
    st.sampled_from([0.0, 0.03, 0.5, 2.0, 5.0, 20.0]),
)
_off = st.builds(lambda r: ("off", StimSetting.off(r)), st.sampled_from([0.0, 0.2, 1.0, 5.0]))
_stop = st.sampled_from([("estop", None), ("clear", None)])
_steps = st.lists(
    st.tuples(st.floats(0.05, 2.0), st.one_of(_on, _on, _off, _stop)), min_size=1, max_size=6
)


@settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(steps=_steps, delay_s=st.sampled_from([0.0, 0.02, 0.08]))
def test_a_device_that_follows_the_commands_never_produces_a_finding(
    steps: list[tuple[float, tuple[str, StimSetting | None]]], delay_s: float
) -> None:
    clock = VirtualClock()
    fw = VirtualFirmware(NoiseSource(seed=1), implant_config(seed=1))
    check = DeviceCheck(fw.info)
    ctl = _CheckedController(check)

    def late(data: bytes, now: float) -> list[tuple[float, bytes]]:
        return [(now + delay_s, data)]

    pump = LockstepPump(ctl, fw, clock, a_to_b=late, b_to_a=late)
    check.connected(0.0)
    ctl.session.connect(0.0)
    pump.run_until(0.5)
    for wait_s, (kind, setting) in steps:
        now = clock.now()
        if kind in ("on", "off"):
            assert setting is not None
            cid = ctl.session.send_stim_set(setting, now)
            check.commanded(cid, setting, now)
        elif kind == "estop":
            check.estop_sent(ctl.session.send_estop(now), now)
        else:
            ctl.session.send_estop_clear(now)
            check.latch_cleared(now)
        pump.run_until(now + wait_s)
    pump.run_until(clock.now() + 4.0)  # long enough for every ramp to end
    assert ctl.findings == []


def _run_against(fw: VirtualFirmware, commands: list[StimSetting]) -> list[DeviceFinding]:
    clock = VirtualClock()
    check = DeviceCheck(fw.info)
    ctl = _CheckedController(check)
    pump = LockstepPump(ctl, fw, clock)
    check.connected(0.0)
    ctl.session.connect(0.0)
    pump.run_until(0.5)
    for setting in commands:
        cid = ctl.session.send_stim_set(setting, clock.now())
        check.commanded(cid, setting, clock.now())
        pump.run_until(clock.now() + 2.0)
    return ctl.findings


def test_the_same_harness_finds_a_simulated_device_that_ignores_the_ramp_rate() -> None:
    commands = [StimSetting(True, 3.0, 100, 130.0, 0.03)]
    assert (
        _run_against(VirtualFirmware(NoiseSource(seed=1), implant_config(seed=1)), commands) == []
    )
    fw = VirtualFirmware(NoiseSource(seed=1), implant_config(seed=1))
    apply = fw.output.apply

    def too_fast(command_id: int, setting: StimSetting) -> None:
        apply(command_id, setting)
        fw.output.ramp_rate_ma_per_s = 4.0  # 4 mA/s where 0.03 mA/s was asked

    fw.output.apply = too_fast  # type: ignore[method-assign]
    findings = _run_against(fw, commands)
    assert findings and findings[0].kind is FindingKind.RAMP_TOO_FAST


def test_the_same_harness_finds_a_simulated_device_that_does_not_stop() -> None:
    fw = VirtualFirmware(NoiseSource(seed=1), implant_config(seed=1))
    fw.output.ramp_down = lambda watchdog=True: None  # type: ignore[method-assign]
    apply = fw.output.apply

    def never_off(command_id: int, setting: StimSetting) -> None:
        if setting.enabled:
            apply(command_id, setting)

    fw.output.apply = never_off  # type: ignore[method-assign]
    findings = _run_against(
        fw, [StimSetting(True, 2.0, 100, 130.0, 0.0), StimSetting.off(), StimSetting.off()]
    )
    assert (FindingKind.OUTPUT_AFTER_STOP, Severity.DANGEROUS) in _kinds(findings)
