"""The pure parts of the MQTT transport: which record is a device's current presence, the
persisted session counter, frame splitting and QoS, and what the decoder gets per publish."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.framing import MAX_ENCODED, FrameDecoder, encode_frame
from firmware_bridge.messages import (
    Ack,
    Heartbeat,
    MalformedPayload,
    MsgType,
    UnknownMessageType,
    parse_payload,
)
from firmware_bridge.session import ControllerSession
from firmware_bridge.transports.mqtt import (
    MAX_FRAME_PAYLOAD,
    FrameSplitter,
    frame_qos,
    inbound_bytes,
)
from firmware_bridge.transports.mqtt_presence import (
    Presence,
    PresenceTracker,
    SessionCounter,
    SessionCounterError,
    device_of,
    topic,
)
from tests.protocol_fixtures import EXAMPLES

TOPIC = topic("dev-1", "presence")


def _record(session: int, online: bool, device_id: str = "dev-1") -> bytes:
    return Presence(device_id, "fw-1", session, online, 1_700_000_000.0).encode()


def test_the_highest_session_wins_and_offline_ends_a_session() -> None:
    tracker = PresenceTracker()
    assert tracker.update(TOPIC, _record(5, True)) is not None
    # The broker restarted with the old retained online, then the device's new birth:
    assert tracker.update(TOPIC, _record(5, True)) is None  # nothing new
    new = tracker.update(TOPIC, _record(6, True))
    assert new is not None and new.session == 6 and new.online
    # The old connection's will arrives late: stale, ignored.
    assert tracker.update(TOPIC, _record(5, False)) is None and tracker.stale == 1
    assert tracker.current["dev-1"].online
    assert tracker.update(TOPIC, _record(6, False)) is not None  # its own will ends it
    assert tracker.update(TOPIC, _record(6, True)) is None and tracker.stale == 2
    assert not tracker.current["dev-1"].online


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xff\xfe",
        b"[]",
        b'{"device_id":"dev-1"}',
        _record(3, True, device_id="dev-2"),  # names another device than its topic
        _record(3, True).replace(b'"session":3', b'"session":0'),
        _record(3, True).replace(b"true", b"1"),
        _record(3, True).replace(b"1700000000.0", b"NaN"),
        b"[" * 100_000,
    ],
)
def test_invalid_presence_payloads_are_counted_never_raised(payload: bytes) -> None:
    tracker = PresenceTracker()
    assert tracker.update(TOPIC, payload) is None
    assert tracker.invalid == 1 and not tracker.current


@given(st.binary(max_size=600), st.sampled_from([TOPIC, "neurostim/v1/dev-2/presence", "x/y"]))
def test_random_presence_publishes_never_raise(payload: bytes, topic_name: str) -> None:
    tracker = PresenceTracker()
    tracker.update(topic_name, payload)
    assert tracker.invalid + len(tracker.current) == 1


def test_topics_name_their_device() -> None:
    assert device_of("neurostim/v1/dev-1/up") == "dev-1"
    assert device_of("neurostim/v2/dev-1/up") is None
    assert device_of("neurostim/v1//up") is None
    assert device_of("other/v1/dev-1/up") is None


def test_the_session_counter_increases_across_restarts_and_refuses_garbage(
    tmp_path: Path,
) -> None:
    counter = SessionCounter.in_dir(tmp_path / "state", "dev-1")
    assert counter.last() == 0
    assert [counter.next(), counter.next()] == [1, 2]
    assert SessionCounter.in_dir(tmp_path / "state", "dev-1").next() == 3  # a new process
    counter.path.write_text("garbage\n")
    with pytest.raises(SessionCounterError, match="not a session counter"):
        counter.next()


def test_frames_are_split_per_publish_and_samples_go_at_qos_0() -> None:
    samples = encode_frame(MsgType.SAMPLES, (7).to_bytes(4, "little") + bytes(16), 1, 2)
    heartbeat = encode_frame(MsgType.HEARTBEAT, Heartbeat(1, 0).encode(), 2, 3)
    ack = encode_frame(MsgType.ACK, Ack(5, MsgType.STIM_SET).encode(), 3, 4)
    splitter = FrameSplitter()
    both = samples + b"\x00" + heartbeat + ack[:5]
    assert splitter.split(both) == [samples, heartbeat]  # the lone delimiter is no frame
    assert splitter.split(ack[5:]) == [ack]
    assert [frame_qos(f) for f in (samples, heartbeat, ack)] == [0, 1, 1]
    for msg in EXAMPLES:
        wire = encode_frame(msg.MSG_TYPE, msg.encode(), 0, 0)  # type: ignore[attr-defined]
        assert frame_qos(wire) == (0 if msg.MSG_TYPE == MsgType.SAMPLES else 1)  # type: ignore[attr-defined]


def test_each_publish_is_decoded_alone_and_oversize_is_dropped_undecoded() -> None:
    good = encode_frame(MsgType.HEARTBEAT, Heartbeat(9, 0).encode(), 9, 9)
    decoder = FrameDecoder()
    for payload in (b"\x07garbage-without-delimiter", good[:-1]):  # a sender may omit it
        data = inbound_bytes(payload)
        assert data is not None
        frames = decoder.feed(data)
    assert [f.seq for f in frames] == [9]
    assert inbound_bytes(b"") is None
    assert inbound_bytes(bytes(MAX_FRAME_PAYLOAD + 1)) is None
    assert inbound_bytes(bytes(MAX_ENCODED) + b"\x00") is not None


@given(st.lists(st.binary(max_size=6000), max_size=20))
def test_random_publishes_never_make_the_decoder_or_the_session_raise(
    payloads: list[bytes],
) -> None:
    """The serial property, per publish: any bytes, bounded decoder, nothing raised."""
    decoder = FrameDecoder()
    session = ControllerSession()
    session.connect(0.0)
    for i, payload in enumerate(payloads):
        data = inbound_bytes(payload)
        if data is None:
            assert not payload or len(payload) > MAX_FRAME_PAYLOAD
            continue
        for frame in decoder.feed(data):
            with contextlib.suppress(MalformedPayload, UnknownMessageType):
                parse_payload(frame.msg_type, frame.payload, n_channels=3)
        session.receive_data(data, 0.01 * i)
        assert decoder.buffered == 0  # each publish ends with a delimiter
