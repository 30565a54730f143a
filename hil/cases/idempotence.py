"""Command ids: a (type, id) already answered gets the remembered answer and is not applied
again; ESTOP never consults the memory; every answer within 50 ms (docs/protocol.md 3)."""

from __future__ import annotations

from firmware_bridge.framing import FLAG_RETRANSMIT
from firmware_bridge.messages import Estop, MsgType, StimSet, StimState
from hil.cases.common import (
    ANSWER_LIMIT_MS,
    ANSWER_WAIT_S,
    expect_answer,
    reason_of,
)
from hil.catalog import case
from hil.context import CaseContext
from hil.probe import answers

S3 = "3 Commands, retries and idempotence"


@case("ID-001", "a duplicate (RETRANSMIT, same id, other payload) is answered, not applied", S3)
async def duplicate(ctx: CaseContext) -> None:
    p = ctx.probe
    mark = p.mark()
    cid, r = await p.stim(ctx.on_setting(0.25))
    expect_answer(ctx, "original", r, 0)
    await p.wait_state(
        lambda s: not s.ramping and s.last_command_id == cid, ctx.ramp_s(0.25) + 0.5, mark
    )
    mark = p.mark()
    await p.send(
        MsgType.STIM_SET, StimSet(cid, ctx.on_setting(0.35)).encode(), FLAG_RETRANSMIT, sign=True
    )
    dup = await p.wait_for(answers(cid, MsgType.STIM_SET), ANSWER_WAIT_S, mark)
    expect_answer(ctx, "duplicate", dup, 0)
    await p.quiet(0.15)
    applied = p.since(
        mark, lambda x: isinstance(x.msg, StimState) and x.msg.target_amplitude_ma > 0.3
    )
    ctx.measure("STIM_STATE heading to the duplicate's amplitude", len(applied), "", 0, 0)
    after = await p.stim_state_now()
    ctx.check(
        "output still the original's",
        after is not None and abs(after.target_amplitude_ma - 0.25) < 1e-4,
    )


@case("ID-002", "an old id gets its remembered answer unchanged (a NACK stays a NACK)", S3)
async def old_id(ctx: CaseContext) -> None:
    p = ctx.probe
    lim = ctx.info.limits
    bad = ctx.on_setting()
    bad = type(bad)(True, lim.max_amplitude_ma * 2, bad.pulse_width_us, bad.frequency_hz, 0.0)
    cid, r = await p.stim(bad)
    expect_answer(ctx, "first", r, 1)
    for _ in range(5):  # other commands in between
        await p.stim(ctx.off_setting())
    mark = p.mark()
    await p.send(MsgType.STIM_SET, StimSet(cid, ctx.off_setting()).encode(), sign=True)
    again = await p.wait_for(answers(cid, MsgType.STIM_SET), ANSWER_WAIT_S, mark)
    expect_answer(ctx, "old id with a valid payload", again, 1)


@case("ID-003", "the memory is keyed by type: an ESTOP with a STIM_SET's id is executed", S3)
async def keyed_by_type(ctx: CaseContext) -> None:
    p = ctx.probe
    setting = ctx.on_setting(0.3)
    cid, r = await p.stim(setting)
    expect_answer(ctx, "STIM_SET", r, 0)
    await p.quiet(ctx.ramp_s(0.3) + 0.05)
    mark = p.mark()
    await p.send(MsgType.ESTOP, Estop(cid).encode())
    ack = await p.wait_for(answers(cid, MsgType.ESTOP), ANSWER_WAIT_S, mark)
    ctx.check("ACK of type ESTOP", ack is not None and reason_of(ack) == 0)
    s = await p.wait_state(lambda s: s.estop_latched and s.amplitude_ma == 0.0, 0.3, mark)
    ctx.check("executed: latched at 0 mA", s is not None)


@case("ID-004", "a repeated ESTOP id is executed every time (ESTOP never uses the memory)", S3)
async def estop_repeat(ctx: CaseContext) -> None:
    p = ctx.probe
    cid, _ = await p.send_estop()
    await p.quiet(0.1)
    await p.estop_clear()
    mark = p.mark()
    await p.send(MsgType.ESTOP, Estop(cid).encode(), FLAG_RETRANSMIT)
    s = await p.wait_state(lambda s: s.estop_latched, 0.3, mark)
    ctx.check("latched again by the repeated id", s is not None)


@case("ID-005", "every command is answered within 50 ms", S3)
async def answer_bound(ctx: CaseContext) -> None:
    p = ctx.probe
    times = []
    for i in range(20):
        setting = ctx.on_setting(0.1) if i % 2 else ctx.off_setting()
        mark = p.mark()
        cid, sent = await p.send_stim_set(setting)
        r = await p.wait_for(answers(cid, MsgType.STIM_SET), ANSWER_WAIT_S, mark)
        times.append(float("inf") if r is None else (r.t_s - sent) * 1e3)
    ctx.measure("slowest answer", max(times), "ms", 0, ANSWER_LIMIT_MS, None, 0.6 * ANSWER_LIMIT_MS)
