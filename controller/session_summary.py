"""A controller session against any device URL: handshake, heartbeats, sample intake, summary.

This is the minimal session of ``neurostim run``: it proves the link and the
device (what it is, what arrives, what is lost) without running the closed loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict, dataclass, field

from firmware_bridge.clock import Clock
from firmware_bridge.connection import DeviceConnection
from firmware_bridge.events import (
    Connected,
    FaultReceived,
    PeerLost,
    SamplesReceived,
    StatusReceived,
    StimStateReceived,
)
from firmware_bridge.messages import DeviceInfo
from firmware_bridge.session import ControllerSession
from firmware_bridge.transports.base import LinkClosed
from firmware_bridge.url import open_link


@dataclass
class SessionSummary:
    device_url: str
    duration_s: float = 0.0
    device: dict[str, object] = field(default_factory=dict)
    connects: int = 0
    peer_lost: int = 0
    frames_rx: int = 0
    frames_tx: int = 0
    frames_lost: int = 0
    sample_frames: int = 0
    samples: int = 0
    sample_gaps: int = 0
    samples_missing: int = 0
    sample_duplicates: int = 0
    crc_errors: int = 0
    cobs_errors: int = 0
    oversize_frames: int = 0
    unknown_type: int = 0
    malformed: int = 0
    faults: list[str] = field(default_factory=list)
    last_battery_pct: int | None = None
    last_stim_amplitude_ma: float | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _f32(value: float) -> float:
    """Drop the float32 tail (12.699999809 -> 12.7) of values that crossed the wire."""
    return float(f"{value:.7g}")


def describe_device(info: DeviceInfo) -> dict[str, object]:
    lim = info.limits
    return {
        "device_id": info.device_id,
        "firmware_version": info.firmware_version,
        "protocol": f"{info.major}.{info.minor}",
        "channels": info.n_channels,
        "sampling_rate_hz": info.sampling_rate_hz,
        "samples_per_frame": info.samples_per_frame,
        "labels": list(info.labels),
        "scale_uv_per_count": [c.scale_uv_per_count for c in info.channels],
        "stim_channels": list(info.stim_channels),
        "electrode_area_cm2": _f32(info.electrode_area_cm2),
        "max_amplitude_ma": _f32(lim.max_amplitude_ma),
        "pulse_width_us": [lim.min_pulse_width_us, lim.max_pulse_width_us],
        "frequency_hz": [_f32(lim.min_frequency_hz), _f32(lim.max_frequency_hz)],
        "max_ramp_rate_ma_per_s": _f32(lim.max_ramp_rate_ma_per_s),
        "max_charge_per_phase_uc": _f32(lim.max_charge_per_phase_uc),
        "max_charge_density_uc_per_cm2": _f32(lim.max_charge_density_uc_per_cm2),
    }


async def run_session(
    url: str, duration_s: float, clock: Clock, stop: asyncio.Event | None = None
) -> SessionSummary:
    """Connect to ``url``, stream for ``duration_s`` (re-handshaking after a loss), summarise.

    Raises DeviceURLError, LinkClosed, DeviceUnreachable or ProtocolMismatch when the
    device cannot be reached at all.
    """
    stop = stop or asyncio.Event()
    summary = SessionSummary(device_url=url)
    link = await open_link(url)
    session = ControllerSession(client_name="neurostim run")
    start = clock.now()
    async with DeviceConnection(link, clock, session) as conn:
        info = await conn.connect()
        summary.device = describe_device(info)

        async def consume() -> None:
            while True:
                event = await conn.next_event()
                if isinstance(event, SamplesReceived):
                    continue
                if isinstance(event, StatusReceived):
                    summary.last_battery_pct = event.status.battery_pct
                elif isinstance(event, StimStateReceived):
                    summary.last_stim_amplitude_ma = event.state.amplitude_ma
                elif isinstance(event, FaultReceived):
                    f = event.fault
                    summary.faults.append(f"{f.code_name} {'raised' if f.active else 'cleared'}")
                elif isinstance(event, PeerLost):
                    summary.peer_lost += 1
                    await conn.start_handshake()
                elif isinstance(event, Connected):
                    summary.connects += 1

        consumer = asyncio.create_task(consume())
        stopper = asyncio.create_task(stop.wait())
        timer = asyncio.create_task(clock.sleep_until(start + duration_s))
        try:
            await asyncio.wait({consumer, stopper, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (consumer, stopper, timer):
                task.cancel()
            for task in (consumer, stopper, timer):
                with contextlib.suppress(asyncio.CancelledError, LinkClosed):
                    await task
        summary.duration_s = clock.now() - start
    st = session.stats
    summary.frames_rx = st.frames_rx
    summary.frames_tx = st.frames_tx
    summary.frames_lost = st.frames_lost
    summary.sample_frames = st.sample_frames_rx
    summary.samples = st.samples_rx
    summary.sample_gaps = st.sample_gaps
    summary.samples_missing = st.samples_missing
    summary.sample_duplicates = st.sample_duplicates
    summary.crc_errors = st.crc_errors
    summary.cobs_errors = st.decoder.cobs_errors
    summary.oversize_frames = st.decoder.oversize
    summary.unknown_type = st.unknown_type
    summary.malformed = st.malformed
    return summary
