"""Where a headless run's time goes in the loop itself: timers around its stages' entry points.

The profile (insilico/profile.py) charges every Python call the profiler's own cost, so the
profiled run is about twice the unprofiled one and stages made of many small calls look
heavier than they are. Here only the few methods through which the loop enters each stage
are timed, one ``perf_counter`` pair per call (a few dozen calls per virtual second), and
each stage's time excludes the timed stages it calls: the rows add up to the run's wall
time, the rest being the pump and the run's own bookkeeping, and the timers' own cost is
measured and printed beside them.

Why it matters: a stage costs more inside the loop than in its own benchmark, where its
code and data stay in the caches from one call to the next. This table is what the loop
pays.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from typing import Any

#: The name of the row that takes what no timed stage took (the pump, the run's loop).
REST = "pump and the rest"

Clock = Callable[[], float]


@dataclass(frozen=True)
class TimedStage:
    """A stage of the loop and the methods through which the loop enters it."""

    stage: str
    owner: type
    methods: tuple[str, ...]


@dataclass(frozen=True)
class StageRow:
    stage: str
    us_per_virtual_s: float
    calls_per_virtual_s: float
    us_per_call: float


def loop_stages() -> tuple[TimedStage, ...]:
    """The headless loop's stages, innermost last: the signal model inside the firmware,
    the features and the detector inside the controller node."""
    from controller.detector.detector import Detector
    from controller.features.extractor import FeatureExtractor
    from controller.node import ControllerNode
    from simulator.firmware import VirtualFirmware
    from simulator.physiology.patient import PatientSimulation

    return (
        TimedStage(
            "firmware (device session, codec)",
            VirtualFirmware,
            ("advance_to", "receive_data", "next_deadline", "data_to_send"),
        ),
        TimedStage("signal model and sensors", PatientSimulation, ("read",)),
        TimedStage(
            "controller node (session, codec, core)",
            ControllerNode,
            ("receive_data", "on_time", "next_deadline", "data_to_send"),
        ),
        TimedStage("features", FeatureExtractor, ("push", "push_counts")),
        TimedStage("detector", Detector, ("update",)),
    )


class StageTimers:
    """Exclusive wall time and calls per stage, gathered while :meth:`installed` is active."""

    def __init__(self, stages: tuple[TimedStage, ...], clock: Clock = time.perf_counter) -> None:
        self.stages = stages
        self._clock = clock
        self.seconds = {s.stage: 0.0 for s in stages}
        self.calls = {s.stage: 0 for s in stages}
        #: Time taken by timed stages inside the call being timed now.
        self._nested_s = 0.0

    def _timed(self, stage: str, method: Callable[..., Any]) -> Callable[..., Any]:
        clock, seconds, calls = self._clock, self.seconds, self.calls

        @wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            outer_nested = self._nested_s
            self._nested_s = 0.0
            start = clock()
            try:
                return method(*args, **kwargs)
            finally:
                elapsed = clock() - start
                seconds[stage] += elapsed - self._nested_s
                calls[stage] += 1
                self._nested_s = outer_nested + elapsed

        return timed

    @contextmanager
    def installed(self) -> Iterator[StageTimers]:
        """The stages' methods timed on their classes (objects built inside see them), put
        back as they were on exit."""
        saved: list[tuple[type, str, object]] = []
        try:
            for s in self.stages:
                for name in s.methods:
                    original = s.owner.__dict__[name]  # a plain function: the stages' methods
                    saved.append((s.owner, name, original))
                    setattr(s.owner, name, self._timed(s.stage, original))
            yield self
        finally:
            for owner, name, original in reversed(saved):
                setattr(owner, name, original)

    def rows(self, wall_s: float, virtual_s: float) -> list[StageRow]:
        """One row per stage, then the rest of ``wall_s`` (the pump, the run's loop)."""
        rows = [
            StageRow(
                stage,
                1e6 * self.seconds[stage] / virtual_s,
                self.calls[stage] / virtual_s,
                1e6 * self.seconds[stage] / self.calls[stage] if self.calls[stage] else 0.0,
            )
            for stage in self.seconds
        ]
        rest_s = wall_s - sum(self.seconds.values())
        rows.append(StageRow(REST, 1e6 * rest_s / virtual_s, 0.0, 0.0))
        return rows

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


def timer_cost_per_call_s(calls: int = 100_000) -> float:
    """What one timed call costs beyond the call itself: a method that does nothing, timed
    and not, on this machine now."""

    class Idle:
        def nothing(self) -> None:
            return None

    idle = Idle()
    plain = idle.nothing
    start = time.perf_counter()
    for _ in range(calls):
        plain()
    plain_s = time.perf_counter() - start
    timers = StageTimers((TimedStage("idle", Idle, ("nothing",)),))
    with timers.installed():
        timed = idle.nothing
        start = time.perf_counter()
        for _ in range(calls):
            timed()
        timed_s = time.perf_counter() - start
    return max(0.0, (timed_s - plain_s) / calls)


@dataclass(frozen=True)
class TimedRun:
    """A run's stage rows, its wall and virtual time and what the timers cost in it."""

    rows: list[StageRow]
    wall_s: float
    virtual_s: float
    timer_us_per_virtual_s: float


def time_stages(run: Callable[[], float]) -> TimedRun:
    """Run ``run`` (which returns the virtual seconds it ran) with the loop's stages timed."""
    timers = StageTimers(loop_stages())
    with timers.installed():
        start = time.perf_counter()
        virtual_s = run()
        wall_s = time.perf_counter() - start
    cost_s = timer_cost_per_call_s() * timers.total_calls
    return TimedRun(timers.rows(wall_s, virtual_s), wall_s, virtual_s, 1e6 * cost_s / virtual_s)
