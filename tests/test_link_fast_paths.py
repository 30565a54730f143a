"""The link's shortcuts against their general twins, on the same bytes.

The sessions take a shortcut for the frames that make most of the traffic (plain
HEARTBEAT and SAMPLES): no Frame object, the header read once. The general rules stay
in ``_on_frame`` (every other frame goes there); here both run on the same random
streams, cut into random chunks, and must give the same events, counters and replies.
The one-pack encoders must give the bytes of ``encode_frame``; the pump's clean-link
loop the same run as the general loop with a wire that delivers at once.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.clock import VirtualClock
from firmware_bridge.events import ControllerReturned, SamplesReceived, samples_received
from firmware_bridge.framing import (
    FLAG_RETRANSMIT,
    MAX_PAYLOAD,
    FrameDecoder,
    FrameTooLarge,
    encode_frame,
    frame_of,
    seal,
)
from firmware_bridge.lockstep import LockstepPump, RecordingPeer
from firmware_bridge.messages import (
    Ack,
    Estop,
    Hello,
    MalformedPayload,
    Marker,
    MsgType,
    Status,
    StimSet,
    StimSetting,
    decode_samples_payload,
    encode_heartbeat_frame,
    encode_heartbeat_payload,
    encode_samples_frame,
    encode_samples_payload_interleaved,
)
from firmware_bridge.session import ControllerSession, DeviceSession
from simulator.firmware import VirtualFirmware, firmware_config_for
from simulator.signals import NoiseSource
from tests.protocol_fixtures import INFO

KEY = bytes(range(32))
N_CHANNELS = len(INFO.channels)


# -- encoders ------------------------------------------------------------------------------


@given(
    st.integers(0, (1 << 16) - 1),
    st.integers(0, (1 << 50) - 1),
    st.integers(0, (1 << 33) - 1),
    st.integers(0, 255),
)
def test_heartbeat_frame_is_the_general_encoding(
    seq: int, timestamp_us: int, counter: int, state: int
) -> None:
    general = encode_frame(
        MsgType.HEARTBEAT, encode_heartbeat_payload(counter, state), seq, timestamp_us
    )
    assert encode_heartbeat_frame(seq, timestamp_us, counter, state) == general


@given(
    st.integers(0, (1 << 16) - 1),
    st.integers(0, (1 << 50) - 1),
    st.integers(0, (1 << 33) - 1),
    st.binary(max_size=600),
)
def test_samples_frame_is_the_general_encoding(
    seq: int, timestamp_us: int, first_index: int, interleaved: bytes
) -> None:
    payload = encode_samples_payload_interleaved(first_index, interleaved)
    general = encode_frame(MsgType.SAMPLES, payload, seq, timestamp_us)
    assert encode_samples_frame(seq, timestamp_us, first_index, interleaved) == general


def test_samples_frame_refuses_what_the_general_encoder_refuses() -> None:
    fits = bytes(MAX_PAYLOAD - 4)
    assert encode_samples_frame(1, 2, 3, fits) == encode_frame(
        MsgType.SAMPLES, encode_samples_payload_interleaved(3, fits), 1, 2
    )
    with pytest.raises(FrameTooLarge):
        encode_frame(MsgType.SAMPLES, encode_samples_payload_interleaved(3, fits + b"x"), 1, 2)
    with pytest.raises(FrameTooLarge):
        encode_samples_frame(1, 2, 3, fits + b"x")


@given(st.integers(1, 12), st.integers(1, 40), st.integers(0, 2**32 - 1), st.randoms())
def test_samples_view_is_the_reshaped_buffer(
    n_channels: int, n_samples: int, first: int, rnd: Any
) -> None:
    counts = np.array(
        [[rnd.randint(-32768, 32767) for _ in range(n_samples)] for _ in range(n_channels)],
        dtype=np.int16,
    )
    payload = encode_samples_payload_interleaved(first, counts.astype("<i2").T.tobytes())
    got_first, view = decode_samples_payload(payload, n_channels)
    reference = np.frombuffer(payload, dtype="<i2", offset=4).reshape(-1, n_channels).T
    assert got_first == first
    assert np.array_equal(view, counts) and np.array_equal(view, reference)
    assert view.shape == reference.shape and view.strides == reference.strides
    assert view.dtype == reference.dtype and view.flags == reference.flags


def test_samples_received_is_the_constructed_event() -> None:
    counts = np.arange(6, dtype=np.int16).reshape(2, 3)
    fast = samples_received(10, counts, 20, 3)
    slow = SamplesReceived(10, counts, 20, 3)
    assert type(fast) is SamplesReceived and repr(fast) == repr(slow)
    assert fast.__dict__ == slow.__dict__
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.first_index = 11  # type: ignore[misc]


@given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 3), st.integers(0, 3)), max_size=8))
def test_status_decode_of_a_repeated_payload_is_the_decoded_status(
    reports: list[tuple[int, int, int]],
) -> None:
    """``Status.decode`` keeps the last message: whatever came before, every payload decodes
    to its own STATUS, and a malformed one still raises."""
    for battery, flags, n in reports:
        status = Status(battery, flags, tuple(1000 + i for i in range(n)))
        payload = status.encode()
        assert Status.decode(payload) == status
        assert Status.decode(bytearray(payload)) == status
        with pytest.raises(MalformedPayload):
            Status.decode(payload + b"x")
        with pytest.raises(MalformedPayload):
            Status.decode(bytes([101]) + payload[1:])


@given(
    st.lists(st.tuples(st.integers(0, 100), st.integers(0, 3), st.integers(0, 3)), max_size=8),
    st.lists(st.integers(0, 7), max_size=20),
)
def test_status_encode_of_a_repeated_message_is_its_packing(
    reports: list[tuple[int, int, int]], order: list[int]
) -> None:
    """``Status.encode`` keeps the last message's payload: encoded in any order, repeated or
    not, equal or not, every message gives the packing of its own fields."""
    statuses = [Status(b, f, tuple(1000 + i for i in range(n))) for b, f, n in reports]
    for i in order:
        if i < len(statuses):
            status = statuses[i]
            n = len(status.impedance_ohm)
            packed = struct.pack("<BIB", status.battery_pct, status.fault_flags, n)
            assert status.encode() == packed + struct.pack(f"<{n}I", *status.impedance_ohm)


def test_firmware_keeps_the_end_of_the_frame_being_acquired() -> None:
    """The frame end read at every step is the end of the frame holding the next sample,
    after its own acquisitions and after a subclass moves the index itself."""
    fw = VirtualFirmware(NoiseSource(seed=2), firmware_config_for("implant", seed=2), start_s=12.5)
    spf, fs = fw.config.samples_per_frame, fw.sampling_rate_hz

    def frame_end_s() -> float:
        return fw.start_s + ((fw.samples_acquired // spf + 1) * spf) / fs

    assert fw._frame_end_s == frame_end_s() == fw.next_deadline()
    for now in (12.5, 12.54, 12.6, 13.0, 13.33):
        fw.advance_to(now)
        assert fw._frame_end_s == frame_end_s() and fw._frame_end_s > now
    fw.samples_acquired += spf + 3  # as tests.hil_broken_devices.SampleGaps skips a frame
    assert fw._frame_end_s == frame_end_s()


def test_firmware_keeps_its_status_while_the_values_are_equal() -> None:
    fw = VirtualFirmware(NoiseSource(seed=1), firmware_config_for("implant"))
    ohm = (1000, 1001)
    first = fw._status_of(80, 0, ohm)
    assert fw._status_of(80, 0, tuple(ohm)) is first
    for changed in ((79, 0, ohm), (80, 2, ohm), (80, 0, (1000, 1002))):
        status = fw._status_of(*changed)
        assert status == Status(*changed) and status is not first
        first = status


# -- sessions: receive_data against _on_frame -------------------------------------------------


def _samples_payload(rnd: Any, n_channels: int) -> bytes:
    n = rnd.choice([1, 5, 10])
    body = bytes(rnd.getrandbits(8) for _ in range(2 * n * n_channels))
    if rnd.random() < 0.1:
        body += b"\x01"  # not whole samples: malformed
    return encode_samples_payload_interleaved(rnd.getrandbits(32), body)


def _random_frame(rnd: Any, to_device: bool) -> bytes:
    """One frame of the kinds a session meets, with their irregular cousins."""
    seq = rnd.getrandbits(16) if rnd.random() < 0.2 else rnd.choice([0, 1, 2, 3])
    ts = rnd.getrandbits(40)
    kind = rnd.random()
    version = 1 if rnd.random() < 0.9 else 2
    flags = FLAG_RETRANSMIT if rnd.random() < 0.1 else 0
    key = KEY if rnd.random() < 0.15 else None
    if kind < 0.45:
        msg_type, payload = MsgType.HEARTBEAT, encode_heartbeat_payload(rnd.getrandbits(32))
        if rnd.random() < 0.1:
            payload = payload[: rnd.randint(0, 4)] if rnd.random() < 0.5 else payload + b"\x00"
    elif kind < 0.75:
        msg_type, payload = MsgType.SAMPLES, _samples_payload(rnd, N_CHANNELS)
    elif to_device:
        choice = rnd.choice(
            [
                StimSet(rnd.getrandbits(8), StimSetting(True, 1.0, 100, 50.0, 1.0)),
                Estop(rnd.getrandbits(8)),
                Marker(5, "m"),
                Hello(1, 1, "twin"),
                Ack(7, 0x10),  # a HEARTBEAT's size, not a HEARTBEAT (and not device-bound)
            ]
        )
        msg_type, payload = choice.MSG_TYPE, choice.encode()
    else:
        choice = rnd.choice(
            [
                Status(50, 0, (1000, 1100, 1200)),
                Status(101, 0, (1000,)),  # battery out of range: malformed
                Ack(3, 0x10),
                Marker(2, "x"),
            ]
        )
        msg_type, payload = choice.MSG_TYPE, choice.encode()
        if rnd.random() < 0.1:
            payload = payload[:-1]  # truncated
    wire = encode_frame(msg_type, payload, seq, ts, flags, key, version)
    if rnd.random() < 0.05:  # a corrupted byte (CRC or COBS error)
        i = rnd.randrange(len(wire) - 1)
        wire = wire[:i] + bytes([wire[i] ^ 0x5A or 1]) + wire[i + 1 :]
    return wire


def _chunks(rnd: Any, stream: bytes) -> list[bytes]:
    out = []
    i = 0
    while i < len(stream):
        # Often all of it (the whole-frames path), else a random piece.
        whole = rnd.random() < 0.5
        j = len(stream) if whole else min(len(stream), i + rnd.randint(1, 64))
        out.append(stream[i:j])
        i = j
    return out


def _events_key(events: list[object]) -> list[object]:
    """Events compared by value (SamplesReceived holds an array: compare its bytes)."""
    out: list[object] = []
    for e in events:
        if isinstance(e, SamplesReceived):
            out.append(
                (
                    "samples",
                    e.first_index,
                    e.counts.tobytes(),
                    e.counts.shape,
                    e.timestamp_us,
                    e.missing_before,
                )
            )
        else:
            out.append(e)
    return out


def _general_receive(session: Any, data: bytes, now: float) -> list[object]:
    events: list[object] = []
    for frame in session._decoder.feed(data):
        session._on_frame(frame, now, events)
    return events


def _ready_controller(key: bytes | None) -> ControllerSession:
    ctl = ControllerSession(key=key)
    ctl.connect(0.0)
    ctl.receive_data(encode_frame(MsgType.DEVICE_INFO, INFO.encode(), 0, 0), 0.0)
    ctl.data_to_send()
    return ctl


def _state(session: Any) -> dict[str, object]:
    return {
        "stats": dataclasses.asdict(session.stats),
        "rx_seq": session._rx_seq,
        "last_rx_s": session._last_rx_s,
        "out": session.data_to_send(),
    }


@settings(max_examples=80)
@given(st.randoms(use_true_random=False), st.booleans())
def test_controller_shortcut_is_the_general_path(rnd: Any, signed: bool) -> None:
    key = KEY if signed else None
    fast, slow = _ready_controller(key), _ready_controller(key)
    now = 0.0
    for _ in range(rnd.randint(1, 12)):
        stream = b"".join(_random_frame(rnd, to_device=False) for _ in range(rnd.randint(1, 4)))
        now += 0.25
        for chunk in _chunks(rnd, stream):
            got = fast.receive_data(chunk, now)
            want = _general_receive(slow, chunk, now)
            assert _events_key(got) == _events_key(want)  # type: ignore[arg-type]
        assert _state(fast) == _state(slow)
        assert fast._expected_index == slow._expected_index
    assert fast.stats.decoder == slow.stats.decoder


def _handshaken_device(key: bytes | None) -> DeviceSession:
    dev = DeviceSession(INFO, key=key)
    dev.receive_data(encode_frame(MsgType.HELLO, Hello(1, 1, "t").encode(), 0, 0), 0.0)
    dev.data_to_send()
    return dev


@settings(max_examples=80)
@given(st.randoms(use_true_random=False), st.booleans())
def test_device_shortcut_is_the_general_path(rnd: Any, signed: bool) -> None:
    key = KEY if signed else None
    fast, slow = _handshaken_device(key), _handshaken_device(key)
    now = 0.0
    for _ in range(rnd.randint(1, 12)):
        if rnd.random() < 0.3:  # the watchdog ran out meanwhile: the next frame ends it
            fast.watchdog_expired = slow.watchdog_expired = True
        stream = b"".join(_random_frame(rnd, to_device=True) for _ in range(rnd.randint(1, 4)))
        now += 0.25
        for chunk in _chunks(rnd, stream):
            got = fast.receive_data(chunk, now)
            want = _general_receive(slow, chunk, now)
            assert got == want
        assert _state(fast) == _state(slow)
        assert fast.watchdog_expired == slow.watchdog_expired
        assert fast.handshaken == slow.handshaken


def test_lone_heartbeats_count_gaps_and_end_the_watchdog_as_the_general_path() -> None:
    """The lone-HEARTBEAT shortcut of both sessions (its _note_rx spelled out) on in-order,
    skipped, repeated and wrapped sequence numbers, each HEARTBEAT a chunk of its own."""
    seqs = [0, 1, 5, 3, 3, 0xFFFE, 0xFFFF, 0, 2, 0x9000]
    fast_ctl, slow_ctl = _ready_controller(None), _ready_controller(None)
    fast_dev, slow_dev = _handshaken_device(None), _handshaken_device(None)
    for i, seq in enumerate(seqs):
        wire = encode_heartbeat_frame(seq, 1000 * i, i)
        now = 0.25 * (i + 1)
        assert fast_ctl.receive_data(wire, now) == _general_receive(slow_ctl, wire, now) == []
        if i % 3 == 0:  # the watchdog ran out meanwhile: this heartbeat ends it
            fast_dev.watchdog_expired = slow_dev.watchdog_expired = True
        got = fast_dev.receive_data(wire, now)
        assert got == _general_receive(slow_dev, wire, now)
        assert got == ([ControllerReturned()] if i % 3 == 0 else [])
        for fast, slow in ((fast_ctl, slow_ctl), (fast_dev, slow_dev)):
            assert _state(fast) == _state(slow)
    assert fast_ctl.stats.frames_lost > 0 and not fast_dev.watchdog_expired


# -- the pump: the clean-link loop against the general loop ----------------------------------


class _AskedPeer(RecordingPeer):
    """A RecordingPeer that counts how often the pump asks it for bytes."""

    asked = 0

    def data_to_send(self) -> bytes:
        self.asked += 1
        return super().data_to_send()


def _pump_run(wire: Any, session_peers: bool = False) -> tuple[tuple[object, ...], int]:
    """What a short run saw (events, bytes each way, both sides' counters) and how often
    the pump asked the controller side for bytes."""
    clock = VirtualClock()
    fw = VirtualFirmware(NoiseSource(seed=5), firmware_config_for("implant", seed=5))
    ctl = _AskedPeer(ControllerSession())
    pump = LockstepPump(ctl, fw, clock, a_to_b=wire, b_to_a=wire, session_peers=session_peers)
    ctl.session.connect(0.0)
    pump.run_until(3.0)
    ctl.session.send_stim_set(StimSetting(True, 2.0, 100, 130.0, 1.0), clock.now())
    pump.run_until(12.0)
    seen = (
        _events_key(ctl.events),
        pump.bytes_a_to_b,
        pump.bytes_b_to_a,
        [dataclasses.asdict(ctl.session.stats), dataclasses.asdict(fw.session.stats)],
    )
    return seen, ctl.asked


def test_clean_link_loop_is_the_general_loop_with_an_instant_wire() -> None:
    def instant(data: bytes, now: float) -> list[tuple[float, bytes]]:
        return [(now, data)]

    clean, asked = _pump_run(None)
    general, _ = _pump_run(instant)
    assert clean == general
    assert clean[1] > 0 and any(isinstance(e, tuple) and e[0] == "samples" for e in clean[0])
    # Asking only peers whose session's outbox holds bytes: the same run, far fewer asks.
    skipping, asked_when_skipping = _pump_run(None, session_peers=True)
    assert skipping == clean
    assert asked_when_skipping < 0.7 * asked


def _heartbeat_sized_wire(rnd: Any) -> bytes:
    """22 bytes that are often one whole HEARTBEAT frame, else a near miss: another type or
    version of that size, signed flag without a tag, a corrupted byte, a 0x00 inside, no
    delimiter at the end."""
    kind = rnd.random()
    msg_type = MsgType.HEARTBEAT if kind < 0.7 else rnd.choice([MsgType.ACK, 0x7E])
    version = 1 if rnd.random() < 0.9 else 2
    flags = rnd.choice([0, 0, 0, FLAG_RETRANSMIT, 0x02])
    payload = bytes(rnd.getrandbits(8) for _ in range(5))
    message = bytes([version, msg_type, flags]) + bytes(rnd.getrandbits(8) for _ in range(8))
    wire = seal(message + payload)
    if rnd.random() < 0.15:
        i = rnd.randrange(len(wire))
        wire = wire[:i] + bytes([rnd.choice([0, wire[i] ^ 0x21])]) + wire[i + 1 :]
    return wire


@settings(max_examples=300)
@given(st.randoms(use_true_random=False), st.binary(max_size=30))
def test_lone_frame_seq_is_what_messages_returns(rnd: Any, before: bytes) -> None:
    """``lone_frame_seq`` gives the sequence number of the one plain HEARTBEAT ``messages``
    would return, with the same counts, or -1 with nothing counted or held (so
    ``messages`` can take the same bytes afterwards)."""
    fast, slow = FrameDecoder(), FrameDecoder()
    for decoder in (fast, slow):  # whatever came before: a partial frame, whole ones, nothing
        decoder.messages(before)
    wire = _heartbeat_sized_wire(rnd)
    seq = fast.lone_frame_seq(wire, 20, MsgType.HEARTBEAT)
    if seq < 0:
        assert fast.stats == slow.stats and fast.buffered == slow.buffered
        assert fast.messages(wire) == slow.messages(wire)
    else:
        (message,) = slow.messages(wire)
        frame = frame_of(message)
        assert (frame.msg_type, frame.version, frame.seq) == (MsgType.HEARTBEAT, 1, seq)
        assert not frame.flags & 0x02 and len(message) == 20
    assert fast.stats == slow.stats and fast.buffered == slow.buffered


def test_lone_frame_seq_takes_a_lone_heartbeat_and_leaves_the_rest() -> None:
    wire = encode_heartbeat_frame(3, 4, 5)
    decoder = FrameDecoder()
    assert decoder.lone_frame_seq(wire, 20, MsgType.HEARTBEAT) == 3
    assert decoder.stats.frames_ok == 1 and decoder.stats.bytes_in == len(wire)
    assert decoder.lone_frame_seq(wire + wire, 20, MsgType.HEARTBEAT) == -1  # two frames
    assert decoder.lone_frame_seq(wire, 21, MsgType.HEARTBEAT) == -1  # another size
    assert decoder.lone_frame_seq(wire, 20, MsgType.ACK) == -1  # another type
    decoder.messages(wire[:5])  # a partial frame held
    assert decoder.lone_frame_seq(wire, 20, MsgType.HEARTBEAT) == -1
    assert decoder.stats.frames_ok == 1


@given(
    st.integers(0, (1 << 16) - 1),
    st.integers(0, (1 << 32) + 5),
    st.integers(0, 255),
    st.floats(0.0, 1e9, allow_nan=False),
)
def test_emitted_heartbeat_is_the_general_emit(seq: int, sent: int, state: int, now: float) -> None:
    """``_emit_heartbeat`` leaves the state ``_emit`` leaves."""
    fast, slow = ControllerSession(), ControllerSession()
    for session in (fast, slow):
        session._seq, session._heartbeats_sent = seq, sent
    fast._emit_heartbeat(state, now)
    slow._heartbeats_sent += 1
    slow._emit(MsgType.HEARTBEAT, encode_heartbeat_payload(slow._heartbeats_sent, state), now)
    assert fast.outbox == slow.outbox
    assert (fast._seq, fast._heartbeats_sent) == (slow._seq, slow._heartbeats_sent)
    assert fast.stats == slow.stats
    assert fast.data_to_send() == slow.data_to_send()
