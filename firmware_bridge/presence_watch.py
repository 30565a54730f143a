"""Which devices are on a broker, from their retained presence records (``neurostim
devices``): a snapshot, or a watch that reports every change of a device's current record."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

import aiomqtt

from firmware_bridge.errors import LinkClosed
from firmware_bridge.transports.mqtt import client_for
from firmware_bridge.transports.mqtt_presence import PRESENCE_WILDCARD, Presence, PresenceTracker
from firmware_bridge.url import MqttBroker

#: Retained records arrive right after the subscription; this much silence ends them.
QUIET_S = 0.3


def _identifier() -> str:
    return f"neurostim-devices-{os.getpid()}-{os.urandom(3).hex()}"


async def read_presence(broker: MqttBroker, timeout_s: float = 5.0) -> PresenceTracker:
    """The current record of every device with a retained presence record."""
    tracker = PresenceTracker()
    try:
        async with client_for(broker, _identifier()) as client:
            await client.subscribe(PRESENCE_WILDCARD, qos=1)
            deadline = time.monotonic() + timeout_s
            messages = aiter(client.messages)
            while time.monotonic() < deadline:
                try:
                    message = await asyncio.wait_for(anext(messages), QUIET_S)
                except TimeoutError:
                    break
                tracker.update(message.topic.value, _payload(message))
    except aiomqtt.MqttError as exc:
        raise LinkClosed(f"broker {broker}: {exc}") from exc
    return tracker


async def watch_presence(
    broker: MqttBroker, on_change: Callable[[Presence], None], stop: asyncio.Event
) -> PresenceTracker:
    """Report every change of a device's current record until ``stop`` is set."""
    tracker = PresenceTracker()

    async def follow() -> None:
        async with client_for(broker, _identifier()) as client:
            await client.subscribe(PRESENCE_WILDCARD, qos=1)
            async for message in client.messages:
                record = tracker.update(message.topic.value, _payload(message))
                if record is not None:
                    on_change(record)

    task = asyncio.create_task(follow())
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()
        stopper.cancel()
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise LinkClosed(f"broker {broker}: {task.exception()}")
    return tracker


def _payload(message: aiomqtt.Message) -> bytes:
    raw = message.payload
    return raw if isinstance(raw, bytes) else b""


def describe(record: Presence) -> dict[str, object]:
    """One device as a row: online devices are seen now; an offline one was last seen at
    its record's time (its clean exit, or for a will the connect of its last session)."""
    return {
        "device_id": record.device_id,
        "state": "online" if record.online else "offline",
        "firmware": record.firmware,
        "session": record.session,
        "last_seen_utc": "now" if record.online else _utc(record.t_unix),
        "record_utc": _utc(record.t_unix),
    }


def _utc(t_unix: float) -> str:
    return datetime.fromtimestamp(t_unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_table(records: list[Presence]) -> str:
    rows = [describe(r) for r in sorted(records, key=lambda r: r.device_id)]
    header = ("DEVICE", "STATE", "FIRMWARE", "SESSION", "LAST SEEN (UTC)")
    keys = ("device_id", "state", "firmware", "session", "last_seen_utc")
    table = [header, *[tuple(str(row[k]) for k in keys) for row in rows]]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in table)
    return "\n".join(line.rstrip() for line in lines)


def to_json(records: list[Presence]) -> str:
    return json.dumps([describe(r) for r in sorted(records, key=lambda r: r.device_id)])
