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


class ScaledClock:
    """Virtual seconds shared by a simulated device and the controller, at a pace the
    operator changes while they run: ``rate`` virtual seconds per wall second, ``paused``,
    or ``jump_to`` a later time as fast as the work allows (a console fast-forwards the
    detector's calibration this way, then watches in real time).

    Sleepers wake at their virtual deadline whatever the pace does meanwhile: every change
    of pace wakes them to recompute. While jumping, time moves only between bursts of work:
    after ``settle_yields`` turns of the event loop with nothing else to do it jumps to the
    earliest sleeper's deadline, like an autojumping mock clock, so the device and the
    controller see the same sequence of deadlines as in real time, only sooner.
    """

    def __init__(
        self,
        rate: float = 1.0,
        start_s: float = 0.0,
        *,
        wall: Callable[[], float] = time.monotonic,
        settle_yields: int = 16,
    ) -> None:
        checked = _checked_rate(rate)
        assert checked is not None
        self._rate = checked
        self._wall = wall
        self._origin_virtual_s = float(start_s)
        self._origin_wall_s: float | None = None  # anchored on first use
        self._paused = False
        self._jump_target_s: float | None = None
        self._jumper: asyncio.Task[None] | None = None
        self._settle_yields = settle_yields
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()

    # -- time ----------------------------------------------------------------------------

    def now(self) -> float:
        if self._paused or self._jump_target_s is not None:
            return self._origin_virtual_s
        wall_now = self._wall()
        if self._origin_wall_s is None:
            self._origin_wall_s = wall_now
        return self._origin_virtual_s + (wall_now - self._origin_wall_s) * self._rate

    async def sleep_until(self, deadline_s: float) -> None:
        if self.now() >= deadline_s:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        while (now := self.now()) < deadline_s:
            fut: asyncio.Future[None] = loop.create_future()
            heapq.heappush(self._sleepers, (deadline_s, next(self._counter), fut))
            timer = None
            if not self._paused and self._jump_target_s is None:
                timer = loop.call_later((deadline_s - now) / self._rate, _resolve, fut)
            try:
                await fut
            finally:
                if timer is not None:
                    timer.cancel()

    async def sleep(self, delay_s: float) -> None:
        await self.sleep_until(self.now() + max(0.0, delay_s))

    # -- pace ------------------------------------------------------------------------------

    @property
    def rate(self) -> float:
        return self._rate

    @rate.setter
    def rate(self, rate: float) -> None:
        checked = _checked_rate(rate)
        assert checked is not None
        self._rebase()
        self._rate = checked
        self._wake_all()

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        self._rebase()
        self._paused = True
        self._wake_all()

    def resume(self) -> None:
        self._rebase()
        self._paused = False
        self._wake_all()

    @property
    def jumping(self) -> bool:
        return self._jump_target_s is not None

    def jump_to(self, target_s: float) -> asyncio.Task[None]:
        """Run ahead to ``target_s`` without waiting for the wall clock, then go on at the
        rate (or stay paused); returns the task that jumps (await it to wait for the end).
        Needs a running event loop."""
        if target_s < self.now():
            raise ValueError(f"cannot jump back: {target_s} < {self.now()}")
        self._rebase()
        self._jump_target_s = float(target_s)
        self._wake_all()
        if self._jumper is None or self._jumper.done():
            self._jumper = asyncio.get_running_loop().create_task(self._jump())
        return self._jumper

    async def _jump(self) -> None:
        while (target := self._jump_target_s) is not None:
            for _ in range(self._settle_yields):
                await asyncio.sleep(0)  # let the work due at this instant finish first
            while self._sleepers and self._sleepers[0][2].done():
                heapq.heappop(self._sleepers)
            due = self._sleepers[0][0] if self._sleepers else None
            if due is None or due > target:
                self._origin_virtual_s = target
                self._jump_target_s = None
                self._origin_wall_s = self._wall()
                self._wake_all()
                return
            self._origin_virtual_s = max(self._origin_virtual_s, due)
            while self._sleepers and self._sleepers[0][0] <= self._origin_virtual_s:
                _resolve(heapq.heappop(self._sleepers)[2])

    def _rebase(self) -> None:
        """Make the current virtual time the origin of the next pace."""
        self._origin_virtual_s = self.now()
        self._origin_wall_s = self._wall()

    def _wake_all(self) -> None:
        """Every sleeper recomputes its wait under the new pace."""
        sleepers, self._sleepers = self._sleepers, []
        for _, _, fut in sleepers:
            _resolve(fut)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
