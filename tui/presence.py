"""The fleet view's feed: the devices' retained presence records on an MQTT broker.

A record is the device's own birth (online) or its Last Will (offline), with a session
counter, so the board is told "offline" by the broker when a device dies; no staleness
rule of our own is needed (or wanted: a device online for hours sends no new record).
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

from firmware_bridge.presence_watch import watch_presence
from firmware_bridge.transports.mqtt_presence import Presence
from firmware_bridge.url import MqttBroker, parse_broker_url
from tui.fleet import PresenceBoard, PresenceListener


def device_url(broker: MqttBroker, device_id: str) -> str:
    """The ``mqtt://`` URL that opens ``device_id`` on ``broker`` (password never shown)."""
    auth = f"{broker.username}@" if broker.username else ""
    query: dict[str, str] = {}
    if broker.tls:
        query["tls"] = "1"
    if broker.ca_file:
        query["ca"] = broker.ca_file
    if broker.password_file:
        query["password_file"] = broker.password_file
    tail = f"?{urlencode(query)}" if query else ""
    return f"mqtt://{auth}{broker.host}:{broker.port}/{device_id}{tail}"


def mqtt_presence_listener(broker_url: str) -> PresenceListener:
    """A listener that feeds a board from ``broker_url``'s presence topics until cancelled."""
    broker = parse_broker_url(broker_url)

    async def listen(board: PresenceBoard) -> None:
        def on_change(record: Presence) -> None:
            board.update(
                record.device_id,
                device_url(broker, record.device_id),
                record.online,
                record.t_unix,
                f"{record.firmware}  session {record.session}",
            )

        await watch_presence(broker, on_change, asyncio.Event())

    return listen
