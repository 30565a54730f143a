"""Handshake and version negotiation (docs/protocol.md sections 1.2 and 3)."""

from __future__ import annotations

from firmware_bridge.framing import PROTOCOL_MAJOR
from firmware_bridge.messages import (
    DeviceInfo,
    EstopClear,
    Hello,
    HelloReject,
    MsgType,
    StimSet,
)
from hil.cases.common import ANSWER_WAIT_S, expect_answer, start_output
from hil.catalog import case
from hil.context import CaseContext
from hil.probe import Received, answers, is_type

S3 = "3 Handshake"


async def _hello_answer(
    ctx: CaseContext, major: int, minor: int, header_version: int = 1
) -> Received | None:
    p = ctx.probe
    mark = p.mark()
    await p.send(
        MsgType.HELLO, Hello(major, minor, "neurostim-hil").encode(), version=header_version
    )
    return await p.wait_for(
        lambda r: isinstance(r.msg, DeviceInfo | HelloReject), ANSWER_WAIT_S * 2, mark
    )


@case("HS-001", "a HELLO of another major version gets HELLO_REJECT reason 1", S3)
async def other_major_rejected(ctx: CaseContext) -> None:
    r = await _hello_answer(ctx, PROTOCOL_MAJOR + 1, 0)
    ok = r is not None and isinstance(r.msg, HelloReject) and r.msg.reason == 1
    ctx.check("HELLO_REJECT with reason 1", ok)
    r0 = await _hello_answer(ctx, 0, 9)
    ctx.check("major 0 rejected too", r0 is not None and isinstance(r0.msg, HelloReject))


@case("HS-002", "an older minor version (1.0) is accepted with DEVICE_INFO", S3)
async def older_minor(ctx: CaseContext) -> None:
    r = await _hello_answer(ctx, PROTOCOL_MAJOR, 0)
    ctx.check("DEVICE_INFO", r is not None and isinstance(r.msg, DeviceInfo))


@case("HS-003", "a newer minor version (1.200) is accepted with DEVICE_INFO", S3)
async def newer_minor(ctx: CaseContext) -> None:
    r = await _hello_answer(ctx, PROTOCOL_MAJOR, 200)
    ctx.check("DEVICE_INFO", r is not None and isinstance(r.msg, DeviceInfo))


@case("HS-004", "DEVICE_INFO is followed at once by STIM_STATE, then STATUS", S3)
async def state_after_info(ctx: CaseContext) -> None:
    p = ctx.probe
    mark = p.mark()
    await p.send_hello()
    info = await p.wait_for(is_type(MsgType.DEVICE_INFO), ANSWER_WAIT_S * 2, mark)
    if not ctx.check("DEVICE_INFO", info is not None):
        return
    assert info is not None
    after = p.log.index(info) + 1
    state = await p.wait_for(is_type(MsgType.STIM_STATE), 0.3, after)
    status = await p.wait_for(is_type(MsgType.STATUS), 0.3, after)
    ctx.check("STIM_STATE after DEVICE_INFO", state is not None)
    ctx.check("STATUS after DEVICE_INFO", status is not None)
    if state is not None and status is not None:
        ctx.check("STIM_STATE before STATUS", p.log.index(state) < p.log.index(status))
        ctx.measure(
            "STATUS delay after DEVICE_INFO", (status.t_s - info.t_s) * 1e3, "ms", 0.0, 50.0
        )


@case("HS-005", "outside a session (after BYE) a device streams nothing", "3 Handshake, step 4")
async def silent_outside_session(ctx: CaseContext) -> None:
    p = ctx.probe
    r = await p.bye()
    if not expect_answer(ctx, "BYE", r, 0):
        return
    await p.quiet(0.1)  # frames already on their way
    beat_s = ctx.info.heartbeat_interval_ms / 1000.0
    got = await p.quiet(
        max(2.5 * beat_s, 4 * ctx.info.samples_per_frame / ctx.info.sampling_rate_hz)
    )
    ctx.measure(
        "SAMPLES outside a session", sum(r.msg_type == MsgType.SAMPLES for r in got), "frames", 0, 0
    )
    ctx.measure(
        "HEARTBEAT outside a session",
        sum(r.msg_type == MsgType.HEARTBEAT for r in got),
        "frames",
        0,
        0,
    )


@case(
    "HS-006",
    "STIM_SET and ESTOP_CLEAR outside a session get NACK NOT_READY, not remembered",
    "3 Handshake, step 4",
)
async def not_ready(ctx: CaseContext) -> None:
    p = ctx.probe
    await p.bye()
    cid = p.new_id()
    mark = p.mark()
    await p.send(MsgType.STIM_SET, StimSet(cid, ctx.on_setting()).encode(), sign=True)
    r = await p.wait_for(answers(cid, MsgType.STIM_SET), ANSWER_WAIT_S, mark)
    expect_answer(ctx, "STIM_SET before HELLO", r, 7)
    mark = p.mark()
    clear_id = p.new_id()
    await p.send(MsgType.ESTOP_CLEAR, EstopClear(clear_id).encode(), sign=True)
    r = await p.wait_for(answers(clear_id, MsgType.ESTOP_CLEAR), ANSWER_WAIT_S, mark)
    expect_answer(ctx, "ESTOP_CLEAR before HELLO", r, 7)
    await p.handshake()
    # HELLO clears the memory anyway; the same id must now be judged afresh (an off command).
    mark = p.mark()
    await p.send(MsgType.STIM_SET, StimSet(cid, ctx.off_setting()).encode(), sign=True)
    r = await p.wait_for(answers(cid, MsgType.STIM_SET), ANSWER_WAIT_S, mark)
    expect_answer(ctx, "same id in a session", r, 0)


@case(
    "HS-007",
    "a HELLO of another major mid-session is rejected and the session goes on",
    "3 Handshake, step 3",
)
async def other_major_mid_session(ctx: CaseContext) -> None:
    r = await _hello_answer(ctx, PROTOCOL_MAJOR + 1, 0)
    ctx.check("HELLO_REJECT", r is not None and isinstance(r.msg, HelloReject))
    got = await ctx.probe.quiet(0.3)
    ctx.measure(
        "SAMPLES frames in the next 0.3 s",
        sum(x.msg_type == MsgType.SAMPLES for x in got),
        "frames",
        1,
        None,
    )
    _, ans = await ctx.probe.stim(ctx.off_setting())
    expect_answer(ctx, "a command after it", ans, 0)


@case(
    "HS-008",
    "a new HELLO resets the command-id memory: a used id is applied again",
    "3 Handshake, step 3",
)
async def hello_resets_memory(ctx: CaseContext) -> None:
    p = ctx.probe
    cid, r = await p.stim(ctx.off_setting())
    expect_answer(ctx, "first use", r, 0)
    await p.handshake()
    mark = p.mark()
    setting = ctx.on_setting(0.3)
    await p.send(MsgType.STIM_SET, StimSet(cid, setting).encode(), sign=True)
    r = await p.wait_for(answers(cid, MsgType.STIM_SET), ANSWER_WAIT_S, mark)
    expect_answer(ctx, "same id after HELLO", r, 0)
    s = await p.wait_state(lambda s: s.last_command_id == cid and s.enabled, 0.5, mark)
    ctx.check("applied (STIM_STATE shows it)", s is not None)


@case("HS-009", "a HELLO changes neither the output nor the ESTOP latch", "3 Handshake, step 3")
async def hello_keeps_output(ctx: CaseContext) -> None:
    setting = await start_output(ctx, 0.4)
    _, state = await ctx.probe.handshake()
    ctx.check(
        "output still on after HELLO",
        state is not None
        and state.enabled
        and abs(state.amplitude_ma - setting.amplitude_ma) < 1e-4,
    )
    p = ctx.probe
    await p.send_estop()
    await p.quiet(0.1)
    _, state = await p.handshake()
    ctx.check("latch survives HELLO", state is not None and state.estop_latched)


@case("HS-010", "a frame whose header version is another major is ignored", "1.2 Header")
async def wrong_header_version(ctx: CaseContext) -> None:
    p = ctx.probe
    cid = p.new_id()
    mark = p.mark()
    await p.send(
        MsgType.STIM_SET,
        StimSet(cid, ctx.on_setting()).encode(),
        version=PROTOCOL_MAJOR + 1,
        sign=True,
    )
    r = await p.wait_for(answers(cid, MsgType.STIM_SET), 0.3, mark)
    ctx.check("no answer to a STIM_SET of header version 2", r is None)
    state = await p.stim_state_now()
    ctx.check("not applied", state is not None and state.last_command_id != cid)


@case("HS-011", "a HELLO is decided by its payload major, whatever the header says", "1.2 Header")
async def hello_by_payload(ctx: CaseContext) -> None:
    r = await _hello_answer(ctx, PROTOCOL_MAJOR, 1, header_version=PROTOCOL_MAJOR + 1)
    ctx.check(
        "DEVICE_INFO to HELLO major 1 in a version-2 header",
        r is not None and isinstance(r.msg, DeviceInfo),
    )
    r = await _hello_answer(ctx, PROTOCOL_MAJOR + 1, 0, header_version=PROTOCOL_MAJOR)
    ctx.check(
        "HELLO_REJECT to HELLO major 2 in a version-1 header",
        r is not None and isinstance(r.msg, HelloReject),
    )
