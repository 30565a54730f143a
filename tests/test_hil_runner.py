"""The runner's guarantees on the embedded device: a case that overruns its timeout is an
ERROR, and its teardown still stops the output; a case's own exception is an ERROR too."""

from __future__ import annotations

import asyncio

from firmware_bridge.transports.registry import transports
from hil.cases.common import start_output
from hil.catalog import Case
from hil.context import CaseContext, RigOptions
from hil.measurement import Verdict
from hil.runner import Rig, run_case
from simulator.embedded import open_embedded_url


async def _stimulate_then_hang(ctx: CaseContext) -> None:
    await start_output(ctx, 0.5)
    await asyncio.sleep(3600)


async def _raise(ctx: CaseContext) -> None:
    await start_output(ctx, 0.2)
    raise RuntimeError("a bug in the case")


async def _run(fn: object, timeout_s: float) -> tuple[Verdict, str, str, float]:
    case = Case("XX-001", "test case", "-", "conformance", fn, timeout_s)  # type: ignore[arg-type]
    with transports.registered("sim", open_embedded_url):
        rig = Rig(RigOptions("sim://noise?seed=1"))
        await rig.open()
        try:
            result = await run_case(rig, case)
            assert rig.probe is not None
            _, state = await rig.probe.handshake()
            assert state is not None
            return result.verdict, result.message, result.teardown, state.amplitude_ma
        finally:
            await rig.close()


async def test_a_timed_out_case_is_an_error_and_its_teardown_stops_the_output() -> None:
    verdict, message, teardown, amplitude_ma = await _run(_stimulate_then_hang, 1.0)
    assert verdict is Verdict.ERROR and "timed out" in message
    assert teardown == "off" and amplitude_ma == 0.0


async def test_an_exception_in_a_case_is_an_error_and_the_output_stops() -> None:
    verdict, message, teardown, amplitude_ma = await _run(_raise, 5.0)
    assert verdict is Verdict.ERROR and "a bug in the case" in message
    assert teardown == "off" and amplitude_ma == 0.0
