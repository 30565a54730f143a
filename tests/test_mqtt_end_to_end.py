"""The controller and simulated devices over a real Mosquitto broker: handshake, samples,
signed stimulation with ACK and STIM_STATE, the confirmed ramp-down, broker security."""

from __future__ import annotations

from pathlib import Path

from controller.config import ControllerConfig
from controller.loop import ControllerLoop
from controller.node import ControllerNode
from controller.observations import CommandAnswered, DeviceStimState
from controller.run import build_node
from firmware_bridge.clock import AsyncioClock
from firmware_bridge.transports.mqtt import MqttTransport
from firmware_bridge.transports.registry import TransportRegistry
from tests.mosquitto import Mosquitto
from tests.mqtt_helpers import FAST_KEEPALIVE_S, KEY, eventually, served


def open_loop_config() -> ControllerConfig:
    return ControllerConfig.model_validate(
        {"policy": {"name": "open-loop", "open_loop": {"mode": "continuous"}}}
    )


def mqtt_registry() -> tuple[TransportRegistry, MqttTransport]:
    registry = TransportRegistry()
    transport = MqttTransport(keepalive_s=FAST_KEEPALIVE_S)
    registry.register("mqtt", transport)
    return registry, transport


def controller(tmp_path: Path, name: str = "run") -> ControllerNode:
    from datetime import UTC, datetime

    return build_node(
        open_loop_config(), tmp_path / f"{name}.jsonl", None, datetime.now(UTC), key=KEY
    )


async def test_controller_and_device_over_the_broker_stimulate_and_stop_cleanly(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with served(mosquitto.url(), ["stim-1"], tmp_path / "state") as fleet:
        device = fleet[0].device.firmware
        node = controller(tmp_path)
        answers: list[CommandAnswered] = []
        states: list[DeviceStimState] = []
        node.subscribe(
            lambda e: (
                answers.append(e)
                if isinstance(e, CommandAnswered)
                else states.append(e)
                if isinstance(e, DeviceStimState)
                else None
            )
        )
        registry, _ = mqtt_registry()
        loop = ControllerLoop(mosquitto.url("stim-1"), node, AsyncioClock(), registry)
        report = await loop.run(duration_s=5.0)
        await eventually(lambda: device.goodbyes == 1, 3.0)  # the BYE is on its way
    assert report.connects == 1 and report.device["device_id"] == "stim-1"
    assert report.link["samples"] > 100 and report.link["sample_gaps"] == 0
    assert report.link["crc_errors"] == 0
    assert report.commands_sent >= 2 and report.commands_acked == report.commands_sent
    assert answers and all(a.outcome == "ack" for a in answers)
    assert any(s.state.amplitude_ma > 0 for s in states)  # stimulation reported by the device
    assert report.ramped_down and report.stopped_by == "duration"
    assert device.commands_applied >= 2 and device.goodbyes == 1
    assert device.output.amplitude_ma == 0.0
