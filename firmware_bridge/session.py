"""Sans-IO protocol sessions, one per side (docs/protocol.md section 3).

Like h11/h2: feed received bytes to ``receive_data(data, now)`` and get
events; take bytes to send from ``data_to_send()``; timers are inputs
(``next_deadline()``, ``handle_timeout(now)``). No I/O, no sleeping, no clock
reads: ``now`` (seconds, monotonic) is always passed in. The same objects run
in the controller, in the simulated firmware, in the HIL rig and in the
lockstep headless simulator.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

import numpy as np

from firmware_bridge.events import (
    ByeRequested,
    CommandAcked,
    CommandCancelled,
    CommandNacked,
    CommandTimedOut,
    Connected,
    ControllerReturned,
    EstopClearRequested,
    EstopRequested,
    Event,
    FaultReceived,
    HandshakeCompleted,
    HandshakeFailed,
    HandshakeRefused,
    MarkerReceived,
    PeerLost,
    SamplesReceived,
    StatusReceived,
    StimSetRequested,
    StimStateReceived,
    VersionRejected,
    WatchdogExpired,
    samples_received,
)
from firmware_bridge.framing import (
    CRC_SIZE,
    FLAG_RETRANSMIT,
    FLAG_SIGNED,
    HEADER,
    HEADER_SIZE,
    PROTOCOL_MAJOR,
    PROTOCOL_MINOR,
    SEQ_MODULO,
    DecoderStats,
    Frame,
    FrameDecoder,
    encode_frame,
    frame_of,
)
from firmware_bridge.messages import (
    HEARTBEAT_PAYLOAD_SIZE,
    Ack,
    Bye,
    Command,
    DeviceInfo,
    Estop,
    EstopClear,
    Fault,
    Heartbeat,
    Hello,
    HelloReject,
    InvalidEnabled,
    MalformedPayload,
    Marker,
    Message,
    MsgType,
    Nack,
    NackReason,
    Status,
    StimSet,
    StimSetting,
    StimState,
    UnknownMessageType,
    decode_samples_payload,
    encode_heartbeat_frame,
    encode_samples_frame,
    encode_samples_payload,
    parse_payload,
)

_INDEX_MODULO = 1 << 32
_HALF_INDEX = 1 << 31
# Plain ints: comparing a frame's type byte with them skips the enum attribute lookups.
_HELLO = int(MsgType.HELLO)
_HELLO_REJECT = int(MsgType.HELLO_REJECT)
_SAMPLES = int(MsgType.SAMPLES)
_HEARTBEAT = int(MsgType.HEARTBEAT)
_STIM_SET = int(MsgType.STIM_SET)
_STATUS = int(MsgType.STATUS)
_SEQ_HALF = SEQ_MODULO // 2
_unpack_header = HEADER.unpack_from
#: An unsigned HEARTBEAT message of the documented payload size (header, payload, CRC).
_HEARTBEAT_MESSAGE_SIZE = HEADER_SIZE + HEARTBEAT_PAYLOAD_SIZE + CRC_SIZE


@dataclass
class LinkStats:
    """What one side saw on the link; ``decoder`` holds the byte-level counters."""

    decoder: DecoderStats
    frames_tx: int = 0
    bytes_tx: int = 0
    frames_lost: int = 0  # inferred from gaps in the peer's sequence numbers
    unknown_type: int = 0
    malformed: int = 0
    wrong_version: int = 0
    unexpected: int = 0  # valid frames that make no sense in the current state
    samples_rx: int = 0
    sample_frames_rx: int = 0
    sample_gaps: int = 0
    samples_missing: int = 0
    sample_duplicates: int = 0
    index_resets: int = 0
    retransmits: int = 0
    commands_timed_out: int = 0
    duplicate_commands: int = 0
    stale_replies: int = 0
    auth_failures: int = 0

    @property
    def frames_rx(self) -> int:
        return self.decoder.frames_ok

    @property
    def crc_errors(self) -> int:
        return self.decoder.crc_errors


class _Endpoint:
    """What both sides share: sequence numbers, the outbox, decoding and counters."""

    def __init__(self, key: bytes | None) -> None:
        if key is not None and not 16 <= len(key) <= 64:
            raise ValueError("signing key must be 16-64 bytes")
        self._key = key
        self._seq = 0
        #: Wire bytes of the frames queued since the last ``data_to_send``, in order.
        self.outbox: list[bytes] = []
        self._decoder = FrameDecoder()
        self.stats = LinkStats(self._decoder.stats)
        self._rx_seq: int | None = None
        self._heartbeats_sent = 0
        self._last_rx_s: float | None = None
        self._last_signed_us = -1  # signed timestamps strictly increase (the replay rule)

    def data_to_send(self) -> bytes:
        """Everything queued for the wire since the last call."""
        out = self.outbox
        if not out:
            return b""
        self.outbox = []
        return b"".join(out)

    def _emit(
        self, msg_type: int, payload: bytes, now: float, flags: int = 0, sign: bool = False
    ) -> None:
        timestamp_us = int(now * 1e6)
        key = None
        if sign and self._key is not None:
            # Two signed commands in one microsecond (one core step) must not share a
            # timestamp: the device refuses the second as a replay.
            timestamp_us = max(timestamp_us, self._last_signed_us + 1)
            self._last_signed_us = timestamp_us
            key = self._key
        self._queue(encode_frame(msg_type, payload, self._seq, timestamp_us, flags, key))

    def _emit_heartbeat(self, state: int, now: float) -> None:
        """``_emit`` of the next HEARTBEAT (never signed, no flags), ``_queue`` spelled out
        (a test pins the two equal): eight a second, one call fewer each."""
        sent = self._heartbeats_sent = self._heartbeats_sent + 1
        seq = self._seq
        wire = encode_heartbeat_frame(seq, int(now * 1e6), sent, state)
        self._seq = (seq + 1) % SEQ_MODULO
        self.outbox.append(wire)
        stats = self.stats
        stats.frames_tx += 1
        stats.bytes_tx += len(wire)

    def _queue(self, wire: bytes) -> None:
        """Queue the wire bytes of the frame just built with the next sequence number."""
        self._seq = (self._seq + 1) % SEQ_MODULO
        self.outbox.append(wire)
        stats = self.stats
        stats.frames_tx += 1
        stats.bytes_tx += len(wire)

    def _send(self, msg: Message, now: float, flags: int = 0, sign: bool = False) -> None:
        self._emit(msg.MSG_TYPE, msg.encode(), now, flags, sign)

    def _note_rx(self, seq: int, now: float) -> None:
        """A valid frame of sequence number ``seq`` arrived: the peer is alive; count gaps."""
        self._last_rx_s = now
        expected = self._rx_seq
        if expected is not None and seq != expected:  # (seq - expected) % SEQ_MODULO != 0
            skipped = (seq - expected) % SEQ_MODULO
            if skipped < _SEQ_HALF:
                self.stats.frames_lost += skipped
        self._rx_seq = (seq + 1) % SEQ_MODULO

    def _parse(self, frame: Frame, n_channels: int | None = None) -> Message | None:
        try:
            return parse_payload(frame.msg_type, frame.payload, n_channels)
        except UnknownMessageType:
            self.stats.unknown_type += 1
        except MalformedPayload:
            self.stats.malformed += 1
        return None


class SessionState(Enum):
    IDLE = "idle"
    HANDSHAKING = "handshaking"
    READY = "ready"
    LOST = "lost"
    FAILED = "failed"


# Module constants: reading an Enum member through its class runs a descriptor (Python
# 3.11), several times slower than a global; the per-step paths compare against these.
_IDLE = SessionState.IDLE
_HANDSHAKING = SessionState.HANDSHAKING
_READY = SessionState.READY
_LOST = SessionState.LOST
_FAILED = SessionState.FAILED


class UnsupportedByDevice(ValueError):
    """The device's protocol minor version lacks the message asked for."""


@dataclass
class _PendingCommand:
    command_id: int
    msg: Command
    deadline_s: float
    attempts: int
    sign: bool


@dataclass(frozen=True)
class ControllerTiming:
    """Timing rules of docs/protocol.md section 3 (defaults are the documented values)."""

    hello_interval_s: float = 0.5
    hello_attempts: int = 5
    ack_timeout_s: float = 0.2
    max_retransmits: int = 3
    peer_timeout_beats: int = 4


class ControllerSession(_Endpoint):
    """The controller's side: handshake, heartbeats, commands with retry, sample bookkeeping."""

    def __init__(
        self,
        client_name: str = "neurostim",
        key: bytes | None = None,
        timing: ControllerTiming = ControllerTiming(),
        first_command_id: int = 1,
    ) -> None:
        super().__init__(key)
        self.client_name = client_name
        self.timing = timing
        self.state = _IDLE
        self._info: DeviceInfo | None = None
        self._n_channels = 0  # len(info.channels)
        self._hello_attempts = 0
        self._hello_deadline: float | None = None
        self._next_heartbeat: float | None = None
        self._heartbeat_interval_s = 0.25
        self._peer_timeout_s = 1.0
        self._next_command_id = first_command_id
        self._pending: dict[int, _PendingCommand] = {}
        self._expected_index: int | None = None  # unwrapped 64-bit
        self._reanchor = False
        self._bye_id: int | None = None
        self._deferred: list[Event] = []  # returned by the next handle_timeout
        self._deferred_due: float | None = None

    # -- commands from the application -------------------------------------------------

    def connect(self, now: float) -> None:
        """Start (or restart after a loss) the handshake."""
        self.state = _HANDSHAKING
        self._hello_attempts = 0
        self._next_heartbeat = None  # heartbeats resume when the handshake completes
        self._reanchor = self._expected_index is not None
        self._send_hello(now)

    @property
    def info(self) -> DeviceInfo | None:
        """The device's DEVICE_INFO (None before the first handshake)."""
        return self._info

    @info.setter
    def info(self, info: DeviceInfo | None) -> None:
        self._info = info
        self._n_channels = 0 if info is None else len(info.channels)

    @property
    def peer_minor(self) -> int | None:
        """The device's protocol minor version (None before the first DEVICE_INFO)."""
        return None if self.info is None else self.info.minor

    def send_stim_set(self, setting: StimSetting, now: float) -> int:
        """Queue a STIM_SET; returns its command id. ACK/NACK/timeout arrive as events.

        Every off (``enabled`` false) goes on the wire as the protocol's one off command,
        ``StimSetting.off(ramp rate, device limits)``, whatever its other fields hold.
        """
        if not setting.enabled and self.info is not None:
            setting = StimSetting.off(setting.ramp_rate_ma_per_s, self.info.limits)
        return self._command(StimSet(self._take_command_id(), setting), now, sign=True)

    def send_estop(self, now: float) -> int:
        """Queue an ESTOP (never signed: stopping is never gated). A pending ESTOP_CLEAR
        stops being retransmitted (``CommandCancelled``): a late clear must not undo it."""
        for pending in list(self._pending.values()):
            if isinstance(pending.msg, EstopClear):
                del self._pending[pending.command_id]
                self._defer(
                    CommandCancelled(pending.command_id, MsgType.ESTOP_CLEAR, "ESTOP sent"), now
                )
        return self._command(Estop(self._take_command_id()), now, sign=False)

    def send_estop_clear(self, now: float) -> int:
        """Queue an ESTOP_CLEAR (signed when a key is set): only on an operator's request.

        Raises ``UnsupportedByDevice`` for a 1.0 device, whose latch clears only by a new
        handshake (docs/protocol.md, "Changes from 1.0").
        """
        if self.info is None or self.info.minor < 1:
            raise UnsupportedByDevice(
                "the device speaks protocol 1.0: it has no ESTOP_CLEAR (a new handshake "
                "clears its latch)"
            )
        return self._command(EstopClear(self._take_command_id()), now, sign=True)

    def send_bye(self, now: float) -> int | None:
        """Say goodbye once stimulation is off: the device ends the session without a
        watchdog fault. Heartbeats stop now; the session is IDLE once the BYE is answered
        or times out. Returns None (nothing sent) when there is no session or the device
        speaks 1.0 (it would skip the BYE and trip its watchdog as before)."""
        if self.state is not _READY or self.info is None or self.info.minor < 1:
            return None
        self._next_heartbeat = None
        cid = self._command(Bye(self._take_command_id()), now, sign=False)
        self._bye_id = cid
        return cid

    def send_marker(self, code: int, text: str, now: float) -> None:
        self._send(Marker(code, text), now)

    @property
    def pending_commands(self) -> tuple[int, ...]:
        return tuple(self._pending)

    # -- timers ------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        # The first smallest of: deferred events, hello, heartbeat, peer timeout, pending
        # commands (as min()).
        due = self._hello_deadline
        c = self._deferred_due
        if c is not None and (due is None or c < due):
            due = c
        c = self._next_heartbeat
        if c is not None and (due is None or c < due):
            due = c
        if self.state is _READY and self._last_rx_s is not None:
            c = self._last_rx_s + self._peer_timeout_s
            if due is None or c < due:
                due = c
        if self._pending:
            for p in self._pending.values():
                c = p.deadline_s
                if due is None or c < due:
                    due = c
        return due

    def handle_timeout(self, now: float) -> list[Event]:
        events: list[Event] = []
        if self._deferred:
            events.extend(self._deferred)
            self._deferred.clear()
            self._deferred_due = None
        state = self.state
        if state is _HANDSHAKING:
            if self._hello_deadline is not None and now >= self._hello_deadline:
                if self._hello_attempts < self.timing.hello_attempts:
                    self._send_hello(now)
                else:
                    self.state = _FAILED
                    self._hello_deadline = None
                    events.append(HandshakeFailed(self._hello_attempts))
        elif state is _READY:  # (a handshake that just failed is not READY either)
            last_rx = self._last_rx_s
            assert last_rx is not None
            if now >= last_rx + self._peer_timeout_s:  # the deadline's own expression
                self.state = _LOST
                self._next_heartbeat = None
                events.append(PeerLost(now - last_rx))
                events.extend(self._fail_all_pending())
                return events
            beat = self._next_heartbeat
            if beat is not None and now >= beat:
                self._emit_heartbeat(0, now)
                beat += self._heartbeat_interval_s
                if beat <= now:  # fell behind: do not burst
                    beat = now + self._heartbeat_interval_s
                self._next_heartbeat = beat
        if not self._pending:
            return events
        for pending in list(self._pending.values()):
            if now < pending.deadline_s:
                continue
            if pending.attempts <= self.timing.max_retransmits:
                pending.attempts += 1
                pending.deadline_s = now + self.timing.ack_timeout_s
                self.stats.retransmits += 1
                self._send(pending.msg, now, FLAG_RETRANSMIT, pending.sign)
            else:
                del self._pending[pending.command_id]
                self.stats.commands_timed_out += 1
                self._bye_answered(pending.command_id)
                events.append(
                    CommandTimedOut(pending.command_id, pending.msg.MSG_TYPE, pending.attempts)
                )
        return events

    # -- bytes in ----------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        decoder = self._decoder
        # A lone plain HEARTBEAT (half of what arrives): all it does is _note_rx.
        seq = decoder.lone_frame_seq(data, _HEARTBEAT_MESSAGE_SIZE, _HEARTBEAT)
        if seq >= 0:
            self._note_rx(seq, now)
            return []
        events: list[Event] = []
        for message in decoder.messages(data):
            version, msg_type, flags, seq, ts_lo, ts_hi = _unpack_header(message)
            # Shortcuts for the kinds that make most of the traffic (unsigned, this major
            # version): the same outcome as _on_frame, without building the Frame.
            if version == PROTOCOL_MAJOR and not flags & FLAG_SIGNED:
                if msg_type == _HEARTBEAT and len(message) == _HEARTBEAT_MESSAGE_SIZE:
                    self._note_rx(seq, now)
                    continue
                if msg_type == _SAMPLES:
                    self._note_rx(seq, now)
                    event = self._on_samples(message[HEADER_SIZE:-CRC_SIZE], ts_lo | (ts_hi << 32))
                    if event is not None:
                        events.append(event)
                    continue
                if msg_type == _STATUS:
                    self._note_rx(seq, now)
                    try:
                        status = Status.decode(message[HEADER_SIZE:-CRC_SIZE])
                    except MalformedPayload:
                        self.stats.malformed += 1
                        continue
                    events.append(StatusReceived(status))
                    continue
            self._on_frame(frame_of(message), now, events)
        return events

    def _on_frame(self, frame: Frame, now: float, events: list[Event]) -> None:
        """Every rule for one received frame (``receive_data`` takes a shortcut for plain
        heartbeats, samples and status, tested to give the same outcome)."""
        self._note_rx(frame.seq, now)
        msg_type = frame.msg_type
        if frame.version != PROTOCOL_MAJOR and msg_type != _HELLO_REJECT:
            self.stats.wrong_version += 1
            return
        if msg_type == _SAMPLES:
            event = self._on_samples(frame.payload, frame.timestamp_us)
            if event is not None:
                events.append(event)
            return
        if msg_type == _HEARTBEAT and len(frame.payload) == HEARTBEAT_PAYLOAD_SIZE:
            return  # a well-formed HEARTBEAT: nothing to do beyond _note_rx
        msg = self._parse(frame)
        if msg is not None:
            events.extend(self._on_message(msg, now))

    # -- internals ---------------------------------------------------------------------

    def _take_command_id(self) -> int:
        cid = self._next_command_id
        self._next_command_id = (cid % 0xFFFFFFFF) + 1  # 1..2^32-1, 0 means "none"
        return cid

    def _defer(self, event: Event, now: float) -> None:
        self._deferred.append(event)
        if self._deferred_due is None:
            self._deferred_due = now

    def _bye_answered(self, command_id: int) -> None:
        """The BYE was answered or gave up: the session is over."""
        if command_id == self._bye_id:
            self._bye_id = None
            self.state = _IDLE
            self._next_heartbeat = None

    def _command(self, msg: Command, now: float, sign: bool) -> int:
        signed = sign and self._key is not None
        self._pending[msg.command_id] = _PendingCommand(
            msg.command_id, msg, now + self.timing.ack_timeout_s, 1, signed
        )
        self._send(msg, now, 0, signed)
        return msg.command_id

    def _send_hello(self, now: float) -> None:
        self._hello_attempts += 1
        self._hello_deadline = now + self.timing.hello_interval_s
        self._send(
            Hello(PROTOCOL_MAJOR, PROTOCOL_MINOR, self.client_name), now, 0, self._key is not None
        )

    def _fail_all_pending(self) -> list[Event]:
        events: list[Event] = [
            CommandTimedOut(p.command_id, p.msg.MSG_TYPE, p.attempts)
            for p in self._pending.values()
        ]
        self.stats.commands_timed_out += len(self._pending)
        self._pending.clear()
        return events

    def _on_samples(self, payload: bytes, timestamp_us: int) -> SamplesReceived | None:
        if self.state is not _READY or self._info is None:
            self.stats.unexpected += 1
            return None
        try:
            first_index, counts = decode_samples_payload(payload, self._n_channels)
        except MalformedPayload:
            self.stats.malformed += 1
            return None
        n = counts.shape[1]
        missing = 0
        if self._expected_index is None:
            index = first_index
        else:
            delta = (first_index - self._expected_index) % _INDEX_MODULO
            if delta >= _HALF_INDEX:  # behind what we have: duplicate or overlap
                if self._reanchor:
                    self.stats.index_resets += 1
                    index = first_index
                else:
                    self.stats.sample_duplicates += 1
                    return None
            else:
                index = self._expected_index + delta
                missing = delta
        self._reanchor = False
        stats = self.stats
        if missing:
            stats.sample_gaps += 1
            stats.samples_missing += missing
        self._expected_index = index + n
        stats.samples_rx += n
        stats.sample_frames_rx += 1
        return samples_received(index, counts, timestamp_us, missing)

    def _on_message(self, msg: Message, now: float) -> list[Event]:
        # The periodic reports first (the kinds are disjoint: the order only saves checks).
        if isinstance(msg, StimState):
            return [StimStateReceived(msg)]
        if isinstance(msg, Status):
            return [StatusReceived(msg)]
        if isinstance(msg, DeviceInfo):
            return self._on_device_info(msg, now)
        if isinstance(msg, HelloReject):
            if self.state is not _HANDSHAKING:
                self.stats.unexpected += 1
                return []
            self.state = _FAILED
            self._hello_deadline = None
            return [VersionRejected(msg.major, msg.minor, msg.text)]
        if isinstance(msg, Ack | Nack):
            pending = self._pending.pop(msg.command_id, None)
            if pending is None:
                self.stats.stale_replies += 1
                return []
            self._bye_answered(msg.command_id)
            if isinstance(msg, Ack):
                return [CommandAcked(msg.command_id, msg.command_type, pending.attempts)]
            return [CommandNacked(msg.command_id, msg.command_type, msg.reason, msg.reason_name)]
        if isinstance(msg, Fault):
            return [FaultReceived(msg)]
        if isinstance(msg, Marker):
            return [MarkerReceived(msg)]
        if isinstance(msg, Heartbeat):
            return []
        self.stats.unexpected += 1  # device-bound messages echoed back
        return []

    def _on_device_info(self, info: DeviceInfo, now: float) -> list[Event]:
        if self.state is not _HANDSHAKING:
            self.stats.unexpected += 1
            return []
        if info.major != PROTOCOL_MAJOR:
            self.state = _FAILED
            self._hello_deadline = None
            return [VersionRejected(info.major, info.minor, "DEVICE_INFO of another major version")]
        self.info = info
        self.state = _READY
        self._hello_deadline = None
        beat_s = info.heartbeat_interval_ms / 1000.0
        self._heartbeat_interval_s = min(beat_s, info.watchdog_ms / 4000.0)
        self._peer_timeout_s = self.timing.peer_timeout_beats * beat_s
        self._emit_heartbeat(0, now)
        self._next_heartbeat = now + self._heartbeat_interval_s
        return [Connected(info)]


class DeviceSession(_Endpoint):
    """The device's side: answers HELLO, de-duplicates commands, runs heartbeat and watchdog.

    The firmware decides on each ``StimSetRequested``/``EstopRequested``/
    ``EstopClearRequested``/``ByeRequested`` and answers with ``ack``/``nack``; the
    session remembers the answers of the last ``command_memory`` (type, id) pairs so a
    retransmission is answered, not re-applied. ESTOP and BYE never consult that memory:
    they are executed every time (both only stop).

    Order of the checks on STIM_SET and ESTOP_CLEAR (docs/protocol.md section 4):
    NOT_READY, AUTH (neither remembered), the remembered answer, REPLAY, then the
    firmware's own checks.
    """

    def __init__(
        self,
        info: DeviceInfo,
        key: bytes | None = None,
        command_memory: int = 64,
    ) -> None:
        super().__init__(key)
        self.info = info
        self.handshaken = False
        self.watchdog_expired = False
        self.device_state = 0
        self._watchdog_s = info.watchdog_ms / 1000.0
        self._heartbeat_s = info.heartbeat_interval_ms / 1000.0
        self._next_heartbeat: float | None = None
        # (command type, id) -> (answer type, answer payload)
        self._memory: OrderedDict[tuple[int, int], tuple[int, bytes]] = OrderedDict()
        self._memory_size = command_memory
        self._last_signed_ts: int | None = None

    # -- bytes out ---------------------------------------------------------------------

    def send_samples(self, first_index: int, counts: np.ndarray, now: float) -> None:
        """Queue SAMPLES: ``counts`` int16 shaped (channels, samples)."""
        self._emit(_SAMPLES, encode_samples_payload(first_index, counts), now)

    def send_samples_interleaved(self, first_index: int, interleaved: bytes, now: float) -> None:
        """Queue SAMPLES from sample bytes already in wire order (see
        ``messages.encode_samples_payload_interleaved``); same frame as ``send_samples``."""
        self._queue(encode_samples_frame(self._seq, int(now * 1e6), first_index, interleaved))

    def send_stim_state(self, state: StimState, now: float) -> None:
        self._send(state, now)

    def send_status(self, status: Status, now: float) -> None:
        self._send(status, now)

    def send_fault(self, fault: Fault, now: float) -> None:
        self._send(fault, now)

    def send_marker(self, code: int, text: str, now: float) -> None:
        self._send(Marker(code, text), now)

    def ack(self, command_id: int, command_type: int, now: float) -> None:
        self._reply(Ack(command_id, command_type), now)

    def nack(
        self,
        command_id: int,
        command_type: int,
        reason: NackReason,
        now: float,
        remember: bool = True,
    ) -> None:
        """``remember=False``: a later copy of the command is judged afresh (NOT_READY, AUTH:
        a forged frame must not decide the answer to the genuine command of that id)."""
        self._reply(Nack(command_id, command_type, int(reason)), now, remember)

    # -- timers ------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        if not self.handshaken:
            return None
        due = self._next_heartbeat
        if not self.watchdog_expired and self._last_rx_s is not None:
            watchdog = self._last_rx_s + self._watchdog_s
            if due is None or watchdog < due:
                due = watchdog
        return due

    def handle_timeout(self, now: float) -> list[Event]:
        events: list[Event] = []
        if not self.handshaken:
            return events
        last_rx = self._last_rx_s
        if (
            not self.watchdog_expired
            and last_rx is not None
            and now >= last_rx + self._watchdog_s  # the deadline's own expression
        ):
            self.watchdog_expired = True
            events.append(WatchdogExpired(now - last_rx))
        beat = self._next_heartbeat
        if beat is not None and now >= beat:
            self._emit_heartbeat(self.device_state, now)
            beat += self._heartbeat_s
            if beat <= now:
                beat = now + self._heartbeat_s
            self._next_heartbeat = beat
        return events

    # -- bytes in ----------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        decoder = self._decoder
        events: list[Event] = []
        # A lone plain HEARTBEAT (nearly all a device hears): all it does is _heard.
        seq = decoder.lone_frame_seq(data, _HEARTBEAT_MESSAGE_SIZE, _HEARTBEAT)
        if seq >= 0:
            self._heard(seq, now, events)
            return events
        for message in decoder.messages(data):
            version, msg_type, _, seq, _, _ = _unpack_header(message)
            # The shortcut for a plain HEARTBEAT (most of what a device hears): the same
            # outcome as _on_frame, without building the Frame. A message of this size that
            # passed the decoder is unsigned (a signed one is longer).
            if (
                msg_type == _HEARTBEAT
                and len(message) == _HEARTBEAT_MESSAGE_SIZE
                and version == PROTOCOL_MAJOR
            ):
                self._heard(seq, now, events)
                continue
            self._on_frame(frame_of(message), now, events)
        return events

    def _on_frame(self, frame: Frame, now: float, events: list[Event]) -> None:
        """Every rule for one received frame (``receive_data`` takes a shortcut for plain
        heartbeats, tested to give the same outcome)."""
        msg_type = frame.msg_type
        if msg_type == _HELLO:
            events.extend(self._on_hello(frame, now))
            return
        if frame.version != PROTOCOL_MAJOR:
            self.stats.wrong_version += 1
            return
        self._heard(frame.seq, now, events)
        if msg_type == _HEARTBEAT and len(frame.payload) == HEARTBEAT_PAYLOAD_SIZE:
            return  # a well-formed HEARTBEAT only feeds the watchdog
        if msg_type == _STIM_SET:
            try:
                stim = StimSet.decode(frame.payload)
            except InvalidEnabled as exc:
                if self._admit(frame, _STIM_SET, exc.command_id, now):
                    self.nack(exc.command_id, _STIM_SET, NackReason.INVALID_ENABLED, now)
                return
            except MalformedPayload:
                self.stats.malformed += 1
                return
            if self._admit(frame, _STIM_SET, stim.command_id, now):
                events.append(StimSetRequested(stim.command_id, stim.setting))
            return
        msg = self._parse(frame)
        if msg is None:
            return
        if isinstance(msg, Estop):
            events.append(EstopRequested(msg.command_id))
        elif isinstance(msg, EstopClear):
            if self._admit(frame, MsgType.ESTOP_CLEAR, msg.command_id, now):
                events.append(EstopClearRequested(msg.command_id))
        elif isinstance(msg, Bye):
            self.handshaken = False  # no SAMPLES, heartbeats or watchdog until a HELLO
            self._next_heartbeat = None
            self.watchdog_expired = False
            events.append(ByeRequested(msg.command_id))
        elif isinstance(msg, Marker):
            events.append(MarkerReceived(msg))
        elif not isinstance(msg, Heartbeat):
            self.stats.unexpected += 1

    # -- internals ---------------------------------------------------------------------

    def _heard(self, seq: int, now: float, events: list[Event]) -> None:
        """A valid frame from the controller: it feeds the watchdog (and ends its expiry)."""
        self._note_rx(seq, now)
        if self.watchdog_expired:
            self.watchdog_expired = False
            events.append(ControllerReturned())

    def _on_hello(self, frame: Frame, now: float) -> list[Event]:
        msg = self._parse(frame)
        if not isinstance(msg, Hello):
            return []
        if msg.major != PROTOCOL_MAJOR:
            self._send(
                HelloReject(
                    PROTOCOL_MAJOR,
                    PROTOCOL_MINOR,
                    1,
                    f"device speaks {PROTOCOL_MAJOR}.{PROTOCOL_MINOR}, "
                    f"controller asked for {msg.major}.{msg.minor}",
                ),
                now,
            )
            return [HandshakeRefused(msg)]
        # A HELLO's tag is not checked and it never touches the replay reference: a
        # handshake changes neither the output nor the ESTOP latch.
        events: list[Event] = []
        self._heard(frame.seq, now, events)
        self.handshaken = True
        self._memory.clear()  # a new controller may start its command ids at 1 again
        self._send(self.info, now)
        self._next_heartbeat = now + self._heartbeat_s
        events.append(HandshakeCompleted(msg))
        return events

    def _admit(self, frame: Frame, command_type: int, command_id: int, now: float) -> bool:
        """The session's checks on a STIM_SET or ESTOP_CLEAR, in the documented order;
        True when the firmware is to decide on it (every other outcome is answered here)."""
        if not self.handshaken:
            self.nack(command_id, command_type, NackReason.NOT_READY, now, remember=False)
            return False
        key = self._key
        if key is not None and not frame.tag_valid(key):
            self.stats.auth_failures += 1
            self.nack(command_id, command_type, NackReason.AUTH, now, remember=False)
            return False
        if self._replay_known(command_type, command_id, now):
            return False
        if key is not None:
            last = self._last_signed_ts
            if last is not None and frame.timestamp_us <= last:
                self.stats.auth_failures += 1
                self.nack(command_id, command_type, NackReason.REPLAY, now)
                return False
            self._last_signed_ts = frame.timestamp_us
        return True

    def _replay_known(self, command_type: int, command_id: int, now: float) -> bool:
        """Re-send the remembered answer of a command already decided; True if there was one."""
        reply = self._memory.get((command_type, command_id))
        if reply is None:
            return False
        self.stats.duplicate_commands += 1
        self._emit(*reply, now)
        return True

    def _reply(self, msg: Ack | Nack, now: float, remember: bool = True) -> None:
        payload = msg.encode()
        if remember:
            memory = self._memory
            key = (msg.command_type, msg.command_id)
            memory[key] = (msg.MSG_TYPE, payload)
            memory.move_to_end(key)
            while len(memory) > self._memory_size:
                memory.popitem(last=False)
        self._emit(msg.MSG_TYPE, payload, now)
