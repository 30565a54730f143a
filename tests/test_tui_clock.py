"""``ScaledClock``, the time a console shares between a simulated device and its
controller: sleepers wake at their virtual deadline whatever the pace does meanwhile."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.clock import ScaledClock


class FakeWall:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_now_runs_at_the_rate_and_a_rate_change_keeps_the_past() -> None:
    wall = FakeWall()
    clock = ScaledClock(rate=2.0, start_s=10.0, wall=wall)
    assert clock.now() == 10.0
    wall.t += 3.0
    assert clock.now() == pytest.approx(16.0)
    clock.rate = 0.5
    assert clock.now() == pytest.approx(16.0)  # no jump at the change
    wall.t += 4.0
    assert clock.now() == pytest.approx(18.0)


def test_pause_holds_the_time_and_resume_goes_on_from_there() -> None:
    wall = FakeWall()
    clock = ScaledClock(wall=wall)
    clock.now()
    wall.t += 5.0
    clock.pause()
    wall.t += 100.0
    assert clock.now() == pytest.approx(5.0)
    clock.resume()
    wall.t += 1.0
    assert clock.now() == pytest.approx(6.0)


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ScaledClock(rate=0.0)
    clock = ScaledClock()
    with pytest.raises(ValueError):
        clock.rate = -1.0


@given(st.lists(st.floats(0.0, 50.0), min_size=1, max_size=8))
def test_a_jump_wakes_every_sleeper_in_deadline_order_at_its_deadline(
    deadlines: list[float],
) -> None:
    async def scenario() -> list[tuple[float, float]]:
        clock = ScaledClock()
        clock.pause()
        woke: list[tuple[float, float]] = []

        async def sleeper(deadline: float) -> None:
            await clock.sleep_until(deadline)
            woke.append((deadline, clock.now()))

        tasks = [asyncio.create_task(sleeper(d)) for d in deadlines]
        await asyncio.sleep(0)
        await clock.jump_to(60.0)
        await asyncio.gather(*tasks)
        assert clock.now() == 60.0 and clock.paused and not clock.jumping
        return woke

    woke = asyncio.run(scenario())
    assert [d for d, _ in woke] == sorted(deadlines)
    for deadline, at in woke:
        assert at == max(deadline, 0.0)  # woken exactly at its deadline, never later


async def test_a_paused_clock_wakes_nobody_and_a_sleeper_survives_pace_changes() -> None:
    clock = ScaledClock(rate=1000.0)
    clock.pause()
    start = clock.now()
    task = asyncio.create_task(clock.sleep_until(start + 2.0))
    await asyncio.sleep(0.01)
    assert not task.done()
    clock.rate = 5000.0
    clock.resume()
    clock.pause()
    await asyncio.sleep(0.01)
    assert not task.done()
    clock.resume()  # 2 virtual s at 5000x: under a millisecond
    await asyncio.wait_for(task, timeout=5.0)
    assert clock.now() >= start + 2.0


async def test_after_a_jump_the_clock_goes_on_at_its_rate() -> None:
    clock = ScaledClock(rate=1000.0)
    await clock.jump_to(500.0)
    assert not clock.jumping and clock.now() >= 500.0
    await clock.sleep(1.0)  # one virtual second at 1000x
    assert clock.now() >= 501.0


async def test_a_jump_cannot_go_back() -> None:
    clock = ScaledClock()
    clock.pause()
    await clock.jump_to(10.0)
    with pytest.raises(ValueError):
        clock.jump_to(5.0)
