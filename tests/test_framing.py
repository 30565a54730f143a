"""The byte layer: COBS framing, CRC, header fields, resync, bounds, signing."""

from __future__ import annotations

import zlib

import pytest
from cobs import cobs
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge import framing
from firmware_bridge.framing import (
    FLAG_RETRANSMIT,
    MAX_ENCODED,
    MAX_PAYLOAD,
    FrameDecoder,
    FrameTooLarge,
    encode_frame,
    sign,
)
from firmware_bridge.messages import MsgType, Samples, parse_payload
from tests.protocol_fixtures import EXAMPLES, INFO, samples_example


def _wire(msg: object, seq: int = 1, ts: int = 5) -> bytes:
    return encode_frame(msg.MSG_TYPE, msg.encode(), seq, ts)  # type: ignore[attr-defined]


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(msg: object) -> None:
    frames = FrameDecoder().feed(_wire(msg, seq=65535, ts=(1 << 48) - 1))
    assert len(frames) == 1
    frame = frames[0]
    assert (frame.version, frame.seq, frame.timestamp_us) == (1, 65535, (1 << 48) - 1)
    assert parse_payload(frame.msg_type, frame.payload) == msg


def test_samples_round_trip_keeps_channel_major_layout() -> None:
    msg = samples_example(n_channels=3, n_samples=10)
    frame = FrameDecoder().feed(_wire(msg))[0]
    decoded = parse_payload(frame.msg_type, frame.payload, n_channels=3)
    assert isinstance(decoded, Samples)
    assert decoded.first_index == 4_000_000_000
    assert decoded.counts.shape == (3, 10)
    assert (decoded.counts == msg.counts).all()
    # On the wire: sample-major, little-endian int16 after the u32 index.
    assert frame.payload[4:6] == int(msg.counts[0, 0]).to_bytes(2, "little", signed=True)
    assert frame.payload[6:8] == int(msg.counts[1, 0]).to_bytes(2, "little", signed=True)


def test_crc_is_crc32_iso_hdlc_over_header_and_payload() -> None:
    assert zlib.crc32(b"123456789") == 0xCBF43926
    wire = _wire(INFO)
    message = cobs.decode(wire[:-1])
    assert int.from_bytes(message[-4:], "little") == zlib.crc32(message[:-4])


@given(st.binary(max_size=4200))
def test_the_crc_in_use_is_zlibs_crc32(data: bytes) -> None:
    """The codec's CRC-32 (ISA-L's, for speed) is zlib's, value for value, and a message
    followed by its own CRC leaves the residue the decoder checks for."""
    assert framing._crc32(data) == zlib.crc32(data)
    trailer = zlib.crc32(data).to_bytes(4, "little")
    assert framing._crc32(data + trailer) == framing.CRC_RESIDUE


def test_wire_never_contains_zero_but_the_delimiter() -> None:
    for msg in EXAMPLES:
        wire = _wire(msg)
        assert wire.endswith(b"\x00")
        assert b"\x00" not in wire[:-1]


def test_corrupted_frame_is_counted_and_dropped_and_next_frame_decodes() -> None:
    good = _wire(EXAMPLES[0])
    bad = bytearray(good)
    bad[5] ^= 0x40
    if bad[5] == 0:
        bad[5] = 0x11
    decoder = FrameDecoder()
    frames = decoder.feed(bytes(bad) + good)
    assert len(frames) == 1
    assert decoder.stats.crc_errors + decoder.stats.cobs_errors == 1


def test_resync_after_garbage() -> None:
    decoder = FrameDecoder()
    garbage = bytes(range(1, 200)) * 3
    frames = decoder.feed(garbage + b"\x00" + _wire(EXAMPLES[3]) + garbage[:50])
    assert [f.msg_type for f in frames] == [MsgType.STIM_SET]
    assert decoder.stats.frames_bad == 1
    # The trailing garbage is held, then discarded at the next delimiter, and decoding goes on.
    frames = decoder.feed(b"\x00" + _wire(EXAMPLES[5]))
    assert [f.msg_type for f in frames] == [MsgType.ACK]


def test_byte_by_byte_feeding_gives_the_same_frames() -> None:
    stream = b"".join(_wire(m, seq=i) for i, m in enumerate(EXAMPLES))
    decoder = FrameDecoder()
    frames = [f for b in stream for f in decoder.feed(bytes([b]))]
    assert [f.seq for f in frames] == list(range(len(EXAMPLES)))


def test_oversize_input_is_dropped_counted_and_memory_stays_bounded() -> None:
    decoder = FrameDecoder()
    for _ in range(20):
        decoder.feed(b"\x55" * 1000)
        assert decoder.buffered <= MAX_ENCODED
    assert decoder.stats.oversize == 1
    # Still discarding until the next delimiter; then a good frame decodes.
    frames = decoder.feed(b"\x55" * 10 + b"\x00" + _wire(EXAMPLES[0]))
    assert len(frames) == 1
    assert decoder.stats.oversize == 1


def test_empty_frames_are_ignored() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00\x00\x00") == []
    assert decoder.stats.empty_frames == 3
    assert decoder.stats.frames_bad == 0


def test_too_large_payload_is_refused_at_encode() -> None:
    with pytest.raises(FrameTooLarge):
        encode_frame(MsgType.MARKER, b"\x01" * (MAX_PAYLOAD + 1), 0, 0)
    wire = encode_frame(MsgType.MARKER, b"\x01" * MAX_PAYLOAD, 0, 0)
    assert len(wire) - 1 <= MAX_ENCODED


def test_flags_and_signature() -> None:
    key = b"k" * 32
    wire = encode_frame(MsgType.STIM_SET, EXAMPLES[3].encode(), 3, 99, FLAG_RETRANSMIT, key)
    frame = FrameDecoder().feed(wire)[0]
    assert frame.retransmit
    assert frame.tag == sign(key, frame.signed_bytes)
    assert frame.tag_valid(key)
    assert not frame.tag_valid(b"x" * 32)
    assert parse_payload(frame.msg_type, frame.payload) == EXAMPLES[3]
    unsigned = FrameDecoder().feed(encode_frame(MsgType.STIM_SET, EXAMPLES[3].encode(), 3, 99))[0]
    assert not unsigned.tag_valid(key)
