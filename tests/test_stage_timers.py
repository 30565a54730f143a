"""The in-loop stage timers of ``neurostim bench headless --profile``."""

from __future__ import annotations

import math

import pytest

from controller.config import ControllerConfig
from insilico.runner import SimSpec, run_sim
from insilico.stage_timers import (
    REST,
    StageTimers,
    TimedStage,
    loop_stages,
    time_stages,
    timer_cost_per_call_s,
)
from simulator.physiology.scenario import load_scenario


class _Tick:
    """A clock that moves only when told: every duration below is exact."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Inner:
    def __init__(self, tick: _Tick) -> None:
        self.tick = tick

    def work(self, seconds: float) -> str:
        self.tick.now += seconds
        return "inner"


class _Outer:
    def __init__(self, tick: _Tick, inner: _Inner) -> None:
        self.tick, self.inner = tick, inner

    def step(self) -> str:
        self.tick.now += 1.0
        self.inner.work(5.0)
        self.tick.now += 2.0
        self.inner.work(0.5)
        return "outer"

    def fail(self) -> None:
        self.tick.now += 4.0
        raise RuntimeError("boom")


def test_a_stage_keeps_only_its_own_time_not_the_timed_stages_it_calls() -> None:
    tick = _Tick()
    timers = StageTimers(
        (TimedStage("outer", _Outer, ("step", "fail")), TimedStage("inner", _Inner, ("work",))),
        clock=tick,
    )
    with timers.installed():
        outer = _Outer(tick, _Inner(tick))
        assert outer.step() == "outer"  # results pass through
        assert outer.inner.work(0.25) == "inner"  # called on its own: no outer stage
        with pytest.raises(RuntimeError):
            outer.fail()  # an error still ends the timing
    assert timers.seconds == {"outer": 1.0 + 2.0 + 4.0, "inner": 5.0 + 0.5 + 0.25}
    assert timers.calls == {"outer": 2, "inner": 3}
    assert timers.total_calls == 5
    rows = {r.stage: r for r in timers.rows(wall_s=20.0, virtual_s=10.0)}
    assert math.isclose(rows["outer"].us_per_virtual_s, 0.7e6)
    assert math.isclose(rows["inner"].us_per_call, 1e6 * 5.75 / 3)
    assert math.isclose(rows["inner"].calls_per_virtual_s, 0.3)
    assert math.isclose(rows[REST].us_per_virtual_s, 1e6 * (20.0 - 7.0 - 5.75) / 10.0)


def test_the_methods_are_put_back_as_they_were() -> None:
    before = {name: _Outer.__dict__[name] for name in ("step", "fail")}
    timers = StageTimers((TimedStage("outer", _Outer, ("step", "fail")),))
    with pytest.raises(KeyError), timers.installed():
        assert _Outer.__dict__["step"] is not before["step"]
        raise KeyError("leave early")
    assert {name: _Outer.__dict__[name] for name in ("step", "fail")} == before


def test_a_timed_call_costs_a_small_positive_amount() -> None:
    cost_s = timer_cost_per_call_s(20_000)
    assert 0.0 <= cost_s < 20e-6


def test_a_short_run_is_split_into_the_loops_stages_that_add_up_to_its_wall_time() -> None:
    scenario = load_scenario("default")
    run_sim(SimSpec(scenario, 5.0, ControllerConfig()))  # load the kernels outside the timing

    def run() -> float:
        return run_sim(SimSpec(scenario, 120.0, ControllerConfig())).virtual_s

    timed = time_stages(run)
    rows = {r.stage: r for r in timed.rows}
    assert [r.stage for r in timed.rows] == [s.stage for s in loop_stages()] + [REST]
    assert timed.virtual_s >= 120.0
    for stage in loop_stages():
        assert rows[stage.stage].us_per_virtual_s > 0.0, stage.stage
    assert rows[REST].us_per_virtual_s >= 0.0
    total_us = sum(r.us_per_virtual_s for r in timed.rows)
    assert math.isclose(total_us, 1e6 * timed.wall_s / timed.virtual_s, rel_tol=1e-9)
    # One feature push per SAMPLES frame (125 samples at 250 Hz), a detector update per
    # 0.5 s hop once the first 2 s window is full, a source read per 500-sample block.
    assert math.isclose(rows["features"].calls_per_virtual_s, 2.0, rel_tol=0.03)
    assert math.isclose(rows["detector"].calls_per_virtual_s, 2.0, rel_tol=0.03)
    assert math.isclose(rows["signal model and sensors"].calls_per_virtual_s, 0.5, rel_tol=0.03)
    assert timed.timer_us_per_virtual_s >= 0.0
    # Nothing stays timed after the run.
    assert all(
        not hasattr(s.owner.__dict__[m], "__wrapped__") for s in loop_stages() for m in s.methods
    )
