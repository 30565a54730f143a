"""The async shell of the controller (``neurostim run``): moves bytes and time between one
device URL and a ``ControllerNode``; it never decides.

One task waits for whichever comes first — bytes from the link, the node's next deadline,
the audit writer's "on disk", a stop request or the end of the duration — and hands it to
the node, then sends what the node has to send. A link that closes is reported to the
node, and a new one is opened through the transport registry when the node wants it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from controller.device_summary import describe_device
from controller.node import ControllerNode
from controller.observations import LinkCounters
from firmware_bridge.clock import Clock
from firmware_bridge.errors import BridgeError, DeviceUnreachable, LinkClosed
from firmware_bridge.transports.base import Link
from firmware_bridge.transports.registry import TransportRegistry, transports

log = logging.getLogger(__name__)


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
    link: dict[str, int] = field(default_factory=dict)  # summed over links
    device: dict[str, object] = field(default_factory=dict)
    stopped_by: str = ""
    ramped_down: bool = False
    errors: list[str] = field(default_factory=list)


class ControllerLoop:
    """Runs ``node`` against the device at ``url`` until ``stop`` is set or ``duration_s``
    ends, then until the node has finished its ramped stop."""

    def __init__(
        self,
        url: str,
        node: ControllerNode,
        clock: Clock,
        registry: TransportRegistry = transports,
    ) -> None:
        self.url = url
        self.node = node
        self.clock = clock
        self.registry = registry
        self.report = LoopReport()
        self._link: Link | None = None
        self._receiving: asyncio.Task[bytes] | None = None
        self._wake = asyncio.Event()

    async def run(
        self, duration_s: float | None = None, stop: asyncio.Event | None = None
    ) -> LoopReport:
        """The first connect must succeed (else DeviceUnreachable or ProtocolMismatch);
        after that the node reconnects on its own until stopped."""
        stop = stop or asyncio.Event()
        node, clock = self.node, self.clock
        end = None if duration_s is None else clock.now() + duration_s
        loop = asyncio.get_running_loop()

        def on_disk() -> None:  # called on the audit writer thread
            loop.call_soon_threadsafe(self._wake.set)

        node.audit.on_durable = on_disk
        try:
            self._link = await self._open(first=True)
            node.start(clock.now())
            stop_requested = False
            while not node.finished:
                now = clock.now()
                # The duration counts once connected: the first handshake ends in a device
                # or in a clear failure, never in a silent stop.
                timed_out = end is not None and now >= end and node.connects > 0
                if not stop_requested and (stop.is_set() or timed_out):
                    stop_requested = True
                    node.request_stop(now, "signal" if stop.is_set() else "duration")
                if self._link is None and node.wants_link:
                    await self._reopen()
                deadline = node.next_deadline()
                if deadline is not None and clock.now() >= deadline:
                    node.on_time(clock.now())
                await self._flush()
                if node.failure is not None and node.connects == 0:
                    raise node.failure
                if node.finished:
                    break
                if not stop_requested and end is not None and node.connects > 0:
                    deadline = end if deadline is None else min(deadline, end)
                await self._wait(deadline, None if stop_requested else stop)
            await self._flush()  # what the last input produced (the BYE after a stop)
        finally:
            node.audit.on_durable = None
            await self._close_link()
        node.close(clock.now())
        self._fill_report()
        return self.report

    # -- internals ---------------------------------------------------------------------

    async def _open(self, first: bool = False) -> Link:
        try:
            return await self.registry.open(self.url)
        except LinkClosed as exc:
            if first:
                raise DeviceUnreachable(f"cannot open {self.url}: {exc}") from exc
            raise

    async def _reopen(self) -> None:
        try:
            self._link = await self._open()
        except BridgeError as exc:
            self.report.errors.append(str(exc))
            self.node.link_open_failed(self.clock.now(), str(exc))
            return
        self.node.link_up(self.clock.now())

    async def _wait(self, deadline: float | None, stop: asyncio.Event | None) -> None:
        """Until bytes arrive, the deadline passes, the node is woken or stop is set."""
        waiters: set[asyncio.Future[object]] = set()
        if self._link is not None and self._receiving is None:
            self._receiving = asyncio.ensure_future(self._link.receive())
        if self._receiving is not None:
            waiters.add(self._receiving)  # type: ignore[arg-type]
        self._wake.clear()  # set by the audit writer thread once its records are on disk
        woken = asyncio.ensure_future(self._wake.wait())
        owned: list[asyncio.Future[object]] = [woken]  # type: ignore[list-item]
        if stop is not None:
            owned.append(asyncio.ensure_future(stop.wait()))
        if deadline is not None:
            owned.append(asyncio.ensure_future(self.clock.sleep_until(deadline)))
        waiters.update(owned)
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in owned:
                waiter.cancel()
        received = self._receiving
        if received is not None and received.done():
            self._receiving = None
            try:
                data = received.result()
            except LinkClosed as exc:
                await self._lose_link(str(exc))
                return
            self.node.receive_data(data, self.clock.now())
        if self.node.holding and self.node.audit.durable:
            self.node.on_time(self.clock.now())  # sends the commands held for the disk

    async def _flush(self) -> None:
        data = self.node.data_to_send()
        if not data or self._link is None:
            return
        try:
            await self._link.send(data)
        except LinkClosed as exc:
            await self._lose_link(str(exc))

    async def _lose_link(self, reason: str) -> None:
        log.warning("link to %s closed: %s", self.url, reason)
        self.report.errors.append(reason)
        await self._close_link()
        self.node.link_down(self.clock.now(), reason)

    async def _close_link(self) -> None:
        if self._receiving is not None:
            self._receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError, LinkClosed):
                await self._receiving
            self._receiving = None
        if self._link is not None:
            link, self._link = self._link, None
            with contextlib.suppress(LinkClosed):
                await link.close()

    def _fill_report(self) -> None:
        node, report = self.node, self.report
        counters: LinkCounters = node.link_counters()
        stats = node.core.stats
        report.connects = counters.connects
        report.reconnect_attempts = counters.reconnect_attempts
        report.link_losses = counters.link_losses
        report.commands_sent = stats.commands
        report.commands_acked = stats.acks
        report.commands_nacked = stats.nacks
        report.commands_timed_out = stats.timeouts
        report.link = {
            "frames_rx": counters.frames_rx,
            "frames_tx": counters.frames_tx,
            "frames_lost": counters.frames_lost,
            "crc_errors": counters.crc_errors,
            "samples": counters.samples,
            "sample_gaps": counters.sample_gaps,
            "samples_missing": counters.samples_missing,
            "retransmits": counters.retransmits,
        }
        if node.core.info is not None:
            report.device = describe_device(node.core.info)
        outcome = node.stop_outcome
        if outcome is not None:
            report.stopped_by = outcome.reason
            report.ramped_down = outcome.ramped_down
            if outcome.error:
                report.errors.append(f"ramp-down not confirmed: {outcome.error}")
