"""Fault injection on the simulated device's link: corruption, drops, delay/jitter, disconnects.

A sans-IO transformer: ``process(data, now)`` returns the chunks to deliver and when.
The async shell (``FaultyLink``) and the lockstep runner both use it, so faults are
identical in real and virtual time for a given seed.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from firmware_bridge.clock import Clock
from firmware_bridge.transports.base import Link, LinkClosed, LinkContext


@dataclass(frozen=True)
class LinkFaultSettings:
    """Rates are per byte (corruption) and per chunk written (drop); a chunk is one frame
    when the firmware writes frame by frame."""

    byte_corruption_rate: float = 0.0
    frame_drop_rate: float = 0.0
    delay_s: float = 0.0
    jitter_s: float = 0.0
    disconnects: tuple[tuple[float, float], ...] = field(default=())  # (start_s, duration_s)

    def __post_init__(self) -> None:
        for name in ("byte_corruption_rate", "frame_drop_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within 0-1, got {value}")
        if self.delay_s < 0 or self.jitter_s < 0:
            raise ValueError("delay_s and jitter_s must be >= 0")


@dataclass
class LinkFaultStats:
    chunks_in: int = 0
    chunks_dropped: int = 0
    chunks_lost_disconnected: int = 0
    bytes_corrupted: int = 0


class LinkFaultInjector:
    """Deterministic (seeded) link impairments for one direction of a link."""

    def __init__(
        self,
        settings: LinkFaultSettings = LinkFaultSettings(),
        seed: int = 0,
        schedule: Callable[[float], LinkFaultSettings] | None = None,
        origin_s: float = 0.0,
    ) -> None:
        """``schedule(t)`` (t in seconds since ``origin_s``) overrides ``settings`` when given:
        scenarios switch faults on and off over time."""
        self.settings = settings
        self._schedule = schedule
        self._origin_s = origin_s
        self._rng = np.random.default_rng(seed)
        self.stats = LinkFaultStats()
        self._last_delivery_s = -np.inf

    def settings_at(self, now: float) -> LinkFaultSettings:
        if self._schedule is None:
            return self.settings
        return self._schedule(now - self._origin_s)

    def disconnected(self, now: float) -> bool:
        t = now - self._origin_s
        disconnects = self.settings_at(now).disconnects
        return any(start <= t < start + dur for start, dur in disconnects)

    def process(self, data: bytes, now: float) -> list[tuple[float, bytes]]:
        """The (deliver_at_s, chunk) list for ``data`` written at ``now``; order is kept."""
        s = self.settings_at(now)
        self.stats.chunks_in += 1
        if not data:
            return []
        if self.disconnected(now):
            self.stats.chunks_lost_disconnected += 1
            return []
        if s.frame_drop_rate and self._rng.random() < s.frame_drop_rate:
            self.stats.chunks_dropped += 1
            return []
        if s.byte_corruption_rate:
            hits = self._rng.random(len(data)) < s.byte_corruption_rate
            if hits.any():
                buf = np.frombuffer(data, dtype=np.uint8).copy()
                flips = self._rng.integers(1, 256, int(hits.sum()), dtype=np.uint8)
                buf[hits] ^= flips
                self.stats.bytes_corrupted += int(hits.sum())
                data = buf.tobytes()
        deliver = now + s.delay_s + (self._rng.uniform(0, s.jitter_s) if s.jitter_s else 0.0)
        # A serial line does not reorder: never deliver before an earlier chunk.
        deliver = max(deliver, self._last_delivery_s)
        self._last_delivery_s = deliver
        return [(deliver, data)]


class FaultyLink(LinkContext):
    """Wraps a Link so that what this side sends (and receives) suffers injected faults."""

    def __init__(
        self,
        inner: Link,
        clock: Clock,
        outgoing: LinkFaultInjector,
        incoming: LinkFaultInjector | None = None,
    ) -> None:
        self._inner = inner
        self._clock = clock
        self._out = outgoing
        self._in = incoming
        self._heap: list[tuple[float, int, bytes]] = []
        self._count = itertools.count()
        self._wake = asyncio.Event()
        self._pump = asyncio.create_task(self._deliver())

    @property
    def description(self) -> str:
        return f"{self._inner.description} (with injected faults)"

    async def send(self, data: bytes) -> None:
        for at, chunk in self._out.process(data, self._clock.now()):
            heapq.heappush(self._heap, (at, next(self._count), chunk))
        self._wake.set()

    async def _deliver(self) -> None:
        while True:
            if not self._heap:
                self._wake.clear()
                await self._wake.wait()
                continue
            at, _, chunk = self._heap[0]
            if self._clock.now() < at:
                await self._clock.sleep_until(at)
                continue
            heapq.heappop(self._heap)
            try:
                await self._inner.send(chunk)
            except LinkClosed:
                return

    async def receive(self) -> bytes:
        while True:
            data = await self._inner.receive()
            if self._in is None:
                return data
            delivered = self._in.process(data, self._clock.now())
            if delivered:
                # Incoming delay is not modelled on the receive side: corruption/drops only.
                return delivered[0][1]

    async def close(self) -> None:
        self._pump.cancel()
        await self._inner.close()
