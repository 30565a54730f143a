"""The effective envelope: configured clinical limits intersected with the device's hard limits.

Also the pure checks every sent setting must pass (``within_envelope``) and Shannon's k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from controller.envelope.config import EnvelopeConfig
from controller.envelope.decision import Rule
from firmware_bridge.messages import DeviceInfo, StimSetting

# DEVICE_INFO carries its limits as float32 (docs/protocol.md): a configured 12.7 mA must
# not conflict with the 12.6999998 mA the device reports for the same 12.7.
_F32_REL_TOL = 1e-6


class EnvelopeConflict(ValueError):
    """The configuration asks for more than the device allows (raised at connect)."""

    def __init__(self, conflicts: list[str]) -> None:
        self.conflicts = conflicts
        lines = "\n".join(f"  - {c}" for c in conflicts)
        super().__init__(
            f"the configured envelope does not fit the device ({len(conflicts)} conflict(s)):"
            f"\n{lines}"
        )


@dataclass(frozen=True)
class EffectiveEnvelope:
    """Limits every sent setting satisfies: the tighter of configuration and device."""

    min_amplitude_ma: float
    max_amplitude_ma: float
    min_pulse_width_us: int
    max_pulse_width_us: int
    min_frequency_hz: float
    max_frequency_hz: float
    max_charge_per_phase_uc: float
    max_charge_density_uc_per_cm2: float
    electrode_area_cm2: float
    shannon_k_max: float
    ramp_up_ma_per_s: float
    ramp_down_ma_per_s: float

    def charge_limits_uc(self) -> dict[Rule, float]:
        """The largest charge per phase each charge rule allows, by rule."""
        return {
            Rule.CHARGE_PER_PHASE: self.max_charge_per_phase_uc,
            Rule.CHARGE_DENSITY: self.max_charge_density_uc_per_cm2 * self.electrode_area_cm2,
            Rule.SHANNON_K: shannon_max_charge_uc(self.shannon_k_max, self.electrode_area_cm2),
        }

    def ramp_limit_ma_per_s(self, increasing: bool) -> float:
        return self.ramp_up_ma_per_s if increasing else self.ramp_down_ma_per_s


def shannon_k(charge_per_phase_uc: float, electrode_area_cm2: float) -> float:
    """Shannon 1992: k = log10(D) + log10(Q), Q in µC/phase, D = Q / A in µC/cm²/phase."""
    if charge_per_phase_uc <= 0.0:
        return -math.inf
    density = charge_per_phase_uc / electrode_area_cm2
    return math.log10(density) + math.log10(charge_per_phase_uc)


def shannon_max_charge_uc(k_max: float, electrode_area_cm2: float) -> float:
    """Largest Q with log10(Q / A) + log10(Q) <= k_max, i.e. Q = sqrt(10**k_max * A)."""
    return math.sqrt(10.0**k_max * electrode_area_cm2)


def _exceeds(configured: float, device_limit: float) -> bool:
    return configured > device_limit and not math.isclose(
        configured, device_limit, rel_tol=_F32_REL_TOL
    )


def _check_device(device: DeviceInfo) -> list[str]:
    """A device that reports unusable limits cannot be supervised at all."""
    lim = device.limits
    values = {
        "electrode_area_cm2": device.electrode_area_cm2,
        "max_amplitude_ma": lim.max_amplitude_ma,
        "max_frequency_hz": lim.max_frequency_hz,
        "max_ramp_rate_ma_per_s": lim.max_ramp_rate_ma_per_s,
        "max_charge_per_phase_uc": lim.max_charge_per_phase_uc,
        "max_charge_density_uc_per_cm2": lim.max_charge_density_uc_per_cm2,
    }
    problems = [
        f"device {name} = {value!r} is not a positive finite number"
        for name, value in values.items()
        if not (math.isfinite(value) and value > 0.0)
    ]
    if not (math.isfinite(lim.min_frequency_hz) and lim.min_frequency_hz >= 0.0):
        problems.append(f"device min_frequency_hz = {lim.min_frequency_hz!r} is not >= 0")
    if lim.min_pulse_width_us > lim.max_pulse_width_us:
        problems.append(
            f"device pulse width range {lim.min_pulse_width_us}-{lim.max_pulse_width_us} µs "
            "is empty"
        )
    return problems


def effective_envelope(config: EnvelopeConfig, device: DeviceInfo) -> EffectiveEnvelope:
    """Intersect ``config`` with ``device``; raise EnvelopeConflict naming every offending field.

    Ranges and charge limits must lie inside the device's (asking for more is a
    conflict, not a silent clamp: the clinician must know the device cannot do it).
    Ramp rates are not conflicts: the rate sent is min(configured, device maximum).
    """
    problems = _check_device(device)
    if problems:
        raise EnvelopeConflict(problems)
    lim = device.limits
    conflicts: list[str] = []

    def upper(name: str, configured: float, device_name: str, device_value: float) -> None:
        if _exceeds(configured, device_value):
            conflicts.append(
                f"envelope.{name} = {configured} exceeds the device limit "
                f"{device_name} = {device_value:g}"
            )

    def lower(name: str, configured: float, device_name: str, device_value: float) -> None:
        if _exceeds(device_value, configured):
            conflicts.append(
                f"envelope.{name} = {configured} is below the device limit "
                f"{device_name} = {device_value:g}"
            )

    upper("max_amplitude_ma", config.max_amplitude_ma, "max_amplitude_ma", lim.max_amplitude_ma)
    lower(
        "min_pulse_width_us",
        config.min_pulse_width_us,
        "min_pulse_width_us",
        lim.min_pulse_width_us,
    )
    upper(
        "max_pulse_width_us",
        config.max_pulse_width_us,
        "max_pulse_width_us",
        lim.max_pulse_width_us,
    )
    lower("min_frequency_hz", config.min_frequency_hz, "min_frequency_hz", lim.min_frequency_hz)
    upper("max_frequency_hz", config.max_frequency_hz, "max_frequency_hz", lim.max_frequency_hz)
    upper(
        "max_charge_per_phase_uc",
        config.max_charge_per_phase_uc,
        "max_charge_per_phase_uc",
        lim.max_charge_per_phase_uc,
    )
    upper(
        "max_charge_density_uc_per_cm2",
        config.max_charge_density_uc_per_cm2,
        "max_charge_density_uc_per_cm2",
        lim.max_charge_density_uc_per_cm2,
    )
    if conflicts:
        raise EnvelopeConflict(conflicts)

    effective = EffectiveEnvelope(
        min_amplitude_ma=min(config.min_amplitude_ma, lim.max_amplitude_ma),
        max_amplitude_ma=min(config.max_amplitude_ma, lim.max_amplitude_ma),
        min_pulse_width_us=max(config.min_pulse_width_us, lim.min_pulse_width_us),
        max_pulse_width_us=min(config.max_pulse_width_us, lim.max_pulse_width_us),
        min_frequency_hz=max(config.min_frequency_hz, lim.min_frequency_hz),
        max_frequency_hz=min(config.max_frequency_hz, lim.max_frequency_hz),
        max_charge_per_phase_uc=min(config.max_charge_per_phase_uc, lim.max_charge_per_phase_uc),
        max_charge_density_uc_per_cm2=min(
            config.max_charge_density_uc_per_cm2, lim.max_charge_density_uc_per_cm2
        ),
        electrode_area_cm2=device.electrode_area_cm2,
        shannon_k_max=config.shannon_k_max,
        ramp_up_ma_per_s=min(config.ramp_up_ma_per_s, lim.max_ramp_rate_ma_per_s),
        ramp_down_ma_per_s=min(config.ramp_down_ma_per_s, lim.max_ramp_rate_ma_per_s),
    )
    _check_feasible(config, effective)
    return effective


def _check_feasible(config: EnvelopeConfig, eff: EffectiveEnvelope) -> None:
    """The envelope must admit at least its own minimum setting and the fallback program."""
    conflicts: list[str] = []
    charge_limit_uc = min(eff.charge_limits_uc().values())
    min_charge_uc = eff.min_amplitude_ma * eff.min_pulse_width_us * 1e-3
    if min_charge_uc > charge_limit_uc:
        conflicts.append(
            f"envelope.min_amplitude_ma = {config.min_amplitude_ma} at the shortest pulse "
            f"({eff.min_pulse_width_us} µs) gives {min_charge_uc:g} µC/phase, above the "
            f"{charge_limit_uc:g} µC/phase the charge, density and Shannon limits allow on "
            f"a {eff.electrode_area_cm2:g} cm² electrode"
        )
    fallback = config.fallback
    if fallback.enabled:
        setting = StimSetting(
            True,
            fallback.amplitude_ma,
            fallback.pulse_width_us,
            fallback.frequency_hz,
            eff.ramp_up_ma_per_s,
        )
        for rule in within_envelope(setting, eff):
            conflicts.append(
                f"envelope.fallback violates {rule} of the effective envelope "
                f"({fallback.amplitude_ma} mA, {fallback.pulse_width_us} µs, "
                f"{fallback.frequency_hz} Hz on a {eff.electrode_area_cm2:g} cm² electrode)"
            )
    if conflicts:
        raise EnvelopeConflict(conflicts)


def within_envelope(
    setting: StimSetting, effective: EffectiveEnvelope, from_amplitude_ma: float | None = None
) -> list[str]:
    """Rules ``setting`` violates (empty when it may be sent).

    The ramp rate must be in (0, limit]: the down rate for an off command or for an
    amplitude below ``from_amplitude_ma`` (the lowest amplitude the device may be at),
    otherwise the up rate. An off command is checked for its ramp rate only, as the
    device does (docs/protocol.md, STIM_SET).
    """
    eff = effective
    values = (
        setting.amplitude_ma,
        float(setting.pulse_width_us),
        setting.frequency_hz,
        setting.ramp_rate_ma_per_s,
    )
    if not all(math.isfinite(v) for v in values):
        return [Rule.INVALID_VALUE.value]
    violated: list[str] = []
    decreasing = not setting.enabled or (
        from_amplitude_ma is not None and setting.amplitude_ma < from_amplitude_ma
    )
    ramp_limit = eff.ramp_limit_ma_per_s(increasing=not decreasing)
    if not 0.0 < setting.ramp_rate_ma_per_s <= ramp_limit:
        violated.append(Rule.RAMP_RATE.value)
    if not setting.enabled:
        return violated
    if not eff.min_amplitude_ma <= setting.amplitude_ma <= eff.max_amplitude_ma:
        violated.append(Rule.AMPLITUDE_RANGE.value)
    if not eff.min_pulse_width_us <= setting.pulse_width_us <= eff.max_pulse_width_us:
        violated.append(Rule.PULSE_WIDTH_RANGE.value)
    if not eff.min_frequency_hz <= setting.frequency_hz <= eff.max_frequency_hz:
        violated.append(Rule.FREQUENCY_RANGE.value)
    charge_uc = setting.amplitude_ma * setting.pulse_width_us * 1e-3
    if charge_uc > eff.max_charge_per_phase_uc:
        violated.append(Rule.CHARGE_PER_PHASE.value)
    if charge_uc / eff.electrode_area_cm2 > eff.max_charge_density_uc_per_cm2:
        violated.append(Rule.CHARGE_DENSITY.value)
    if shannon_k(charge_uc, eff.electrode_area_cm2) > eff.shannon_k_max:
        violated.append(Rule.SHANNON_K.value)
    return violated
