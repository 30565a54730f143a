"""Every NACK reason reachable from the link, answered as documented, changing nothing
(docs/protocol.md sections 2 and 4), and limits inclusive."""

from __future__ import annotations

import math
import struct
from dataclasses import replace

from firmware_bridge.messages import MsgType, NackReason, Status, StimSetting
from hil.cases.common import (
    ANSWER_WAIT_S,
    answer_time,
    check_unchanged,
    expect_answer,
)
from hil.catalog import case
from hil.context import CaseContext, Skip
from hil.probe import answers

S4 = "4 NACK reason codes"


async def _refused(ctx: CaseContext, name: str, setting: StimSetting, want: NackReason) -> None:
    p = ctx.probe
    before = await p.stim_state_now()
    mark = p.mark()
    cid, sent = await p.send_stim_set(setting)
    r = await p.wait_for(answers(cid, MsgType.STIM_SET), ANSWER_WAIT_S, mark)
    expect_answer(ctx, name, r, int(want))
    answer_time(ctx, name, sent, r)
    await check_unchanged(ctx, name, before)


@case("NK-001", "amplitude above max_amplitude_ma: NACK AMPLITUDE_RANGE, nothing changes", S4)
async def amplitude_high(ctx: CaseContext) -> None:
    lim = ctx.info.limits
    s = replace(
        ctx.on_setting(),
        amplitude_ma=lim.max_amplitude_ma * 1.01,
        pulse_width_us=lim.min_pulse_width_us,
    )
    await _refused(ctx, "over max amplitude", s, NackReason.AMPLITUDE_RANGE)


@case("NK-002", "negative amplitude: NACK AMPLITUDE_RANGE", S4)
async def amplitude_negative(ctx: CaseContext) -> None:
    s = replace(ctx.on_setting(), amplitude_ma=-0.1)
    await _refused(ctx, "negative amplitude", s, NackReason.AMPLITUDE_RANGE)


@case("NK-003", "pulse width outside its range: NACK PULSE_WIDTH_RANGE", S4)
async def pulse_width(ctx: CaseContext) -> None:
    lim = ctx.info.limits
    low = replace(ctx.on_setting(0.1), pulse_width_us=lim.min_pulse_width_us - 1)
    await _refused(ctx, "pulse width below min", low, NackReason.PULSE_WIDTH_RANGE)
    high = replace(ctx.on_setting(0.01), pulse_width_us=lim.max_pulse_width_us + 1)
    await _refused(ctx, "pulse width above max", high, NackReason.PULSE_WIDTH_RANGE)


@case("NK-004", "frequency outside its range: NACK FREQUENCY_RANGE", S4)
async def frequency(ctx: CaseContext) -> None:
    lim = ctx.info.limits
    low = replace(ctx.on_setting(), frequency_hz=lim.min_frequency_hz * 0.9)
    await _refused(ctx, "frequency below min", low, NackReason.FREQUENCY_RANGE)
    high = replace(ctx.on_setting(), frequency_hz=lim.max_frequency_hz * 1.1)
    await _refused(ctx, "frequency above max", high, NackReason.FREQUENCY_RANGE)


@case("NK-005", "negative ramp rate: NACK RAMP_RATE_RANGE (on and off commands)", S4)
async def ramp_rate(ctx: CaseContext) -> None:
    await _refused(
        ctx,
        "on, ramp -1",
        replace(ctx.on_setting(), ramp_rate_ma_per_s=-1.0),
        NackReason.RAMP_RATE_RANGE,
    )
    await _refused(
        ctx,
        "off, ramp -1",
        replace(ctx.off_setting(), ramp_rate_ma_per_s=-1.0),
        NackReason.RAMP_RATE_RANGE,
    )


def _charge_setting(ctx: CaseContext, charge_uc: float) -> StimSetting | None:
    """An on command of ``charge_uc`` per phase with every single field in range."""
    lim = ctx.info.limits
    for pw in (lim.max_pulse_width_us, (lim.min_pulse_width_us + lim.max_pulse_width_us) // 2):
        amp = charge_uc * 1000.0 / pw
        if 0 < amp <= lim.max_amplitude_ma:
            return replace(ctx.on_setting(), amplitude_ma=amp, pulse_width_us=pw)
    return None


@case("NK-006", "charge per phase above max_charge_per_phase_uc: NACK CHARGE_PER_PHASE", S4)
async def charge_per_phase(ctx: CaseContext) -> None:
    lim = ctx.info.limits
    s = _charge_setting(ctx, lim.max_charge_per_phase_uc * 1.02)
    if s is None:
        raise Skip("no in-range amplitude and pulse width exceed the charge limit")
    density = s.charge_per_phase_uc / ctx.info.electrode_area_cm2
    want = NackReason.CHARGE_PER_PHASE
    if density <= lim.max_charge_density_uc_per_cm2:
        ctx.note(f"density {density:.3g} µC/cm² within its limit")
    await _refused(ctx, "charge per phase", s, want)


@case("NK-007", "charge density above its limit (charge per phase within): NACK CHARGE_DENSITY", S4)
async def charge_density(ctx: CaseContext) -> None:
    lim = ctx.info.limits
    area = ctx.info.electrode_area_cm2
    q = lim.max_charge_density_uc_per_cm2 * area * 1.02
    if q > lim.max_charge_per_phase_uc:
        raise Skip("the charge-per-phase limit is reached before the density limit")
    s = _charge_setting(ctx, q)
    if s is None:
        raise Skip("no in-range setting exceeds the density limit")
    await _refused(ctx, "charge density", s, NackReason.CHARGE_DENSITY)


@case("NK-008", "NaN or infinity in an on command: NACK INVALID_VALUE", S4)
async def invalid_value(ctx: CaseContext) -> None:
    await _refused(
        ctx,
        "NaN amplitude",
        replace(ctx.on_setting(), amplitude_ma=math.nan),
        NackReason.INVALID_VALUE,
    )
    await _refused(
        ctx,
        "infinite frequency",
        replace(ctx.on_setting(), frequency_hz=math.inf),
        NackReason.INVALID_VALUE,
    )


@case("NK-009", "enabled neither 0 nor 1: NACK INVALID_ENABLED", "2 STIM_SET")
async def invalid_enabled(ctx: CaseContext) -> None:
    p = ctx.probe
    before = await p.stim_state_now()
    cid = p.new_id()
    s = ctx.on_setting()
    payload = struct.pack("<IBfHff", cid, 2, s.amplitude_ma, s.pulse_width_us, s.frequency_hz, 0.0)
    mark = p.mark()
    sent = await p.send(MsgType.STIM_SET, payload, sign=True)
    r = await p.wait_for(answers(cid, MsgType.STIM_SET), ANSWER_WAIT_S, mark)
    expect_answer(ctx, "enabled = 2", r, int(NackReason.INVALID_ENABLED))
    answer_time(ctx, "enabled = 2", sent, r)
    await check_unchanged(ctx, "enabled = 2", before)


@case("NK-010", "an on command while ESTOP is latched: NACK ESTOP_LATCHED", S4)
async def estop_latched(ctx: CaseContext) -> None:
    await ctx.probe.send_estop()
    await ctx.probe.quiet(0.1)
    await _refused(ctx, "on while latched", ctx.on_setting(), NackReason.ESTOP_LATCHED)


@case("NK-011", "several limits broken: the first reason of section 4's order wins", S4)
async def order(ctx: CaseContext) -> None:
    lim = ctx.info.limits
    both = replace(
        ctx.on_setting(),
        amplitude_ma=lim.max_amplitude_ma * 2,
        pulse_width_us=lim.max_pulse_width_us + 1,
    )
    await _refused(ctx, "amplitude and pulse width", both, NackReason.AMPLITUDE_RANGE)
    nan_and_ramp = replace(ctx.on_setting(), amplitude_ma=math.nan, ramp_rate_ma_per_s=-1.0)
    await _refused(ctx, "NaN and negative ramp", nan_and_ramp, NackReason.INVALID_VALUE)
    await ctx.probe.send_estop()
    await ctx.probe.quiet(0.1)
    over = replace(ctx.on_setting(), frequency_hz=lim.max_frequency_hz * 2)
    await _refused(ctx, "out of range while latched", over, NackReason.FREQUENCY_RANGE)


@case(
    "NK-012",
    "an on command while IMPEDANCE or BATTERY_EMPTY is active: NACK FAULT_ACTIVE",
    "3 Faults and the output",
)
async def fault_active(ctx: CaseContext) -> None:
    p = ctx.probe
    mark = p.mark()
    await p.send_hello()
    st = await p.wait_for(lambda r: isinstance(r.msg, Status), 1.0, mark)
    flags = st.msg.fault_flags if st is not None and isinstance(st.msg, Status) else 0
    if not flags & ((1 << 3) | (1 << 5)):
        raise Skip("the device reports no IMPEDANCE or BATTERY_EMPTY fault to test with")
    await _refused(ctx, "on with a forbidding fault", ctx.on_setting(), NackReason.FAULT_ACTIVE)


@case(
    "LM-001",
    "hard limits are inclusive: settings exactly at each limit are accepted",
    "4 How limits are compared",
)
async def inclusive(ctx: CaseContext) -> None:
    lim = ctx.info.limits
    area = ctx.info.electrode_area_cm2
    q_max = min(lim.max_charge_per_phase_uc, lim.max_charge_density_uc_per_cm2 * area)
    base = ctx.on_setting(0.1)
    amp_at_min_pw = min(lim.max_amplitude_ma, q_max * 1000.0 / lim.min_pulse_width_us)
    settings = {
        "max amplitude (or charge-limited)": replace(
            base, amplitude_ma=amp_at_min_pw, pulse_width_us=lim.min_pulse_width_us
        ),
        "min pulse width": replace(base, pulse_width_us=lim.min_pulse_width_us),
        "max pulse width": replace(
            base,
            amplitude_ma=min(0.1, q_max * 1000.0 / lim.max_pulse_width_us),
            pulse_width_us=lim.max_pulse_width_us,
        ),
        "min frequency": replace(base, frequency_hz=lim.min_frequency_hz),
        "max frequency": replace(base, frequency_hz=lim.max_frequency_hz),
        "charge exactly at its limit": replace(
            base,
            amplitude_ma=q_max * 1000.0 / lim.max_pulse_width_us,
            pulse_width_us=lim.max_pulse_width_us,
        ),
    }
    for name, s in settings.items():
        _, r = await ctx.probe.stim(s)
        expect_answer(ctx, name, r, 0)
        # Go back to 0 before the next one: each limit alone, never a big step.
        await ctx.probe.stim(ctx.off_setting())
        await ctx.probe.quiet(0.05)
    ctx.note("limits compared after float32 rounding, as docs/protocol.md section 4 says")
