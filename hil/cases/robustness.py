"""Framing robustness: unknown types and malformed payloads skipped, resync after garbage,
empty frames and oversize input, CRC errors counted and not acted on (docs/protocol.md 1-2)."""

from __future__ import annotations

import itertools

from firmware_bridge.framing import MAX_ENCODED
from firmware_bridge.messages import MsgType, StimSet
from hil.cases.common import ANSWER_WAIT_S, expect_answer
from hil.catalog import case
from hil.context import CaseContext
from hil.probe import answers

S1 = "1.1 Framing: COBS"


def _garbage(ctx: CaseContext, n: int) -> bytes:
    """Seeded random bytes without 0x00 (so they never end a frame by accident)."""
    return bytes(ctx.rng.randrange(1, 256) for _ in range(n))


async def _still_answers(ctx: CaseContext, name: str, prefix: bytes) -> None:
    """Send ``prefix`` then, glued to it, a valid off command: it must be answered."""
    p = ctx.probe
    cid = p.new_id()
    frame = p.encode(MsgType.STIM_SET, StimSet(cid, ctx.off_setting()).encode(), sign=True)
    mark = p.mark()
    await p.send_raw(prefix + frame)
    r = await p.wait_for(answers(cid, MsgType.STIM_SET), ANSWER_WAIT_S, mark)
    expect_answer(ctx, f"command after {name}", r, 0)


@case("RB-001", "a frame of an unknown message type is skipped; the session goes on", "2 Messages")
async def unknown_type(ctx: CaseContext) -> None:
    p = ctx.probe
    unknown = p.encode(0x7E, b"\x01\x02\x03")
    await _still_answers(ctx, "an unknown type", unknown)


@case(
    "RB-002", "a payload of the wrong length is skipped (no answer, nothing applied)", "2 Messages"
)
async def malformed(ctx: CaseContext) -> None:
    p = ctx.probe
    cid = p.new_id()
    payload = StimSet(cid, ctx.on_setting()).encode()[:-1]
    mark = p.mark()
    await p.send(MsgType.STIM_SET, payload, sign=True)
    r = await p.wait_for(answers(cid, MsgType.STIM_SET), 0.3, mark)
    ctx.check("no answer to an 18-byte STIM_SET", r is None)
    state = await p.stim_state_now()
    ctx.check("not applied", state is not None and state.last_command_id != cid)
    await _still_answers(ctx, "a malformed frame", b"")


@case("RB-003", "after garbage the first complete frame after the next 0x00 is decoded", S1)
async def garbage(ctx: CaseContext) -> None:
    await _still_answers(ctx, "300 garbage bytes", _garbage(ctx, 300) + b"\x00")


@case("RB-004", "empty frames (lone 0x00) are ignored", S1)
async def empty(ctx: CaseContext) -> None:
    await _still_answers(ctx, "empty frames", b"\x00" * 20)


@case("RB-005", "oversize input (no delimiter for 4114+ bytes) is discarded, then resync", S1)
async def oversize(ctx: CaseContext) -> None:
    await _still_answers(
        ctx, "5000 bytes without a delimiter", _garbage(ctx, MAX_ENCODED + 900) + b"\x00"
    )


@case("RB-006", "a frame with a wrong CRC is dropped: not answered, not applied", "1.3 CRC")
async def bad_crc(ctx: CaseContext) -> None:
    p = ctx.probe
    cid = p.new_id()
    good = p.encode(MsgType.STIM_SET, StimSet(cid, ctx.on_setting()).encode(), sign=True)
    # Flip one bit of the (COBS-encoded) CRC: a non-zero byte stays non-zero when the flipped
    # bit is not its only one; pick a byte with two bits set or more.
    body = bytearray(good[:-1])
    pos = next(i for i in range(len(body) - 1, 0, -1) if bin(body[i]).count("1") >= 2)
    body[pos] ^= body[pos] & -body[pos]  # clear its lowest set bit
    mark = p.mark()
    await p.send_raw(bytes(body) + b"\x00")
    r = await p.wait_for(answers(cid, MsgType.STIM_SET), 0.3, mark)
    ctx.check("no answer", r is None)
    state = await p.stim_state_now()
    ctx.check("not applied", state is not None and state.last_command_id != cid)


@case(
    "RB-007",
    "the device's own frames carry correct CRCs and consecutive seq numbers",
    "1.2 Header, 1.3 CRC",
)
async def device_frames(ctx: CaseContext) -> None:
    p = ctx.probe
    before = p.decoder.stats.crc_errors + p.decoder.stats.cobs_errors
    mark = p.mark()
    await p.quiet(2.0)
    got = p.since(mark)
    bad = p.decoder.stats.crc_errors + p.decoder.stats.cobs_errors - before
    ctx.measure("CRC/COBS errors in 2 s of device frames", bad, "frames", 0, 0)
    skipped = sum((b.frame.seq - a.frame.seq - 1) % 65536 for a, b in itertools.pairwise(got))
    ctx.measure("device frames missing by seq", skipped, "frames", 0, 0)
