"""What a case gets: the probe on the device's link, the device's DEVICE_INFO, the rig's
options, and ``measure``/``check`` to record its measurements."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from firmware_bridge.messages import DeviceInfo, StimSetting
from hil.measurement import Measurement
from hil.probe import Probe


class Skip(Exception):
    """The case does not apply to this device or configuration; the message says why."""


@dataclass
class RigOptions:
    url: str
    iterations: int = 10_000
    seed: int = 0
    key: bytes | None = None
    histogram_dir: str | None = None


@dataclass
class CaseContext:
    probe: Probe
    info: DeviceInfo
    options: RigOptions
    reopen: Callable[[], Awaitable[Probe]]  # close the link and open the same URL again
    reopen_keeps_device: bool = True  # False for sim://: every open is a new device
    measurements: list[Measurement] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)
    notes: list[str] = field(default_factory=list)

    def measure(
        self,
        name: str,
        value: float,
        unit: str = "",
        low: float | None = None,
        high: float | None = None,
        marginal_low: float | None = None,
        marginal_high: float | None = None,
    ) -> Measurement:
        m = Measurement(name, float(value), unit, low, high, marginal_low, marginal_high)
        self.measurements.append(m)
        return m

    def check(self, name: str, ok: bool) -> bool:
        """A yes/no requirement as a measurement: 1 passes, 0 fails."""
        self.measure(name, 1.0 if ok else 0.0, "bool", 1.0, 1.0)
        return ok

    def note(self, text: str) -> None:
        self.notes.append(text)

    def on_setting(self, amplitude_ma: float = 0.5) -> StimSetting:
        """A modest on command inside every limit of this device."""
        lim = self.info.limits
        pw = max(lim.min_pulse_width_us, min(90, lim.max_pulse_width_us))
        freq = max(lim.min_frequency_hz, min(130.0, lim.max_frequency_hz))
        amp = min(amplitude_ma, lim.max_amplitude_ma)
        q_max = min(
            lim.max_charge_per_phase_uc,
            lim.max_charge_density_uc_per_cm2 * self.info.electrode_area_cm2,
        )
        amp = min(amp, 0.9 * q_max * 1000.0 / pw)
        return StimSetting(True, amp, pw, freq, 0.0)

    def off_setting(self) -> StimSetting:
        return StimSetting.off(0.0, self.info.limits)

    def ramp_s(self, from_ma: float, to_ma: float = 0.0) -> float:
        """Time the device needs for that step at its maximum ramp rate."""
        return abs(from_ma - to_ma) / self.info.limits.max_ramp_rate_ma_per_s
