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
from collections.abc import Callable
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
    """Time that moves only by ``advance``/``advance_to``; deterministic by construction.

    ``rate`` (virtual seconds per wall second) holds each advance back to the wall clock:
    None runs as fast as the caller can (lockstep), 1 is real time (``--realtime``), N is
    a simulated device N times faster than life. The wall
    clock and the sleep are injected so pacing itself can be tested without waiting.
    """

    def __init__(
        self,
        start_s: float = 0.0,
        rate: float | None = None,
        wall: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._now = float(start_s)
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()
        self._wall = wall
        self._sleep = sleep
        self._rate = _checked_rate(rate)
        self._anchor: tuple[float, float] | None = None  # (wall, virtual) of the pacing origin

    def now(self) -> float:
        return self._now

    @property
    def rate(self) -> float | None:
        return self._rate

    @rate.setter
    def rate(self, rate: float | None) -> None:
        """Change the pace from now on (the past is not replayed at the new rate)."""
        self._rate = _checked_rate(rate)
        self._anchor = None

    def advance_to(self, t_s: float) -> None:
        """Jump forward to ``t_s`` (never backwards), waiting for the wall clock when paced,
        and wake sleepers that are due."""
        if t_s < self._now:
            raise ValueError(f"virtual time cannot go back: {t_s} < {self._now}")
        if self._rate is not None:
            self._pace(float(t_s))
        self._now = float(t_s)
        while self._waiters and self._waiters[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)

    def advance(self, dt_s: float) -> None:
        self.advance_to(self._now + dt_s)

    def _pace(self, t_s: float) -> None:
        assert self._rate is not None
        wall_now = self._wall()
        if self._anchor is None:
            self._anchor = (wall_now, self._now)
        wall_origin, virtual_origin = self._anchor
        ahead_s = wall_origin + (t_s - virtual_origin) / self._rate - wall_now
        if ahead_s > 0:
            self._sleep(ahead_s)

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


def _checked_rate(rate: float | None) -> float | None:
    if rate is not None and not rate > 0:
        raise ValueError(f"clock rate must be > 0 virtual seconds per wall second, got {rate}")
    return None if rate is None else float(rate)


class AsyncioClock:
    """The running event loop's clock (``loop.time()``, monotonic in production).

    Async shells use it so their tests can run in fast-forwarded virtual time: under
    ``looptime`` the loop's time jumps to the next timer whenever every task waits.
    Outside a running loop it reads ``time.monotonic()``, the default loop's own source.
    """

    def now(self) -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return time.monotonic()

    async def sleep_until(self, deadline_s: float) -> None:
        """Return once ``now() >= deadline_s``, also on a loop whose clock has a coarse tick
        (looptime's 1 µs): a wake rounded down to just before the deadline sleeps one more
        tick instead of returning early, which would make a caller waiting for that
        deadline spin without time moving."""
        await asyncio.sleep(max(0.0, deadline_s - self.now()))
        while self.now() < deadline_s:
            await asyncio.sleep(max(deadline_s - self.now(), _MIN_TICK_S))

    async def sleep(self, delay_s: float) -> None:
        await self.sleep_until(self.now() + max(0.0, delay_s))


#: The shortest extra sleep when a wake came before the deadline.
_MIN_TICK_S = 1e-6
