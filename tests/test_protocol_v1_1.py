"""Protocol 1.1: the safety points and the statements made single, on the simulated device
and the sessions (docs/protocol.md, "Changes from 1.0"). Each test here fails on 1.0."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from firmware_bridge.clock import VirtualClock
from firmware_bridge.events import (
    CommandAcked,
    CommandCancelled,
    CommandNacked,
    Connected,
    FaultReceived,
    StatusReceived,
    StimStateReceived,
)
from firmware_bridge.framing import FrameDecoder, encode_frame
from firmware_bridge.lockstep import LockstepPump, RecordingPeer
from firmware_bridge.messages import (
    STIM_OFF,
    Ack,
    DeviceLimits,
    DeviceState,
    Estop,
    EstopClear,
    Fault,
    FaultCode,
    Hello,
    Message,
    MsgType,
    Nack,
    NackReason,
    Status,
    StimSet,
    StimSetting,
    StimState,
    parse_payload,
)
from firmware_bridge.session import ControllerSession, SessionState, UnsupportedByDevice
from simulator.firmware import FirmwareConfig, VirtualFirmware
from simulator.signals import NoiseSource
from simulator.stimulator import check_hard_limits
from tests.protocol_fixtures import INFO

ON = StimSetting(True, 2.0, 100, 130.0, 0.0)


def _rig(
    config: FirmwareConfig | None = None, key: bytes | None = None
) -> tuple[RecordingPeer, VirtualFirmware, LockstepPump, VirtualClock]:
    clock = VirtualClock()
    fw = VirtualFirmware(NoiseSource(seed=5), config or FirmwareConfig(seed=5, signing_key=key))
    ctl = RecordingPeer(ControllerSession(key=key))
    pump = LockstepPump(ctl, fw, clock)
    ctl.session.connect(0.0)
    pump.run_until(0.5)
    return ctl, fw, pump, clock


class _RawController:
    """Hand-made controller frames straight into a firmware, answers decoded."""

    def __init__(self, fw: VirtualFirmware, key: bytes | None = None) -> None:
        self.fw = fw
        self.key = key
        self.seq = 0
        self.decoder = FrameDecoder()

    def send(self, msg_type: int, payload: bytes, now: float, sign: bool = False) -> list[Message]:
        self.seq += 1
        wire = encode_frame(
            msg_type, payload, self.seq, int(now * 1e6), 0, self.key if sign else None
        )
        self.fw.receive_data(wire, now)
        return self.replies()

    def replies(self) -> list[Message]:
        frames = self.decoder.feed(self.fw.data_to_send())
        return [
            parse_payload(f.msg_type, f.payload, self.fw.info.n_channels)
            for f in frames
            if f.msg_type != MsgType.SAMPLES
        ]

    def hello(self, now: float, minor: int = 1) -> list[Message]:
        return self.send(MsgType.HELLO, Hello(1, minor, "raw").encode(), now)


def _of(msgs: list[Message], cls: type) -> list:  # type: ignore[type-arg]
    return [m for m in msgs if isinstance(m, cls)]


# -- 1. An ESTOP is cleared only by ESTOP_CLEAR -----------------------------------------------


def test_a_hello_retry_or_reconnect_never_clears_an_estop() -> None:
    fw = VirtualFirmware(NoiseSource(seed=1), FirmwareConfig(seed=1))
    raw = _RawController(fw)
    raw.hello(0.0)
    raw.send(MsgType.STIM_SET, StimSet(1, ON).encode(), 0.1)
    fw.advance_to(1.0)
    raw.send(MsgType.ESTOP, Estop(2).encode(), 1.0)
    for t in (1.1, 1.6, 2.1):  # HELLO retries / a reconnecting controller
        after = raw.hello(t)
        (state,) = _of(after, StimState)  # sent right after DEVICE_INFO
        assert state.estop_latched and state.amplitude_ma == 0.0
        (status,) = _of(after, Status)
        assert FaultCode.ESTOP in status.active_faults()
    assert fw.output.estop_latched
    (nack,) = _of(raw.send(MsgType.STIM_SET, StimSet(3, ON).encode(), 2.2), Nack)
    assert nack.reason == NackReason.ESTOP_LATCHED


def test_estop_clear_is_the_one_way_to_clear_and_leaves_the_output_off() -> None:
    ctl, fw, pump, clock = _rig()
    ctl.session.send_stim_set(ON, clock.now())
    pump.run_until(1.5)
    ctl.session.send_estop(clock.now())
    pump.run_until(clock.now() + 0.1)
    ctl.session.send_estop_clear(clock.now())
    pump.run_until(clock.now() + 0.1)
    assert not fw.output.estop_latched
    assert fw.output.amplitude_ma == 0.0 and not fw.output.enabled
    last = ctl.of_type(StimStateReceived)[-1].state  # type: ignore[attr-defined]
    assert not last.estop_latched and last.amplitude_ma == 0.0
    estop_faults = [
        f.fault.active  # type: ignore[attr-defined]
        for f in ctl.of_type(FaultReceived)
        if f.fault.code == FaultCode.ESTOP  # type: ignore[attr-defined]
    ]
    assert estop_faults == [True, False]


def test_signed_device_refuses_an_unsigned_estop_clear() -> None:
    key = bytes(range(16, 48))
    fw = VirtualFirmware(NoiseSource(seed=1), FirmwareConfig(seed=1, signing_key=key))
    raw = _RawController(fw, key)
    raw.hello(0.0)
    raw.send(MsgType.ESTOP, Estop(1).encode(), 0.1)  # ESTOP unsigned: honoured
    assert fw.output.estop_latched
    (nack,) = _of(raw.send(MsgType.ESTOP_CLEAR, EstopClear(2).encode(), 0.2), Nack)
    assert nack.reason == NackReason.AUTH and fw.output.estop_latched
    (ack,) = _of(raw.send(MsgType.ESTOP_CLEAR, EstopClear(2).encode(), 0.3, sign=True), Ack)
    assert ack.command_type == MsgType.ESTOP_CLEAR and not fw.output.estop_latched


def test_an_estop_stops_retransmitting_a_pending_estop_clear() -> None:
    ctl, _fw, pump, clock = _rig()
    pump._wires[id(ctl)] = lambda data, now: []  # the clear never arrives
    clear_id = ctl.session.send_estop_clear(clock.now())
    ctl.session.send_estop(clock.now() + 0.05)
    assert clear_id not in ctl.session.pending_commands
    pump.run_until(clock.now() + 0.1)
    (cancelled,) = ctl.of_type(CommandCancelled)
    assert cancelled.command_id == clear_id  # type: ignore[attr-defined]


# -- 2. ESTOP before any handshake ------------------------------------------------------------


def test_estop_before_the_first_handshake_is_executed_and_reported() -> None:
    fw = VirtualFirmware(NoiseSource(seed=1), FirmwareConfig(seed=1))
    raw = _RawController(fw)
    fw.advance_to(0.3)
    got = raw.send(MsgType.ESTOP, Estop(9).encode(), 0.3)
    (ack,) = _of(got, Ack)
    assert (ack.command_id, ack.command_type) == (9, MsgType.ESTOP)
    (state,) = _of(got, StimState)
    assert state.estop_latched
    assert [(f.code, f.active) for f in _of(got, Fault)] == [(FaultCode.ESTOP, True)]
    (status,) = _of(got, Status)
    assert FaultCode.ESTOP in status.active_faults()
    # ... and the handshake that follows does not clear it.
    raw.hello(0.4)
    assert fw.output.estop_latched


# -- 3. The one off command -------------------------------------------------------------------


def _literal_reading(setting: StimSetting, limits: DeviceLimits, area_cm2: float) -> bool:
    """A device that range-checks every field of every STIM_SET, off or not."""
    return (
        check_hard_limits(StimSetting(True, *list(vars(setting).values())[1:]), limits, area_cm2)
        is None
    )


def test_the_controller_sends_an_off_that_every_reading_of_the_document_accepts() -> None:
    ctl = ControllerSession()
    ctl.connect(0.0)
    ctl.receive_data(encode_frame(MsgType.DEVICE_INFO, INFO.encode(), 0, 0), 0.0)
    ctl.data_to_send()
    ctl.send_stim_set(STIM_OFF, 0.1)
    ctl.send_stim_set(StimSetting(False, 3.0, 0, float("nan"), 0.5), 0.2)
    sent = [
        parse_payload(f.msg_type, f.payload)
        for f in FrameDecoder().feed(ctl.data_to_send())
        if f.msg_type == MsgType.STIM_SET
    ]
    limits = INFO.limits
    expected = [StimSetting.off(0.0, limits), StimSetting.off(0.5, limits)]
    assert [m.setting for m in sent] == expected  # type: ignore[union-attr]
    for setting in expected:
        assert (setting.amplitude_ma, setting.pulse_width_us, setting.frequency_hz) == (
            0.0,
            limits.min_pulse_width_us,
            limits.min_frequency_hz,
        )
        assert _literal_reading(setting, limits, INFO.electrode_area_cm2)
        assert check_hard_limits(setting, limits, INFO.electrode_area_cm2) is None


def test_the_device_ignores_every_field_of_an_off_but_its_ramp_rate() -> None:
    limits = FirmwareConfig().limits
    for setting in (
        StimSetting(False, 0.0, 0, 0.0, 0.0),  # what a 1.0 controller sends
        StimSetting(False, float("nan"), 60000, float("inf"), 1.0),
        StimSetting(False, -4.0, 1, -1.0, 2.0),
    ):
        assert check_hard_limits(setting, limits, 0.06) is None
    assert check_hard_limits(StimSetting(False, 0, 0, 0, -1.0), limits, 0.06) == (
        NackReason.RAMP_RATE_RANGE
    )
    assert check_hard_limits(StimSetting(False, 0, 0, 0, float("nan")), limits, 0.06) == (
        NackReason.INVALID_VALUE
    )


# -- 4. Command ids are remembered with their type --------------------------------------------


def test_an_estop_sharing_a_stim_set_id_is_executed_not_answered_from_memory() -> None:
    fw = VirtualFirmware(NoiseSource(seed=1), FirmwareConfig(seed=1))
    raw = _RawController(fw)
    raw.hello(0.0)
    raw.send(MsgType.STIM_SET, StimSet(5, ON).encode(), 0.1)
    fw.advance_to(1.0)
    assert fw.output.amplitude_ma > 0
    got = raw.send(MsgType.ESTOP, Estop(5).encode(), 1.0)
    assert fw.output.amplitude_ma == 0.0 and fw.output.estop_latched
    (ack,) = _of(got, Ack)
    assert ack.command_type == MsgType.ESTOP


def test_a_repeated_estop_is_executed_every_time() -> None:
    fw = VirtualFirmware(NoiseSource(seed=1), FirmwareConfig(seed=1))
    raw = _RawController(fw)
    raw.hello(0.0)
    raw.send(MsgType.ESTOP, Estop(7).encode(), 0.1)
    raw.send(MsgType.ESTOP_CLEAR, EstopClear(8).encode(), 0.2)
    assert not fw.output.estop_latched
    got = raw.send(MsgType.ESTOP, Estop(7).encode(), 0.3)  # a late retransmission
    assert fw.output.estop_latched and _of(got, StimState)[0].estop_latched


def test_a_retransmitted_estop_clear_is_answered_from_memory_not_executed_again() -> None:
    fw = VirtualFirmware(NoiseSource(seed=1), FirmwareConfig(seed=1))
    raw = _RawController(fw)
    raw.hello(0.0)
    raw.send(MsgType.ESTOP, Estop(1).encode(), 0.1)
    raw.send(MsgType.ESTOP_CLEAR, EstopClear(2).encode(), 0.2)
    raw.send(MsgType.ESTOP, Estop(3).encode(), 0.3)
    got = raw.send(MsgType.ESTOP_CLEAR, EstopClear(2).encode(), 0.4)  # retransmission
    assert _of(got, Ack) == [Ack(2, MsgType.ESTOP_CLEAR)]
    assert fw.output.estop_latched  # the newer ESTOP stands


# -- 6. BYE -----------------------------------------------------------------------------------


def test_bye_ends_the_session_without_a_watchdog_fault() -> None:
    ctl, fw, pump, clock = _rig()
    ctl.session.send_stim_set(ON, clock.now())
    pump.run_until(1.5)
    ctl.session.send_stim_set(StimSetting.off(), clock.now())
    pump.run_until(2.5)
    assert fw.output.amplitude_ma == 0.0
    bye = ctl.session.send_bye(clock.now())
    assert bye is not None
    pump.run_until(clock.now() + 0.1)
    assert ctl.of_type(CommandAcked)[-1].command_type == MsgType.BYE  # type: ignore[attr-defined]
    assert ctl.session.state is SessionState.IDLE
    frames_after_bye = fw.session.stats.frames_tx
    pump.run_until(clock.now() + 3.0)  # far past the 1 s watchdog
    assert fw.goodbyes == 1 and not fw.session.handshaken
    assert not any(
        e.fault.code == FaultCode.WATCHDOG  # type: ignore[attr-defined]
        for e in ctl.of_type(FaultReceived)
    )
    assert not fw.output.watchdog_tripped
    assert fw.session.stats.frames_tx == frames_after_bye  # no SAMPLES, no heartbeats
    ctl.session.connect(clock.now())  # and a new session starts as usual
    pump.run_until(clock.now() + 0.5)
    assert len(ctl.of_type(Connected)) == 2


def test_bye_with_output_still_on_ramps_it_down_at_the_device_maximum() -> None:
    ctl, fw, pump, clock = _rig()
    ctl.session.send_stim_set(StimSetting(True, 5.0, 60, 130.0, 0.0), clock.now())
    pump.run_until(2.0)
    ctl.session.send_bye(clock.now())
    pump.run_until(clock.now() + 0.5)
    assert fw.output.amplitude_ma == pytest.approx(5.0 - 5.0 * 0.5, abs=1e-3)  # 5 mA/s
    pump.run_until(clock.now() + 0.6)
    assert fw.output.amplitude_ma == 0.0 and not fw.output.watchdog_tripped


# -- STATUS on a change of fault flags --------------------------------------------------------


def test_status_follows_every_change_of_fault_flags_at_once() -> None:
    ctl, _fw, pump, clock = _rig()
    pump.run_until(0.7)  # between two scheduled STATUS (1 s apart)
    before = len(ctl.of_type(StatusReceived))
    ctl.session.send_estop(clock.now())
    pump.run_until(clock.now() + 0.05)
    ctl.session.send_estop_clear(clock.now())
    pump.run_until(clock.now() + 0.05)
    flags = [
        e.status.fault_flags & (1 << FaultCode.ESTOP)  # type: ignore[attr-defined]
        for e in ctl.of_type(StatusReceived)[before:]
    ]
    assert flags == [1 << FaultCode.ESTOP, 0]  # one STATUS per change, both within 0.1 s


# -- NACK reasons and limits ------------------------------------------------------------------


def test_a_stim_set_with_enabled_other_than_0_or_1_is_nacked_and_changes_nothing() -> None:
    fw = VirtualFirmware(NoiseSource(seed=1), FirmwareConfig(seed=1))
    raw = _RawController(fw)
    raw.hello(0.0)
    payload = bytearray(StimSet(4, ON).encode())
    payload[4] = 2
    for t in (0.1, 0.3):  # the retransmission gets the same answer
        (nack,) = _of(raw.send(MsgType.STIM_SET, bytes(payload), t), Nack)
        assert nack == Nack(4, MsgType.STIM_SET, NackReason.INVALID_ENABLED)
    assert fw.output.target_ma == 0.0 and fw.commands_applied == 0


def test_exactly_30_uc_per_cm2_at_4_ma_450_us_on_0_06_cm2_is_accepted() -> None:
    ctl, _fw, pump, clock = _rig(FirmwareConfig(seed=5, electrode_area_cm2=0.06))
    ctl.session.send_stim_set(StimSetting(True, 4.0, 450, 130.0), clock.now())
    pump.run_until(clock.now() + 0.1)
    assert ctl.of_type(CommandAcked) and not ctl.of_type(CommandNacked)
    ctl.session.send_stim_set(StimSetting(True, 4.01, 450, 130.0), clock.now())
    pump.run_until(clock.now() + 0.1)
    (nack,) = ctl.of_type(CommandNacked)
    assert nack.reason_name == "CHARGE_DENSITY"  # type: ignore[attr-defined]


def test_nack_precedence_follows_the_documented_order() -> None:
    limits = FirmwareConfig().limits
    everything_wrong = StimSetting(True, 50.0, 5, 1000.0, -1.0)
    assert check_hard_limits(everything_wrong, limits, 0.06) == NackReason.RAMP_RATE_RANGE
    assert check_hard_limits(StimSetting(True, 50.0, 5, 1000.0), limits, 0.06) == (
        NackReason.AMPLITUDE_RANGE
    )
    assert check_hard_limits(StimSetting(True, 1.0, 5, 1000.0), limits, 0.06) == (
        NackReason.PULSE_WIDTH_RANGE
    )
    bad_nan = StimSetting(True, float("nan"), 5, 1000.0, -1.0)
    assert check_hard_limits(bad_nan, limits, 0.06) == NackReason.INVALID_VALUE


def test_signed_device_checks_the_tag_before_the_memory_and_the_replay_rule() -> None:
    key = b"k" * 32
    fw = VirtualFirmware(NoiseSource(seed=1), FirmwareConfig(seed=1, signing_key=key))
    raw = _RawController(fw, key)
    assert _of(raw.hello(0.0), type(fw.info))  # an unsigned HELLO is answered
    wire_ok = StimSet(1, ON).encode()
    forged = raw.send(MsgType.STIM_SET, wire_ok, 0.1)  # unsigned, same id as what follows
    assert _of(forged, Nack)[0].reason == NackReason.AUTH
    (ack,) = _of(raw.send(MsgType.STIM_SET, wire_ok, 0.2, sign=True), Ack)  # not poisoned
    assert ack.command_id == 1
    # A signed retransmission is answered from memory, not refused as a replay.
    assert _of(raw.send(MsgType.STIM_SET, wire_ok, 0.3, sign=True), Ack) == [ack]
    # A new HELLO does not reset the replay reference.
    raw.hello(0.4)
    old = encode_frame(MsgType.STIM_SET, StimSet(2, ON).encode(), 50, 150_000, 0, key)
    fw.receive_data(old, 0.5)
    (nack,) = _of(raw.replies(), Nack)
    assert nack.reason == NackReason.REPLAY


def test_stim_set_before_the_handshake_gets_not_ready_and_is_not_remembered() -> None:
    fw = VirtualFirmware(NoiseSource(seed=1), FirmwareConfig(seed=1))
    raw = _RawController(fw)
    (nack,) = _of(raw.send(MsgType.STIM_SET, StimSet(1, ON).encode(), 0.0), Nack)
    assert nack.reason == NackReason.NOT_READY
    raw.hello(0.1)
    assert _of(raw.send(MsgType.STIM_SET, StimSet(1, ON).encode(), 0.2), Ack)


# -- 1.0 peers --------------------------------------------------------------------------------


def test_a_1_0_controller_is_served_but_its_handshake_does_not_clear_the_latch() -> None:
    fw = VirtualFirmware(NoiseSource(seed=1), FirmwareConfig(seed=1))
    raw = _RawController(fw)
    info = _of(raw.hello(0.0, minor=0), type(fw.info))
    assert info and info[0].minor == 1
    off_1_0 = StimSet(1, StimSetting(False, 0.0, 0, 0.0, 0.0)).encode()
    assert _of(raw.send(MsgType.STIM_SET, off_1_0, 0.1), Ack)  # its off is accepted
    raw.send(MsgType.ESTOP, Estop(2).encode(), 0.2)
    raw.hello(0.3, minor=0)
    assert fw.output.estop_latched


def test_a_1_1_controller_does_not_send_bye_or_estop_clear_to_a_1_0_device() -> None:
    ctl = ControllerSession()
    ctl.connect(0.0)
    ctl.receive_data(encode_frame(MsgType.DEVICE_INFO, INFO.encode(), 0, 0), 0.0)  # minor 0
    assert ctl.peer_minor == 0
    ctl.data_to_send()
    assert ctl.send_bye(0.1) is None
    with pytest.raises(UnsupportedByDevice):
        ctl.send_estop_clear(0.1)
    frames = FrameDecoder().feed(ctl.data_to_send())
    assert not [f for f in frames if f.msg_type in (MsgType.BYE, MsgType.ESTOP_CLEAR)]


def test_a_1_0_device_skips_the_new_messages_as_unknown_types() -> None:
    """What "a newer minor only adds messages" promises: the 1.0 skip rule, on our decoder."""
    for msg_type in (MsgType.BYE, MsgType.ESTOP_CLEAR):
        frame = FrameDecoder().feed(encode_frame(msg_type, struct.pack("<I", 1), 0, 0))[0]
        assert frame.msg_type == msg_type and len(frame.payload) == 4


# -- statements made explicit (they hold for the simulated device) ---------------------------


def test_documented_size_limits_follow_from_the_4096_byte_message() -> None:
    from firmware_bridge.framing import MAX_PAYLOAD
    from firmware_bridge.messages import ChannelInfo, DeviceInfo, encode_samples_payload

    def info_size(n: int, label_len: int) -> int:
        channels = tuple(ChannelInfo("l" * label_len, 1.0, 0.0, 0.0) for _ in range(n))
        info = DeviceInfo(
            1, 1, "i" * 16, "f" * 16, 250, 10, 250, 1000, channels, (0,), n, 0.06, INFO.limits
        )
        size = len(info.encode())
        assert size == 47 + 16 + 16 + 1 + n * (13 + label_len)  # the documented formula
        return size

    assert MAX_PAYLOAD == 4073
    assert info_size(255, 2) <= MAX_PAYLOAD < info_size(255, 3)
    assert info_size(200, 6) <= MAX_PAYLOAD
    assert len(encode_samples_payload(0, np.zeros((64, 31), np.int16))) <= MAX_PAYLOAD
    assert len(encode_samples_payload(0, np.zeros((64, 32), np.int16))) > MAX_PAYLOAD
    assert len(encode_samples_payload(0, np.zeros((1, 2034), np.int16))) <= MAX_PAYLOAD


def test_the_watchdog_runs_while_the_output_is_off_and_its_bit_clears_when_heard() -> None:
    ctl, fw, pump, _clock = _rig()
    pump._wires[id(ctl)] = lambda data, now: []  # never stimulated; controller goes silent
    pump.run_until(2.0)
    assert fw.output.watchdog_tripped
    faults = [(e.fault.code, e.fault.active) for e in ctl.of_type(FaultReceived)]  # type: ignore[attr-defined]
    assert faults == [(FaultCode.WATCHDOG, True)]
    assert ctl.of_type(StimStateReceived)[-1].state.watchdog_tripped  # type: ignore[attr-defined]
    pump._wires[id(ctl)] = None
    pump.run_until(2.5)
    assert not fw.output.watchdog_tripped
    assert not ctl.of_type(StimStateReceived)[-1].state.watchdog_tripped  # type: ignore[attr-defined]


def test_a_hello_of_another_major_mid_session_leaves_the_session_running() -> None:
    fw = VirtualFirmware(NoiseSource(seed=1), FirmwareConfig(seed=1))
    raw = _RawController(fw)
    raw.hello(0.0)
    raw.send(MsgType.STIM_SET, StimSet(1, ON).encode(), 0.1)
    reply = raw.send(MsgType.HELLO, Hello(2, 0, "future").encode(), 0.2)
    assert [type(m).__name__ for m in reply] == ["HelloReject"]
    assert fw.session.handshaken and fw.output.target_ma == ON.amplitude_ma


def test_the_sample_index_runs_from_power_up_before_any_handshake() -> None:
    from firmware_bridge.events import SamplesReceived

    clock = VirtualClock()
    fw = VirtualFirmware(NoiseSource(seed=1), FirmwareConfig(seed=1))
    ctl = RecordingPeer(ControllerSession())
    pump = LockstepPump(ctl, fw, clock)
    pump.run_until(2.0)  # no HELLO yet: nothing is sent
    assert fw.session.stats.frames_tx == 0
    ctl.session.connect(clock.now())
    pump.run_until(2.5)
    first = ctl.of_type(SamplesReceived)[0]
    assert first.first_index >= 500  # type: ignore[attr-defined]  # 2 s at 250 Hz


def test_stim_state_reports_zero_pulse_width_and_rate_once_off_at_zero() -> None:
    ctl, _fw, pump, clock = _rig()
    ctl.session.send_stim_set(StimSetting(True, 1.0, 100, 130.0, 0.0), clock.now())
    pump.run_until(1.5)
    ctl.session.send_stim_set(StimSetting.off(1.0), clock.now())
    pump.run_until(1.8)
    ramping = ctl.of_type(StimStateReceived)[-1].state  # type: ignore[attr-defined]
    assert ramping.amplitude_ma > 0 and (ramping.pulse_width_us, ramping.frequency_hz) == (
        100,
        130.0,
    )
    pump.run_until(3.0)
    off = ctl.of_type(StimStateReceived)[-1].state  # type: ignore[attr-defined]
    assert (off.amplitude_ma, off.pulse_width_us, off.frequency_hz) == (0.0, 0, 0.0)


class _BadContacts(NoiseSource):
    def impedance_ohm(self) -> np.ndarray | None:
        return np.full(8, 9000.0)  # outside the 250-4000 ohm window


def test_heartbeat_says_fault_while_an_impedance_fault_forbids_stimulation() -> None:
    fw = VirtualFirmware(_BadContacts(seed=1), FirmwareConfig(seed=1))
    raw = _RawController(fw)
    raw.hello(0.0)
    fw.advance_to(0.3)
    beats = [
        f.payload[4]
        for f in FrameDecoder().feed(fw.data_to_send())
        if f.msg_type == MsgType.HEARTBEAT
    ]
    assert beats == [DeviceState.FAULT]


def test_a_bye_that_is_never_answered_ends_the_session_when_it_times_out() -> None:
    from firmware_bridge.events import CommandTimedOut

    ctl, _fw, pump, clock = _rig()
    pump._wires[id(ctl)] = lambda data, now: []
    assert ctl.session.send_bye(clock.now()) is not None
    pump.run_until(clock.now() + 0.9)
    assert ctl.of_type(CommandTimedOut) and ctl.session.state is SessionState.IDLE


def test_signed_commands_sent_in_one_instant_are_all_accepted() -> None:
    key = b"q" * 32
    ctl, fw, pump, clock = _rig(key=key)
    now = clock.now()
    for amplitude in (1.0, 1.5, 2.0):  # one core step can issue several commands
        ctl.session.send_stim_set(StimSetting(True, amplitude, 100, 130.0), now)
    pump.run_until(now + 0.1)
    assert len(ctl.of_type(CommandAcked)) == 3 and not ctl.of_type(CommandNacked)
    assert fw.session.stats.auth_failures == 0
