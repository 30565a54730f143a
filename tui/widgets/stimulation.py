"""Stimulation: requested vs device-reported setting, the envelope as gauges, and the
last clamp and refusal with the rule that fired."""

from __future__ import annotations

from rich.text import Text

from controller.envelope.limits import shannon_k
from firmware_bridge.messages import StimSetting, StimState
from tui.render import fmt, gauge
from tui.session import ConsoleView
from tui.widgets.panel import Panel

#: Charge per phase in µC from mA and µs.
UC_PER_MA_US = 1e-3


def charge_per_phase_uc(amplitude_ma: float, pulse_width_us: float) -> float:
    return amplitude_ma * pulse_width_us * UC_PER_MA_US


class StimulationPanel(Panel):
    def show(self, view: ConsoleView, width: int) -> None:
        snap = view.snapshot
        text = Text()
        text.append("requested ", "bold")
        text.append(_setting(snap.requested))
        text.append("\nreported  ", "bold")
        text.append(_reported(snap.reported))
        bar = max(10, width - 40)
        b = snap.budgets
        amp = snap.reported.amplitude_ma if snap.reported is not None else 0.0
        pw = snap.reported.pulse_width_us if snap.reported is not None else 0
        charge = charge_per_phase_uc(amp, pw)
        if b is not None and snap.device is not None:
            area_cm2 = snap.device.electrode_area_cm2  # from DEVICE_INFO
            density = charge / area_cm2
            k = shannon_k(charge, area_cm2)
            rows = [
                ("amplitude", amp, b.max_amplitude_ma, f"{amp:.2f}/{b.max_amplitude_ma:.2f} mA"),
                (
                    "charge dens",
                    density,
                    b.max_charge_density_uc_per_cm2,
                    f"{density:.2f}/{fmt(b.max_charge_density_uc_per_cm2)} µC/cm²",
                ),
                # k is a log: gauge 10**k against 10**k_max, the charge² / area it limits.
                (
                    "Shannon k",
                    10**k if charge > 0 else 0.0,
                    10**b.max_shannon_k,
                    f"{fmt(k if charge > 0 else None)}/{b.max_shannon_k:.2f}",
                ),
                (
                    "sessions 24h",
                    b.sessions_24h,
                    b.max_sessions_24h,
                    f"{b.sessions_24h}/{b.max_sessions_24h}",
                ),
                (
                    "time 24h",
                    b.stimulation_s_24h,
                    b.max_stimulation_s_24h,
                    f"{b.stimulation_s_24h / 60:.1f}/{b.max_stimulation_s_24h / 60:.0f} min, "
                    f"{max(0.0, b.max_stimulation_s_24h - b.stimulation_s_24h) / 60:.0f} left",
                ),
                (
                    "charge 24h",
                    b.charge_uc_24h,
                    b.max_charge_uc_24h,
                    f"{b.charge_uc_24h / 1000:.2f}/{b.max_charge_uc_24h / 1000:.1f} mC, "
                    f"{max(0.0, b.max_charge_uc_24h - b.charge_uc_24h) / 1000:.1f} left",
                ),
            ]
            for label, used, limit, words in rows:
                text.append(f"\n{label:<13}", "bold")
                text.append(gauge(float(used), float(limit) if limit is not None else None, bar))
                text.append(f" {words}")
        else:
            text.append("\nenvelope: built when the device has described itself", "dim")
        text.append("\nlast clamp  ", "bold")
        clamp = view.last_clamp
        text.append(
            "none"
            if clamp is None
            else f"{clamp.rule}: {clamp.field} {clamp.requested:g} → {clamp.allowed:g} "
            f"at {clamp.t_s:.0f} s",
            "dim" if clamp is None else "yellow",
        )
        text.append("\nlast refusal ", "bold")
        refusal = view.last_refusal
        text.append(
            "none"
            if refusal is None
            else f"{refusal.rule} ({refusal.origin}): {refusal.detail or refusal.reason} "
            f"at {refusal.t_s:.0f} s",
            "dim" if refusal is None else "bold yellow",
        )
        counts = ", ".join(f"{k} {v}" for k, v in sorted(snap.refusals.items()))
        if counts:
            text.append(f"\nrefusals by rule: {counts}", "dim")
        self.draw(text)


def _setting(setting: StimSetting | None) -> str:
    if setting is None:
        return "none sent"
    if not setting.enabled:
        return f"off (ramp {setting.ramp_rate_ma_per_s:g} mA/s)"
    return (
        f"{setting.amplitude_ma:.2f} mA, {setting.pulse_width_us} µs, "
        f"{setting.frequency_hz:g} Hz, ramp {setting.ramp_rate_ma_per_s:g} mA/s"
    )


def _reported(state: StimState | None) -> Text:
    if state is None:
        return Text("no report yet", "dim")
    text = Text()
    if state.estop_latched:
        text.append("E-STOP ", "bold red")
    if not state.enabled:
        text.append(f"off, {state.amplitude_ma:.2f} mA")
    else:
        text.append(
            f"{state.amplitude_ma:.2f} mA (target {state.target_amplitude_ma:.2f}), "
            f"{state.pulse_width_us} µs, {state.frequency_hz:g} Hz",
            "bold",
        )
    if state.ramping:
        text.append(" ramping", "yellow")
    return text
