"""``neurostim device serve --transport mqtt`` and ``neurostim devices`` on a real broker:
signing required, SIGTERM exits 0 with a clean offline, SIGKILL shows offline by the Will."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firmware_bridge.keys import add_key
from firmware_bridge.presence_watch import read_presence
from firmware_bridge.url import parse_broker_url
from neurostim_cli.main import main
from tests.mosquitto import Mosquitto

NEUROSTIM = [sys.executable, "-m", "neurostim_cli.main"]


def test_serving_on_mqtt_without_a_key_file_refuses_naming_both_flags(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["device", "serve", "--transport", "mqtt", "--broker", "mqtt://127.0.0.1:1"]
    assert main([*argv, "--device-id", "d"]) == 2
    err = capsys.readouterr().err
    assert "--key-file" in err and "--insecure" in err
    assert main([*argv]) == 2  # no --device-id
    assert "--device-id" in capsys.readouterr().err
    assert main([*argv, "--device-id", "d", "--insecure", "--count", "0"]) == 2


def _serve(broker: Mosquitto, tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *NEUROSTIM,
            "device",
            "serve",
            "--transport",
            "mqtt",
            "--broker",
            broker.url(),
            "--scenario",
            "noise",
            "--state-dir",
            str(tmp_path / "state"),
            "--keepalive",
            "2",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _devices(broker: Mosquitto) -> dict[str, dict[str, object]]:
    records = asyncio.run(read_presence(parse_broker_url(broker.url()))).current
    return {
        device_id: {"online": r.online, "session": r.session} for device_id, r in records.items()
    }


def _until(predicate: object, timeout_s: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s")


def test_devices_come_and_go_sigterm_exits_0_and_sigkill_shows_offline_within_10_s(
    mosquitto: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys"
    add_key(keys, "*")
    fleet = _serve(
        mosquitto, tmp_path, "--device-id", "fleet", "--count", "2", "--key-file", str(keys)
    )
    lone = _serve(mosquitto, tmp_path, "--device-id", "lone", "--insecure")
    try:
        assert fleet.stdout is not None and lone.stdout is not None
        urls = [fleet.stdout.readline().strip(), fleet.stdout.readline().strip()]
        assert urls == [f"mqtt://127.0.0.1:{mosquitto.port}/fleet-{i}" for i in (1, 2)]
        assert lone.stdout.readline().strip().endswith("/lone")
        online = {"fleet-1", "fleet-2", "lone"}
        _until(lambda: {d for d, r in _devices(mosquitto).items() if r["online"]} == online, 20)
        assert main(["devices", "--broker", mosquitto.url(), "--json"]) == 0
        rows = {row["device_id"]: row for row in json.loads(capsys.readouterr().out)}
        assert set(rows) == online and all(row["state"] == "online" for row in rows.values())
        assert all(row["firmware"] == "sim-0.1.0" and row["session"] == 1 for row in rows.values())

        lone.send_signal(signal.SIGKILL)  # no clean exit: only the Will can say offline
        lone.wait(5)
        took_s = _until(lambda: _devices(mosquitto)["lone"]["online"] is False, 10.0)
        assert took_s < 10.0
        assert _devices(mosquitto)["lone"]["session"] == 1

        fleet.send_signal(signal.SIGTERM)
        assert fleet.wait(15) == 0
        after = _devices(mosquitto)
        assert after["fleet-1"]["online"] is False and after["fleet-2"]["online"] is False
    finally:
        for process in (fleet, lone):
            if process.poll() is None:
                process.kill()
                process.wait(5)

    # A restarted device connects with a higher session counter (kept in --state-dir).
    again = _serve(mosquitto, tmp_path, "--device-id", "lone", "--insecure")
    try:
        _until(lambda: _devices(mosquitto)["lone"] == {"online": True, "session": 2}, 20)
        assert (tmp_path / "state" / "lone.session").read_text().strip() == "2"
    finally:
        again.send_signal(signal.SIGINT)
        assert again.wait(15) == 0
    assert os.path.exists(tmp_path / "state" / "fleet-1.session")
