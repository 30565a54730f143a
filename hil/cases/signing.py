"""Signing (docs/protocol.md 1.4), run when a key is given: AUTH, REPLAY, the order of the
checks, ESTOP and HELLO never gated."""

from __future__ import annotations

from firmware_bridge.framing import FLAG_RETRANSMIT
from firmware_bridge.messages import MsgType, StimSet
from hil.cases.common import ANSWER_WAIT_S, expect_answer, reason_of
from hil.catalog import case
from hil.context import CaseContext
from hil.probe import answers

S14 = "1.4 Signing"


async def _send(
    ctx: CaseContext,
    cid: int,
    sign: bool,
    flags: int = 0,
    timestamp_us: int | None = None,
    key: bytes | None = None,
) -> int | None:
    p = ctx.probe
    saved = p.key
    if key is not None:
        p.key = key
    try:
        mark = p.mark()
        await p.send(
            MsgType.STIM_SET,
            StimSet(cid, ctx.off_setting()).encode(),
            flags,
            sign=sign,
            timestamp_us=timestamp_us,
        )
    finally:
        p.key = saved
    r = await p.wait_for(answers(cid, MsgType.STIM_SET), ANSWER_WAIT_S, mark)
    return reason_of(r)


def _measure(ctx: CaseContext, name: str, got: int | None, want: int) -> None:
    ctx.measure(f"{name} answer", -1 if got is None else got, "code", want, want)


@case("SG-001", "an unsigned STIM_SET gets NACK AUTH, not remembered", S14, needs_key=True)
async def unsigned(ctx: CaseContext) -> None:
    cid = ctx.probe.new_id()
    _measure(ctx, "unsigned", await _send(ctx, cid, sign=False), 11)
    _measure(ctx, "then signed, same id", await _send(ctx, cid, sign=True), 0)


@case("SG-002", "a wrong tag gets NACK AUTH", S14, needs_key=True)
async def wrong_tag(ctx: CaseContext) -> None:
    cid = ctx.probe.new_id()
    _measure(ctx, "wrong key", await _send(ctx, cid, sign=True, key=b"\x55" * 32), 11)


@case(
    "SG-003",
    "a signed command not newer than the replay reference gets NACK REPLAY",
    S14,
    needs_key=True,
)
async def replay(ctx: CaseContext) -> None:
    p = ctx.probe
    _measure(ctx, "fresh", await _send(ctx, p.new_id(), sign=True), 0)
    old_us = max(0, p._last_signed_us - 1_000_000)
    _measure(
        ctx, "an older timestamp", await _send(ctx, p.new_id(), sign=True, timestamp_us=old_us), 12
    )


@case("SG-004", "a retransmission signed anew gets the remembered answer", S14, needs_key=True)
async def retransmission(ctx: CaseContext) -> None:
    cid = ctx.probe.new_id()
    _measure(ctx, "first", await _send(ctx, cid, sign=True), 0)
    _measure(ctx, "retransmission", await _send(ctx, cid, sign=True, flags=FLAG_RETRANSMIT), 0)


@case(
    "SG-005",
    "ESTOP unsigned and an unsigned HELLO are honoured by a keyed device",
    S14,
    needs_key=True,
)
async def never_gated(ctx: CaseContext) -> None:
    p = ctx.probe
    mark = p.mark()
    cid, _ = await p.send_estop()
    ctx.check(
        "unsigned ESTOP ACKed",
        await p.wait_for(answers(cid, MsgType.ESTOP), ANSWER_WAIT_S, mark) is not None,
    )
    info, _ = await p.handshake()
    ctx.check("unsigned HELLO answered", info is not None)
    expect_answer(ctx, "signed ESTOP_CLEAR", await p.estop_clear(), 0)
