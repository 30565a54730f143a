"""The operator's forms: a manual setting, a marker's text, a policy. Each returns what
was typed (or None when cancelled); the app hands it to the node."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList


@dataclass(frozen=True)
class SettingInput:
    amplitude_ma: float
    pulse_width_us: int
    frequency_hz: float
    ramp_rate_ma_per_s: float


class SettingForm(ModalScreen[SettingInput | None]):
    """Amplitude, pulse width and frequency; the envelope reviews what is submitted."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def __init__(
        self, amplitude_ma: float, pulse_width_us: int, frequency_hz: float, ramp_ma_per_s: float
    ) -> None:
        super().__init__()
        self._defaults = (amplitude_ma, pulse_width_us, frequency_hz, ramp_ma_per_s)

    def compose(self) -> ComposeResult:
        amp, pw, freq, ramp = self._defaults
        with Vertical(classes="form"):
            yield Label("Manual setting (enter in the last field sends, escape cancels)")
            yield Label("amplitude mA")
            yield Input(f"{amp:g}", id="amplitude", type="number")
            yield Label("pulse width µs")
            yield Input(str(pw), id="pulse_width", type="integer")
            yield Label("frequency Hz")
            yield Input(f"{freq:g}", id="frequency", type="number")
            yield Label("ramp mA/s")
            yield Input(f"{ramp:g}", id="ramp", type="number")
            yield Label("", id="form-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "ramp":
            self.focus_next()
            return
        try:
            result = SettingInput(
                float(self.query_one("#amplitude", Input).value),
                int(self.query_one("#pulse_width", Input).value),
                float(self.query_one("#frequency", Input).value),
                float(self.query_one("#ramp", Input).value),
            )
        except ValueError as exc:
            self.query_one("#form-error", Label).update(f"not a number: {exc}")
            return
        self.dismiss(result)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextForm(ModalScreen[str | None]):
    """One line of text; enter submits it (stripped, None when empty), escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def __init__(self, prompt: str, field_id: str, placeholder: str = "", value: str = "") -> None:
        super().__init__()
        self._prompt = prompt
        self._field = (field_id, placeholder, value)

    def compose(self) -> ComposeResult:
        field_id, placeholder, value = self._field
        with Vertical(classes="form"):
            yield Label(self._prompt)
            yield Input(value, id=field_id, placeholder=placeholder)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


def marker_form() -> TextForm:
    return TextForm(
        "Marker text (enter adds it to the audit log, the recording and the device; "
        "escape cancels)",
        "marker",
        placeholder="e.g. patient reports aura",
    )


def recording_form(suggested: str) -> TextForm:
    return TextForm(
        "EDF+ file to record into (enter starts, escape cancels)",
        "record-path",
        value=suggested,
    )


class PolicyForm(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def __init__(self, names: tuple[str, ...], current: str) -> None:
        super().__init__()
        self._names = names
        self._current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="form"):
            yield Label(f"Policy (now {self._current}); enter switches, escape cancels")
            yield OptionList(*self._names, id="policies")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self._names[event.option_index])

    def action_cancel(self) -> None:
        self.dismiss(None)
