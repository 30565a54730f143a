"""The per-stage profile of a headless run (``neurostim bench headless --profile``)."""

from __future__ import annotations

import numpy as np

from controller.config import ControllerConfig
from insilico.profile import (
    OTHER,
    STAGES,
    compiled_kernel_keys,
    is_compiled,
    profile_stages,
    profiler_cost_per_call_s,
    stage_of_file,
)
from insilico.runner import SimSpec, run_sim
from simulator.physiology.scenario import load_scenario


def test_files_map_to_their_stage() -> None:
    assert stage_of_file("/x/simulator/physiology/sensor_faults.py") == "sensor faults"
    assert stage_of_file("/x/simulator/physiology/spectral.py") == "signal model"
    assert stage_of_file("/x/simulator/firmware.py") == "firmware"
    assert stage_of_file("/x/firmware_bridge/framing.py") == "codec"
    assert stage_of_file("/x/firmware_bridge/session.py") == "sessions"
    assert stage_of_file("/x/firmware_bridge/lockstep.py") == "pump"
    assert stage_of_file("/x/controller/features/kernels.py") == "features"
    assert stage_of_file("/x/controller/detector/detector.py") == "detector"
    assert stage_of_file("/x/controller/core.py") == "core"
    assert stage_of_file("/usr/lib/python3/site-packages/numpy/core/numeric.py") is None
    assert stage_of_file("~") is None  # built-ins


def test_a_short_run_splits_into_every_stage_of_the_loop() -> None:
    scenario = load_scenario("faults")  # a sensor fault is active from 1 min
    # Long enough to reach the detector's steady state, whose kernels load from the cache
    # on first use: that load (llvmlite) is ~5 % of the profiled run, none of it the loop.
    run_sim(SimSpec(scenario, 60.0, ControllerConfig()))
    virtual: list[float] = []

    def run() -> float:
        virtual.append(run_sim(SimSpec(scenario, 120.0, ControllerConfig())).virtual_s)
        return virtual[-1]

    stages = profile_stages(run)
    by_name = {s.stage: s for s in stages}
    assert [s.stage for s in stages] == [name for name, _ in STAGES] + [OTHER]
    for name, _ in STAGES:
        assert by_name[name].total_s > 0.0, name
    assert np.isclose(sum(s.share for s in stages), 1.0)
    # Foreign code (numpy, the C codec) is charged to our callers, not left over.
    assert by_name[OTHER].share < 0.05
    assert all(np.isclose(s.us_per_virtual_s, 1e6 * s.total_s / virtual[0]) for s in stages)
    # Compiled work is part of each stage's time, and the kernels' stages have some.
    for s in stages:
        assert 0.0 <= s.compiled_us_per_virtual_s <= s.us_per_virtual_s, s.stage
    for name in ("signal model", "codec", "features", "detector"):
        assert by_name[name].compiled_us_per_virtual_s > 0.0, name
    assert sum(s.compiled_us_per_virtual_s for s in stages) < sum(
        s.us_per_virtual_s for s in stages
    )


def test_compiled_work_is_numba_kernels_and_numeric_c_calls() -> None:
    from controller.features import kernels

    event_lean = getattr(kernels.event_lean, "py_func", kernels.event_lean).__code__
    key = (event_lean.co_filename, event_lean.co_firstlineno, event_lean.co_name)
    found = compiled_kernel_keys()
    assert key in found  # numba reports a kernel's call under its Python function's code
    assert is_compiled(key, found)
    assert not is_compiled(("/x/controller/core.py", 10, "on_samples"), found)
    assert is_compiled(("~", 0, "<built-in method zlib.crc32>"), found)
    # the codec's CRC (ISA-L's isal_zlib) under the name cProfile gives it
    assert is_compiled(("~", 0, "<built-in method isal.isal_zlib.crc32>"), found)
    assert is_compiled(("~", 0, "<built-in method cobs.cobs._cobs_ext.encode>"), found)
    assert is_compiled(("~", 0, "<method 'pack' of '_struct.Struct' objects>"), found)
    assert is_compiled(("~", 0, "<method 'reduce' of 'numpy.ufunc' objects>"), found)
    assert not is_compiled(("~", 0, "<built-in method builtins.len>"), found)
    assert not is_compiled(("~", 0, "<method 'append' of 'list' objects>"), found)


def test_the_profilers_cost_per_call_is_measured() -> None:
    assert 0.0 < profiler_cost_per_call_s(20_000) < 10e-6
