"""Broker access and command authenticity over a real Mosquitto broker: wrong password
refused, ACL confinement, TLS with a generated CA, a forged unsigned STIM_SET published
with ``mosquitto_pub`` NACKed AUTH and not applied, a replayed signed one NACKed REPLAY."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest

from firmware_bridge.events import CommandAcked, Connected
from firmware_bridge.framing import encode_frame
from firmware_bridge.messages import MsgType, Nack, NackReason, StimSet, StimSetting
from firmware_bridge.session import ControllerSession
from firmware_bridge.transports.base import LinkClosed
from firmware_bridge.transports.mqtt import open_controller_link
from firmware_bridge.transports.mqtt_presence import DOWN, UP, topic
from firmware_bridge.transports.registry import open_link
from firmware_bridge.url import MqttURL, parse_device_url
from tests.mosquitto import USERS, Mosquitto
from tests.mqtt_helpers import KEY, eventually, mosquitto_pub, pump, served, tapped

SETTING = StimSetting(True, 1.0, 100, 50.0, 1.0)


def _url(text: str) -> MqttURL:
    url = parse_device_url(text)
    assert isinstance(url, MqttURL)
    return url


def _handshaken(events: list[object]) -> bool:
    return any(isinstance(e, Connected) for e in events)


async def test_wrong_password_is_refused_and_a_password_file_is_read(
    broker_factory: Callable[..., Mosquitto], tmp_path: Path
) -> None:
    broker = broker_factory(auth=True)
    with pytest.raises(LinkClosed, match=r"(?i)password|not authori"):
        await open_link(broker.url("dev-a", "controller", "wrong"))
    with pytest.raises(LinkClosed, match=r"(?i)password|not authori"):
        await open_link(broker.url("dev-a"))  # anonymous clients are not allowed
    secret = tmp_path / "controller.password"
    secret.write_text(USERS["controller"] + "\n")
    link = await open_link(broker.url("dev-a", "controller") + f"?password_file={secret}")
    await link.close()


async def test_the_acl_keeps_a_device_off_another_devices_topics(
    broker_factory: Callable[..., Mosquitto],
) -> None:
    broker = broker_factory(auth=True)
    b_down = topic("dev-b", DOWN)
    async with (
        tapped(broker.url(), b_down, username="dev-b", password=USERS["dev-b"]) as b_inbox,
        aiomqtt.Client("127.0.0.1", broker.port, username="dev-a", password=USERS["dev-a"]) as a,
        aiomqtt.Client(
            "127.0.0.1", broker.port, username="controller", password=USERS["controller"]
        ) as ctl,
    ):
        await a.publish(b_down, b"from dev-a", qos=1)  # the broker drops it: not dev-a's topic
        await a.publish(topic("dev-b", UP), b"posing as dev-b", qos=1)
        await ctl.publish(b_down, b"from the controller", qos=1)
        await eventually(lambda: b"from the controller" in b_inbox.raw)
        await asyncio.sleep(0.3)
    assert b_inbox.raw == [b"from the controller"]


async def test_a_signed_session_over_tls_with_the_fixtures_ca(
    broker_factory: Callable[..., Mosquitto], tmp_path: Path
) -> None:
    broker = broker_factory(tls=True)
    async with served(broker.url(), ["stim-tls"], tmp_path / "state"):
        link = await open_controller_link(_url(broker.url("stim-tls")))
        session = ControllerSession(key=KEY)
        session.connect(asyncio.get_running_loop().time())
        events = await pump(link, session, _handshaken)
        info = next(e for e in events if isinstance(e, Connected)).info
        assert info.device_id == "stim-tls"
        await link.close()
    with pytest.raises(aiomqtt.MqttError):  # the same port without TLS: no connection
        async with aiomqtt.Client("127.0.0.1", broker.port, timeout=1.0):
            pass


async def test_forged_unsigned_stim_set_is_nacked_auth_and_a_replay_nacked_replay(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    loop = asyncio.get_running_loop()
    async with (
        served(mosquitto.url(), ["stim-k"], tmp_path / "state") as fleet,
        tapped(mosquitto.url(), topic("stim-k", UP)) as up,
        tapped(mosquitto.url(), topic("stim-k", DOWN)) as down,
    ):
        firmware = fleet[0].device.firmware
        link = await open_controller_link(_url(mosquitto.url("stim-k")))
        session = ControllerSession(key=KEY)
        session.connect(loop.time())
        await pump(link, session, _handshaken)

        def nacks(reason: NackReason) -> list[Nack]:
            return [m for m in up.messages() if isinstance(m, Nack) and m.reason == reason]

        # A forged command: well formed, correct CRC, no tag, from outside our code.
        forged = encode_frame(
            MsgType.STIM_SET, StimSet(9_999, SETTING).encode(), seq=1, timestamp_us=2**47
        )
        await mosquitto_pub(mosquitto.port, topic("stim-k", DOWN), forged)
        await pump(link, session, lambda _: bool(nacks(NackReason.AUTH)))
        assert [n.command_id for n in nacks(NackReason.AUTH)] == [9_999]
        assert firmware.commands_applied == 0 and not firmware.output.enabled

        # The genuine signed command is applied once.
        genuine_id = session.send_stim_set(SETTING, loop.time())
        await pump(link, session, lambda ev: any(isinstance(e, CommandAcked) for e in ev))
        assert firmware.commands_applied == 1 and firmware.output.enabled
        recorded = next(
            raw
            for raw, frame in zip(down.raw, down.frames, strict=False)
            if frame.msg_type == MsgType.STIM_SET
            and StimSet.decode(frame.payload).command_id == genuine_id
        )
        # A new handshake empties the device's command memory, so the recorded frame is
        # judged on its timestamp alone.
        session.connect(loop.time())
        await pump(link, session, _handshaken)
        await mosquitto_pub(mosquitto.port, topic("stim-k", DOWN), recorded)
        await pump(link, session, lambda _: bool(nacks(NackReason.REPLAY)))
        assert [n.command_id for n in nacks(NackReason.REPLAY)] == [genuine_id]
        assert firmware.commands_applied == 1
        assert firmware.session.stats.auth_failures >= 1
        await link.close()
