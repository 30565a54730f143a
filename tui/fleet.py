"""The fleet view: every device that announces its presence (online/offline, last seen);
Enter opens one in the console.

The view reads a ``PresenceBoard``, which whatever listens to the devices' retained
presence messages keeps up to date (``update``); the board also marks a device offline
once it has not been heard from for ``stale_after_s``, since a device that loses power
cannot say so itself (a broker's last will may say it late or never).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Static

#: Reads the devices' presence messages into the board until cancelled.
PresenceListener = Callable[["PresenceBoard"], Awaitable[None]]

#: A device silent for this long is shown offline even if its last word was "online".
STALE_AFTER_S = 30.0
REFRESH_HZ = 2.0


@dataclass(frozen=True)
class DevicePresence:
    device_id: str
    url: str  # what the console opens for this device
    online: bool
    last_seen_s: float  # wall-clock seconds (time.time()) of the last presence message
    detail: str = ""  # firmware, channels, whatever the presence message carried


class PresenceBoard:
    """Latest presence per device, as reported; the view's only source."""

    def __init__(
        self,
        stale_after_s: float | None = STALE_AFTER_S,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """``stale_after_s``: a device not heard from for that long shows offline; None
        trusts the records (MQTT presence: the broker's Last Will says offline)."""
        self.stale_after_s = stale_after_s
        self._wall = wall
        self._devices: dict[str, DevicePresence] = {}

    def update(
        self, device_id: str, url: str, online: bool, seen_s: float | None = None, detail: str = ""
    ) -> None:
        """A presence message (retained or live) from ``device_id``."""
        seen = self._wall() if seen_s is None else seen_s
        known = self._devices.get(device_id)
        if known is not None and seen < known.last_seen_s:
            return  # an older retained message arriving after a newer one
        self._devices[device_id] = DevicePresence(device_id, url, online, seen, detail)

    def forget(self, device_id: str) -> None:
        """The device's retained presence was cleared: it left the fleet."""
        self._devices.pop(device_id, None)

    def now(self) -> float:
        return self._wall()

    def devices(self) -> list[DevicePresence]:
        """Every device, online first, each one offline when stale."""
        now = self._wall()
        stale = self.stale_after_s
        shown = [
            d if stale is None or now - d.last_seen_s <= stale else replace(d, online=False)
            for d in self._devices.values()
        ]
        return sorted(shown, key=lambda d: (not d.online, d.device_id))


def describe_age(seconds: float) -> str:
    if seconds < 0:
        return "just now"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


class FleetApp(App[str | None]):
    """Returns the URL of the device the operator opened (None when quit)."""

    CSS_PATH = "console.tcss"
    TITLE = "neurostim fleet"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "open device"),
        Binding("q", "quit_fleet", "quit"),
    ]

    def __init__(
        self,
        board: PresenceBoard,
        broker: str,
        refresh_hz: float | None = REFRESH_HZ,
        listener: PresenceListener | None = None,
    ) -> None:
        """``listener``: runs for as long as the view, feeding ``board`` (the MQTT
        presence subscriber); None when something else feeds it."""
        super().__init__()
        self.listener = listener
        self.board = board
        self.broker = broker
        self.refresh_hz = refresh_hz
        self.table: DataTable[str] = DataTable(id="fleet", cursor_type="row")
        self.heading = Static(id="fleet-heading")
        self._urls: list[str] = []

    def compose(self) -> ComposeResult:
        yield self.heading
        yield self.table
        yield Footer()

    def on_mount(self) -> None:
        self.table.add_columns("device", "state", "last seen", "detail", "URL")
        if self.listener is not None:
            self.run_worker(self.listener(self.board), name="presence", exit_on_error=False)
        self.redraw()
        if self.refresh_hz is not None:
            self.set_interval(1.0 / self.refresh_hz, self.redraw)
        self.table.focus()

    def redraw(self) -> None:
        devices = self.board.devices()
        now = self.board.now()
        online = sum(d.online for d in devices)
        self.heading.update(
            f" broker {self.broker}: {len(devices)} device(s), {online} online"
            "   enter opens the selected device, q quits"
        )
        row = self.table.cursor_row
        self.table.clear()
        self._urls = []
        for d in devices:
            self.table.add_row(
                d.device_id,
                "● online" if d.online else "○ offline",
                describe_age(now - d.last_seen_s),
                d.detail,
                d.url,
            )
            self._urls.append(d.url)
        if self._urls:
            self.table.move_cursor(row=min(row, len(self._urls) - 1))

    def action_open(self) -> None:
        if self._urls:
            self.exit(self._urls[self.table.cursor_row])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_quit_fleet(self) -> None:
        self.exit(None)
