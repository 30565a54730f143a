"""``neurostim bench mqtt`` on a real broker: it finishes, every command it times gets its
ACK, and the fleet case stops its devices and controllers."""

from __future__ import annotations

import json

import pytest

from neurostim_cli.main import main
from tests.mosquitto import Mosquitto


def test_bench_on_a_small_fleet_answers_every_command_and_exits(
    mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "mqtt", "--broker", mosquitto.url(), "--commands", "50"]
    assert main([*argv, "--seconds", "1", "--count", "3", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    round_trip = results["round_trip"]
    assert round_trip["n"] == 50 and round_trip["unanswered"] == 0
    assert round_trip["not_acked"] == {}
    assert [row["sample_gaps"] for row in results["throughput"]] == [0, 0]
    fleet = results["fleet"]
    assert fleet["handshaken"] == 3 and fleet["unanswered"] == 0 and fleet["not_acked"] == {}
    assert fleet["commands"] == 3 * 2  # two commands per second per device
    assert fleet["sample_gaps"] == 0
    assert fleet["per_device_p99_ms_worst"] is not None


def test_serve_refuses_a_signal_block_below_one_frame(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["device", "serve", "--transport", "mqtt", "--broker", "mqtt://127.0.0.1:1"]
    assert main([*argv, "--device-id", "d", "--insecure", "--signal-block-frames", "0"]) == 2
    assert "--signal-block-frames" in capsys.readouterr().err
