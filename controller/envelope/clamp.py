"""Fit one requested setting into the effective envelope by clamping, naming each rule.

Clamping is used where it is safe: a smaller amplitude, a pulse width or rate moved to
the nearest allowed value, a slower ramp. A value that is not a number cannot be
clamped safely and is refused. Values are rounded to float32 on the safe side, because
STIM_SET carries them as float32 (docs/protocol.md) and the device checks the rounded
value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from controller.envelope.decision import Clamp, Rule
from controller.envelope.limits import EffectiveEnvelope, shannon_k
from firmware_bridge.messages import StimSetting

_F32_TINY = float(np.nextafter(np.float32(0.0), np.float32(1.0)))


@dataclass(frozen=True)
class ClampResult:
    setting: StimSetting | None
    clamps: list[Clamp] = field(default_factory=list)
    refused: Rule | None = None
    detail: str = ""


def _f32_within(value: float, low: float, high: float) -> float | None:
    """The float32 nearest ``value`` that lies in [low, high], or None if none does."""
    candidate = np.float32(min(max(value, low), high))
    if float(candidate) > high:
        candidate = np.nextafter(candidate, np.float32(-np.inf))
    if float(candidate) < low:
        candidate = np.nextafter(candidate, np.float32(np.inf))
    result = float(candidate)
    return result if low <= result <= high else None


def _charge_ok(amplitude_ma: float, pulse_width_us: int, eff: EffectiveEnvelope) -> bool:
    """The same arithmetic as ``within_envelope`` and the device (amplitude × pw / 1000)."""
    charge_uc = amplitude_ma * pulse_width_us * 1e-3
    return (
        charge_uc <= eff.max_charge_per_phase_uc
        and charge_uc / eff.electrode_area_cm2 <= eff.max_charge_density_uc_per_cm2
        and shannon_k(charge_uc, eff.electrode_area_cm2) <= eff.shannon_k_max
    )


def _ramp(requested: float, limit: float, clamps: list[Clamp]) -> float:
    """Rate in (0, limit]: 0 (\"device default\") means the limit; anything else is clamped."""
    if requested == 0.0:
        rate = limit
    elif not math.isfinite(requested) or requested < 0.0 or requested > limit:
        clamps.append(Clamp(Rule.RAMP_RATE.value, "ramp_rate_ma_per_s", requested, limit))
        rate = limit
    else:
        rate = requested
    quantized = _f32_within(rate, _F32_TINY, limit)
    return quantized if quantized is not None else _F32_TINY


def clamp_off(setting: StimSetting, eff: EffectiveEnvelope) -> ClampResult:
    """Turning off is never refused: only its ramp (down) rate is fitted. The result is the
    protocol's one off command (``StimSetting.off``); the session fills in the device's
    limits for the fields the device ignores."""
    clamps: list[Clamp] = []
    rate = _ramp(setting.ramp_rate_ma_per_s, eff.ramp_down_ma_per_s, clamps)
    return ClampResult(StimSetting.off(rate), clamps)


def clamp_setting(
    setting: StimSetting, eff: EffectiveEnvelope, from_amplitude_ma: float | None = None
) -> ClampResult:
    """Fit ``setting``; ``from_amplitude_ma`` is the lowest amplitude the device may be at.

    The ramp uses the down rate only when the clamped amplitude is below
    ``from_amplitude_ma``; when that is unknown (None) a change counts as an increase.
    """
    if not setting.enabled:
        return clamp_off(setting, eff)
    raw = {
        "amplitude_ma": setting.amplitude_ma,
        "pulse_width_us": float(setting.pulse_width_us),
        "frequency_hz": setting.frequency_hz,
        "ramp_rate_ma_per_s": setting.ramp_rate_ma_per_s,
    }
    bad = [f"{name}={value!r}" for name, value in raw.items() if not math.isfinite(value)]
    if bad:
        return ClampResult(None, [], Rule.INVALID_VALUE, f"not a number: {', '.join(bad)}")
    clamps: list[Clamp] = []

    pulse_width_us = round(raw["pulse_width_us"])
    allowed_pw = min(max(pulse_width_us, eff.min_pulse_width_us), eff.max_pulse_width_us)
    if allowed_pw != pulse_width_us:
        clamps.append(
            Clamp(Rule.PULSE_WIDTH_RANGE.value, "pulse_width_us", raw["pulse_width_us"], allowed_pw)
        )

    frequency_hz = _f32_within(setting.frequency_hz, eff.min_frequency_hz, eff.max_frequency_hz)
    if frequency_hz is None:
        return ClampResult(
            None,
            clamps,
            Rule.FREQUENCY_RANGE,
            f"no float32 rate in {eff.min_frequency_hz}-{eff.max_frequency_hz} Hz",
        )
    if not eff.min_frequency_hz <= setting.frequency_hz <= eff.max_frequency_hz:
        clamps.append(
            Clamp(Rule.FREQUENCY_RANGE.value, "frequency_hz", setting.frequency_hz, frequency_hz)
        )

    amplitude = _clamp_amplitude(setting.amplitude_ma, allowed_pw, eff, clamps)
    if isinstance(amplitude, ClampResult):
        return amplitude

    increasing = from_amplitude_ma is None or amplitude >= from_amplitude_ma
    rate = _ramp(setting.ramp_rate_ma_per_s, eff.ramp_limit_ma_per_s(increasing), clamps)
    return ClampResult(StimSetting(True, amplitude, allowed_pw, frequency_hz, rate), clamps)


def _clamp_amplitude(
    requested_ma: float, pulse_width_us: int, eff: EffectiveEnvelope, clamps: list[Clamp]
) -> float | ClampResult:
    """Amplitude range first, then each charge rule in turn; float32 on the safe side."""
    allowed = min(max(requested_ma, eff.min_amplitude_ma), eff.max_amplitude_ma)
    if allowed != requested_ma:
        clamps.append(Clamp(Rule.AMPLITUDE_RANGE.value, "amplitude_ma", requested_ma, allowed))
    pulse_width_ms = pulse_width_us * 1e-3
    last_rule = Rule.AMPLITUDE_RANGE
    for rule, charge_limit_uc in eff.charge_limits_uc().items():
        limit_ma = charge_limit_uc / pulse_width_ms
        if allowed > limit_ma:
            clamps.append(Clamp(rule.value, "amplitude_ma", allowed, limit_ma))
            allowed = limit_ma
            last_rule = rule
    if allowed < eff.min_amplitude_ma:
        return ClampResult(
            None,
            clamps,
            last_rule,
            f"at {pulse_width_us} µs the {last_rule.value} limit allows {allowed:g} mA, "
            f"below min_amplitude_ma {eff.min_amplitude_ma:g}",
        )
    quantized = _f32_within(allowed, eff.min_amplitude_ma, eff.max_amplitude_ma)
    candidate = np.float32(quantized) if quantized is not None else None
    for _ in range(8):  # float rounding: a few ulps at most
        if candidate is None or float(candidate) < eff.min_amplitude_ma:
            break
        if _charge_ok(float(candidate), pulse_width_us, eff):
            return float(candidate)
        candidate = np.nextafter(candidate, np.float32(-np.inf))
    return ClampResult(
        None,
        clamps,
        last_rule,
        f"no float32 amplitude within {eff.min_amplitude_ma:g}-{allowed:g} mA at "
        f"{pulse_width_us} µs",
    )
