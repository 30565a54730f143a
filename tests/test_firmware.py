"""The virtual firmware: hard limits, slew, watchdog timing, ESTOP, battery and impedance."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.clock import VirtualClock
from firmware_bridge.events import (
    CommandAcked,
    CommandNacked,
    FaultReceived,
    StatusReceived,
    StimStateReceived,
)
from firmware_bridge.lockstep import LockstepPump, RecordingPeer
from firmware_bridge.messages import FaultCode, MsgType, StimSetting
from firmware_bridge.session import ControllerSession
from simulator.firmware import FirmwareConfig, VirtualFirmware, firmware_config_for
from simulator.signals import NoiseSource, StimulationInput
from simulator.stimulator import OutputStage


class _Source(NoiseSource):
    """NoiseSource whose impedances a test can set."""

    impedance: np.ndarray | None = None

    def impedance_ohm(self) -> np.ndarray | None:
        return self.impedance


def _rig(
    config: FirmwareConfig | None = None,
) -> tuple[RecordingPeer, VirtualFirmware, LockstepPump, VirtualClock]:
    clock = VirtualClock()
    # The limit tests below use the implant preset's DBS ranges (130 Hz, 450 µs ...).
    fw = VirtualFirmware(_Source(seed=4), config or firmware_config_for("implant"))
    ctl = RecordingPeer(ControllerSession())
    pump = LockstepPump(ctl, fw, clock)
    ctl.session.connect(0.0)
    pump.run_until(0.5)
    return ctl, fw, pump, clock


@pytest.mark.parametrize(
    ("setting", "reason"),
    [
        (StimSetting(True, 13.0, 100, 130.0), "AMPLITUDE_RANGE"),
        (StimSetting(True, -1.0, 100, 130.0), "AMPLITUDE_RANGE"),
        (StimSetting(True, 1.0, 5, 130.0), "PULSE_WIDTH_RANGE"),
        (StimSetting(True, 1.0, 500, 130.0), "PULSE_WIDTH_RANGE"),
        (StimSetting(True, 1.0, 100, 300.0), "FREQUENCY_RANGE"),
        (StimSetting(True, 1.0, 100, 1.0), "FREQUENCY_RANGE"),
        (StimSetting(True, 1.0, 100, 130.0, -2.0), "RAMP_RATE_RANGE"),
        (StimSetting(True, 10.0, 400, 130.0), "CHARGE_PER_PHASE"),
        (StimSetting(True, float("nan"), 100, 130.0), "INVALID_VALUE"),
    ],
)
def test_out_of_range_commands_are_nacked_and_change_nothing(
    setting: StimSetting, reason: str
) -> None:
    ctl, fw, pump, clock = _rig()
    ctl.session.send_stim_set(StimSetting(True, 1.0, 100, 130.0), clock.now())
    pump.run_until(2.0)
    before = fw.output.snapshot()
    ctl.session.send_stim_set(setting, clock.now())
    pump.run_until(2.5)
    (nack,) = ctl.of_type(CommandNacked)
    assert nack.reason_name == reason  # type: ignore[attr-defined]
    after = fw.output.snapshot()
    assert (after.amplitude_ma, after.pulse_width_us, after.frequency_hz) == (
        before.amplitude_ma,
        before.pulse_width_us,
        before.frequency_hz,
    )


def test_charge_density_limit_uses_the_electrode_area() -> None:
    # 2.5 mA x 400 µs = 1.0 µC per phase; on 0.02 cm² that is 50 µC/cm² > 30.
    ctl, _fw, pump, clock = _rig(firmware_config_for("implant", electrode_area_cm2=0.02))
    ctl.session.send_stim_set(StimSetting(True, 2.5, 400, 60.0), clock.now())
    pump.run_until(1.0)
    (nack,) = ctl.of_type(CommandNacked)
    assert nack.reason_name == "CHARGE_DENSITY"  # type: ignore[attr-defined]


def test_amplitude_never_slews_faster_than_the_device_maximum() -> None:
    ctl, fw, pump, clock = _rig()
    ctl.session.send_stim_set(StimSetting(True, 10.0, 60, 130.0, 100.0), clock.now())
    t0 = clock.now()
    samples = []
    while clock.now() < t0 + 3.0:
        pump.step(t0 + 3.0)
        samples.append((clock.now(), fw.output.amplitude_ma))
    times, amps = np.array(samples).T
    rates = np.diff(amps) / np.maximum(np.diff(times), 1e-12)
    assert rates.max() <= 5.0 + 1e-6
    assert amps[-1] == pytest.approx(10.0)
    # 10 mA at 5 mA/s takes 2 s.
    reached = times[np.argmax(amps >= 10.0 - 1e-9)]
    assert reached - t0 == pytest.approx(2.0, abs=0.05)


def test_watchdog_ramps_to_zero_after_silence_and_reports_a_fault() -> None:
    ctl, fw, pump, clock = _rig()
    ctl.session.send_stim_set(StimSetting(True, 5.0, 60, 130.0), clock.now())
    pump.run_until(3.0)
    assert fw.output.amplitude_ma == pytest.approx(5.0)
    pump._wires[id(ctl)] = lambda data, now: []  # the controller goes silent
    silent_from = max(clock.now() - 0.25, 0.0)
    last_heard = fw.session._last_rx_s
    assert last_heard is not None and last_heard >= silent_from
    pump.run_until(last_heard + 0.999)
    assert fw.output.amplitude_ma == pytest.approx(5.0)  # not yet: watchdog is 1000 ms
    pump.run_until(last_heard + 1.001)
    assert fw.output.target_ma == 0.0 and fw.output.watchdog_tripped
    pump.run_until(last_heard + 1.0 + 0.5)
    assert fw.output.amplitude_ma == pytest.approx(5.0 - 5.0 * 0.5, abs=1e-6)  # 5 mA/s down
    pump.run_until(last_heard + 1.0 + 1.0 + 1e-6)
    assert fw.output.amplitude_ma == 0.0
    faults = [e.fault for e in ctl.of_type(FaultReceived)]  # type: ignore[attr-defined]
    assert any(f.code == FaultCode.WATCHDOG and f.active for f in faults)


def test_watchdog_fault_clears_when_the_controller_returns_but_output_stays_off() -> None:
    ctl, fw, pump, clock = _rig()
    ctl.session.send_stim_set(StimSetting(True, 2.0, 60, 130.0), clock.now())
    pump.run_until(2.0)
    pump._wires[id(ctl)] = lambda data, now: []
    pump.run_until(4.0)
    pump._wires[id(ctl)] = None
    ctl.session.connect(clock.now())
    pump.run_until(5.0)
    faults = [e.fault for e in ctl.of_type(FaultReceived)]  # type: ignore[attr-defined]
    assert [(f.code, f.active) for f in faults if f.code == FaultCode.WATCHDOG] == [
        (FaultCode.WATCHDOG, True),
        (FaultCode.WATCHDOG, False),
    ]
    assert fw.output.amplitude_ma == 0.0 and not fw.output.enabled


def test_estop_stops_at_once_latches_through_a_handshake_and_only_estop_clear_clears_it() -> None:
    ctl, fw, pump, clock = _rig()
    ctl.session.send_stim_set(StimSetting(True, 4.0, 60, 130.0), clock.now())
    pump.run_until(2.0)
    ctl.session.send_estop(clock.now())
    pump.run_until(clock.now() + 0.01)
    assert fw.output.amplitude_ma == 0.0 and fw.output.estop_latched
    states = [e.state for e in ctl.of_type(StimStateReceived)]  # type: ignore[attr-defined]
    assert states[-1].estop_latched and states[-1].amplitude_ma == 0.0
    ctl.session.send_stim_set(StimSetting(True, 1.0, 60, 130.0), clock.now())
    pump.run_until(clock.now() + 0.1)
    assert ctl.of_type(CommandNacked)[-1].reason_name == "ESTOP_LATCHED"  # type: ignore[attr-defined]
    ctl.session.connect(clock.now())  # a reconnect (or a late HELLO retry)
    pump.run_until(clock.now() + 0.5)
    assert fw.output.estop_latched
    reported = [e.state for e in ctl.of_type(StimStateReceived)]  # type: ignore[attr-defined]
    assert reported[-1].estop_latched  # the reconnecting controller sees the latch
    ctl.session.send_stim_set(StimSetting(True, 1.0, 60, 130.0), clock.now())
    pump.run_until(clock.now() + 0.5)
    assert ctl.of_type(CommandNacked)[-1].reason_name == "ESTOP_LATCHED"  # type: ignore[attr-defined]
    ctl.session.send_estop_clear(clock.now())
    pump.run_until(clock.now() + 0.1)
    assert not fw.output.estop_latched and fw.output.amplitude_ma == 0.0  # still off
    ctl.session.send_stim_set(StimSetting(True, 1.0, 60, 130.0), clock.now())
    pump.run_until(clock.now() + 0.5)
    acked = [e.command_type for e in ctl.of_type(CommandAcked)]  # type: ignore[attr-defined]
    assert acked == [MsgType.STIM_SET, MsgType.ESTOP, MsgType.ESTOP_CLEAR, MsgType.STIM_SET]


def test_impedance_out_of_window_forbids_stimulation_and_is_reported() -> None:
    ctl, fw, pump, clock = _rig()
    source = fw.source
    assert isinstance(source, _Source)
    source.impedance = np.full(8, 9000.0)
    pump.run_until(2.0)
    statuses = [e.status for e in ctl.of_type(StatusReceived)]  # type: ignore[attr-defined]
    assert statuses[-1].impedance_ohm[0] == 9000
    assert FaultCode.IMPEDANCE in statuses[-1].active_faults()
    ctl.session.send_stim_set(StimSetting(True, 1.0, 60, 130.0), clock.now())
    pump.run_until(2.5)
    assert ctl.of_type(CommandNacked)[-1].reason_name == "FAULT_ACTIVE"  # type: ignore[attr-defined]


def test_battery_drains_faster_while_stimulating() -> None:
    _, idle, idle_pump, _ = _rig()
    ctl, busy, busy_pump, clock = _rig()
    ctl.session.send_stim_set(StimSetting(True, 5.0, 250, 130.0), clock.now())
    idle_pump.run_until(60.0)
    busy_pump.run_until(60.0)
    assert len(ctl.of_type(CommandAcked)) == 1
    assert busy.battery_pct < idle.battery_pct < 100.0


def test_delivered_charge_integrates_ramps_exactly() -> None:
    stage = OutputStage(max_ramp_rate_ma_per_s=5.0)
    stage.apply(1, StimSetting(True, 2.0, 100, 100.0, 1.0))
    stage.advance_to(4.0)  # 2 s ramp (mean 1 mA) then 2 s at 2 mA
    expected = (1.0 * 2.0 + 2.0 * 2.0) * 0.1 * 100.0  # mA * ms * pulses/s * s
    assert stage.delivered_charge_uc == pytest.approx(expected)


def test_samples_carry_the_stimulation_artifact_of_the_delivered_output() -> None:
    source = NoiseSource(seed=1, artifact_uv_per_ma=100.0)
    quiet = NoiseSource(seed=1, artifact_uv_per_ma=100.0)
    on = source.read(250, StimulationInput(2.0, 100.0, 130.0))
    off = quiet.read(250, StimulationInput())
    spectrum = np.abs(np.fft.rfft(on[0] - off[0]))
    freqs = np.fft.rfftfreq(250, 1 / 250)
    assert freqs[np.argmax(spectrum)] == pytest.approx(120.0)  # 130 Hz aliased at 250 Hz


class _AlwaysAdvancing(VirtualFirmware):
    """The firmware without its same-instant shortcut: every ``receive_data`` first runs
    ``advance_to`` in full."""

    def _settled_at(self, now: float) -> bool:
        return False


class _Wiretap:
    """A lockstep peer that passes everything to a firmware and logs what it sends."""

    def __init__(self, firmware: VirtualFirmware) -> None:
        self.firmware = firmware
        self.sent: list[tuple[float, bytes]] = []
        self._now = 0.0

    def receive_data(self, data: bytes, now: float) -> None:
        self._now = now
        self.firmware.receive_data(data, now)

    def data_to_send(self) -> bytes:
        data = self.firmware.data_to_send()
        if data:
            self.sent.append((self._now, data))
        return data

    def next_deadline(self) -> float | None:
        return self.firmware.next_deadline()

    def on_time(self, now: float) -> None:
        self._now = now
        self.firmware.on_time(now)


_ACTIONS = st.sampled_from(["stim", "off", "estop", "clear", "bad-impedance", "good-impedance"])


@settings(max_examples=12, deadline=None, derandomize=True)
@given(
    script=st.lists(
        st.tuples(st.floats(0.01, 3.0), _ACTIONS, st.floats(0.5, 4.0)), min_size=1, max_size=6
    )
)
def test_same_instant_shortcut_sends_the_bytes_of_the_full_advance(
    script: list[tuple[float, str, float]],
) -> None:
    """Skipping the second ``advance_to`` at one instant changes no byte either way."""

    def run(firmware_type: type[VirtualFirmware]) -> tuple[list[tuple[float, bytes]], ...]:
        clock = VirtualClock()
        source = _Source(seed=4)
        tap = _Wiretap(firmware_type(source, firmware_config_for("implant")))
        ctl = RecordingPeer(ControllerSession())
        pump = LockstepPump(ctl, tap, clock)
        ctl.session.connect(0.0)
        pump.run_until(0.5)
        for wait_s, action, amplitude_ma in script:
            pump.run_until(clock.now() + wait_s)
            now = clock.now()
            if action == "stim":
                ctl.session.send_stim_set(StimSetting(True, amplitude_ma, 100, 130.0, 2.0), now)
            elif action == "off":
                ctl.session.send_stim_set(StimSetting(False, 0.0, 100, 130.0, 1.0), now)
            elif action == "estop":
                ctl.session.send_estop(now)
            elif action == "clear":
                ctl.session.send_estop_clear(now)
            else:
                bad = action == "bad-impedance"
                source.impedance = np.full(8, 50_000.0 if bad else 1000.0)
        pump.run_until(clock.now() + 3.0)
        return tap.sent, [(0.0, repr(e).encode()) for e in ctl.events]

    assert run(VirtualFirmware) == run(_AlwaysAdvancing)
