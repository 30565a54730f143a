"""Frames on the wire: header, optional signature tag, CRC-32, COBS, 0x00 delimiter.

This is the byte-level layer of docs/protocol.md (section 1). It knows nothing
about what the payloads mean. The decoder is bounded: it never holds more than
one maximum-length encoded frame, whatever it is fed, and never raises on input.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import zlib
from dataclasses import dataclass

from cobs import cobs

PROTOCOL_MAJOR = 1
PROTOCOL_MINOR = 0

HEADER = struct.Struct("<BBBHIH")  # version, type, flags, seq, timestamp low 32, high 16
HEADER_SIZE = HEADER.size  # 11
CRC_SIZE = 4
TAG_SIZE = 8
MAX_MESSAGE = 4096
#: COBS adds one byte per started 254-byte block.
MAX_ENCODED = MAX_MESSAGE + -(-MAX_MESSAGE // 254)
MAX_PAYLOAD = MAX_MESSAGE - HEADER_SIZE - CRC_SIZE - TAG_SIZE

FLAG_RETRANSMIT = 0x01
FLAG_SIGNED = 0x02

SEQ_MODULO = 1 << 16
TIMESTAMP_MODULO = 1 << 48


class FrameTooLarge(ValueError):
    """A payload that would exceed MAX_MESSAGE was asked to be encoded."""


@dataclass(slots=True)
class Frame:
    """One decoded, CRC-checked message."""

    version: int
    msg_type: int
    flags: int
    seq: int
    timestamp_us: int
    payload: bytes
    tag: bytes | None = None
    signed_bytes: bytes = b""  # header + payload, what the tag authenticates

    @property
    def retransmit(self) -> bool:
        return bool(self.flags & FLAG_RETRANSMIT)

    def tag_valid(self, key: bytes) -> bool:
        """True when the frame is signed and its tag verifies under ``key``."""
        if self.tag is None:
            return False
        return hmac.compare_digest(self.tag, sign(key, self.signed_bytes))


def sign(key: bytes, data: bytes) -> bytes:
    """The 8-byte truncated HMAC-SHA256 tag of docs/protocol.md section 1.4."""
    return hmac.new(key, data, hashlib.sha256).digest()[:TAG_SIZE]


def encode_frame(
    msg_type: int,
    payload: bytes,
    seq: int,
    timestamp_us: int,
    flags: int = 0,
    key: bytes | None = None,
    version: int = PROTOCOL_MAJOR,
) -> bytes:
    """Build the wire bytes of one message, delimiter included."""
    if len(payload) > MAX_PAYLOAD:
        raise FrameTooLarge(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    ts = timestamp_us % TIMESTAMP_MODULO
    if key is not None:
        flags |= FLAG_SIGNED
    message = (
        HEADER.pack(version, msg_type, flags, seq % SEQ_MODULO, ts & 0xFFFFFFFF, ts >> 32) + payload
    )
    if key is not None:
        message += sign(key, message)
    message += zlib.crc32(message).to_bytes(4, "little")
    return cobs.encode(message) + b"\x00"


@dataclass
class DecoderStats:
    """Counters of everything the decoder saw; nothing is dropped silently."""

    bytes_in: int = 0
    frames_ok: int = 0
    empty_frames: int = 0
    cobs_errors: int = 0
    crc_errors: int = 0
    too_short: int = 0
    oversize: int = 0
    bytes_discarded: int = 0

    @property
    def frames_bad(self) -> int:
        return self.cobs_errors + self.crc_errors + self.too_short + self.oversize


class FrameDecoder:
    """Turns a byte stream into CRC-checked frames; resynchronises at every 0x00."""

    def __init__(self) -> None:
        self._buf = b""
        self._discarding = False
        self.stats = DecoderStats()

    @property
    def buffered(self) -> int:
        """Bytes held waiting for a delimiter (never more than MAX_ENCODED)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        self.stats.bytes_in += len(data)
        if not data:
            return []
        chunk = self._buf + bytes(data) if self._buf else bytes(data)
        parts = chunk.split(b"\x00")
        tail = parts.pop()
        frames: list[Frame] = []
        for part in parts:
            if self._discarding:
                # The rest of an oversize frame: drop it, resume after this delimiter.
                self._discarding = False
                self.stats.bytes_discarded += len(part)
                continue
            if not part:
                self.stats.empty_frames += 1
                continue
            frame = self._decode_one(part)
            if frame is not None:
                frames.append(frame)
        if self._discarding:
            self.stats.bytes_discarded += len(tail)
            tail = b""
        elif len(tail) > MAX_ENCODED:
            self.stats.oversize += 1
            self.stats.bytes_discarded += len(tail)
            self._discarding = True
            tail = b""
        self._buf = tail
        return frames

    def _decode_one(self, encoded: bytes) -> Frame | None:
        stats = self.stats
        if len(encoded) > MAX_ENCODED:
            stats.oversize += 1
            stats.bytes_discarded += len(encoded)
            return None
        try:
            message = cobs.decode(encoded)
        except cobs.DecodeError:
            stats.cobs_errors += 1
            return None
        if len(message) < HEADER_SIZE + CRC_SIZE:
            stats.too_short += 1
            return None
        body = message[:-CRC_SIZE]
        if zlib.crc32(body) != int.from_bytes(message[-CRC_SIZE:], "little"):
            stats.crc_errors += 1
            return None
        version, msg_type, flags, seq, ts_lo, ts_hi = HEADER.unpack_from(body)
        tag: bytes | None = None
        if flags & FLAG_SIGNED:
            if len(body) < HEADER_SIZE + TAG_SIZE:
                stats.too_short += 1
                return None
            tag = body[-TAG_SIZE:]
            body = body[:-TAG_SIZE]
        stats.frames_ok += 1
        return Frame(
            version,
            msg_type,
            flags,
            seq,
            ts_lo | (ts_hi << 32),
            body[HEADER_SIZE:],
            tag,
            body if tag is not None else b"",
        )
