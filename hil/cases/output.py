"""The output: ramp rate never exceeded (measured slope), the exact off command, pulse width
and rate at once, the charge counter consistent with the settings (docs/protocol.md 2)."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

from firmware_bridge.messages import MsgType, StimSet, StimSetting, StimState
from hil.cases.common import ANSWER_WAIT_S, expect_answer, start_output
from hil.catalog import case
from hil.context import CaseContext
from hil.probe import Received, answers

S2 = "2 STIM_SET"


def _states(frames: list[Received]) -> list[tuple[Received, StimState]]:
    return [(r, r.msg) for r in frames if isinstance(r.msg, StimState)]


def _slope_ma_per_s(states: list[tuple[Received, StimState]]) -> float:
    """Steepest amplitude slope between consecutive reports, on the device's clock."""
    steepest = 0.0
    for (ra, a), (rb, b) in itertools.pairwise(states):
        dt = ((rb.frame.timestamp_us - ra.frame.timestamp_us) % (1 << 48)) / 1e6
        d = abs(b.amplitude_ma - a.amplitude_ma)
        if d > 1e-6:
            steepest = max(steepest, math.inf if dt <= 0 else d / dt)
    return steepest


async def _ramp(ctx: CaseContext, setting: StimSetting, expect_rate: float) -> None:
    p = ctx.probe
    mark = p.mark()
    _, r = await p.stim(setting)
    if not expect_answer(ctx, "on command", r, 0):
        return
    end = await p.wait_state(
        lambda s: not s.ramping and abs(s.amplitude_ma - setting.amplitude_ma) < 1e-4,
        setting.amplitude_ma / expect_rate + 1.0,
        mark,
    )
    states = _states(p.since(mark))
    ctx.check("ramp end reported", end is not None)
    slope = _slope_ma_per_s(states)
    ctx.measure("steepest reported slope / allowed", slope / expect_rate, "", 0.0, 1.02, None, 1.0)
    if end is not None and states:
        first = states[0][0]
        ramp_s = ((end.frame.timestamp_us - first.frame.timestamp_us) % (1 << 48)) / 1e6
        ctx.measure(
            "ramp time / expected",
            ramp_s / (setting.amplitude_ma / expect_rate),
            "",
            0.98,
            1.5,
            None,
            1.2,
        )


@case("RP-001", "the amplitude slews at no more than max_ramp_rate_ma_per_s (ramp 0 = max)", S2)
async def ramp_max(ctx: CaseContext) -> None:
    lim = ctx.info.limits
    amp = min(1.0, lim.max_ramp_rate_ma_per_s * 0.25)
    await _ramp(ctx, ctx.on_setting(amp), lim.max_ramp_rate_ma_per_s)


@case("RP-002", "a slower requested ramp rate is honoured", S2)
async def ramp_requested(ctx: CaseContext) -> None:
    lim = ctx.info.limits
    rate = lim.max_ramp_rate_ma_per_s / 5
    amp = min(0.5, rate * 0.5)
    await _ramp(ctx, replace(ctx.on_setting(amp), ramp_rate_ma_per_s=rate), rate)


@case("RP-003", "pulse width and frequency change at once; the ACKed STIM_SET is reported", S2)
async def at_once(ctx: CaseContext) -> None:
    setting = await start_output(ctx, 0.2)
    lim = ctx.info.limits
    new = replace(
        setting,
        pulse_width_us=min(lim.max_pulse_width_us, setting.pulse_width_us + 10),
        frequency_hz=max(lim.min_frequency_hz, setting.frequency_hz - 10),
    )
    p = ctx.probe
    mark = p.mark()
    cid, r = await p.stim(new)
    expect_answer(ctx, "change", r, 0)
    s = await p.wait_state(lambda s: s.last_command_id == cid, 0.2, mark)
    ok = (
        s is not None
        and isinstance(s.msg, StimState)
        and s.msg.pulse_width_us == (new.pulse_width_us)
        and abs(s.msg.frequency_hz - new.frequency_hz) < 1e-3
    )
    ctx.check("first STIM_STATE shows the new pulse width and rate", ok)


@case(
    "RP-004",
    "the off command ramps to 0; at 0 mA STIM_STATE reports 0 µs and 0 Hz",
    "2 STIM_SET, the off command",
)
async def off_command(ctx: CaseContext) -> None:
    setting = await start_output(ctx, 0.3)
    p = ctx.probe
    mark = p.mark()
    _, r = await p.stim(ctx.off_setting())
    expect_answer(ctx, "off command", r, 0)
    end = await p.wait_state(
        lambda s: s.amplitude_ma == 0.0 and not s.ramping,
        ctx.ramp_s(setting.amplitude_ma) + 0.5,
        mark,
    )
    ok = end is not None and isinstance(end.msg, StimState)
    ctx.check("ramped to 0 mA", ok)
    if ok:
        assert end is not None and isinstance(end.msg, StimState)
        ctx.check(
            "0 µs and 0 Hz at 0 mA",
            end.msg.pulse_width_us == 0 and end.msg.frequency_hz == 0.0 and not end.msg.enabled,
        )
        states = _states(p.since(mark))
        ctx.measure(
            "steepest ramp-down slope / max",
            _slope_ma_per_s(states) / ctx.info.limits.max_ramp_rate_ma_per_s,
            "",
            0,
            1.02,
            None,
            1.0,
        )


@case(
    "RP-005",
    "an off command's amplitude, pulse width and rate are ignored, NaN included",
    "2 STIM_SET, the off command",
)
async def off_ignores_fields(ctx: CaseContext) -> None:
    p = ctx.probe
    for name, s in {
        "NaN fields": StimSetting(False, math.nan, 0, math.nan, 0.0),
        "1.0-style 0 µs 0 Hz": StimSetting(False, 0.0, 0, 0.0, 0.0),
        "out-of-range amplitude": StimSetting(False, 1e6, 65535, 1e6, 0.0),
    }.items():
        cid = p.new_id()
        mark = p.mark()
        await p.send(MsgType.STIM_SET, StimSet(cid, s).encode(), sign=True)
        expect_answer(
            ctx, name, await p.wait_for(answers(cid, MsgType.STIM_SET), ANSWER_WAIT_S, mark), 0
        )


@case("RP-006", "an off command is accepted while ESTOP is latched", "2 STIM_SET, the off command")
async def off_while_latched(ctx: CaseContext) -> None:
    await ctx.probe.send_estop()
    await ctx.probe.quiet(0.1)
    _, r = await ctx.probe.stim(ctx.off_setting())
    expect_answer(ctx, "off while latched", r, 0)


async def _report(ctx: CaseContext) -> Received | None:
    """A STIM_STATE right now: the one a (harmless) handshake brings."""
    p = ctx.probe
    mark = p.mark()
    await p.send_hello()
    return await p.wait_for(lambda x: isinstance(x.msg, StimState), 1.0, mark)


@case(
    "CH-001", "delivered_charge_uc grows by amplitude x pulse width x rate x time", "2 STIM_STATE"
)
async def charge(ctx: CaseContext) -> None:
    setting = await start_output(ctx, 0.5)
    r0 = await _report(ctx)
    await ctx.probe.quiet(1.2)
    r1 = await _report(ctx)
    if not ctx.check("two reports", r0 is not None and r1 is not None):
        return
    assert r0 is not None and r1 is not None
    assert isinstance(r0.msg, StimState) and isinstance(r1.msg, StimState)
    dt = ((r1.frame.timestamp_us - r0.frame.timestamp_us) % (1 << 48)) / 1e6
    expected = setting.amplitude_ma * setting.pulse_width_us * 1e-3 * setting.frequency_hz * dt
    got = r1.msg.delivered_charge_uc - r0.msg.delivered_charge_uc
    ctx.measure(
        "charge delivered / expected",
        got / expected if expected else math.nan,
        "",
        0.97,
        1.03,
        0.99,
        1.01,
    )
