"""One device preset, configured everywhere it matters: the simulated firmware, the
controller's envelope and therapy, and the patient's dose conversion.

A preset (simulator.devices) is a whole device: its limits, electrode, battery and its
labelled session. A run with it must use all of that, or it mixes devices:

* the firmware gets the preset's limits, electrode, impedance window and battery
  (``simulator.firmware.firmware_config_for``, used by the runner);
* the controller's envelope gets the preset's ranges, charge per phase, impedance window
  and a daily charge budget of six labelled sessions; the therapy, the sham, the session
  lengths and the dual-threshold policy's top amplitude get its labelled and sham
  settings - unless the configuration sets them itself (a user's setting always wins;
  the envelope still reviews it);
* the patient's therapy response counts dose in the preset's labelled sessions (1 SE =
  one labelled session; ``session_charge_uc``), which is how the calibration to PREMICE
  carries across devices - by assumption for every device but the e-TNS.

The default device keeps the configuration's defaults: they are the e-TNS's own
(controller/envelope/config.py cites them), including its daily charge budget of one
60-min acute Cefaly session.
"""

from __future__ import annotations

from typing import Any

from controller.config import ControllerConfig
from controller.envelope import EnvelopeConfig
from simulator.devices import (
    DEFAULT_DEVICE,
    DEVICE_PRESETS,
    DevicePreset,
    LabelledSetting,
    device_preset,
)

#: Short names the command line accepts for the presets.
DEVICE_ALIASES = {"e-tns": DEFAULT_DEVICE}
DEVICE_CHOICES = (*DEVICE_ALIASES, *DEVICE_PRESETS)
#: Daily charge budget of a non-default preset, in its labelled sessions.
DAILY_BUDGET_SESSIONS = 6


def resolve_device(name: str) -> DevicePreset:
    """The preset called ``name`` (or one of its short names); ValueError if unknown."""
    return device_preset(DEVICE_ALIASES.get(name, name))


def patient_overrides(device: DevicePreset) -> dict[str, dict[str, Any]]:
    """Virtual-patient overrides that make the therapy response count this device's dose."""
    return {"response": {"session_charge_uc": device.session_charge_uc}}


def merged_overrides(
    base: dict[str, dict[str, Any]], device: DevicePreset
) -> dict[str, dict[str, Any]]:
    """``base`` (a scenario's own patient overrides) with the device's dose conversion,
    unless ``base`` sets it."""
    merged = {section: dict(values) for section, values in base.items()}
    for section, values in patient_overrides(device).items():
        for key, value in values.items():
            merged.setdefault(section, {}).setdefault(key, value)
    return merged


def controller_config_for(config: ControllerConfig, device: DevicePreset) -> ControllerConfig:
    """``config`` with the envelope and therapy of ``device`` wherever it does not set them."""
    if device.name == DEFAULT_DEVICE:
        return config
    limits, labelled, sham = device.limits, device.labelled, device.sham
    document = config.model_dump(exclude_unset=True)
    envelope = document.setdefault("envelope", {})
    derived_envelope: dict[str, float] = {
        "max_amplitude_ma": limits.max_amplitude_ma,
        "min_pulse_width_us": limits.min_pulse_width_us,
        "max_pulse_width_us": limits.max_pulse_width_us,
        "min_frequency_hz": limits.min_frequency_hz,
        "max_frequency_hz": limits.max_frequency_hz,
        "max_charge_per_phase_uc": limits.max_charge_per_phase_uc,
        "daily_charge_budget_uc": DAILY_BUDGET_SESSIONS * labelled.session_charge_uc,
        "impedance_min_ohm": device.impedance_window_ohm[0],
        "impedance_max_ohm": device.impedance_window_ohm[1],
    }
    default_ramp = EnvelopeConfig().ramp_up_ma_per_s
    if labelled.amplitude_ma / default_ramp > labelled.session_s:
        # A short session would end before the envelope's slow ramp reached the labelled
        # amplitude: such a device ramps at its own maximum (as the nVNS preset trial does).
        derived_envelope["ramp_up_ma_per_s"] = limits.max_ramp_rate_ma_per_s
        derived_envelope["ramp_down_ma_per_s"] = limits.max_ramp_rate_ma_per_s
    for key, value in derived_envelope.items():
        envelope.setdefault(key, value)
    policy = document.setdefault("policy", {})
    policy.setdefault("stimulation", _setting(labelled))
    policy.setdefault("sham", {}).setdefault("stimulation", _setting(sham))
    policy.setdefault("open_loop", {}).setdefault("session_s", labelled.session_s)
    policy.setdefault("prodrome_session", {}).setdefault("session_s", labelled.session_s)
    policy.setdefault("dual_threshold", {}).setdefault("max_amplitude_ma", labelled.amplitude_ma)
    return ControllerConfig.model_validate(document)


def _setting(setting: LabelledSetting) -> dict[str, float]:
    return {
        "amplitude_ma": setting.amplitude_ma,
        "pulse_width_us": setting.pulse_width_us,
        "frequency_hz": setting.frequency_hz,
    }
