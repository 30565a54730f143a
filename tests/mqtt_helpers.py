"""Shared pieces of the MQTT tests: simulated devices served in the test's event loop, a
hand-pumped controller session over the real controller link, and a raw topic tap."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt

from firmware_bridge.clock import AsyncioClock
from firmware_bridge.events import Event
from firmware_bridge.framing import Frame, FrameDecoder
from firmware_bridge.messages import Message, parse_payload
from firmware_bridge.session import ControllerSession
from firmware_bridge.transports.mqtt import MqttControllerLink, inbound_bytes
from firmware_bridge.url import parse_broker_url
from simulator.mqtt_serve import BrokerDevice, build_broker_devices, serve_broker_devices

KEY = bytes(range(32))
FAST_KEEPALIVE_S = 2


@asynccontextmanager
async def served(
    broker_url: str, device_ids: list[str], state_dir: Path, key: bytes | None = KEY
) -> AsyncIterator[list[BrokerDevice]]:
    """Simulated devices on the broker (same event loop) for the block."""
    clock = AsyncioClock()
    keys = None if key is None else dict.fromkeys(device_ids, key)
    fleet = build_broker_devices(
        parse_broker_url(broker_url),
        device_ids,
        clock,
        state_dir,
        scenario="noise",
        keys=keys,
        keepalive_s=FAST_KEEPALIVE_S,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(serve_broker_devices(fleet, clock, stop))
    try:
        for member in fleet:
            assert await member.link.wait_connected(5.0), member.link.stats.errors
        yield fleet
    finally:
        stop.set()
        await task


async def pump(
    link: MqttControllerLink,
    session: ControllerSession,
    until: Callable[[list[Event]], bool],
    timeout_s: float = 5.0,
) -> list[Event]:
    """Run ``session`` on ``link`` (heartbeats, retries) until ``until(events)`` holds."""
    loop = asyncio.get_running_loop()
    events: list[Event] = []
    deadline = loop.time() + timeout_s
    while True:
        data = session.data_to_send()
        if data:
            await link.send(data)
        if until(events):
            return events
        now = loop.time()
        if now > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s: {events[-5:]}")
        timer = session.next_deadline()
        wait_s = max(0.001, min(deadline, timer if timer is not None else deadline) - now)
        try:
            received = await asyncio.wait_for(link.receive(), wait_s)
            events += session.receive_data(received, loop.time())
        except TimeoutError:
            pass
        timer = session.next_deadline()
        if timer is not None and loop.time() >= timer:
            events += session.handle_timeout(loop.time())


@dataclass
class Tap:
    """Everything published on one topic, decoded as protocol frames where possible."""

    raw: list[bytes] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    decoder: FrameDecoder = field(default_factory=FrameDecoder)

    def messages(self) -> list[Message]:
        parsed = []
        for frame in self.frames:
            with contextlib.suppress(ValueError):
                parsed.append(parse_payload(frame.msg_type, frame.payload, n_channels=8))
        return parsed


@asynccontextmanager
async def tapped(broker_url: str, topic_name: str, **client: object) -> AsyncIterator[Tap]:
    broker = parse_broker_url(broker_url)
    tap = Tap()
    async with aiomqtt.Client(broker.host, broker.port, **client) as sub:  # type: ignore[arg-type]
        await sub.subscribe(topic_name, qos=1)

        async def collect() -> None:
            async for message in sub.messages:
                payload = message.payload
                assert isinstance(payload, bytes)
                tap.raw.append(payload)
                data = inbound_bytes(payload)
                if data is not None:
                    tap.frames += tap.decoder.feed(data)

        task = asyncio.create_task(collect())
        try:
            yield tap
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


async def eventually(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout_s} s")
        await asyncio.sleep(0.02)


async def mosquitto_pub(port: int, topic_name: str, payload: bytes) -> None:
    """Publish raw bytes with the broker's own command-line client (not our code)."""
    from tests.mosquitto import MOSQUITTO_PUB

    process = await asyncio.create_subprocess_exec(
        MOSQUITTO_PUB,
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-t",
        topic_name,
        "-q",
        "1",
        "-s",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate(payload)
    assert process.returncode == 0, err.decode()
