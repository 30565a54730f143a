"""Where a headless run's time goes: one profiler pass, its time split into the loop's stages.

The run is profiled with ``cProfile``; each function's own time (``tottime``) goes to the
stage of the module that defines it. Time spent in code that is not ours (numpy, the
C codec, ``struct``, the CRC) goes to the stages of its callers, in proportion to the time
each caller spent in it, so a numpy call made by the detector counts as detector time.
The profiler adds a fixed cost per Python call, so stages made of many small calls look
heavier than they are; the total is the profiled run's wall time, not the unprofiled one.

Each stage's time is also split into compiled work and the Python around it. Compiled
work is the own time of our numba kernels and of the C functions that do the numerics and
the framing (numpy ufuncs and random draws, the FFT, COBS, CRC-32, ``struct``), less the
profiler's own cost per call, measured first on a C call that does nothing. Its sum is
what a run would cost if every line of Python around the kernels were free: the ceiling
of any speed-up that keeps the same arithmetic. It is a low estimate: numpy operators
written in Python (``a * b``) are not calls the profiler sees, so their time stays with
the Python, and array allocation is left out.
"""

from __future__ import annotations

import cProfile
import pstats
import re
import sys
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

#: Names of C functions (pstats file "~") that do compiled work: the numerics and framing.
COMPILED_C_FUNCTIONS = re.compile(
    r"numpy\.ufunc|numpy\.random|_generator|pocketfft|cobs|zlib|_struct"
)


@dataclass(frozen=True)
class StageTime:
    stage: str
    total_s: float
    us_per_virtual_s: float
    share: float
    compiled_us_per_virtual_s: float


def stage_of_file(filename: str) -> str | None:
    """The stage owning ``filename``, None for code that is not ours."""
    path = filename.replace("\\", "/")
    for stage, prefixes in STAGES:
        for prefix in prefixes:
            if f"/{prefix}" in path and "/tests/" not in path:
                return stage
    return None


def compiled_kernel_keys() -> set[FunctionKey]:
    """The pstats keys of the numba kernels defined in our modules (numba reports a kernel's
    call under its Python function's code)."""
    try:
        from numba.core.dispatcher import Dispatcher
    except ImportError:  # the numpy fallbacks run, and they are Python
        return set()
    keys: set[FunctionKey] = set()
    for module in list(sys.modules.values()):
        if stage_of_file(getattr(module, "__file__", None) or "") is None:
            continue
        for value in vars(module).values():
            if isinstance(value, Dispatcher):
                code = value.py_func.__code__
                keys.add((code.co_filename, code.co_firstlineno, code.co_name))
    return keys


def is_compiled(key: FunctionKey, kernels: set[FunctionKey]) -> bool:
    """Whether ``key``'s own time is compiled work (a numba kernel or a numeric C call)."""
    if key in kernels:
        return True
    return key[0] == "~" and COMPILED_C_FUNCTIONS.search(key[2]) is not None


def stage_seconds(
    stats: pstats.Stats,
    compiled: Callable[[FunctionKey], bool] | None = None,
    per_call_s: float = 0.0,
) -> dict[str, float]:
    """Seconds per stage; foreign code is charged to its callers' stages. With ``compiled``,
    only the functions it accepts count, each less ``per_call_s`` per call."""
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
    for key, (_, calls, own_s, _, _) in table.items():
        if compiled is not None:
            if not compiled(key):
                continue
            own_s = max(0.0, own_s - calls * per_call_s)
        for stage, fraction in split(key, 0).items():
            seconds[stage] = seconds.get(stage, 0.0) + own_s * fraction
    return seconds


def profiler_cost_per_call_s(calls: int = 200_000) -> float:
    """The own time the profiler gives a C call that does nothing (``len`` of a constant):
    its cost per call, taken off every compiled call's time."""
    profiler = cProfile.Profile()
    empty = b""
    profiler.enable()
    for _ in range(calls):
        len(empty)
    profiler.disable()
    table = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    own_s = sum(v[2] for k, v in table.items() if k[0] == "~" and "builtins.len" in k[2])
    return own_s / calls


def profile_stages(run: Callable[[], float]) -> list[StageTime]:
    """Profile ``run`` (which returns the virtual seconds it ran) and split its time."""
    per_call_s = profiler_cost_per_call_s()
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        virtual_s = run()
    finally:
        profiler.disable()
    stats = pstats.Stats(profiler)
    seconds = stage_seconds(stats)
    kernels = compiled_kernel_keys()
    compiled_s = stage_seconds(stats, lambda key: is_compiled(key, kernels), per_call_s)
    total = sum(seconds.values()) or 1.0
    order = [stage for stage, _ in STAGES] + [OTHER]
    return [
        StageTime(
            stage=stage,
            total_s=seconds.get(stage, 0.0),
            us_per_virtual_s=1e6 * seconds.get(stage, 0.0) / virtual_s,
            share=seconds.get(stage, 0.0) / total,
            compiled_us_per_virtual_s=1e6 * compiled_s.get(stage, 0.0) / virtual_s,
        )
        for stage in order
    ]
