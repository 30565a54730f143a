"""The virtual stimulator's output stage: hard limits, slew-limited amplitude, delivered charge.

Pure state + arithmetic on injected time; the firmware (simulator.firmware) drives it.
Waveform: symmetric biphasic, charge-balanced (docs/protocol.md, STIM_SET).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from firmware_bridge.messages import DeviceLimits, NackReason, StimSetting, StimState

#: A value breaks a limit only by more than this relative margin (docs/protocol.md section
#: 4): the fields travel as float32, so a setting exactly at a limit can land a few float32
#: ulps (~6e-8 each) past it, and 1e-6 of a limit is clinically nothing.
LIMIT_REL_TOL = 1e-6


def _above(value: float, limit: float) -> bool:
    return value > limit * (1.0 + LIMIT_REL_TOL)


def _below(value: float, limit: float) -> bool:
    return value < limit * (1.0 - LIMIT_REL_TOL)


def check_hard_limits(
    setting: StimSetting, limits: DeviceLimits, electrode_area_cm2: float
) -> NackReason | None:
    """The first hard limit ``setting`` violates, in the documented order, or None.

    Arithmetic in float64 on the received values. An off command (``enabled`` false) is
    judged on its ramp rate alone: its other fields are ignored, NaN included.
    """
    ramp = setting.ramp_rate_ma_per_s
    if not math.isfinite(ramp):
        return NackReason.INVALID_VALUE
    if not setting.enabled:
        return NackReason.RAMP_RATE_RANGE if ramp < 0 else None
    if not (math.isfinite(setting.amplitude_ma) and math.isfinite(setting.frequency_hz)):
        return NackReason.INVALID_VALUE
    if ramp < 0:
        return NackReason.RAMP_RATE_RANGE
    if setting.amplitude_ma < 0.0 or _above(setting.amplitude_ma, limits.max_amplitude_ma):
        return NackReason.AMPLITUDE_RANGE
    if not limits.min_pulse_width_us <= setting.pulse_width_us <= limits.max_pulse_width_us:
        return NackReason.PULSE_WIDTH_RANGE
    if _below(setting.frequency_hz, limits.min_frequency_hz) or _above(
        setting.frequency_hz, limits.max_frequency_hz
    ):
        return NackReason.FREQUENCY_RANGE
    charge_uc = setting.charge_per_phase_uc
    if _above(charge_uc, limits.max_charge_per_phase_uc):
        return NackReason.CHARGE_PER_PHASE
    if _above(charge_uc / electrode_area_cm2, limits.max_charge_density_uc_per_cm2):
        return NackReason.CHARGE_DENSITY
    return None


@dataclass
class OutputStage:
    """Amplitude slews linearly toward its target; charge is integrated exactly over ramps."""

    max_ramp_rate_ma_per_s: float
    amplitude_ma: float = 0.0
    target_ma: float = 0.0
    ramp_rate_ma_per_s: float = 0.0
    pulse_width_us: int = 0
    frequency_hz: float = 0.0
    enabled: bool = False
    delivered_charge_uc: float = 0.0
    last_command_id: int = 0
    estop_latched: bool = False
    watchdog_tripped: bool = False
    t_s: float = 0.0

    @property
    def ramping(self) -> bool:
        return self.amplitude_ma != self.target_ma

    @property
    def delivering(self) -> bool:
        return self.amplitude_ma > 0.0 and self.frequency_hz > 0.0 and self.pulse_width_us > 0

    def ramp_end_s(self) -> float | None:
        """When the current ramp reaches its target (None if not ramping)."""
        if self.amplitude_ma == self.target_ma or self.ramp_rate_ma_per_s <= 0:  # not ramping
            return None
        return self.t_s + abs(self.target_ma - self.amplitude_ma) / self.ramp_rate_ma_per_s

    def advance_to(self, t_s: float) -> bool:
        """Move time forward; returns True when a ramp finished in this step."""
        dt = t_s - self.t_s
        if self.amplitude_ma == self.target_ma:
            # Not ramping (the common case): nothing to snap or slew, only charge to count.
            if dt <= 0:
                return False
            if self.frequency_hz > 0 and self.pulse_width_us > 0:
                self.delivered_charge_uc += (
                    self.amplitude_ma * self.pulse_width_us * 1e-3 * self.frequency_hz * dt
                )
            self.t_s = t_s
            return False
        snapped = False
        if self.ramping and abs(self.target_ma - self.amplitude_ma) <= 1e-9:
            # A remaining step below a nanoamp would give a ramp end equal to now in float.
            self.amplitude_ma = self.target_ma
            self._settle_if_idle()
            snapped = True
        if dt <= 0:
            return snapped
        start = self.amplitude_ma
        finished = False
        if self.ramping and self.ramp_rate_ma_per_s > 0:
            ramp_s = abs(self.target_ma - start) / self.ramp_rate_ma_per_s
            if ramp_s <= dt + 1e-9:  # finish within a ns: float error must not stall time
                # Linear part, then flat at the target.
                mean_ramp = 0.5 * (start + self.target_ma)
                mean = (mean_ramp * ramp_s + self.target_ma * (dt - ramp_s)) / dt
                self.amplitude_ma = self.target_ma
                finished = True
            else:
                step = math.copysign(self.ramp_rate_ma_per_s * dt, self.target_ma - start)
                self.amplitude_ma = start + step
                mean = 0.5 * (start + self.amplitude_ma)
        else:
            mean = start
        if self.frequency_hz > 0 and self.pulse_width_us > 0:
            # µC per pulse (cathodic phase) = mA * ms; pulses = f * dt.
            self.delivered_charge_uc += mean * self.pulse_width_us * 1e-3 * self.frequency_hz * dt
        self.t_s = t_s
        finished = finished or snapped
        if finished and not self.enabled and self.amplitude_ma == 0.0:
            self.pulse_width_us = 0
            self.frequency_hz = 0.0
        return finished

    def apply(self, command_id: int, setting: StimSetting) -> None:
        """Start moving toward an accepted setting (limits were checked by the caller)."""
        rate = setting.ramp_rate_ma_per_s
        self.ramp_rate_ma_per_s = (
            self.max_ramp_rate_ma_per_s if rate <= 0 else min(rate, self.max_ramp_rate_ma_per_s)
        )
        self.last_command_id = command_id
        self.watchdog_tripped = False
        if setting.enabled:
            self.enabled = True
            self.pulse_width_us = setting.pulse_width_us
            self.frequency_hz = setting.frequency_hz
            self.target_ma = setting.amplitude_ma
        else:
            self.enabled = False
            self.target_ma = 0.0
        self._settle_if_idle()

    def ramp_down(self, watchdog: bool = True) -> None:
        """Ramp to zero at the device's own maximum rate: the watchdog's stop (``watchdog``
        sets STIM_STATE's watchdog bit), a forbidding fault's or a BYE's."""
        self.enabled = False
        self.target_ma = 0.0
        self.ramp_rate_ma_per_s = self.max_ramp_rate_ma_per_s
        if watchdog:
            self.watchdog_tripped = True  # a fault's ramp-down leaves the bit as it is
        self._settle_if_idle()

    def stop_now(self, command_id: int) -> None:
        """ESTOP: zero output at once, latched."""
        self.amplitude_ma = 0.0
        self.target_ma = 0.0
        self.enabled = False
        self.pulse_width_us = 0
        self.frequency_hz = 0.0
        self.estop_latched = True
        self.last_command_id = command_id

    def _settle_if_idle(self) -> None:
        if not self.enabled and self.amplitude_ma == 0.0:
            self.pulse_width_us = 0
            self.frequency_hz = 0.0

    def snapshot(self) -> StimState:
        return StimState(
            enabled=self.enabled,
            ramping=self.ramping,
            estop_latched=self.estop_latched,
            watchdog_tripped=self.watchdog_tripped,
            amplitude_ma=self.amplitude_ma,
            target_amplitude_ma=self.target_ma,
            pulse_width_us=self.pulse_width_us,
            frequency_hz=self.frequency_hz,
            delivered_charge_uc=self.delivered_charge_uc,
            last_command_id=self.last_command_id,
        )
