"""A readable description of a device from its DEVICE_INFO (for summaries and reports)."""

from __future__ import annotations

from firmware_bridge.messages import DeviceInfo


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
