"""The async shell of the controller (``neurostim run``): one device URL, the sans-IO core.

Inside an asyncio TaskGroup: the connection's reader and timer (firmware_bridge.connection),
a consumer that feeds protocol events to the core, and a sender that delivers the core's
commands with ACK tracking and retries. The event queue is bounded and its drops are counted.
After every (re)connect the core sees the device's actual state before it decides anything.
On stop (SIGINT/SIGTERM or end of duration) stimulation is ramped down, the device's
confirmation awaited, and the recording and audit log are closed cleanly.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from controller.core import ControllerCore
from controller.device_summary import describe_device
from firmware_bridge.clock import Clock
from firmware_bridge.connection import DeviceConnection, DeviceUnreachable, ProtocolMismatch
from firmware_bridge.events import (
    CommandAcked,
    CommandNacked,
    CommandTimedOut,
    Connected,
    PeerLost,
    StimStateReceived,
)
from firmware_bridge.messages import StimSetting
from firmware_bridge.session import ControllerSession
from firmware_bridge.transports.base import LinkClosed
from firmware_bridge.url import open_link


@dataclass
class LoopReport:
    connects: int = 0
    reconnect_attempts: int = 0
    link_losses: int = 0
    commands_sent: int = 0
    commands_acked: int = 0
    commands_nacked: int = 0
    commands_timed_out: int = 0
    events_dropped: int = 0
    link: dict[str, int] = field(default_factory=dict)  # summed over sessions
    device: dict[str, object] = field(default_factory=dict)
    stopped_by: str = ""
    ramped_down: bool = False
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Backoff:
    """Reconnection delays: initial, doubling, capped."""

    initial_s: float = 0.5
    max_s: float = 10.0

    def delay_s(self, attempt: int) -> float:
        return min(self.initial_s * 2.0 ** min(attempt, 60), self.max_s)


class ControllerLoop:
    """Runs ``core`` against the device at ``url`` until ``stop`` is set or ``duration_s`` ends."""

    def __init__(
        self,
        url: str,
        core: ControllerCore,
        clock: Clock,
        backoff: Backoff = Backoff(),
        event_queue_size: int = 4096,
        shutdown_timeout_s: float = 10.0,
    ) -> None:
        self.url = url
        self.core = core
        self.clock = clock
        self.backoff = backoff
        self.event_queue_size = event_queue_size
        self.shutdown_timeout_s = shutdown_timeout_s
        self.report = LoopReport()
        self._conn: DeviceConnection | None = None

    async def run(
        self, duration_s: float | None = None, stop: asyncio.Event | None = None
    ) -> LoopReport:
        """Connect (the first connect must succeed: it raises DeviceUnreachable or
        ProtocolMismatch), then run with reconnection until stopped."""
        stop = stop or asyncio.Event()
        deadline = None if duration_s is None else self.clock.now() + duration_s
        first = True
        while not stop.is_set():
            try:
                await self._session(stop, deadline)
            except (DeviceUnreachable, LinkClosed) as exc:
                if first:
                    raise
                self.report.errors.append(str(exc))
            except ProtocolMismatch:
                raise
            first = False
            if stop.is_set() or (deadline is not None and self.clock.now() >= deadline):
                break
            self.core.on_link_down(self.clock.now())
            if not await self._wait_backoff(stop, deadline):
                break
        self.core.close(self.clock.now())
        return self.report

    async def _wait_backoff(self, stop: asyncio.Event, deadline: float | None) -> bool:
        delay = self.backoff.delay_s(self.report.reconnect_attempts)
        self.report.reconnect_attempts += 1
        wake = self.clock.now() + delay
        if deadline is not None:
            wake = min(wake, deadline)
        stopper = asyncio.ensure_future(stop.wait())
        sleeper = asyncio.ensure_future(self.clock.sleep_until(wake))
        await asyncio.wait({stopper, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        sleeper.cancel()
        return not stop.is_set() and (deadline is None or self.clock.now() < deadline)

    async def _session(self, stop: asyncio.Event, deadline: float | None) -> None:
        link = await open_link(self.url)
        session = ControllerSession(client_name="neurostim controller")
        conn = DeviceConnection(link, self.clock, session, self.event_queue_size)
        self._conn = conn
        async with conn:
            info = await conn.connect()
            self.report.connects += 1
            self.report.device = describe_device(info)
            self.core.on_connected(info, self.clock.now())
            lost = asyncio.Event()
            try:
                async with asyncio.TaskGroup() as group:
                    consumer = group.create_task(self._consume(conn, lost))
                    waiter = group.create_task(self._until_stop(stop, deadline, lost))
                    await waiter
                    consumer.cancel()
            finally:
                self.report.events_dropped += conn.stats.events_dropped
                self._add_link_stats(session)
            if stop.is_set() or (deadline is not None and self.clock.now() >= deadline):
                if stop.is_set():
                    self.report.stopped_by = "signal"
                else:
                    self.report.stopped_by = "duration"
                await self._ramp_down(conn)
            else:
                self.report.link_losses += 1

    async def _until_stop(
        self, stop: asyncio.Event, deadline: float | None, lost: asyncio.Event
    ) -> None:
        waiters: set[asyncio.Future[object]] = {
            asyncio.ensure_future(stop.wait()),
            asyncio.ensure_future(lost.wait()),
        }
        if deadline is not None:
            waiters.add(asyncio.ensure_future(self.clock.sleep_until(deadline)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    async def _consume(self, conn: DeviceConnection, lost: asyncio.Event) -> None:
        try:
            while True:
                event = await conn.next_event()
                now = self.clock.now()
                if isinstance(event, PeerLost):
                    lost.set()
                    return
                if isinstance(event, Connected):
                    continue  # the handshake's own event; on_connected ran already
                self.account(event)
                for setting in self.core.on_event(event, now):
                    await self._send(conn, setting)
        except LinkClosed:
            lost.set()

    async def _send(self, conn: DeviceConnection, setting: StimSetting) -> int:
        """Send one command without blocking the event stream; its outcome goes to the core."""
        now = self.clock.now()
        cid = conn.session.send_stim_set(setting, now)
        self.report.commands_sent += 1
        self.core.on_command_sent(cid, setting, now)
        data = conn.session.data_to_send()
        if data:
            await conn.link.send(data)
        return cid

    def _add_link_stats(self, session: ControllerSession) -> None:
        st = session.stats
        counters = {
            "frames_rx": st.frames_rx,
            "frames_tx": st.frames_tx,
            "frames_lost": st.frames_lost,
            "crc_errors": st.crc_errors,
            "cobs_errors": st.decoder.cobs_errors,
            "oversize_frames": st.decoder.oversize,
            "unknown_type": st.unknown_type,
            "malformed": st.malformed,
            "samples": st.samples_rx,
            "sample_gaps": st.sample_gaps,
            "samples_missing": st.samples_missing,
            "sample_duplicates": st.sample_duplicates,
            "retransmits": st.retransmits,
        }
        for key, value in counters.items():
            self.report.link[key] = self.report.link.get(key, 0) + value

    def account(self, event: object) -> None:
        if isinstance(event, CommandAcked):
            self.report.commands_acked += 1
        elif isinstance(event, CommandNacked):
            self.report.commands_nacked += 1
        elif isinstance(event, CommandTimedOut):
            self.report.commands_timed_out += 1

    async def _ramp_down(self, conn: DeviceConnection) -> None:
        """Stop stimulation (ramped as the envelope allows) and wait for the device to
        confirm zero output in a STIM_STATE that follows the command's ACK."""
        cid = await self._send(conn, self.core.shutdown_setting(self.clock.now()))
        acked = False
        end = self.clock.now() + self.shutdown_timeout_s
        while self.clock.now() < end:
            try:
                event = await asyncio.wait_for(conn.next_event(), end - self.clock.now())
            except (TimeoutError, LinkClosed) as exc:
                self.report.errors.append(f"ramp-down not confirmed: {exc!r}")
                return
            self.account(event)
            self.core.on_event(event, self.clock.now())  # audit only: no new commands now
            if isinstance(event, CommandAcked) and event.command_id == cid:
                acked = True
            elif isinstance(event, CommandNacked | CommandTimedOut) and event.command_id == cid:
                self.report.errors.append(f"ramp-down command refused or lost: {event}")
                return
            elif isinstance(event, StimStateReceived) and acked:
                state = event.state
                if state.amplitude_ma == 0.0 and not state.enabled:
                    self.report.ramped_down = True
                    return
        self.report.errors.append("device did not confirm zero output before the timeout")
