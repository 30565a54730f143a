"""The sans-IO sessions: handshake, versions, commands with retry and idempotence, samples,
heartbeats, peer loss, signing — driven in lockstep virtual time."""

from __future__ import annotations

import numpy as np

from firmware_bridge.clock import VirtualClock
from firmware_bridge.events import (
    CommandAcked,
    CommandNacked,
    CommandTimedOut,
    Connected,
    HandshakeFailed,
    PeerLost,
    SamplesReceived,
    StimStateReceived,
    VersionRejected,
)
from firmware_bridge.framing import FLAG_RETRANSMIT, FrameDecoder, encode_frame
from firmware_bridge.lockstep import LockstepPump, RecordingPeer
from firmware_bridge.messages import Hello, HelloReject, MsgType, Nack, StimSetting, parse_payload
from firmware_bridge.session import ControllerSession, DeviceSession, SessionState
from simulator.firmware import VirtualFirmware, firmware_config_for
from simulator.signals import NoiseSource
from tests.protocol_fixtures import INFO

SETTING = StimSetting(True, 2.0, 100, 130.0, 0.0)


def _rig(
    key_ctl: bytes | None = None, key_dev: bytes | None = None
) -> tuple[RecordingPeer, VirtualFirmware, LockstepPump, VirtualClock]:
    clock = VirtualClock()
    fw = VirtualFirmware(
        NoiseSource(seed=3), firmware_config_for("implant", seed=3, signing_key=key_dev)
    )
    ctl = RecordingPeer(ControllerSession(key=key_ctl))
    pump = LockstepPump(ctl, fw, clock)
    ctl.session.connect(0.0)
    return ctl, fw, pump, clock


def test_handshake_reports_device_info_and_streams_contiguous_samples() -> None:
    ctl, fw, pump, _ = _rig()
    pump.run_until(2.0)
    (connected,) = ctl.of_type(Connected)
    assert connected.info == type(fw.info).decode(fw.info.encode())  # type: ignore[attr-defined]
    blocks = ctl.of_type(SamplesReceived)
    assert len(blocks) >= 45
    indices = [b.first_index for b in blocks]  # type: ignore[attr-defined]
    assert indices == list(range(indices[0], indices[0] + 10 * len(blocks), 10))
    assert ctl.session.stats.sample_gaps == 0
    assert all(b.counts.shape == (8, 10) for b in blocks)  # type: ignore[attr-defined]


def test_device_rejects_unknown_major_version_and_controller_reports_both() -> None:
    dev = DeviceSession(INFO)
    dev.receive_data(encode_frame(MsgType.HELLO, Hello(2, 3, "future").encode(), 0, 0), 0.0)
    reply = FrameDecoder().feed(dev.data_to_send())
    assert [f.msg_type for f in reply] == [MsgType.HELLO_REJECT]
    assert not dev.handshaken
    ctl = ControllerSession()
    ctl.connect(0.0)
    reject = HelloReject(2, 0, 1, "device speaks 2.0")
    events = ctl.receive_data(
        encode_frame(MsgType.HELLO_REJECT, reject.encode(), 0, 0, version=2), 0.1
    )
    assert isinstance(events[0], VersionRejected)
    assert "2.0" in events[0].message(1, 0) and "1.0" in events[0].message(1, 0)
    assert ctl.state is SessionState.FAILED


def test_handshake_gives_up_after_documented_retries() -> None:
    ctl = ControllerSession()
    ctl.connect(0.0)
    hellos = len(FrameDecoder().feed(ctl.data_to_send()))
    events = []
    now = 0.0
    while ctl.state is SessionState.HANDSHAKING:
        now = ctl.next_deadline()  # type: ignore[assignment]
        events += ctl.handle_timeout(now)
        hellos += len(FrameDecoder().feed(ctl.data_to_send()))
    assert hellos == 5
    assert isinstance(events[-1], HandshakeFailed)
    assert abs(now - 2.5) < 1e-9


def test_unknown_message_types_are_skipped_and_counted() -> None:
    ctl, _, pump, clock = _rig()
    pump.run_until(0.5)
    events = ctl.session.receive_data(encode_frame(0x7E, b"whatever", 999, 0), clock.now())
    assert events == []
    assert ctl.session.stats.unknown_type == 1
    pump.run_until(1.0)
    assert ctl.session.state is SessionState.READY


def test_lost_ack_is_retried_with_the_same_id_and_applied_once() -> None:
    ctl, fw, pump, clock = _rig()
    pump.run_until(1.0)
    dropped = []

    def drop_first_ack(data: bytes, now: float) -> list[tuple[float, bytes]]:
        frames = FrameDecoder().feed(data)
        if not dropped and any(f.msg_type == MsgType.ACK for f in frames):
            dropped.append(data)
            return []
        return [(now, data)]

    pump._wires[id(fw)] = drop_first_ack
    cid = ctl.session.send_stim_set(SETTING, clock.now())
    pump.run_until(2.0)
    assert dropped
    (ack,) = ctl.of_type(CommandAcked)
    assert ack.command_id == cid and ack.attempts == 2  # type: ignore[attr-defined]
    assert fw.commands_applied == 1
    assert fw.session.stats.duplicate_commands == 1
    assert ctl.session.stats.retransmits == 1


def test_device_answers_a_duplicate_id_without_applying_it_again() -> None:
    dev = DeviceSession(INFO)
    dev.receive_data(encode_frame(MsgType.HELLO, Hello(1, 0).encode(), 0, 0), 0.0)
    dev.data_to_send()
    from firmware_bridge.messages import StimSet

    wire = encode_frame(MsgType.STIM_SET, StimSet(5, SETTING).encode(), 1, 10)
    first = dev.receive_data(wire, 0.01)
    assert len(first) == 1
    dev.nack(5, MsgType.STIM_SET, 3, 0.01)  # type: ignore[arg-type]
    answer = dev.data_to_send()
    again = encode_frame(MsgType.STIM_SET, StimSet(5, SETTING).encode(), 2, 20, FLAG_RETRANSMIT)
    assert dev.receive_data(again, 0.02) == []
    frames = FrameDecoder().feed(dev.data_to_send())
    assert len(frames) == 1
    assert parse_payload(frames[0].msg_type, frames[0].payload) == Nack(5, MsgType.STIM_SET, 3)
    assert FrameDecoder().feed(answer)[0].payload == frames[0].payload


def test_command_times_out_after_documented_retransmissions() -> None:
    ctl, fw, pump, clock = _rig()
    pump.run_until(1.0)
    pump._wires[id(ctl)] = lambda data, now: []  # nothing reaches the device any more
    cid = ctl.session.send_stim_set(SETTING, clock.now())
    start = clock.now()
    pump.run_until(start + 0.95)
    (timeout,) = ctl.of_type(CommandTimedOut)
    assert timeout.command_id == cid and timeout.attempts == 4  # type: ignore[attr-defined]
    assert ctl.session.stats.retransmits == 3
    assert fw.commands_applied == 0


def test_nack_reaches_the_controller_with_its_reason() -> None:
    ctl, fw, pump, clock = _rig()
    pump.run_until(1.0)
    ctl.session.send_stim_set(StimSetting(True, 50.0, 100, 130.0), clock.now())
    pump.run_until(1.5)
    (nack,) = ctl.of_type(CommandNacked)
    assert nack.reason_name == "AMPLITUDE_RANGE"  # type: ignore[attr-defined]
    assert fw.output.amplitude_ma == 0.0


def test_sample_gaps_and_duplicates_are_detected_and_counted() -> None:
    ctl = ControllerSession()
    ctl.connect(0.0)
    ctl.receive_data(encode_frame(MsgType.DEVICE_INFO, INFO.encode(), 0, 0), 0.0)
    counts = np.zeros((3, 10), dtype=np.int16)

    def frame(index: int, seq: int) -> bytes:
        from firmware_bridge.messages import encode_samples_payload

        return encode_frame(MsgType.SAMPLES, encode_samples_payload(index, counts), seq, 0)

    first = (1 << 32) - 20  # crosses the u32 wrap
    got = []
    for idx, seq in [
        (first, 1),
        (first + 10, 2),
        (first + 30, 4),
        (first + 30, 5),
        (first + 40, 6),
    ]:
        got += ctl.receive_data(frame(idx % (1 << 32), seq), 0.1)
    assert [e.first_index for e in got] == [first, first + 10, first + 30, first + 40]
    assert [e.missing_before for e in got] == [0, 0, 10, 0]
    st = ctl.stats
    assert (st.sample_gaps, st.samples_missing, st.sample_duplicates) == (1, 10, 1)
    assert st.frames_lost == 1  # seq 3 never arrived


def test_peer_loss_is_declared_after_four_heartbeat_intervals() -> None:
    ctl, _, pump, clock = _rig()
    pump.run_until(1.0)
    pump._wires[id(pump.b)] = lambda data, now: []  # device goes silent
    silent_from = clock.now()
    pump.run_until(3.0, stop=lambda: bool(ctl.of_type(PeerLost)))
    (lost,) = ctl.of_type(PeerLost)
    assert 1.0 - 0.05 <= clock.now() - silent_from <= 1.0 + 0.05
    assert lost.silent_s >= 1.0  # type: ignore[attr-defined]
    assert ctl.session.state is SessionState.LOST


def test_signed_commands_are_accepted_and_unsigned_or_forged_ones_refused() -> None:
    key = bytes(range(32))
    ctl, _fw, pump, clock = _rig(key_ctl=key, key_dev=key)
    pump.run_until(1.0)
    ctl.session.send_stim_set(SETTING, clock.now())
    pump.run_until(1.5)
    assert len(ctl.of_type(CommandAcked)) == 1

    ctl2, fw2, pump2, clock2 = _rig(key_ctl=b"w" * 32, key_dev=key)
    pump2.run_until(1.0)
    ctl2.session.send_stim_set(SETTING, clock2.now())
    pump2.run_until(1.5)
    (nack,) = ctl2.of_type(CommandNacked)
    assert nack.reason_name == "AUTH"  # type: ignore[attr-defined]
    assert fw2.output.target_ma == 0.0


def test_replayed_signed_frame_is_refused() -> None:
    from firmware_bridge.messages import StimSet

    key = b"s" * 32
    dev = DeviceSession(INFO, key=key)
    dev.receive_data(encode_frame(MsgType.HELLO, Hello(1, 0).encode(), 0, 0, key=key), 0.0)
    dev.data_to_send()
    first = encode_frame(MsgType.STIM_SET, StimSet(1, SETTING).encode(), 1, 500, key=key)
    assert len(dev.receive_data(first, 0.1)) == 1
    dev.ack(1, MsgType.STIM_SET, 0.1)
    dev.data_to_send()
    # An attacker re-sends an old signed frame under a new command id: same timestamp.
    replay = encode_frame(MsgType.STIM_SET, StimSet(2, SETTING).encode(), 2, 500, key=key)
    assert dev.receive_data(replay, 0.2) == []
    frames = FrameDecoder().feed(dev.data_to_send())
    nack = parse_payload(frames[0].msg_type, frames[0].payload)
    assert isinstance(nack, Nack) and nack.reason == 12  # REPLAY


def test_stim_state_reports_what_the_device_delivers() -> None:
    ctl, _fw, pump, clock = _rig()
    pump.run_until(1.0)
    ctl.session.send_stim_set(StimSetting(True, 2.0, 100, 130.0, 1.0), clock.now())
    pump.run_until(1.5)
    mid = ctl.of_type(StimStateReceived)[-1].state  # type: ignore[attr-defined]
    assert mid.ramping and mid.target_amplitude_ma == 2.0
    pump.run_until(4.0)
    final = ctl.of_type(StimStateReceived)[-1].state  # type: ignore[attr-defined]
    assert not final.ramping and final.amplitude_ma == 2.0 and final.enabled


def test_handshake_restarted_while_ready_over_a_slow_link_does_not_stall_time() -> None:
    """A heartbeat deadline left over from READY must not stay due through the handshake
    (virtual time would stop at it)."""
    clock = VirtualClock()
    fw = VirtualFirmware(NoiseSource(seed=3), firmware_config_for("implant", seed=3))
    ctl = RecordingPeer(ControllerSession())

    def slow(data: bytes, now: float) -> list[tuple[float, bytes]]:
        return [(now + 0.3, data)]

    pump = LockstepPump(ctl, fw, clock, a_to_b=slow, b_to_a=slow)
    ctl.session.connect(0.0)
    pump.run_until(5.0)
    assert ctl.session.state is SessionState.READY
    ctl.session.connect(clock.now())
    pump.run_until(10.0)
    assert ctl.session.state is SessionState.READY
    assert len(ctl.of_type(Connected)) == 2
