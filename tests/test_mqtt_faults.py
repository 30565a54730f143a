"""Faults on a real broker: the broker killed and restarted during a session, garbage and
oversize payloads on every topic."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from controller.backoff import Backoff
from controller.config import ControllerConfig
from controller.loop import ControllerLoop
from controller.node import ControllerNode
from controller.observations import CommandAnswered, CommandIssued
from controller.run import build_node
from firmware_bridge.clock import AsyncioClock
from firmware_bridge.events import Connected
from firmware_bridge.presence_watch import read_presence
from firmware_bridge.session import ControllerSession
from firmware_bridge.transports.mqtt import MqttDeviceLink, MqttTransport, open_controller_link
from firmware_bridge.transports.mqtt_presence import DOWN, PRESENCE, UP, topic
from firmware_bridge.transports.registry import TransportRegistry
from firmware_bridge.url import MqttURL, parse_broker_url, parse_device_url
from simulator.firmware import VirtualFirmware
from tests.mosquitto import Mosquitto
from tests.mqtt_helpers import FAST_KEEPALIVE_S, KEY, eventually, mosquitto_pub, pump, served

RESTARTS = 5


async def test_broker_killed_and_restarted_five_times_during_a_session(
    broker_factory: Callable[..., Mosquitto], tmp_path: Path
) -> None:
    broker = broker_factory(persistence=True)  # retained records survive: the stale case
    config = ControllerConfig.model_validate(
        {"policy": {"name": "open-loop", "open_loop": {"mode": "continuous"}}}
    )
    node = build_node(config, tmp_path / "audit.jsonl", None, datetime.now(UTC), key=KEY)
    node.backoff = Backoff(0.1, 0.4)
    # Command ids start again at every handshake (the device forgets them then), so a
    # command is known by (connection, id).
    issued: list[tuple[int, int]] = []
    answers: dict[tuple[int, int], list[str]] = {}

    def observe(event: object) -> None:
        if isinstance(event, CommandIssued):
            issued.append((node.connects, event.command_id))
        elif isinstance(event, CommandAnswered):
            answers.setdefault((node.connects, event.command_id), []).append(event.outcome)

    node.subscribe(observe)
    registry = TransportRegistry()
    transport = MqttTransport(keepalive_s=FAST_KEEPALIVE_S)
    registry.register("mqtt", transport)
    async with served(broker.url(), ["stim-r"], tmp_path / "state") as fleet:
        firmware, device_link = fleet[0].device.firmware, fleet[0].link
        stop = asyncio.Event()
        loop = ControllerLoop(broker.url("stim-r"), node, AsyncioClock(), registry)
        running = asyncio.create_task(loop.run(stop=stop))

        def stimulating_and_quiet() -> bool:
            return (
                firmware.output.enabled
                and firmware.output.target_ma > 0
                and not node.session.pending_commands
            )

        sessions = []
        for cycle in range(RESTARTS):
            await eventually(stimulating_and_quiet, 10.0)
            assert device_link.birth is not None
            sessions.append(device_link.birth.session)
            await _kill_and_restart(broker, node, firmware, device_link)
            assert device_link.birth.session > sessions[-1]
            await _presence_follows(broker, transport, device_link.birth.session, cycle)
        await eventually(stimulating_and_quiet, 10.0)
        stop.set()
        report = await running
        await eventually(lambda: firmware.goodbyes == 1, 3.0)  # the BYE is on its way
    assert sessions == sorted(set(sessions)) and len(sessions) == RESTARTS
    assert report.connects == RESTARTS + 1 and report.ramped_down
    # No command lost or applied twice: every command has exactly one answer, none timed
    # out, and the device applied exactly the STIM_SETs the controller saw ACKed.
    assert issued == sorted(set(issued)) and {c for c, _ in issued} == set(range(1, RESTARTS + 2))
    assert all(len(outcomes) == 1 for outcomes in answers.values()), answers
    assert set(answers) == set(issued)
    acked = [i for i, outcomes in answers.items() if outcomes == ["ack"]]
    assert len(acked) == len(issued)
    assert firmware.commands_applied == len(acked)


async def _kill_and_restart(
    broker: Mosquitto, node: ControllerNode, firmware: VirtualFirmware, link: MqttDeviceLink
) -> None:
    """Kill the broker (no wills, no goodbyes: both ends just lose it), see the device's
    watchdog ramp the output down while it is alone, restart, see both ends come back."""
    connects_before = node.connects
    broker.kill()
    await eventually(lambda: firmware.output.watchdog_tripped, 3.0)
    await eventually(lambda: firmware.output.amplitude_ma == 0.0, 3.0)
    broker.start()
    await eventually(lambda: node.connects > connects_before, 10.0)
    await eventually(lambda: link.connected, 5.0)


async def _presence_follows(
    broker: Mosquitto, transport: MqttTransport, session: int, cycle: int
) -> None:
    """The controller's tracker shows the device's current session online, and so does a
    newcomer, although the retained record it may see first is the stale "online" of the
    session the broker's death left behind."""
    tracker = transport.presence["stim-r"]

    def current() -> bool:
        record = tracker.current.get("stim-r")
        return record is not None and record.session == session and record.online

    await eventually(current, 5.0)
    fresh = await read_presence(parse_broker_url(broker.url()))
    assert fresh.current["stim-r"].session == session, cycle
    assert fresh.current["stim-r"].online


async def test_garbage_and_oversize_on_every_topic_are_counted_and_dropped(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    loop = asyncio.get_running_loop()
    url = parse_device_url(mosquitto.url("stim-g"))
    assert isinstance(url, MqttURL)
    rng = __import__("random").Random(7)
    garbage = bytes(rng.randrange(1, 256) for _ in range(300))  # no delimiter inside
    oversize = bytes(rng.randrange(256) for _ in range(6000))
    async with served(mosquitto.url(), ["stim-g"], tmp_path / "state") as fleet:
        firmware, device_link = fleet[0].device.firmware, fleet[0].link
        link = await open_controller_link(url)
        session = ControllerSession(key=KEY)
        session.connect(loop.time())
        await pump(link, session, lambda ev: any(isinstance(e, Connected) for e in ev))
        for leaf in (UP, DOWN, PRESENCE):
            for payload in (garbage, oversize, b"\x00\x01\x02\x00"):
                await mosquitto_pub(mosquitto.port, topic("stim-g", leaf), payload)
        await pump(
            link,
            session,
            lambda _: (
                link.stats.oversize_dropped == 1
                and device_link.stats.oversize_dropped == 1
                and link.presence.invalid == 3
                and session.stats.decoder.frames_bad >= 2  # the garbage and the stub
                and firmware.session.stats.decoder.frames_bad >= 2
            ),
        )
        assert link.stats.oversize_dropped == 1 and device_link.stats.oversize_dropped == 1
        assert session.stats.sample_gaps == 0  # the real frames around them all arrived
        # The device still serves a new session.
        session.connect(loop.time())
        events = await pump(link, session, lambda ev: any(isinstance(e, Connected) for e in ev))
        assert any(isinstance(e, Connected) and e.info.device_id == "stim-g" for e in events)
        assert link.presence.current["stim-g"].online
        await link.close()
