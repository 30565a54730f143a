"""The signing cases against a keyed simulated device on a pty: all pass with the key; a
device that ignores signatures fails them."""

from __future__ import annotations

import dataclasses

from firmware_bridge.clock import MonotonicClock
from hil.api import run_cases
from hil.context import RigOptions
from hil.measurement import Verdict
from simulator.firmware import FirmwareConfig, VirtualFirmware
from simulator.signals import NoiseSource
from tests.hil_support import served_on_pty

KEY = bytes(range(32))
SIGNING = ["SG-001", "SG-002", "SG-003", "SG-004", "SG-005"]


def _device(key: bytes | None) -> VirtualFirmware:
    config = dataclasses.replace(FirmwareConfig(seed=9), signing_key=key)
    return VirtualFirmware(NoiseSource(seed=9), config, MonotonicClock().now())


async def test_signing_cases_pass_against_a_keyed_device() -> None:
    async with served_on_pty(_device(KEY)) as url:
        results = await run_cases(RigOptions(url, key=KEY), [*SIGNING, "NK-001", "ES-003"])
    assert {r.case.id: r.verdict for r in results} == dict.fromkeys(
        [*SIGNING, "NK-001", "ES-003"], Verdict.PASS
    ), {r.case.id: r.message for r in results}


async def test_a_device_without_its_key_fails_the_auth_cases() -> None:
    async with served_on_pty(_device(None)) as url:
        results = await run_cases(RigOptions(url, key=KEY), ["SG-001", "SG-002", "SG-003"])
    assert all(r.verdict is Verdict.FAIL for r in results), [
        (r.case.id, r.verdict) for r in results
    ]


async def test_signing_cases_skip_without_a_key() -> None:
    async with served_on_pty(_device(None)) as url:
        results = await run_cases(RigOptions(url), ["SG-001"])
    assert results[0].verdict is Verdict.SKIP
