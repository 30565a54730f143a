"""Message types of docs/protocol.md section 2: dataclasses and their payload codecs.

Each message class has ``MSG_TYPE``, ``encode() -> bytes`` (the payload) and
``decode(payload) -> Self`` which raises ``MalformedPayload`` on a layout
mismatch. ``parse_payload`` dispatches on the type byte.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar, Self

import numpy as np

from firmware_bridge.framing import (
    MAX_PAYLOAD,
    PROTOCOL_MAJOR,
    SEQ_MODULO,
    TIMESTAMP_MODULO,
    FrameTooLarge,
    header_with,
    seal,
)


class MsgType(IntEnum):
    HELLO = 0x01
    DEVICE_INFO = 0x02
    SAMPLES = 0x03
    HELLO_REJECT = 0x04
    STIM_SET = 0x10
    ACK = 0x11
    NACK = 0x12
    STIM_STATE = 0x13
    HEARTBEAT = 0x20
    STATUS = 0x21
    FAULT = 0x22
    ESTOP = 0x23
    MARKER = 0x24
    BYE = 0x25
    ESTOP_CLEAR = 0x26


class NackReason(IntEnum):
    AMPLITUDE_RANGE = 1
    PULSE_WIDTH_RANGE = 2
    FREQUENCY_RANGE = 3
    RAMP_RATE_RANGE = 4
    CHARGE_PER_PHASE = 5
    CHARGE_DENSITY = 6
    NOT_READY = 7
    ESTOP_LATCHED = 8
    FAULT_ACTIVE = 9
    INVALID_VALUE = 10
    AUTH = 11
    REPLAY = 12
    INVALID_ENABLED = 13


class FaultCode(IntEnum):
    WATCHDOG = 1
    ESTOP = 2
    IMPEDANCE = 3
    BATTERY_LOW = 4
    BATTERY_EMPTY = 5


class DeviceState(IntEnum):
    IDLE = 0
    STREAMING = 1
    STIMULATING = 2
    FAULT = 3


class MalformedPayload(ValueError):
    """A payload whose length or content does not fit its message layout."""


class InvalidEnabled(MalformedPayload):
    """A STIM_SET whose ``enabled`` byte is neither 0 nor 1: answered with NACK
    ``INVALID_ENABLED``, so it carries the command id the answer needs."""

    def __init__(self, command_id: int, enabled: int) -> None:
        super().__init__(f"STIM_SET enabled must be 0 or 1, got {enabled}")
        self.command_id = command_id
        self.enabled = enabled


class UnknownMessageType(ValueError):
    """A CRC-valid frame whose type byte this protocol version does not define."""


class _Reader:
    """Cursor over a payload that raises MalformedPayload instead of struct.error."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: struct.Struct) -> tuple[object, ...]:
        end = self.pos + fmt.size
        if end > len(self.data):
            raise MalformedPayload(f"payload too short: need {end} bytes, have {len(self.data)}")
        values = fmt.unpack_from(self.data, self.pos)
        self.pos = end
        return values

    def u8(self) -> int:
        return int(self.take(_U8)[0])  # type: ignore[call-overload]

    def str8(self) -> str:
        n = self.u8()
        end = self.pos + n
        if end > len(self.data):
            raise MalformedPayload("string runs past the end of the payload")
        raw = self.data[self.pos : end]
        self.pos = end
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedPayload(f"string is not UTF-8: {exc}") from None

    def done(self) -> None:
        if self.pos != len(self.data):
            raise MalformedPayload(f"{len(self.data) - self.pos} unexpected trailing bytes")


_U8 = struct.Struct("<B")


def _str8(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 255:
        raise ValueError(f"string of {len(raw)} bytes does not fit a str8 (max 255)")
    return bytes([len(raw)]) + raw


@dataclass(frozen=True)
class Hello:
    MSG_TYPE: ClassVar[MsgType] = MsgType.HELLO
    major: int
    minor: int
    client: str = ""

    def encode(self) -> bytes:
        return bytes([self.major, self.minor]) + _str8(self.client)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        r = _Reader(payload)
        major, minor = r.u8(), r.u8()
        client = r.str8()
        r.done()
        return cls(major, minor, client)


@dataclass(frozen=True)
class HelloReject:
    MSG_TYPE: ClassVar[MsgType] = MsgType.HELLO_REJECT
    major: int
    minor: int
    reason: int
    text: str = ""

    def encode(self) -> bytes:
        return bytes([self.major, self.minor, self.reason]) + _str8(self.text)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        r = _Reader(payload)
        major, minor, reason = r.u8(), r.u8(), r.u8()
        text = r.str8()
        r.done()
        return cls(major, minor, reason, text)


@dataclass(frozen=True)
class ChannelInfo:
    label: str
    scale_uv_per_count: float
    x_mm: float
    y_mm: float


@dataclass(frozen=True)
class DeviceLimits:
    """The device's own hard limits; the controller's envelope must lie inside them."""

    max_amplitude_ma: float
    min_pulse_width_us: int
    max_pulse_width_us: int
    min_frequency_hz: float
    max_frequency_hz: float
    max_ramp_rate_ma_per_s: float
    max_charge_per_phase_uc: float
    max_charge_density_uc_per_cm2: float


_INFO_HEAD = struct.Struct("<BHHHH")  # n_channels, fs, samples_per_frame, heartbeat, watchdog
_CHANNEL = struct.Struct("<fff")
# electrode area, max amplitude, pw min, pw max, f min, f max, ramp, charge/phase, density
_LIMITS_PACK = struct.Struct("<ffHHfffff")


@dataclass(frozen=True)
class DeviceInfo:
    MSG_TYPE: ClassVar[MsgType] = MsgType.DEVICE_INFO
    major: int
    minor: int
    device_id: str
    firmware_version: str
    sampling_rate_hz: int
    samples_per_frame: int
    heartbeat_interval_ms: int
    watchdog_ms: int
    channels: tuple[ChannelInfo, ...]
    stim_channels: tuple[int, ...]
    n_electrodes: int
    electrode_area_cm2: float
    limits: DeviceLimits

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def scales_uv_per_count(self) -> np.ndarray:
        return np.array([c.scale_uv_per_count for c in self.channels], dtype=np.float64)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(c.label for c in self.channels)

    def encode(self) -> bytes:
        if not 1 <= len(self.channels) <= 255:
            raise ValueError("DEVICE_INFO needs 1-255 channels")
        out = bytearray([self.major, self.minor])
        out += _str8(self.device_id) + _str8(self.firmware_version)
        out += _INFO_HEAD.pack(
            len(self.channels),
            self.sampling_rate_hz,
            self.samples_per_frame,
            self.heartbeat_interval_ms,
            self.watchdog_ms,
        )
        for ch in self.channels:
            out += _str8(ch.label) + _CHANNEL.pack(ch.scale_uv_per_count, ch.x_mm, ch.y_mm)
        out.append(len(self.stim_channels))
        out += bytes(self.stim_channels)
        out.append(self.n_electrodes)
        lim = self.limits
        out += _LIMITS_PACK.pack(
            self.electrode_area_cm2,
            lim.max_amplitude_ma,
            lim.min_pulse_width_us,
            lim.max_pulse_width_us,
            lim.min_frequency_hz,
            lim.max_frequency_hz,
            lim.max_ramp_rate_ma_per_s,
            lim.max_charge_per_phase_uc,
            lim.max_charge_density_uc_per_cm2,
        )
        return bytes(out)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        r = _Reader(payload)
        major, minor = r.u8(), r.u8()
        device_id, firmware = r.str8(), r.str8()
        n_ch, fs, spf, hb, wd = (int(v) for v in r.take(_INFO_HEAD))  # type: ignore[call-overload]
        if n_ch == 0:
            raise MalformedPayload("DEVICE_INFO with zero channels")
        channels = []
        for _ in range(n_ch):
            label = r.str8()
            scale, x, y = (float(v) for v in r.take(_CHANNEL))  # type: ignore[arg-type]
            channels.append(ChannelInfo(label, scale, x, y))
        n_stim = r.u8()
        stim = tuple(r.u8() for _ in range(n_stim))
        n_el = r.u8()
        area, amp, pw_lo, pw_hi, f_lo, f_hi, ramp, q, d = r.take(_LIMITS_PACK)
        r.done()
        limits = DeviceLimits(
            float(amp),  # type: ignore[arg-type]
            int(pw_lo),  # type: ignore[call-overload]
            int(pw_hi),  # type: ignore[call-overload]
            float(f_lo),  # type: ignore[arg-type]
            float(f_hi),  # type: ignore[arg-type]
            float(ramp),  # type: ignore[arg-type]
            float(q),  # type: ignore[arg-type]
            float(d),  # type: ignore[arg-type]
        )
        return cls(
            major,
            minor,
            device_id,
            firmware,
            fs,
            spf,
            hb,
            wd,
            tuple(channels),
            stim,
            n_el,
            float(area),  # type: ignore[arg-type]
            limits,
        )


_SAMPLES_HEAD = struct.Struct("<I")
_INT16_LE = np.dtype("<i2")
_ndarray = np.ndarray


@dataclass(frozen=True, eq=False)
class Samples:
    """A block of raw ADC counts, shape (channels, samples), dtype int16."""

    MSG_TYPE: ClassVar[MsgType] = MsgType.SAMPLES
    first_index: int
    counts: np.ndarray

    @property
    def n_samples(self) -> int:
        return int(self.counts.shape[1])

    def encode(self) -> bytes:
        return encode_samples_payload(self.first_index, self.counts)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        raise TypeError("SAMPLES needs the channel count: use Samples.decode_with(payload, n)")

    @classmethod
    def decode_with(cls, payload: bytes, n_channels: int) -> Self:
        return cls(*decode_samples_payload(payload, n_channels))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Samples):
            return NotImplemented
        return self.first_index == other.first_index and np.array_equal(self.counts, other.counts)


def decode_samples_payload(payload: bytes, n_channels: int) -> tuple[int, np.ndarray]:
    """``(first_index, counts)`` of a SAMPLES payload, counts a read-only int16 view
    shaped (channels, samples); what ``Samples.decode_with`` holds, without the object."""
    body = len(payload) - 4
    if body <= 0 or body % (2 * n_channels):
        raise MalformedPayload(
            f"SAMPLES payload of {len(payload)} bytes does not hold whole samples "
            f"of {n_channels} channels"
        )
    (first,) = _SAMPLES_HEAD.unpack_from(payload)
    # The transposed view of the sample-major block, made in one call (what
    # np.frombuffer(payload, "<i2", offset=4).reshape(-1, n_channels).T gives).
    counts = _ndarray(
        (n_channels, body // (2 * n_channels)), _INT16_LE, payload, 4, (2, 2 * n_channels)
    )
    return first, counts


def encode_samples_payload(first_index: int, counts: np.ndarray) -> bytes:
    """Payload of SAMPLES from int16 counts shaped (channels, samples)."""
    return (
        _SAMPLES_HEAD.pack(first_index & 0xFFFFFFFF) + counts.astype("<i2", copy=False).T.tobytes()
    )


def encode_samples_payload_interleaved(first_index: int, interleaved: bytes) -> bytes:
    """Payload of SAMPLES from the sample bytes already in wire order (little-endian int16,
    sample-major: all channels of sample 0, then of sample 1, ...), as
    ``counts.astype("<i2").T.tobytes()`` gives them."""
    return _SAMPLES_HEAD.pack(first_index & 0xFFFFFFFF) + interleaved


_pack_samples_message_head = header_with(_SAMPLES_HEAD.format[1:]).pack
_SAMPLES_TYPE = int(MsgType.SAMPLES)
_MAX_INTERLEAVED = MAX_PAYLOAD - _SAMPLES_HEAD.size


def encode_samples_frame(
    seq: int, timestamp_us: int, first_index: int, interleaved: bytes
) -> bytes:
    """``encode_frame(SAMPLES, encode_samples_payload_interleaved(first_index, interleaved),
    seq, timestamp_us)`` with the header and the first index packed in one go: one copy
    of the samples fewer, twice a second."""
    if len(interleaved) > _MAX_INTERLEAVED:
        raise FrameTooLarge(
            f"payload of {len(interleaved) + _SAMPLES_HEAD.size} bytes exceeds {MAX_PAYLOAD}"
        )
    ts = timestamp_us % TIMESTAMP_MODULO
    head = _pack_samples_message_head(
        PROTOCOL_MAJOR,
        _SAMPLES_TYPE,
        0,
        seq % SEQ_MODULO,
        ts & 0xFFFFFFFF,
        ts >> 32,
        first_index & 0xFFFFFFFF,
    )
    return seal(head + interleaved)


@dataclass(frozen=True)
class StimSetting:
    """What the controller asks the device to deliver (the STIM_SET fields but the id)."""

    enabled: bool
    amplitude_ma: float
    pulse_width_us: int
    frequency_hz: float
    ramp_rate_ma_per_s: float = 0.0

    @property
    def charge_per_phase_uc(self) -> float:
        return self.amplitude_ma * self.pulse_width_us * 1e-3

    @classmethod
    def off(cls, ramp_rate_ma_per_s: float = 0.0, limits: DeviceLimits | None = None) -> Self:
        """THE off command of docs/protocol.md (STIM_SET, "The off command").

        ``enabled = 0`` and ``amplitude_ma = 0``; the device ignores pulse width and
        frequency, which hold the device's ``min_pulse_width_us`` and ``min_frequency_hz``
        so that even a device that range-checks every field accepts it. Without ``limits``
        (no DEVICE_INFO yet) they are 0: a request that ``ControllerSession.send_stim_set``
        completes with the device's limits before anything goes on the wire.
        """
        if limits is None:
            return cls(False, 0.0, 0, 0.0, ramp_rate_ma_per_s)
        return cls(
            False, 0.0, limits.min_pulse_width_us, limits.min_frequency_hz, ramp_rate_ma_per_s
        )


#: The off request at the device's own maximum ramp rate (see ``StimSetting.off``).
STIM_OFF = StimSetting.off()

_STIM_SET = struct.Struct("<IBfHff")


@dataclass(frozen=True)
class StimSet:
    MSG_TYPE: ClassVar[MsgType] = MsgType.STIM_SET
    command_id: int
    setting: StimSetting

    def encode(self) -> bytes:
        s = self.setting
        return _STIM_SET.pack(
            self.command_id,
            1 if s.enabled else 0,
            s.amplitude_ma,
            s.pulse_width_us,
            s.frequency_hz,
            s.ramp_rate_ma_per_s,
        )

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        _expect_len(payload, _STIM_SET.size, "STIM_SET")
        cid, enabled, amp, pw, freq, ramp = _STIM_SET.unpack(payload)
        if enabled > 1:
            raise InvalidEnabled(cid, enabled)
        return cls(cid, StimSetting(bool(enabled), amp, pw, freq, ramp))


_ACK = struct.Struct("<IB")
_NACK = struct.Struct("<IBB")


@dataclass(frozen=True)
class Ack:
    MSG_TYPE: ClassVar[MsgType] = MsgType.ACK
    command_id: int
    command_type: int

    def encode(self) -> bytes:
        return _ACK.pack(self.command_id, self.command_type)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        _expect_len(payload, _ACK.size, "ACK")
        return cls(*_ACK.unpack(payload))


@dataclass(frozen=True)
class Nack:
    MSG_TYPE: ClassVar[MsgType] = MsgType.NACK
    command_id: int
    command_type: int
    reason: int

    @property
    def reason_name(self) -> str:
        try:
            return NackReason(self.reason).name
        except ValueError:
            return f"UNKNOWN_{self.reason}"

    def encode(self) -> bytes:
        return _NACK.pack(self.command_id, self.command_type, self.reason)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        _expect_len(payload, _NACK.size, "NACK")
        return cls(*_NACK.unpack(payload))


_STIM_STATE = struct.Struct("<BffHfdIB")

STATE_ENABLED = 0x01
STATE_RAMPING = 0x02
STATE_ESTOP = 0x04
STATE_WATCHDOG = 0x08


@dataclass(frozen=True)
class StimState:
    """What the device is actually delivering."""

    MSG_TYPE: ClassVar[MsgType] = MsgType.STIM_STATE
    enabled: bool
    ramping: bool
    estop_latched: bool
    watchdog_tripped: bool
    amplitude_ma: float
    target_amplitude_ma: float
    pulse_width_us: int
    frequency_hz: float
    delivered_charge_uc: float
    last_command_id: int

    def encode(self) -> bytes:
        flags = (
            (STATE_ENABLED if self.enabled else 0)
            | (STATE_RAMPING if self.ramping else 0)
            | (STATE_ESTOP if self.estop_latched else 0)
            | (STATE_WATCHDOG if self.watchdog_tripped else 0)
        )
        return _STIM_STATE.pack(
            flags,
            self.amplitude_ma,
            self.target_amplitude_ma,
            self.pulse_width_us,
            self.frequency_hz,
            self.delivered_charge_uc,
            self.last_command_id,
            0,
        )

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        _expect_len(payload, _STIM_STATE.size, "STIM_STATE")
        flags, amp, target, pw, freq, charge, last, _ = _STIM_STATE.unpack(payload)
        return cls(
            bool(flags & STATE_ENABLED),
            bool(flags & STATE_RAMPING),
            bool(flags & STATE_ESTOP),
            bool(flags & STATE_WATCHDOG),
            amp,
            target,
            pw,
            freq,
            charge,
            last,
        )


_HEARTBEAT = struct.Struct("<IB")


@dataclass(frozen=True)
class Heartbeat:
    MSG_TYPE: ClassVar[MsgType] = MsgType.HEARTBEAT
    counter: int
    state: int = 0

    def encode(self) -> bytes:
        return _HEARTBEAT.pack(self.counter & 0xFFFFFFFF, self.state)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        _expect_len(payload, _HEARTBEAT.size, "HEARTBEAT")
        return cls(*_HEARTBEAT.unpack(payload))


#: Payload size of HEARTBEAT: any payload of this size decodes (no field is range-checked).
HEARTBEAT_PAYLOAD_SIZE = _HEARTBEAT.size
_pack_heartbeat = _HEARTBEAT.pack


def encode_heartbeat_payload(counter: int, state: int = 0) -> bytes:
    """``Heartbeat(counter, state).encode()`` without building the message object."""
    return _pack_heartbeat(counter & 0xFFFFFFFF, state)


_pack_heartbeat_message = header_with(_HEARTBEAT.format[1:]).pack
_HEARTBEAT_TYPE = int(MsgType.HEARTBEAT)


def encode_heartbeat_frame(seq: int, timestamp_us: int, counter: int, state: int = 0) -> bytes:
    """``encode_frame(HEARTBEAT, encode_heartbeat_payload(counter, state), seq,
    timestamp_us)``, header and payload packed in one go: the most frequent frame."""
    ts = timestamp_us % TIMESTAMP_MODULO
    return seal(
        _pack_heartbeat_message(
            PROTOCOL_MAJOR,
            _HEARTBEAT_TYPE,
            0,
            seq % SEQ_MODULO,
            ts & 0xFFFFFFFF,
            ts >> 32,
            counter & 0xFFFFFFFF,
            state,
        )
    )


_STATUS_HEAD = struct.Struct("<BIB")
_IMPEDANCE_STRUCTS: dict[int, struct.Struct] = {}


def _impedance_struct(n: int) -> struct.Struct:
    fmt = _IMPEDANCE_STRUCTS.get(n)
    if fmt is None:
        fmt = _IMPEDANCE_STRUCTS[n] = struct.Struct(f"<{n}I")
    return fmt


#: Fault codes set in each fault-flags value seen so far: STATUS comes every second with
#: one of a handful of values, and iterating an Enum class is slow.
_FAULTS_OF_FLAGS: dict[int, tuple[FaultCode, ...]] = {}


def _faults_of(flags: int) -> tuple[FaultCode, ...]:
    codes = _FAULTS_OF_FLAGS.get(flags)
    if codes is None:
        codes = tuple(code for code in FaultCode if flags & (1 << code))
        if len(_FAULTS_OF_FLAGS) < 4096:  # a bound against arbitrary flags from the wire
            _FAULTS_OF_FLAGS[flags] = codes
    return codes


@dataclass(frozen=True)
class Status:
    MSG_TYPE: ClassVar[MsgType] = MsgType.STATUS
    battery_pct: int
    fault_flags: int
    impedance_ohm: tuple[int, ...] = field(default=())

    def active_faults(self) -> list[FaultCode]:
        return list(_faults_of(self.fault_flags))

    def encode(self) -> bytes:
        """The payload. A device sends the same STATUS second after second (it keeps the
        message while its values are equal): the last message encoded and its payload are
        kept, and the payload handed out again for that message (it is frozen)."""
        last, payload = _last_encoded_status
        if last is self:
            return payload
        n = len(self.impedance_ohm)
        head = _STATUS_HEAD.pack(self.battery_pct, self.fault_flags, n)
        payload = head + _impedance_struct(n).pack(*self.impedance_ohm)
        _last_encoded_status[:] = (self, payload)
        return payload

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        """The STATUS of ``payload``. A device repeats the same one second after second
        (battery and impedances move slowly): the message of the last payload decoded is
        kept, and handed out again (it is frozen) for an equal payload."""
        last_payload, last = _last_status
        if payload == last_payload and type(last) is cls:
            return last
        # What _Reader.take/take/done would do (same errors), without the reader.
        size = len(payload)
        end = _STATUS_HEAD.size
        if end > size:
            raise MalformedPayload(f"payload too short: need {end} bytes, have {size}")
        battery, flags, n = _STATUS_HEAD.unpack_from(payload)
        imp_struct = _impedance_struct(n)
        start, end = end, end + imp_struct.size
        if end > size:
            raise MalformedPayload(f"payload too short: need {end} bytes, have {size}")
        imp = imp_struct.unpack_from(payload, start)
        if end != size:
            raise MalformedPayload(f"{size - end} unexpected trailing bytes")
        if not 0 <= battery <= 100:
            raise MalformedPayload(f"battery_pct {battery} outside 0-100")
        status = cls(battery, flags, imp)  # struct gives ints, in a tuple
        _last_status[:] = (bytes(payload), status)
        return status


#: The last payload ``Status.decode`` decoded and its message.
_last_status: list[Any] = [None, None]
#: The last message ``Status.encode`` encoded and its payload.
_last_encoded_status: list[Any] = [None, b""]


@dataclass(frozen=True)
class Fault:
    MSG_TYPE: ClassVar[MsgType] = MsgType.FAULT
    code: int
    active: bool
    text: str = ""

    @property
    def code_name(self) -> str:
        try:
            return FaultCode(self.code).name
        except ValueError:
            return f"UNKNOWN_{self.code}"

    def encode(self) -> bytes:
        return bytes([self.code, 1 if self.active else 0]) + _str8(self.text)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        r = _Reader(payload)
        code, active = r.u8(), r.u8()
        text = r.str8()
        r.done()
        return cls(code, bool(active), text)


_ESTOP = struct.Struct("<I")


@dataclass(frozen=True)
class Estop:
    MSG_TYPE: ClassVar[MsgType] = MsgType.ESTOP
    command_id: int

    def encode(self) -> bytes:
        return _ESTOP.pack(self.command_id)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        _expect_len(payload, _ESTOP.size, "ESTOP")
        return cls(*_ESTOP.unpack(payload))


@dataclass(frozen=True)
class EstopClear:
    """Clears a latched ESTOP: the only way to (docs/protocol.md, ESTOP_CLEAR)."""

    MSG_TYPE: ClassVar[MsgType] = MsgType.ESTOP_CLEAR
    command_id: int

    def encode(self) -> bytes:
        return _ESTOP.pack(self.command_id)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        _expect_len(payload, _ESTOP.size, "ESTOP_CLEAR")
        return cls(*_ESTOP.unpack(payload))


@dataclass(frozen=True)
class Bye:
    """The controller is leaving and stimulation is already off (docs/protocol.md, BYE)."""

    MSG_TYPE: ClassVar[MsgType] = MsgType.BYE
    command_id: int

    def encode(self) -> bytes:
        return _ESTOP.pack(self.command_id)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        _expect_len(payload, _ESTOP.size, "BYE")
        return cls(*_ESTOP.unpack(payload))


#: Commands the controller sends and the device answers with ACK or NACK.
Command = StimSet | Estop | EstopClear | Bye


@dataclass(frozen=True)
class Marker:
    MSG_TYPE: ClassVar[MsgType] = MsgType.MARKER
    code: int
    text: str = ""

    def encode(self) -> bytes:
        return _ESTOP.pack(self.code) + _str8(self.text)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        r = _Reader(payload)
        (code,) = r.take(_ESTOP)
        text = r.str8()
        r.done()
        return cls(int(code), text)  # type: ignore[call-overload]


def _expect_len(payload: bytes, size: int, name: str) -> None:
    if len(payload) != size:
        raise MalformedPayload(f"{name} payload must be {size} bytes, got {len(payload)}")


Message = (
    Hello
    | HelloReject
    | DeviceInfo
    | Samples
    | StimSet
    | Ack
    | Nack
    | StimState
    | Heartbeat
    | Status
    | Fault
    | Estop
    | Marker
    | EstopClear
    | Bye
)

_DECODERS: dict[int, Any] = {
    cls.MSG_TYPE: cls
    for cls in (
        Hello,
        HelloReject,
        DeviceInfo,
        StimSet,
        Ack,
        Nack,
        StimState,
        Heartbeat,
        Status,
        Fault,
        Estop,
        Marker,
        EstopClear,
        Bye,
    )
}


def parse_payload(msg_type: int, payload: bytes, n_channels: int | None = None) -> Message:
    """Decode one payload. SAMPLES needs ``n_channels`` (from DEVICE_INFO)."""
    if msg_type == MsgType.SAMPLES:
        if n_channels is None:
            raise MalformedPayload("SAMPLES before DEVICE_INFO: channel count unknown")
        return Samples.decode_with(payload, n_channels)
    cls = _DECODERS.get(msg_type)
    if cls is None:
        raise UnknownMessageType(f"unknown message type 0x{msg_type:02x}")
    try:
        msg: Message = cls.decode(payload)
    except struct.error as exc:  # defensive: every layout is length-checked first
        raise MalformedPayload(str(exc)) from None
    return msg
