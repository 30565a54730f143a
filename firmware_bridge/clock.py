"""Injected time (DESIGN principle 2): nothing else in neurostim reads the time or sleeps.

``MonotonicClock`` is the real thing. ``VirtualClock`` only moves when told:
the lockstep runner advances it to the next deadline of the cores it drives
(PX4-SITL style), and async code sleeping on it wakes when it is advanced past
their deadline (like trio's MockClock without autojump).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic time line (origin arbitrary)."""
        ...

    async def sleep_until(self, deadline_s: float) -> None:
        """Return once ``now() >= deadline_s``."""
        ...

    async def sleep(self, delay_s: float) -> None: ...


class MonotonicClock:
    """Wall-clock monotonic time (time.monotonic) and asyncio sleeps."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep_until(self, deadline_s: float) -> None:
        delay = deadline_s - time.monotonic()
        await asyncio.sleep(max(0.0, delay))

    async def sleep(self, delay_s: float) -> None:
        await asyncio.sleep(max(0.0, delay_s))


class VirtualClock:
    """Time that moves only by ``advance``/``advance_to``; deterministic by construction."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._now = float(start_s)
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()

    def now(self) -> float:
        return self._now

    def advance_to(self, t_s: float) -> None:
        """Jump forward to ``t_s`` (never backwards) and wake sleepers that are due."""
        if t_s < self._now:
            raise ValueError(f"virtual time cannot go back: {t_s} < {self._now}")
        self._now = float(t_s)
        while self._waiters and self._waiters[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)

    def advance(self, dt_s: float) -> None:
        self.advance_to(self._now + dt_s)

    def next_sleeper_deadline(self) -> float | None:
        """Earliest deadline an async sleeper waits for (to jump there), or None."""
        while self._waiters and self._waiters[0][2].done():
            heapq.heappop(self._waiters)
        return self._waiters[0][0] if self._waiters else None

    async def sleep_until(self, deadline_s: float) -> None:
        if deadline_s <= self._now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (deadline_s, next(self._counter), fut))
        await fut

    async def sleep(self, delay_s: float) -> None:
        await self.sleep_until(self._now + max(0.0, delay_s))
