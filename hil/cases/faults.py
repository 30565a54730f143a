"""The fault suite: garbage bursts and corrupted frames during stimulation, a silent
controller, the link closed and reopened, a controller killed with SIGKILL mid-stimulation,
a reconnect in the middle of a ramp."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time

from firmware_bridge.messages import FaultCode, MsgType, StimSet, StimState
from hil.cases.common import ANSWER_WAIT_S, expect_answer, reason_of, start_output
from hil.cases.robustness import _garbage
from hil.cases.safety import _fault, silent_until_zero
from hil.catalog import case
from hil.context import CaseContext, Skip
from hil.probe import answers


def _needs_same_device(ctx: CaseContext) -> None:
    if not ctx.reopen_keeps_device:
        raise Skip("every sim:// open is a new simulated device: nothing to reconnect to")


@case(
    "FT-001",
    "garbage bursts during stimulation: every command answered, output kept",
    "1.1 Framing: COBS",
    suite="faults",
)
async def garbage_bursts(ctx: CaseContext) -> None:
    setting = await start_output(ctx, 0.4)
    p = ctx.probe
    answered = 0
    n = 20
    for _ in range(n):
        burst = _garbage(ctx, ctx.rng.randrange(10, 600))
        cid = p.new_id()
        frame = p.encode(MsgType.STIM_SET, StimSet(cid, setting).encode(), sign=True)
        mark = p.mark()
        await p.send_raw(burst + b"\x00" + frame)
        r = await p.wait_for(answers(cid, MsgType.STIM_SET), ANSWER_WAIT_S, mark)
        answered += reason_of(r) == 0
    ctx.measure("commands answered after a burst", answered, f"of {n}", n, n)
    state = await p.stim_state_now()
    ctx.check(
        "output as set",
        state is not None
        and state.enabled
        and abs(state.amplitude_ma - setting.amplitude_ma) < 1e-4,
    )


@case("FT-002", "corrupted frames during stimulation are never acted on", "1.3 CRC", suite="faults")
async def corrupted(ctx: CaseContext) -> None:
    setting = await start_output(ctx, 0.4)
    p = ctx.probe
    acted = 0
    n = 30
    for _ in range(n):
        cid = p.new_id()
        wire = bytearray(
            p.encode(MsgType.STIM_SET, StimSet(cid, ctx.off_setting()).encode(), sign=True)
        )
        i = ctx.rng.randrange(0, len(wire) - 1)
        bit = 1 << ctx.rng.randrange(8)
        if wire[i] ^ bit == 0:  # keep the frame one frame: never create a delimiter
            bit = 1 if bit != 1 else 2
        wire[i] ^= bit
        mark = p.mark()
        await p.send_raw(bytes(wire))
        acted += await p.wait_for(answers(cid, MsgType.STIM_SET), 0.05, mark) is not None
    await p.send_raw(b"\x00")
    ctx.measure("corrupted off commands acted on", acted, f"of {n}", 0, 0)
    state = await p.stim_state_now()
    ctx.check(
        "output still on",
        state is not None
        and state.enabled
        and abs(state.amplitude_ma - setting.amplitude_ma) < 1e-4,
    )


@case(
    "FT-003",
    "a controller that goes silent mid-stimulation: ramp to 0 within watchdog_ms + ramp time",
    "3 Heartbeats and the watchdog",
    suite="faults",
    timeout_s=15.0,
)
async def silent(ctx: CaseContext) -> None:
    setting = await start_output(ctx, 0.6)
    silent_from, fault, zero = await silent_until_zero(ctx, setting.amplitude_ma)
    budget_ms = ctx.info.watchdog_ms + ctx.ramp_s(setting.amplitude_ma) * 1e3
    ctx.measure(
        "silence to 0 mA",
        float("inf") if zero is None else (zero.t_s - silent_from) * 1e3,
        "ms",
        0,
        budget_ms + 100,
        None,
        budget_ms + 50,
    )
    ctx.check("FAULT WATCHDOG", fault is not None)


@case(
    "FT-004",
    "the link closed and reopened: the device answers, output as left",
    "3 Handshake, step 3",
    suite="faults",
)
async def reopen(ctx: CaseContext) -> None:
    _needs_same_device(ctx)
    setting = await start_output(ctx, 0.3)
    ctx.probe = await ctx.reopen()
    _, state = await ctx.probe.handshake()
    ctx.check(
        "output kept across the reopen (within the watchdog)",
        state is not None
        and state.enabled
        and abs(state.amplitude_ma - setting.amplitude_ma) < 1e-4,
    )
    _, r = await ctx.probe.stim(ctx.off_setting())
    expect_answer(ctx, "off after the reopen", r, 0)


@case(
    "FT-005",
    "a controller killed with SIGKILL mid-stimulation: the device ramps to 0 "
    "within watchdog_ms + ramp time",
    "3 Heartbeats and the watchdog",
    suite="faults",
    timeout_s=20.0,
)
async def sigkill(ctx: CaseContext) -> None:
    _needs_same_device(ctx)
    if ctx.options.url.startswith("sim:"):
        raise Skip("sim:// lives in the rig's own process")
    setting = ctx.on_setting(0.6)
    await ctx.probe.close()  # the port is the child's while it lives
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hil.killable",
        ctx.options.url,
        str(setting.amplitude_ma),
        str(setting.pulse_width_us),
        str(setting.frequency_hz),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 8.0)
        if not ctx.check("child controller stimulating", line.strip() == b"STIMULATING"):
            return
        killed_at = time.monotonic()
        os.kill(child.pid, signal.SIGKILL)
        await child.wait()
    finally:
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await child.wait()
    p = ctx.probe = await ctx.reopen()  # listen only: any frame we sent would feed the watchdog
    p.keepalive = False
    budget_s = ctx.info.watchdog_ms / 1000.0 + ctx.ramp_s(setting.amplitude_ma)
    zero = await p.wait_state(
        lambda s: s.amplitude_ma == 0.0 and not s.ramping, budget_s + 1.0, p.mark()
    )
    fault = next((r for r in p.log if _fault(FaultCode.WATCHDOG, True)(r)), None)
    # The probe's clock is the monotonic clock ``killed_at`` was read from.
    kill_to_zero_ms = float("inf") if zero is None else (zero.t_s - killed_at) * 1e3
    ctx.measure(
        "SIGKILL to 0 mA", kill_to_zero_ms, "ms", 0, budget_s * 1e3 + 150, None, budget_s * 1e3 + 75
    )
    ctx.check("FAULT WATCHDOG seen", fault is not None)


@case(
    "FT-006",
    "a reconnect in the middle of a ramp: the ramp goes on to its target",
    "3 Handshake, step 3",
    suite="faults",
)
async def reconnect_mid_ramp(ctx: CaseContext) -> None:
    _needs_same_device(ctx)
    lim = ctx.info.limits
    rate = lim.max_ramp_rate_ma_per_s / 10
    amp = min(0.5, rate * 0.8)
    setting = ctx.on_setting(amp)
    setting = type(setting)(
        True, setting.amplitude_ma, setting.pulse_width_us, setting.frequency_hz, rate
    )
    _, r = await ctx.probe.stim(setting)
    expect_answer(ctx, "slow ramp", r, 0)
    await ctx.probe.quiet(0.2)
    p = ctx.probe = await ctx.reopen()
    _, state = await p.handshake()
    ctx.check(
        "still ramping after the reconnect",
        state is not None and state.ramping and 0 < state.amplitude_ma < setting.amplitude_ma,
    )
    end = await p.wait_state(
        lambda s: not s.ramping and abs(s.amplitude_ma - amp) < 1e-4, amp / rate + 1.0
    )
    ctx.check("ramp reached its target", end is not None)
    if end is not None and isinstance(end.msg, StimState):
        ctx.check("no watchdog trip", not end.msg.watchdog_tripped)
