"""Device and link: identity, link state and counters, battery, electrode impedances."""

from __future__ import annotations

from rich.text import Text

from tui.render import LINK_STYLE, labelled
from tui.session import ConsoleView
from tui.widgets.panel import Panel


class DevicePanel(Panel):
    def show(self, view: ConsoleView) -> None:
        snap = view.snapshot
        info, c = snap.device, snap.counters
        link = Text(snap.link.value.upper(), LINK_STYLE.get(snap.link.value, ""))
        rows: list[tuple[str, Text | str]] = [("link", link)]
        if info is None:
            rows.append(("device", view.url))
        else:
            rows += [
                (
                    "device",
                    f"{info.device_id}  fw {info.firmware_version}  v{info.major}.{info.minor}",
                ),
                (
                    "channels",
                    f"{len(info.channels)} @ {info.sampling_rate_hz} Hz, "
                    f"watchdog {info.watchdog_ms} ms",
                ),
            ]
        rows += [
            ("frames", f"{c.frames_rx} in, {c.frames_tx} out, {c.frames_lost} lost"),
            ("errors", f"{c.crc_errors} CRC, {c.retransmits} retries"),
            ("samples", f"{c.samples}, {c.sample_gaps} gaps ({c.samples_missing} missing)"),
            (
                "reconnects",
                f"{c.reconnect_attempts} tries, {c.link_losses} losses, {c.connects} connects",
            ),
        ]
        status = view.status
        if status is None:
            rows.append(("battery", "—"))
        else:
            rows.append(("battery", f"{status.status.battery_pct} %  (at {status.t_s:.0f} s)"))
            imp = status.status.impedance_ohm
            if imp:
                low, high = view.impedance_window_ohm
                rows.append(("impedance", _impedances(imp, view.impedance_window_ohm)))
                rows.append(("window", f"{low / 1000:g}-{high / 1000:g} kΩ (red: outside)"))
        self.draw(labelled(rows))


def _impedances(impedance_ohm: tuple[int, ...], window_ohm: tuple[float, float]) -> Text:
    """kΩ per electrode (the first 8), red outside the envelope's window."""
    low, high = window_ohm
    text = Text()
    for ohm in impedance_ohm[:8]:
        text.append(f"{ohm / 1000:.1f} ", "" if low <= ohm <= high else "bold red")
    if len(impedance_ohm) > 8:
        text.append(f"+{len(impedance_ohm) - 8} ")
    text.append("kΩ")
    return text
