"""The rig's raw protocol client: any frame on demand, every received frame logged.

The rig must be able to send what a correct controller never would (another major, a
wrong CRC, a duplicate with a new payload, garbage), so it does not use
``ControllerSession``; it encodes and decodes frames with ``firmware_bridge`` directly and
keeps a log of what arrived, with the host clock's arrival time, for the cases to search.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from firmware_bridge.clock import Clock
from firmware_bridge.errors import LinkClosed
from firmware_bridge.framing import (
    FLAG_RETRANSMIT,
    PROTOCOL_MAJOR,
    PROTOCOL_MINOR,
    Frame,
    FrameDecoder,
    encode_frame,
)
from firmware_bridge.messages import (
    Ack,
    Bye,
    DeviceInfo,
    Estop,
    EstopClear,
    Hello,
    Message,
    MsgType,
    Nack,
    StimSet,
    StimSetting,
    StimState,
    encode_heartbeat_payload,
    parse_payload,
)
from firmware_bridge.transports.base import Link


@dataclass(frozen=True)
class Received:
    t_s: float  # host clock at arrival
    frame: Frame
    msg: Message | None  # None when the payload does not parse

    @property
    def msg_type(self) -> int:
        return self.frame.msg_type


Predicate = Callable[[Received], bool]


def is_type(msg_type: int) -> Predicate:
    return lambda r: r.frame.msg_type == msg_type and r.msg is not None


def answers(command_id: int, command_type: int) -> Predicate:
    """An ACK or NACK of (type, id)."""

    def match(r: Received) -> bool:
        m = r.msg
        return (
            isinstance(m, Ack | Nack)
            and m.command_id == command_id
            and m.command_type == command_type
        )

    return match


class Probe:
    """Runs a reader task on ``link``; ``async with Probe(...)``."""

    def __init__(self, link: Link, clock: Clock, key: bytes | None = None) -> None:
        self.link = link
        self.clock = clock
        self.key = key
        self.decoder = FrameDecoder()
        self.log: list[Received] = []
        self.info: DeviceInfo | None = None
        self.keepalive = True  # send HEARTBEAT every interval once a DEVICE_INFO is known
        self.closed: BaseException | None = None
        self._seq = 0
        self._next_id = 1
        self._last_signed_us = -1
        self._arrived = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._beats = 0
        self.last_sent_s: float | None = None  # the device's watchdog counts from here

    async def __aenter__(self) -> Probe:
        self._tasks = [
            asyncio.create_task(self._reader(), name="hil-reader"),
            asyncio.create_task(self._heartbeats(), name="hil-heartbeats"),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, LinkClosed):
                await task
        self._tasks = []
        with contextlib.suppress(LinkClosed, OSError):
            await self.link.close()

    # -- sending -----------------------------------------------------------------------

    def new_id(self) -> int:
        cid = self._next_id
        self._next_id += 1
        return cid

    def encode(
        self,
        msg_type: int,
        payload: bytes,
        flags: int = 0,
        version: int = PROTOCOL_MAJOR,
        sign: bool = False,
        timestamp_us: int | None = None,
    ) -> bytes:
        ts = int(self.clock.now() * 1e6) if timestamp_us is None else timestamp_us
        if sign and self.key is not None and timestamp_us is None:
            ts = max(ts, self._last_signed_us + 1)
            self._last_signed_us = ts
        wire = encode_frame(
            msg_type, payload, self._seq, ts, flags, self.key if sign else None, version
        )
        self._seq = (self._seq + 1) % 65536
        return wire

    async def send_raw(self, data: bytes) -> float:
        """Send bytes as they are; returns the host time just before sending."""
        t = self.clock.now()
        await self.link.send(data)
        self.last_sent_s = t
        return t

    async def send(
        self,
        msg_type: int,
        payload: bytes,
        flags: int = 0,
        version: int = PROTOCOL_MAJOR,
        sign: bool = False,
        timestamp_us: int | None = None,
    ) -> float:
        return await self.send_raw(
            self.encode(msg_type, payload, flags, version, sign, timestamp_us)
        )

    async def send_stim_set(
        self, setting: StimSetting, command_id: int | None = None, retransmit: bool = False
    ) -> tuple[int, float]:
        cid = self.new_id() if command_id is None else command_id
        flags = FLAG_RETRANSMIT if retransmit else 0
        t = await self.send(MsgType.STIM_SET, StimSet(cid, setting).encode(), flags, sign=True)
        return cid, t

    async def send_estop(self, command_id: int | None = None) -> tuple[int, float]:
        cid = self.new_id() if command_id is None else command_id
        return cid, await self.send(MsgType.ESTOP, Estop(cid).encode())

    async def send_hello(self, major: int = PROTOCOL_MAJOR, minor: int = PROTOCOL_MINOR) -> float:
        return await self.send(MsgType.HELLO, Hello(major, minor, "neurostim-hil").encode())

    # -- receiving ---------------------------------------------------------------------

    def mark(self) -> int:
        """A position in the log: later searches look only at what arrived after it."""
        return len(self.log)

    def since(self, mark: int, predicate: Predicate | None = None) -> list[Received]:
        return [r for r in self.log[mark:] if predicate is None or predicate(r)]

    async def wait_for(
        self, predicate: Predicate, timeout_s: float, since: int | None = None
    ) -> Received | None:
        """The first frame after ``since`` (default: now) matching; None on timeout."""
        pos = self.mark() if since is None else since
        deadline = self.clock.now() + timeout_s
        while True:
            while pos < len(self.log):
                r = self.log[pos]
                pos += 1
                if predicate(r):
                    return r
            if self.closed is not None:
                raise LinkClosed(str(self.closed))
            remaining = deadline - self.clock.now()
            if remaining <= 0:
                return None
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def quiet(self, duration_s: float) -> list[Received]:
        """Everything that arrives during the next ``duration_s``."""
        mark = self.mark()
        await self.clock.sleep(duration_s)
        return self.since(mark)

    # -- conveniences on top of the raw frames ------------------------------------------

    async def command(
        self, msg_type: int, payload_for: Callable[[int], bytes], sign: bool, timeout_s: float
    ) -> tuple[int, Received | None]:
        cid = self.new_id()
        mark = self.mark()
        await self.send(msg_type, payload_for(cid), sign=sign)
        return cid, await self.wait_for(answers(cid, msg_type), timeout_s, mark)

    async def estop_clear(self, timeout_s: float = 0.5) -> Received | None:
        return (
            await self.command(
                MsgType.ESTOP_CLEAR, lambda c: EstopClear(c).encode(), True, timeout_s
            )
        )[1]

    async def bye(self, timeout_s: float = 0.5) -> Received | None:
        return (await self.command(MsgType.BYE, lambda c: Bye(c).encode(), False, timeout_s))[1]

    async def stim(
        self, setting: StimSetting, timeout_s: float = 0.5
    ) -> tuple[int, Received | None]:
        mark = self.mark()
        cid, _ = await self.send_stim_set(setting)
        return cid, await self.wait_for(answers(cid, MsgType.STIM_SET), timeout_s, mark)

    async def handshake(
        self, timeout_s: float = 1.0, major: int = PROTOCOL_MAJOR, minor: int = PROTOCOL_MINOR
    ) -> tuple[DeviceInfo, StimState | None]:
        """HELLO until DEVICE_INFO (3 tries); returns it and the STIM_STATE after it."""
        for _ in range(3):
            mark = self.mark()
            await self.send_hello(major, minor)
            got = await self.wait_for(is_type(MsgType.DEVICE_INFO), timeout_s, mark)
            if got is not None:
                assert isinstance(got.msg, DeviceInfo)
                after = self.log.index(got)
                state = await self.wait_for(is_type(MsgType.STIM_STATE), 0.3, after + 1)
                return got.msg, state.msg if state and isinstance(state.msg, StimState) else None
        raise LinkClosed("no DEVICE_INFO in answer to HELLO")

    async def stim_state_now(self) -> StimState | None:
        """The device's output as it reports it right after a (harmless) handshake."""
        return (await self.handshake())[1]

    async def wait_state(
        self, predicate: Callable[[StimState], bool], timeout_s: float, since: int | None = None
    ) -> Received | None:
        def match(r: Received) -> bool:
            return isinstance(r.msg, StimState) and predicate(r.msg)

        return await self.wait_for(match, timeout_s, since)

    # -- tasks -------------------------------------------------------------------------

    async def _reader(self) -> None:
        try:
            while True:
                data = await self.link.receive()
                now = self.clock.now()
                for frame in self.decoder.feed(data):
                    msg = self._parse(frame)
                    if isinstance(msg, DeviceInfo):
                        self.info = msg
                    self.log.append(Received(now, frame, msg))
                self._arrived.set()
        except (LinkClosed, OSError) as exc:
            self.closed = exc
            self._arrived.set()

    def _parse(self, frame: Frame) -> Message | None:
        n = self.info.n_channels if self.info is not None else None
        if frame.msg_type == MsgType.SAMPLES and n is None:
            return None
        try:
            return parse_payload(frame.msg_type, frame.payload, n)
        except ValueError:
            return None

    async def _heartbeats(self) -> None:
        while True:
            info = self.info
            interval = (
                0.25
                if info is None
                else min(info.heartbeat_interval_ms / 1000.0, info.watchdog_ms / 4000.0)
            )
            await self.clock.sleep(interval)
            if self.keepalive and info is not None and self.closed is None:
                self._beats += 1
                with contextlib.suppress(LinkClosed, OSError):
                    await self.send(MsgType.HEARTBEAT, encode_heartbeat_payload(self._beats, 0))
