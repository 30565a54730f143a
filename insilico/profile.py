"""Where a headless run's time goes: one profiler pass, its time split into the loop's stages.

The run is profiled with ``cProfile``; each function's own time (``tottime``) goes to the
stage of the module that defines it. Time spent in code that is not ours (numpy, the
C codec, ``struct``, ``zlib``) goes to the stages of its callers, in proportion to the time
each caller spent in it, so a numpy call made by the detector counts as detector time.
The profiler adds a fixed cost per Python call, so stages made of many small calls look
heavier than they are; the total is the profiled run's wall time, not the unprofiled one.
"""

from __future__ import annotations

import cProfile
import pstats
from collections.abc import Callable
from dataclasses import dataclass

#: Stages in loop order, each with the module prefixes it owns (first match wins).
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sensor faults", ("simulator/physiology/sensor_faults.py",)),
    ("signal model", ("simulator/physiology/", "simulator/signals.py")),
    ("firmware", ("simulator/",)),
    ("codec", ("firmware_bridge/framing.py", "firmware_bridge/messages.py")),
    ("sessions", ("firmware_bridge/session.py", "firmware_bridge/events.py")),
    ("pump", ("firmware_bridge/", "insilico/")),
    ("features", ("controller/features/",)),
    ("detector", ("controller/detector/",)),
    ("core", ("controller/",)),
)
OTHER = "other"

#: A pstats function key: (file name, line, function name).
FunctionKey = tuple[str, int, str]


@dataclass(frozen=True)
class StageTime:
    stage: str
    total_s: float
    us_per_virtual_s: float
    share: float


def stage_of_file(filename: str) -> str | None:
    """The stage owning ``filename``, None for code that is not ours."""
    path = filename.replace("\\", "/")
    for stage, prefixes in STAGES:
        for prefix in prefixes:
            if f"/{prefix}" in path and "/tests/" not in path:
                return stage
    return None


def stage_seconds(stats: pstats.Stats) -> dict[str, float]:
    """Seconds per stage; foreign code is charged to its callers' stages."""
    table: dict[FunctionKey, tuple[int, int, float, float, dict[FunctionKey, tuple]]]
    table = stats.stats  # type: ignore[attr-defined]
    shares: dict[FunctionKey, dict[str, float]] = {}

    def split(key: FunctionKey, depth: int) -> dict[str, float]:
        """Fractions of ``key``'s time by stage."""
        if key in shares:
            return shares[key]
        own = stage_of_file(key[0])
        if own is not None:
            return {own: 1.0}
        callers = table[key][4] if key in table else {}
        weights = {caller: entry[2] for caller, entry in callers.items()}
        total = sum(weights.values())
        if depth > 20 or total <= 0.0:
            return {OTHER: 1.0}
        result: dict[str, float] = {}
        for caller, weight in weights.items():
            for stage, fraction in split(caller, depth + 1).items():
                result[stage] = result.get(stage, 0.0) + fraction * weight / total
        shares[key] = result
        return result

    seconds: dict[str, float] = {}
    for key, (_, _, own_s, _, _) in table.items():
        for stage, fraction in split(key, 0).items():
            seconds[stage] = seconds.get(stage, 0.0) + own_s * fraction
    return seconds


def profile_stages(run: Callable[[], float]) -> list[StageTime]:
    """Profile ``run`` (which returns the virtual seconds it ran) and split its time."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        virtual_s = run()
    finally:
        profiler.disable()
    seconds = stage_seconds(pstats.Stats(profiler))
    total = sum(seconds.values()) or 1.0
    order = [stage for stage, _ in STAGES] + [OTHER]
    return [
        StageTime(
            stage=stage,
            total_s=seconds.get(stage, 0.0),
            us_per_virtual_s=1e6 * seconds.get(stage, 0.0) / virtual_s,
            share=seconds.get(stage, 0.0) / total,
        )
        for stage in order
    ]
