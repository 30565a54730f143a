"""Run the rig from Python (tests, notebooks) in the running event loop."""

from __future__ import annotations

from hil.catalog import select
from hil.context import RigOptions
from hil.runner import CaseResult, Rig, run_all


async def run_cases(
    options: RigOptions, case_ids: list[str], suites: list[str] | None = None
) -> list[CaseResult]:
    """Open the device, run the cases (``case_ids``, or ``suites``), close; the results."""
    rig = Rig(options)
    try:
        await rig.open()
        results, _ = await run_all(rig, select(suites or [], case_ids), lambda r: None)
        return results
    finally:
        await rig.close()
