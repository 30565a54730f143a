"""The rig can fail: each deliberately broken device fails its named cases, on a real pty."""

from __future__ import annotations

import pytest

from firmware_bridge.clock import MonotonicClock
from hil.api import run_cases
from hil.context import RigOptions
from hil.measurement import Verdict
from simulator.firmware import VirtualFirmware
from tests.hil_broken_devices import BROKEN_DEVICES, build
from tests.hil_support import served_on_pty


@pytest.mark.parametrize("variant", list(BROKEN_DEVICES), ids=lambda v: v.__name__)
async def test_each_broken_device_fails_its_named_cases(variant: type[VirtualFirmware]) -> None:
    cases = list(BROKEN_DEVICES[variant])
    async with served_on_pty(build(variant, MonotonicClock().now())) as url:
        results = await run_cases(RigOptions(url, iterations=20), cases)
    verdicts = {r.case.id: r.verdict for r in results}
    assert verdicts == dict.fromkeys(cases, Verdict.FAIL), {
        r.case.id: (r.verdict, r.message) for r in results
    }
    # Every teardown confirmed the output off, also on these devices.
    assert all(r.teardown in ("off", "estop") for r in results), [r.teardown for r in results]


async def test_the_correct_device_passes_the_cases_the_broken_ones_fail() -> None:
    cases = sorted({c for named in BROKEN_DEVICES.values() for c in named})
    async with served_on_pty(build(VirtualFirmware, MonotonicClock().now())) as url:
        results = await run_cases(RigOptions(url, iterations=20), cases)
    assert {r.case.id: r.verdict for r in results} == dict.fromkeys(cases, Verdict.PASS), {
        r.case.id: (r.verdict, r.message) for r in results if r.verdict is not Verdict.PASS
    }
