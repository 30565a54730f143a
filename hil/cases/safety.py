"""Watchdog, ESTOP and BYE (docs/protocol.md sections 2 and 3)."""

from __future__ import annotations

from firmware_bridge.messages import Fault, FaultCode, MsgType, StimState
from hil.cases.common import answer_time, expect_answer, start_output
from hil.catalog import case
from hil.context import CaseContext
from hil.probe import Predicate, Received, answers

SW = "3 Heartbeats and the watchdog"
SE = "2 ESTOP"


def _fault(code: FaultCode, active: bool) -> Predicate:
    return lambda r: isinstance(r.msg, Fault) and r.msg.code == code and r.msg.active == active


async def silent_until_zero(
    ctx: CaseContext, amplitude_ma: float
) -> tuple[float, Received | None, Received | None]:
    """Stop talking; returns (silence start, WATCHDOG fault, STIM_STATE at 0 mA)."""
    p = ctx.probe
    wd_s = ctx.info.watchdog_ms / 1000.0
    p.keepalive = False
    await p.quiet(0.01)
    mark = p.mark()
    silent_from = p.last_sent_s if p.last_sent_s is not None else p.clock.now()
    limit_s = wd_s + ctx.ramp_s(amplitude_ma) + 0.5
    zero = await p.wait_state(lambda s: s.amplitude_ma == 0.0 and not s.ramping, limit_s, mark)
    fault = await p.wait_for(_fault(FaultCode.WATCHDOG, True), 0.2, mark)
    return silent_from, fault, zero


@case(
    "WD-001",
    "a silent controller: output ramps to 0 within watchdog_ms + ramp time, "
    "FAULT WATCHDOG, watchdog bit",
    SW,
    timeout_s=15.0,
)
async def watchdog_ramp(ctx: CaseContext) -> None:
    setting = await start_output(ctx, 0.5)
    silent_from, fault, zero = await silent_until_zero(ctx, setting.amplitude_ma)
    wd_ms = float(ctx.info.watchdog_ms)
    budget_ms = wd_ms + ctx.ramp_s(setting.amplitude_ma) * 1e3
    if ctx.check("output reached 0 mA", zero is not None) and zero is not None:
        ctx.measure(
            "silence to 0 mA",
            (zero.t_s - silent_from) * 1e3,
            "ms",
            wd_ms * 0.9,
            budget_ms + 100,
            None,
            budget_ms + 50,
        )
        assert isinstance(zero.msg, StimState)
        ctx.check("watchdog bit set", zero.msg.watchdog_tripped)
    if ctx.check("FAULT WATCHDOG raised", fault is not None) and fault is not None:
        ctx.measure(
            "silence to FAULT WATCHDOG",
            (fault.t_s - silent_from) * 1e3,
            "ms",
            wd_ms * 0.95,
            wd_ms + 100,
            None,
            wd_ms + 50,
        )


@case("WD-002", "the watchdog runs while the output is off", SW, timeout_s=15.0)
async def watchdog_off(ctx: CaseContext) -> None:
    p = ctx.probe
    p.keepalive = False
    mark = p.mark()
    fault = await p.wait_for(
        _fault(FaultCode.WATCHDOG, True), ctx.info.watchdog_ms / 1000.0 + 0.5, mark
    )
    ctx.check("FAULT WATCHDOG with the output off", fault is not None)


@case(
    "WD-003",
    "heard again: fault and bit cleared, output stays off until a new STIM_SET",
    SW,
    timeout_s=15.0,
)
async def watchdog_clears(ctx: CaseContext) -> None:
    setting = await start_output(ctx, 0.3)
    await silent_until_zero(ctx, setting.amplitude_ma)
    p = ctx.probe
    mark = p.mark()
    p.keepalive = True
    await p.send(MsgType.HEARTBEAT, b"\x01\x00\x00\x00\x00")
    cleared = await p.wait_for(_fault(FaultCode.WATCHDOG, False), 0.5, mark)
    ctx.check("FAULT WATCHDOG cleared", cleared is not None)
    s = await p.wait_state(lambda s: not s.watchdog_tripped, 0.5, mark)
    ctx.check("watchdog bit cleared", s is not None)
    await p.quiet(0.3)
    state = await p.stim_state_now()
    ctx.check(
        "output still off", state is not None and state.amplitude_ma == 0.0 and not state.enabled
    )


@case(
    "WD-004",
    "BYE: ACK, the session ends, no watchdog fault in the silence after it",
    "2 BYE",
    timeout_s=15.0,
)
async def bye(ctx: CaseContext) -> None:
    p = ctx.probe
    mark = p.mark()
    r = await p.bye()
    expect_answer(ctx, "BYE", r, 0)
    p.keepalive = False
    await p.quiet(ctx.info.watchdog_ms / 1000.0 + 0.4)
    ctx.measure(
        "FAULT WATCHDOG after BYE", len(p.since(mark, _fault(FaultCode.WATCHDOG, True))), "", 0, 0
    )


@case("WD-005", "BYE with the output still on ramps it to 0", "2 BYE")
async def bye_ramps(ctx: CaseContext) -> None:
    setting = await start_output(ctx, 0.3)
    p = ctx.probe
    mark = p.mark()
    await p.bye()
    s = await p.wait_state(
        lambda s: s.amplitude_ma == 0.0, ctx.ramp_s(setting.amplitude_ma) + 0.5, mark
    )
    ctx.check("ramped to 0 after BYE", s is not None)


@case("ES-001", "ESTOP: 0 mA at once (no ramp), ACK, STIM_STATE latched, FAULT ESTOP, STATUS", SE)
async def estop_now(ctx: CaseContext) -> None:
    await start_output(ctx, 0.5)
    p = ctx.probe
    mark = p.mark()
    cid, sent = await p.send_estop()
    ack = await p.wait_for(answers(cid, MsgType.ESTOP), 0.5, mark)
    answer_time(ctx, "ESTOP", sent, ack)
    s = await p.wait_state(lambda s: s.estop_latched, 0.3, mark)
    ok = s is not None and isinstance(s.msg, StimState)
    ctx.check("STIM_STATE with the ESTOP bit", ok)
    if ok:
        assert s is not None and isinstance(s.msg, StimState)
        ctx.measure("amplitude in that STIM_STATE", s.msg.amplitude_ma, "mA", 0.0, 0.0)
        ctx.measure("ESTOP to 0 mA reported", (s.t_s - sent) * 1e3, "ms", 0, 50, None, 30)
    ctx.check(
        "FAULT ESTOP raised", await p.wait_for(_fault(FaultCode.ESTOP, True), 0.3, mark) is not None
    )


@case("ES-002", "the ESTOP latch survives HELLO and BYE; on commands get ESTOP_LATCHED", SE)
async def estop_latch(ctx: CaseContext) -> None:
    p = ctx.probe
    await p.send_estop()
    await p.quiet(0.1)
    _, state = await p.handshake()
    ctx.check("latched after HELLO", state is not None and state.estop_latched)
    await p.bye()
    _, state = await p.handshake()
    ctx.check("latched after BYE and HELLO", state is not None and state.estop_latched)
    _, r = await p.stim(ctx.on_setting())
    expect_answer(ctx, "on command", r, 8)


@case("ES-003", "ESTOP_CLEAR alone clears the latch: ACK, FAULT cleared, output stays off", SE)
async def estop_clear(ctx: CaseContext) -> None:
    p = ctx.probe
    await p.send_estop()
    await p.quiet(0.1)
    mark = p.mark()
    r = await p.estop_clear()
    expect_answer(ctx, "ESTOP_CLEAR", r, 0)
    ctx.check(
        "FAULT ESTOP cleared",
        await p.wait_for(_fault(FaultCode.ESTOP, False), 0.3, mark) is not None,
    )
    s = await p.wait_state(lambda s: not s.estop_latched, 0.3, mark)
    ctx.check(
        "STIM_STATE unlatched, output off",
        s is not None
        and isinstance(s.msg, StimState)
        and s.msg.amplitude_ma == 0.0
        and not s.msg.enabled,
    )
    r = await p.estop_clear()
    expect_answer(ctx, "ESTOP_CLEAR with nothing latched", r, 0)


@case("ES-004", "ESTOP is honoured outside a session (after BYE) too", SE)
async def estop_outside(ctx: CaseContext) -> None:
    p = ctx.probe
    await p.bye()
    await p.quiet(0.05)
    mark = p.mark()
    cid, _ = await p.send_estop()
    ctx.check("ACK", await p.wait_for(answers(cid, MsgType.ESTOP), 0.5, mark) is not None)
    ctx.check(
        "STIM_STATE latched", await p.wait_state(lambda s: s.estop_latched, 0.5, mark) is not None
    )
