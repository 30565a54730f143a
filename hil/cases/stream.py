"""The sample stream, heartbeats and STATUS cadence (docs/protocol.md sections 2 and 3)."""

from __future__ import annotations

import itertools

import numpy as np

from firmware_bridge.messages import Heartbeat, MsgType, Samples, Status, StimState
from hil.cases.common import start_output
from hil.catalog import case
from hil.context import CaseContext
from hil.probe import Received

STREAM_S = 2.0


def _samples(frames: list[Received]) -> list[tuple[Received, Samples]]:
    return [(r, r.msg) for r in frames if isinstance(r.msg, Samples)]


@case(
    "SS-001",
    "SAMPLES are contiguous: no gap, no overlap, samples_per_frame per frame",
    "3 Sample stream",
)
async def contiguous(ctx: CaseContext) -> None:
    frames = _samples(await ctx.probe.quiet(STREAM_S))
    if not ctx.check("SAMPLES arrive", len(frames) >= 2):
        return
    gaps = overlaps = 0
    expected = None
    for _, s in frames:
        if expected is not None:
            delta = (s.first_index - expected) % (1 << 32)
            if delta >= 1 << 31:
                overlaps += 1
            elif delta:
                gaps += 1
        expected = (s.first_index + s.n_samples) % (1 << 32)
    ctx.measure("gaps", gaps, "", 0, 0)
    ctx.measure("overlaps", overlaps, "", 0, 0)
    odd = sum(s.n_samples != ctx.info.samples_per_frame for _, s in frames)
    ctx.measure("frames not of samples_per_frame", odd, "", 0, 0)


@case(
    "SS-002",
    "the sample rate matches sampling_rate_hz on the device clock and the host clock",
    "3 Sample stream",
)
async def rate(ctx: CaseContext) -> None:
    frames = _samples(await ctx.probe.quiet(STREAM_S))
    if not ctx.check("SAMPLES arrive", len(frames) >= 3):
        return
    s0 = frames[0][1]
    index = np.array([(s.first_index - s0.first_index) % (1 << 32) for _, s in frames], float)
    t0_us = frames[0][0].frame.timestamp_us
    device_s = np.array([((r.frame.timestamp_us - t0_us) % (1 << 48)) / 1e6 for r, _ in frames])
    host_s = np.array([r.t_s for r, _ in frames])
    fs = ctx.info.sampling_rate_hz
    # Least-squares slopes (samples per second): arrival jitter averages out.
    device_rate = float(np.polyfit(device_s, index, 1)[0])
    host_rate = float(np.polyfit(host_s - host_s[0], index, 1)[0])
    ctx.measure(
        "rate on the device clock",
        device_rate,
        "Hz",
        fs * 0.995,
        fs * 1.005,
        fs * 0.999,
        fs * 1.001,
    )
    # The host clock sees transport jitter at both ends: wider limits, drift reported.
    ctx.measure(
        "rate on the host clock", host_rate, "Hz", fs * 0.98, fs * 1.02, fs * 0.995, fs * 1.005
    )
    ctx.measure("device clock drift against host", (host_rate / device_rate - 1.0) * 1e6, "ppm")


@case(
    "SS-003",
    "the sample index runs outside a session too (from power-up, not from HELLO)",
    "2 SAMPLES",
)
async def index_runs(ctx: CaseContext) -> None:
    p = ctx.probe
    before = _samples(await p.quiet(0.2))
    await p.bye()
    pause_s = 0.8
    await p.quiet(pause_s)
    mark = p.mark()
    await p.handshake()
    first = await p.wait_for(lambda r: isinstance(r.msg, Samples), 1.0, mark)
    if not ctx.check("SAMPLES before and after", bool(before) and first is not None):
        return
    assert first is not None and isinstance(first.msg, Samples)
    r0, s0 = before[-1]
    elapsed = first.t_s - r0.t_s
    advanced = (first.msg.first_index - s0.first_index) % (1 << 32)
    expected = elapsed * ctx.info.sampling_rate_hz
    ctx.measure("index advance / elapsed x rate", advanced / expected, "", 0.8, 1.2, 0.9, 1.1)


@case(
    "HB-001",
    "the device sends HEARTBEAT every heartbeat_interval_ms, counter +1 each",
    "3 Heartbeats",
)
async def heartbeat_cadence(ctx: CaseContext) -> None:
    got = [r for r in await ctx.probe.quiet(STREAM_S) if isinstance(r.msg, Heartbeat)]
    beat_s = ctx.info.heartbeat_interval_ms / 1000.0
    if not ctx.check("heartbeats arrive", len(got) >= 3):
        return
    gaps = [(b.t_s - a.t_s) for a, b in itertools.pairwise(got)]
    ctx.measure(
        "longest heartbeat interval",
        max(gaps) * 1e3,
        "ms",
        0.0,
        1.5 * beat_s * 1e3,
        None,
        1.2 * beat_s * 1e3,
    )
    steps = {
        (b.msg.counter - a.msg.counter) % (1 << 32)  # type: ignore[union-attr]
        for a, b in itertools.pairwise(got)
    }
    ctx.check("counter +1 per heartbeat", steps == {1})


@case("HB-002", "heartbeat state: 1 streaming, 2 stimulating, 3 fault", "2 HEARTBEAT")
async def heartbeat_state(ctx: CaseContext) -> None:
    p = ctx.probe
    beat_s = ctx.info.heartbeat_interval_ms / 1000.0

    async def state() -> int | None:
        mark = p.mark()
        r = await p.wait_for(lambda x: isinstance(x.msg, Heartbeat), 2 * beat_s + 0.2, mark)
        return r.msg.state if r is not None else None  # type: ignore[union-attr]

    ctx.measure("state while streaming", (await state()) or -1, "", 1, 1)
    await start_output(ctx, 0.3)
    await p.quiet(0.05)
    ctx.measure("state while stimulating", (await state()) or -1, "", 2, 2)
    await p.send_estop()
    await p.quiet(0.05)
    ctx.measure("state with ESTOP latched", (await state()) or -1, "", 3, 3)


@case("ST-001", "STATUS arrives every 4 x heartbeat_interval_ms during a session", "2 STATUS")
async def status_cadence(ctx: CaseContext) -> None:
    got = [
        r
        for r in await ctx.probe.quiet(2.6 * ctx.info.heartbeat_interval_ms * 4 / 1000)
        if isinstance(r.msg, Status)
    ]
    period_ms = 4 * ctx.info.heartbeat_interval_ms
    if not ctx.check("STATUS arrives (at least 2)", len(got) >= 2):
        return
    gaps = [(b.t_s - a.t_s) * 1e3 for a, b in itertools.pairwise(got)]
    ctx.measure(
        "longest STATUS interval", max(gaps), "ms", 0.0, 1.25 * period_ms, None, 1.1 * period_ms
    )


@case("ST-002", "a change of fault flags is followed at once by FAULT then STATUS", "2 STATUS")
async def status_on_fault(ctx: CaseContext) -> None:
    p = ctx.probe
    mark = p.mark()
    sent = (await p.send_estop())[1]
    fault = await p.wait_for(lambda r: r.msg_type == MsgType.FAULT, 0.5, mark)
    status = await p.wait_for(
        lambda r: isinstance(r.msg, Status) and bool(r.msg.fault_flags & (1 << 2)), 0.5, mark
    )
    ctx.check("FAULT ESTOP raised", fault is not None)
    if ctx.check("STATUS with the ESTOP flag", status is not None) and status is not None:
        ctx.measure(
            "STATUS delay after the change", (status.t_s - sent) * 1e3, "ms", 0, 100, None, 50
        )
        if fault is not None:
            ctx.check("FAULT before STATUS", p.log.index(fault) < p.log.index(status))
    mark = p.mark()
    await p.estop_clear()
    status = await p.wait_for(
        lambda r: isinstance(r.msg, Status) and not r.msg.fault_flags & (1 << 2), 0.5, mark
    )
    ctx.check("STATUS without the flag after ESTOP_CLEAR", status is not None)


@case("ST-003", "STIM_STATE at least once per second while enabled", "2 STIM_STATE")
async def state_cadence(ctx: CaseContext) -> None:
    await start_output(ctx, 0.3)
    got = [r for r in await ctx.probe.quiet(2.3) if isinstance(r.msg, StimState)]
    times = [r.t_s for r in got]
    ctx.check("STIM_STATE arrives", len(times) >= 2)
    if len(times) >= 2:
        ctx.measure(
            "longest STIM_STATE interval",
            max(b - a for a, b in itertools.pairwise(times)) * 1e3,
            "ms",
            0,
            1100,
            None,
            1050,
        )
