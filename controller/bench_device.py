"""The device the controller benchmarks talk to: DBS-like limits, as the simulated device."""

from __future__ import annotations

from firmware_bridge.messages import ChannelInfo, DeviceInfo, DeviceLimits


def bench_device(n_channels: int, rate_hz: int, samples_per_frame: int = 10) -> DeviceInfo:
    return DeviceInfo(
        major=1,
        minor=0,
        device_id="BENCH",
        firmware_version="bench",
        sampling_rate_hz=rate_hz,
        samples_per_frame=samples_per_frame,
        heartbeat_interval_ms=250,
        watchdog_ms=1000,
        channels=tuple(ChannelInfo(f"ch{i}", 0.5, float(i), 0.0) for i in range(n_channels)),
        stim_channels=(0,),
        n_electrodes=n_channels,
        electrode_area_cm2=0.06,
        limits=DeviceLimits(12.7, 10, 450, 2.0, 255.0, 5.0, 3.0, 30.0),
    )
