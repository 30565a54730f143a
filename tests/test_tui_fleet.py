"""The fleet view on a presence board fed as a presence listener feeds it; a fixed wall
clock keeps "last seen" exact."""

from __future__ import annotations

from pathlib import Path

from textual.pilot import Pilot

from tests.mosquitto import Mosquitto
from tui.fleet import FleetApp, PresenceBoard, describe_age


class Wall:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def two_devices(wall: Wall) -> PresenceBoard:
    board = PresenceBoard(stale_after_s=30.0, wall=wall)
    board.update("SIM-0002", "mqtt://broker:1883/SIM-0002", True, wall.t - 2.0, "8 ch @ 250 Hz")
    board.update("SIM-0001", "mqtt://broker:1883/SIM-0001", True, wall.t - 5.0, "8 ch @ 250 Hz")
    board.update("BENCH-7", "mqtt://broker:1883/BENCH-7", False, wall.t - 600.0, "left")
    return board


def test_online_devices_first_and_a_silent_one_goes_offline() -> None:
    wall = Wall()
    board = two_devices(wall)
    assert [(d.device_id, d.online) for d in board.devices()] == [
        ("SIM-0001", True),
        ("SIM-0002", True),
        ("BENCH-7", False),
    ]
    wall.t += 27.0  # SIM-0001 last heard 32 s ago, SIM-0002 29 s ago
    assert [(d.device_id, d.online) for d in board.devices()] == [
        ("SIM-0002", True),
        ("BENCH-7", False),
        ("SIM-0001", False),
    ]


def test_an_older_retained_message_does_not_undo_a_newer_one() -> None:
    wall = Wall()
    board = PresenceBoard(wall=wall)
    board.update("D", "mqtt://b/D", False, wall.t)
    board.update("D", "mqtt://b/D", True, wall.t - 10.0)
    (device,) = board.devices()
    assert not device.online and device.last_seen_s == wall.t
    board.forget("D")
    assert board.devices() == []


def test_ages_read_naturally() -> None:
    assert describe_age(5.4) == "5 s ago"
    assert describe_age(600.0) == "10 min ago"
    assert describe_age(3 * 3600.0) == "3.0 h ago"


async def test_enter_opens_the_selected_device() -> None:
    wall = Wall()
    app = FleetApp(two_devices(wall), "mqtt://broker:1883", refresh_hz=None)
    async with app.run_test(size=(120, 20)) as pilot:
        heading = str(app.heading.render())
        assert "3 device(s), 2 online" in heading
        await pilot.press("down", "enter")
    assert app.return_value == "mqtt://broker:1883/SIM-0002"


async def test_quit_opens_nothing() -> None:
    app = FleetApp(two_devices(Wall()), "mqtt://broker:1883", refresh_hz=None)
    async with app.run_test(size=(120, 20)) as pilot:
        await pilot.press("q")
    assert app.return_value is None


def test_fleet_view_snapshot(snap_compare) -> None:  # type: ignore[no-untyped-def]
    app = FleetApp(two_devices(Wall()), "mqtt://broker:1883", refresh_hz=None)

    async def run_before(pilot: Pilot[str | None]) -> None:
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 20), run_before=run_before)


async def test_the_fleet_view_lists_two_devices_on_a_real_broker(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Two simulated devices announce themselves on Mosquitto; the fleet view shows both
    online with their mqtt:// URLs, and one that leaves turns offline."""
    from tests.mqtt_helpers import served
    from tui.fleet import FleetApp
    from tui.presence import mqtt_presence_listener

    broker_url = mosquitto.url().rstrip("/")
    board = PresenceBoard(stale_after_s=None)
    async with served(broker_url, ["BENCH-A", "BENCH-B"], tmp_path, key=None) as fleet:
        app = FleetApp(board, broker_url, listener=mqtt_presence_listener(broker_url))
        async with app.run_test(size=(120, 30)) as pilot:
            for _ in range(100):
                await pilot.pause(0.05)
                if len([d for d in board.devices() if d.online]) == 2:
                    break
            devices = board.devices()
            assert [d.device_id for d in devices] == ["BENCH-A", "BENCH-B"]
            assert all(d.online for d in devices)
            assert devices[0].url == f"{broker_url}/BENCH-A"
            await fleet[0].link.close()  # the device leaves: its offline record
            for _ in range(100):
                await pilot.pause(0.05)
                if not board.devices()[-1].online:
                    break
            shown = {d.device_id: d.online for d in board.devices()}
            assert shown == {"BENCH-A": False, "BENCH-B": True}
