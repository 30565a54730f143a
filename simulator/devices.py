"""Device presets: what is simulated as the stimulator, its electrode, battery and limits.

The default, ``etns-supraorbital``, is one coherent wearable: scalp EEG at the default
sites and an external supraorbital trigeminal stimulator (e-TNS) with Cefaly's waveform
(device labelling; Schoenen et al. 2013, Neurology 80:697): biphasic, 60 Hz, 250 µs,
at most 16 mA, 20-min prevention sessions. Its numbers:

* Skin electrode 30 x 94 mm = 28.2 cm² (Cefaly's self-adhesive supraorbital electrode is
  about that size; ASSUMPTION on the exact area). At 16 mA and 250 µs: 4 µC/phase,
  0.14 µC/cm²/phase, Shannon k = -0.25, current density 0.57 mA/cm² - below the
  2 mA/cm² above which IEC 60601-2-10 (TENS/EMS) asks for operator attention; the
  maximum outputs (above 10 mA / 10 V) are stated here, as the standard requires.
* Limits: amplitude 0-16 mA (Cefaly maximum), pulse width 30-250 µs, rate 1-120 Hz
  (sham settings of trials use 1 Hz, 30 µs, 1 mA: PREMICE sham; Cefaly acute uses
  100 Hz), 4 µC/phase, 30 µC/cm²/phase (the DBS warning level, kept as an engineering cap;
  16 mA on this electrode reaches 0.14).
  The 5 mA/s slew keeps the old choice (the envelope ramps far slower).
* Skin-electrode impedance: starts at ``impedance_start_ohm`` (2 kΩ) when a fresh
  electrode is applied and rises towards ``impedance_dry_ohm`` (8 kΩ) as the gel dries,
  time constant ``gel_drying_tau_days`` (10 days), and the electrode is replaced every
  ``electrode_life_days`` (20 days: reusable gel electrodes last about 20 sessions).
  A few kΩ is typical of hydrogel skin electrodes at stimulation frequencies; the rise
  and the replacement interval are ASSUMPTIONS.
* Battery: a wearable lithium-polymer cell, 3.7 V x 500 mAh = 6.7 kJ (ASSUMPTION),
  25 mW while streaming 8 EEG channels (ASSUMPTION), recharged every
  ``recharge_interval_h`` (daily, overnight; ASSUMPTION: the recording continues).

The ``implant`` preset keeps the earlier bench device (a DBS-style 0.06 cm² contact,
Boston Scientific Vercise ranges, 30 µC/cm² warning level, a 2 kJ implant cell, lead
impedance 500-1500 Ω). Its therapy response is UNCALIBRATED: no published migraine
dose-response exists for an implanted contact, so the session-equivalent conversion
(1 SE = a 20-min session at its labelled 3 mA, 60 Hz, 250 µs) is an ASSUMPTION and every
report of a run with it says so.

The ``nvns-cervical`` preset (gammaCore-like: 5 kHz bursts at 25 Hz, <= 60 mA, 2-min
stimulations) exists only to run a trial the model was not calibrated on (PREMIUM II)
in the physiology tier; its limits, electrode and battery are ASSUMPTIONS and its
therapy response is UNCALIBRATED.

Dose conversion: 1 labelled-session equivalent (SE) = one session of ``session_s`` at
the labelled amplitude, pulse width and rate; ``session_charge_uc`` is its charge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from firmware_bridge.messages import DeviceLimits
from firmware_bridge.units import SECONDS_PER_DAY


@dataclass(frozen=True)
class LabelledSetting:
    """The labelled therapy of a device (what 1 SE means)."""

    amplitude_ma: float
    pulse_width_us: int
    frequency_hz: float
    session_s: float

    @property
    def session_charge_uc(self) -> float:
        """Charge of one labelled session: I x PW x f x t (mA x ms = µC)."""
        return self.amplitude_ma * self.pulse_width_us * 1e-3 * self.frequency_hz * self.session_s


@dataclass(frozen=True)
class DevicePreset:
    name: str
    description: str
    limits: DeviceLimits
    electrode_area_cm2: float
    labelled: LabelledSetting
    sham: LabelledSetting
    therapy_calibrated: bool
    impedance_start_ohm: float
    impedance_dry_ohm: float
    gel_drying_tau_days: float
    electrode_life_days: float
    impedance_window_ohm: tuple[float, float]
    battery_capacity_j: float
    idle_power_w: float
    recharge_interval_h: float | None

    @property
    def session_charge_uc(self) -> float:
        return self.labelled.session_charge_uc

    @property
    def calibration_note(self) -> str:
        """What every report says about the therapy response with this device."""
        if self.therapy_calibrated:
            return f"{self.name}: therapy response calibrated to PREMICE (Schoenen 2013)"
        return (
            f"{self.name}: therapy response UNCALIBRATED (no published migraine "
            "dose-response for this device; 1 SE = its labelled session by assumption)"
        )


ETNS_SUPRAORBITAL = DevicePreset(
    name="etns-supraorbital",
    description="wearable: scalp EEG + external supraorbital e-TNS (Cefaly waveform)",
    limits=DeviceLimits(
        max_amplitude_ma=16.0,
        min_pulse_width_us=30,
        max_pulse_width_us=250,
        min_frequency_hz=1.0,
        max_frequency_hz=120.0,
        max_ramp_rate_ma_per_s=5.0,
        max_charge_per_phase_uc=4.0,
        max_charge_density_uc_per_cm2=30.0,
    ),
    electrode_area_cm2=3.0 * 9.4,
    labelled=LabelledSetting(16.0, 250, 60.0, 1200.0),
    sham=LabelledSetting(1.0, 30, 1.0, 1200.0),
    therapy_calibrated=True,
    impedance_start_ohm=2000.0,
    impedance_dry_ohm=8000.0,
    gel_drying_tau_days=10.0,
    electrode_life_days=20.0,
    impedance_window_ohm=(500.0, 10_000.0),
    battery_capacity_j=3.7 * 0.5 * 3600.0,
    idle_power_w=0.025,
    recharge_interval_h=24.0,
)

IMPLANT = DevicePreset(
    name="implant",
    description="bench implant: DBS/RNS-like 0.06 cm² contact (therapy UNCALIBRATED)",
    limits=DeviceLimits(
        max_amplitude_ma=12.7,
        min_pulse_width_us=10,
        max_pulse_width_us=450,
        min_frequency_hz=2.0,
        max_frequency_hz=255.0,
        max_ramp_rate_ma_per_s=5.0,
        max_charge_per_phase_uc=3.0,
        max_charge_density_uc_per_cm2=30.0,
    ),
    electrode_area_cm2=0.06,
    labelled=LabelledSetting(3.0, 250, 60.0, 1200.0),
    sham=LabelledSetting(0.1, 30, 2.0, 1200.0),
    therapy_calibrated=False,
    impedance_start_ohm=1000.0,
    impedance_dry_ohm=1000.0,
    gel_drying_tau_days=1.0,
    electrode_life_days=1e6,
    impedance_window_ohm=(250.0, 4000.0),
    battery_capacity_j=2000.0,
    idle_power_w=0.002,
    recharge_interval_h=None,
)

NVNS_CERVICAL = DevicePreset(
    name="nvns-cervical",
    description="non-invasive cervical vagus nerve stimulator (gammaCore-like; therapy "
    "UNCALIBRATED; physiology tier only)",
    limits=DeviceLimits(
        max_amplitude_ma=60.0,
        min_pulse_width_us=30,
        max_pulse_width_us=1000,
        min_frequency_hz=1.0,
        max_frequency_hz=25.0,
        max_ramp_rate_ma_per_s=5.0,
        max_charge_per_phase_uc=60.0,
        max_charge_density_uc_per_cm2=30.0,
    ),
    electrode_area_cm2=2.0,
    # 5 kHz bursts (1 ms) at 25 Hz, <= 60 mA (device labelling); one labelled session =
    # two 120-s stimulations (both sides of the neck), the PREMIUM regimen's unit.
    labelled=LabelledSetting(60.0, 1000, 25.0, 240.0),
    sham=LabelledSetting(1.0, 30, 1.0, 240.0),
    therapy_calibrated=False,
    impedance_start_ohm=1000.0,
    impedance_dry_ohm=1000.0,
    gel_drying_tau_days=1.0,
    electrode_life_days=1e6,
    impedance_window_ohm=(250.0, 10_000.0),
    battery_capacity_j=3.7 * 0.5 * 3600.0,
    idle_power_w=0.0,
    recharge_interval_h=None,
)

DEVICE_PRESETS: dict[str, DevicePreset] = {
    p.name: p for p in (ETNS_SUPRAORBITAL, IMPLANT, NVNS_CERVICAL)
}
DEFAULT_DEVICE = ETNS_SUPRAORBITAL.name


def device_preset(name: str) -> DevicePreset:
    try:
        return DEVICE_PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown device preset {name!r}; choose one of {', '.join(DEVICE_PRESETS)}"
        ) from None


def skin_impedance_ohm(preset: DevicePreset, t_s: float) -> float:
    """Stimulation electrode impedance ``t_s`` after power-up (a fresh electrode then)."""
    life_s = preset.electrode_life_days * SECONDS_PER_DAY
    worn_s = t_s % life_s if life_s > 0 else t_s
    rise = 1.0 - math.exp(-worn_s / (preset.gel_drying_tau_days * SECONDS_PER_DAY))
    return (
        preset.impedance_start_ohm + (preset.impedance_dry_ohm - preset.impedance_start_ohm) * rise
    )
