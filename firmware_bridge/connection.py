"""The controller's async shell around ``ControllerSession``: one Link, one Clock.

It owns two tasks — a reader that feeds received bytes to the session and a
timer that runs the session's deadlines — and hands out events through a
bounded queue (drops are counted, never silent). Commands are awaited until
their ACK, NACK or final timeout. The HIL rig, the controller loop and the
console all use this same class.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from firmware_bridge.clock import Clock
from firmware_bridge.errors import DeviceUnreachable, ProtocolMismatch
from firmware_bridge.events import (
    CommandAcked,
    CommandNacked,
    CommandTimedOut,
    Connected,
    Event,
    HandshakeFailed,
    PeerLost,
    VersionRejected,
)
from firmware_bridge.framing import PROTOCOL_MAJOR, PROTOCOL_MINOR
from firmware_bridge.messages import DeviceInfo, StimSetting
from firmware_bridge.session import ControllerSession, SessionState
from firmware_bridge.transports.base import Link, LinkClosed

CommandResult = CommandAcked | CommandNacked | CommandTimedOut


@dataclass
class ConnectionStats:
    events_dropped: int = 0


class DeviceConnection:
    """Runs a ControllerSession over ``link``; use as ``async with``."""

    def __init__(
        self,
        link: Link,
        clock: Clock,
        session: ControllerSession | None = None,
        event_queue_size: int = 4096,
    ) -> None:
        self.link = link
        self.clock = clock
        self.session = session or ControllerSession()
        self.stats = ConnectionStats()
        self._events: asyncio.Queue[Event] = asyncio.Queue(maxsize=event_queue_size)
        self._stash: list[Event] = []
        self._results: dict[int, asyncio.Future[CommandResult]] = {}
        self._handshake: asyncio.Future[Event] | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._flushes: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self.closed = asyncio.Event()

    async def __aenter__(self) -> DeviceConnection:
        self._tasks = [
            asyncio.create_task(self._reader(), name="device-reader"),
            asyncio.create_task(self._timer(), name="device-timer"),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def info(self) -> DeviceInfo | None:
        return self.session.info

    # -- application API ---------------------------------------------------------------

    async def connect(self) -> DeviceInfo:
        """Handshake (HELLO with retries); raises DeviceUnreachable or ProtocolMismatch."""
        loop = asyncio.get_running_loop()
        self._handshake = loop.create_future()
        await self.start_handshake()
        outcome = await self._handshake
        if isinstance(outcome, Connected):
            return outcome.info
        if isinstance(outcome, VersionRejected):
            raise ProtocolMismatch(outcome.message(PROTOCOL_MAJOR, PROTOCOL_MINOR))
        if isinstance(outcome, HandshakeFailed):
            raise DeviceUnreachable(
                f"no answer to HELLO from {self.link.description} after "
                f"{outcome.attempts} attempts: is it a neurostim device at this address?"
            )
        raise DeviceUnreachable(f"{self.link.description}: {outcome}")

    async def start_handshake(self) -> None:
        """Send HELLO (again) without waiting: the outcome arrives as an event."""
        self.session.connect(self.clock.now())
        await self._flush()
        self._wake.set()

    def send_stim_set_nowait(self, setting: StimSetting) -> int:
        """Queue STIM_SET and return its id without waiting: the bytes are flushed by a
        task and the timer is woken at once, so the first retransmit deadline is kept.
        The answer arrives as an event (and through ``result_of``)."""
        cid = self.session.send_stim_set(setting, self.clock.now())
        self._results[cid] = asyncio.get_running_loop().create_future()
        self._kick()
        return cid

    async def result_of(self, command_id: int) -> CommandResult:
        """The answer to a command sent with ``send_stim_set_nowait``."""
        fut = self._results.get(command_id)
        if fut is None:
            raise KeyError(f"no command {command_id} is waiting for an answer")
        return await fut

    def _kick(self) -> None:
        task = asyncio.get_running_loop().create_task(self._flush_or_fail())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)
        self._wake.set()

    async def _flush_or_fail(self) -> None:
        try:
            await self._flush()
        except LinkClosed as exc:
            self._failure = exc
            self._fail_waiters(exc)
            self.closed.set()

    async def set_stimulation(self, setting: StimSetting) -> CommandResult:
        """Send STIM_SET and wait for its ACK, NACK or final timeout."""
        cid = self.session.send_stim_set(setting, self.clock.now())
        return await self._await_result(cid)

    async def estop(self) -> CommandResult:
        cid = self.session.send_estop(self.clock.now())
        return await self._await_result(cid)

    async def send_marker(self, code: int, text: str) -> None:
        self.session.send_marker(code, text, self.clock.now())
        await self._flush()

    async def next_event(self) -> Event:
        """The next event; raises LinkClosed once the link is gone and the queue is empty.

        Cancelling a waiting call loses nothing: an event taken at that instant is kept
        for the next call.
        """
        if self._stash:
            return self._stash.pop(0)
        if self._events.empty() and self._failure is not None:
            raise LinkClosed(str(self._failure))
        getter = asyncio.ensure_future(self._events.get())
        closer = asyncio.ensure_future(self.closed.wait())
        try:
            await asyncio.wait({getter, closer}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            if getter.done() and not getter.cancelled():
                self._stash.append(getter.result())
            getter.cancel()
            raise
        finally:
            closer.cancel()
        if getter.done():
            return getter.result()
        getter.cancel()
        raise LinkClosed(str(self._failure) if self._failure else "connection closed")

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, LinkClosed):
                await task
        self._tasks = []
        with contextlib.suppress(LinkClosed):
            await self.link.close()
        self._fail_waiters(LinkClosed("connection closed"))
        self.closed.set()

    # -- internals ---------------------------------------------------------------------

    async def _await_result(self, command_id: int) -> CommandResult:
        fut: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        self._results[command_id] = fut
        await self._flush()
        self._wake.set()
        return await fut

    async def _flush(self) -> None:
        data = self.session.data_to_send()
        if data:
            await self.link.send(data)

    def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, CommandAcked | CommandNacked | CommandTimedOut):
                fut = self._results.pop(event.command_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(event)
            ends_handshake = isinstance(
                event, Connected | VersionRejected | HandshakeFailed | PeerLost
            )
            if ends_handshake and self._handshake is not None and not self._handshake.done():
                self._handshake.set_result(event)
            try:
                self._events.put_nowait(event)
            except asyncio.QueueFull:
                self.stats.events_dropped += 1

    async def _reader(self) -> None:
        try:
            while True:
                data = await self.link.receive()
                self._dispatch(self.session.receive_data(data, self.clock.now()))
                await self._flush()
                self._wake.set()
        except LinkClosed as exc:
            self._failure = exc
            self._fail_waiters(exc)
            self.closed.set()

    async def _timer(self) -> None:
        try:
            while True:
                self._dispatch(self.session.handle_timeout(self.clock.now()))
                await self._flush()
                self._wake.clear()
                deadline = self.session.next_deadline()
                waker = asyncio.ensure_future(self._wake.wait())
                waiters: set[asyncio.Future[object]] = {waker}  # type: ignore[arg-type]
                if deadline is not None:
                    waiters.add(asyncio.ensure_future(self.clock.sleep_until(deadline)))
                try:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waiters:
                        w.cancel()
        except LinkClosed as exc:
            self._failure = exc
            self._fail_waiters(exc)
            self.closed.set()

    def _fail_waiters(self, exc: BaseException) -> None:
        for fut in self._results.values():
            if not fut.done():
                fut.set_exception(LinkClosed(str(exc)))
        self._results.clear()
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(DeviceUnreachable(str(exc)))

    @property
    def ready(self) -> bool:
        return self.session.state is SessionState.READY
