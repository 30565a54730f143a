"""DEVICE_INFO well-formed and self-consistent (docs/protocol.md section 2)."""

from __future__ import annotations

from firmware_bridge.framing import MAX_PAYLOAD, PROTOCOL_MAJOR
from firmware_bridge.messages import MsgType, Status
from hil.catalog import case
from hil.context import CaseContext
from hil.probe import is_type

S2 = "2 DEVICE_INFO"


@case("DI-001", "DEVICE_INFO decodes exactly (no trailing bytes) and names major 1", S2)
async def well_formed(ctx: CaseContext) -> None:
    p = ctx.probe
    mark = p.mark()
    await p.send_hello()
    r = await p.wait_for(lambda x: x.msg_type == MsgType.DEVICE_INFO, 1.0, mark)
    ctx.check("DEVICE_INFO parses", r is not None and r.msg is not None)
    ctx.measure("major", ctx.info.major, "", PROTOCOL_MAJOR, PROTOCOL_MAJOR)
    if r is not None:
        ctx.measure("payload size", len(r.frame.payload), "B", 0, MAX_PAYLOAD)


@case(
    "DI-002",
    "DEVICE_INFO is self-consistent: limits ordered, indices in range, sizes fit",
    "2 DEVICE_INFO, size limits",
)
async def consistent(ctx: CaseContext) -> None:
    info = ctx.info
    lim = info.limits
    ctx.check("0 < max_amplitude_ma", lim.max_amplitude_ma > 0)
    ctx.check(
        "0 < min_pulse_width_us <= max_pulse_width_us",
        0 < lim.min_pulse_width_us <= lim.max_pulse_width_us,
    )
    ctx.check(
        "0 < min_frequency_hz <= max_frequency_hz", 0 < lim.min_frequency_hz <= lim.max_frequency_hz
    )
    ctx.check("max_ramp_rate_ma_per_s > 0", lim.max_ramp_rate_ma_per_s > 0)
    ctx.check(
        "charge limits > 0",
        lim.max_charge_per_phase_uc > 0 and lim.max_charge_density_uc_per_cm2 > 0,
    )
    ctx.check("electrode_area_cm2 > 0", info.electrode_area_cm2 > 0)
    ctx.check("n_electrodes >= n_channels", info.n_electrodes >= info.n_channels)
    ctx.check(
        "every stim_channel indexes STATUS's impedance list",
        all(k < info.n_electrodes for k in info.stim_channels),
    )
    ctx.check(
        "sampling_rate_hz and samples_per_frame > 0",
        info.sampling_rate_hz > 0 and info.samples_per_frame > 0,
    )
    ctx.measure(
        "n_channels x samples_per_frame",
        info.n_channels * info.samples_per_frame,
        "samples",
        1,
        2034,
    )
    ctx.check(
        "heartbeat_interval_ms < watchdog_ms", 0 < info.heartbeat_interval_ms < info.watchdog_ms
    )
    # STATUS must carry n_electrodes impedances.
    p = ctx.probe
    mark = p.mark()
    await p.send_hello()
    status = await p.wait_for(is_type(MsgType.STATUS), 1.5, mark)
    ctx.check(
        "STATUS lists n_electrodes impedances",
        status is not None
        and isinstance(status.msg, Status)
        and len(status.msg.impedance_ohm) == info.n_electrodes,
    )
