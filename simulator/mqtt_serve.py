"""Simulated devices on an MQTT broker: one process serves one or many devices, each with
its own id, patient seed, presence session counter and broker connection."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

from firmware_bridge.clock import Clock
from firmware_bridge.transports.mqtt import KEEPALIVE_S, MqttDeviceLink
from firmware_bridge.transports.mqtt_presence import SessionCounter
from firmware_bridge.url import MqttBroker
from simulator.device_factory import SimulatedDevice, build_device
from simulator.embedded import device_link
from simulator.serve import serve_firmware


@dataclass
class BrokerDevice:
    """One simulated device and its broker link (for inspection by tests and benches)."""

    device: SimulatedDevice
    link: MqttDeviceLink
    seed: int

    @property
    def device_id(self) -> str:
        return self.device.firmware.info.device_id


def fleet_ids(device_id: str, count: int | None) -> list[str]:
    """``ID`` alone, or ``ID-1 .. ID-N`` for a fleet of N."""
    if count is None:
        return [device_id]
    return [f"{device_id}-{i}" for i in range(1, count + 1)]


def build_broker_devices(
    broker: MqttBroker,
    device_ids: list[str],
    clock: Clock,
    state_dir: str | Path,
    scenario: str = "default",
    model: str | None = None,
    seed: int = 0,
    keys: dict[str, bytes] | None = None,
    keepalive_s: int = KEEPALIVE_S,
    samples_per_frame: int | None = None,
    signal_block_frames: int = 1,
) -> list[BrokerDevice]:
    """Devices (patient seeds ``seed``, ``seed + 1``, ...) with links not yet started.

    ``keys`` maps a device id to its signing key (None: signing off). Raises DeviceSpecError
    or SessionCounterError before anything connects."""
    fleet = []
    for i, device_id in enumerate(device_ids):
        params = {"seed": str(seed + i)}
        if model:
            params["model"] = model
        key = None if keys is None else keys[device_id]
        device = build_device(
            scenario,
            params,
            clock.now(),
            signing_key=key,
            device_id=device_id,
            samples_per_frame=samples_per_frame,
            signal_block_frames=signal_block_frames,
        )
        counter = SessionCounter.in_dir(state_dir, device_id)
        counter.last()  # an unreadable counter stops here, not in the connection loop
        firmware_version = device.firmware.info.firmware_version
        link = MqttDeviceLink(broker, device_id, firmware_version, counter, keepalive_s)
        fleet.append(BrokerDevice(device, link, seed + i))
    return fleet


async def serve_broker_devices(
    fleet: list[BrokerDevice], clock: Clock, stop: asyncio.Event
) -> None:
    """Serve every device until ``stop`` is set; then each says offline and disconnects."""
    for member in fleet:
        member.link.start()
    tasks = [
        asyncio.create_task(
            serve_firmware(
                member.device.firmware,
                device_link(member.device, member.link, clock, member.seed),
                clock,
                stop,
            )
        )
        for member in fleet
    ]
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(member.link.close() for member in fleet))
