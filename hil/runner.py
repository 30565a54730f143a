"""Runs cases one after the other on one device: a fresh session before each, a safe
teardown after each (also on failure, timeout or interruption), results reported as each
case ends so an interrupted run still leaves its reports."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from firmware_bridge.clock import MonotonicClock
from firmware_bridge.errors import LinkClosed, ProtocolMismatch
from firmware_bridge.messages import DeviceInfo, HelloReject
from firmware_bridge.transports.registry import open_link
from hil.catalog import Case
from hil.context import CaseContext, RigOptions, Skip
from hil.measurement import Measurement, Verdict, worst
from hil.probe import Probe
from hil.safety import fresh_session, make_safe

TEARDOWN_TIMEOUT_S = 5.0


@dataclass
class CaseResult:
    case: Case
    verdict: Verdict
    measurements: list[Measurement]
    duration_s: float
    message: str = ""
    teardown: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class RunInfo:
    url: str
    seed: int
    info: DeviceInfo | None = None
    started_unix_s: float = field(default_factory=time.time)


class Rig:
    """Holds the link to the device across cases; ``reopen`` closes and opens it again."""

    def __init__(self, options: RigOptions) -> None:
        self.options = options
        self.clock = MonotonicClock()
        self.probe: Probe | None = None
        self.info: DeviceInfo | None = None

    async def open(self) -> DeviceInfo:
        link = await open_link(self.options.url)
        self.probe = Probe(link, self.clock, self.options.key)
        await self.probe.__aenter__()
        try:
            self.info, _ = await self.probe.handshake()
        except LinkClosed:
            reject = next((r.msg for r in self.probe.log if isinstance(r.msg, HelloReject)), None)
            if reject is not None:
                raise ProtocolMismatch(
                    f"the device speaks {reject.major}.{reject.minor}: {reject.text}"
                ) from None
            raise
        return self.info

    async def reopen(self) -> Probe:
        if self.probe is not None:
            await self.probe.close()
        link = await open_link(self.options.url)
        self.probe = Probe(link, self.clock, self.options.key)
        await self.probe.__aenter__()
        return self.probe

    @property
    def reopen_keeps_device(self) -> bool:
        """Each sim:// open starts a new simulated device: reopening it is not a reconnect."""
        return not self.options.url.startswith("sim:")

    async def close(self) -> None:
        if self.probe is not None:
            await self.probe.close()


async def run_case(rig: Rig, case: Case) -> CaseResult:
    assert rig.probe is not None and rig.info is not None
    started = time.monotonic()
    rng = random.Random(f"{rig.options.seed}:{case.id}")
    ctx = CaseContext(
        rig.probe, rig.info, rig.options, rig.reopen, rig.reopen_keeps_device, rng=rng
    )
    verdict: Verdict | None = None
    message = ""
    try:
        if case.needs_key and rig.options.key is None:
            raise Skip("needs a signing key (--key-file)")
        await asyncio.wait_for(_setup_and_run(rig, case, ctx), case.timeout_s)
    except Skip as exc:
        verdict, message = Verdict.SKIP, str(exc)
    except TimeoutError:
        verdict, message = Verdict.ERROR, f"timed out after {case.timeout_s:g} s"
    except asyncio.CancelledError:
        teardown = await _teardown(rig)
        ctx.measurements.append(Measurement("interrupted", float("nan"), ""))
        raise _Interrupted(
            CaseResult(
                case,
                Verdict.ERROR,
                ctx.measurements,
                time.monotonic() - started,
                "interrupted",
                teardown,
                ctx.notes,
            )
        ) from None
    except (LinkClosed, OSError) as exc:
        verdict, message = Verdict.ERROR, f"link: {exc}"
    except Exception as exc:  # a case's own bug must not stop the run or the teardown
        verdict, message = Verdict.ERROR, f"{type(exc).__name__}: {exc}"
    teardown = await _teardown(rig)
    if verdict is None:
        verdict = worst([m.verdict for m in ctx.measurements])
        failed = [m for m in ctx.measurements if m.verdict is Verdict.FAIL]
        message = "; ".join(
            f"{m.name} = {m.value:g} {m.unit} not in {m.limits_text()}" for m in failed
        )
    return CaseResult(
        case, verdict, ctx.measurements, time.monotonic() - started, message, teardown, ctx.notes
    )


class _Interrupted(Exception):
    def __init__(self, result: CaseResult) -> None:
        super().__init__("interrupted")
        self.result = result


async def _setup_and_run(rig: Rig, case: Case, ctx: CaseContext) -> None:
    assert rig.probe is not None
    await fresh_session(rig.probe)
    await case.fn(ctx)


async def _teardown(rig: Rig) -> str:
    """Shielded from cancellation: an interrupted rig still stops the output."""

    async def safe() -> str:
        probe = rig.probe
        if probe is None:
            return "no link"
        if probe.closed is not None:
            with contextlib.suppress(LinkClosed, OSError):
                probe = await rig.reopen()
        return await make_safe(probe, TEARDOWN_TIMEOUT_S)

    task = asyncio.ensure_future(safe())
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        return await task


async def run_all(
    rig: Rig,
    cases: list[Case],
    on_result: Callable[[CaseResult], None],
    on_start: Callable[[int, Case], None] = lambda i, c: None,
    abort_early: bool = False,
) -> tuple[list[CaseResult], bool]:
    """Run ``cases``; returns the results and whether the run was interrupted."""
    results: list[CaseResult] = []
    for i, case in enumerate(cases):
        on_start(i, case)
        try:
            result = await run_case(rig, case)
        except _Interrupted as stop:
            results.append(stop.result)
            on_result(stop.result)
            return results, True
        results.append(result)
        on_result(result)
        if abort_early and not result.verdict.ok:
            break
    return results, False
