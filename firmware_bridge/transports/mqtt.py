"""The MQTT transport over aiomqtt (docs/protocol.md section 1.6): each publish carries one
wire frame, COBS and delimiter included, so the codec and the sessions are those of serial.

Two ends share one connection loop (``async with Client(...)`` around the message loop,
``MqttError`` ends a connection; a client object is never reused):

- the controller end (``open_controller_link``) is one broker connection: losing it closes
  the link, and the controller's own backoff opens a new one and handshakes again, exactly
  as when a serial port vanishes;
- the device end (``MqttDeviceLink``) reconnects by itself, publishes its presence birth
  after every connect with a Last Will of the same session, and drops what it sends while
  the broker is away (as a UART nobody reads), so the firmware, its timers and its watchdog
  keep running whatever the broker does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from firmware_bridge.framing import MAX_ENCODED
from firmware_bridge.messages import MsgType
from firmware_bridge.transports.base import LinkClosed, LinkContext
from firmware_bridge.transports.mqtt_presence import (
    DOWN,
    PRESENCE,
    UP,
    Presence,
    PresenceTracker,
    SessionCounter,
    topic,
)
from firmware_bridge.url import DeviceURL, MqttBroker, MqttURL

log = logging.getLogger(__name__)

#: Default keepalive: a silent client is noticed by the broker within 1.5 x this.
KEEPALIVE_S = 5
#: The largest wire frame plus its delimiter; a longer payload is dropped undecoded.
MAX_FRAME_PAYLOAD = MAX_ENCODED + 1
#: Seconds to wait for a broker answer (connect, subscribe, a QoS 1 publish).
BROKER_TIMEOUT_S = 5.0
#: Longest pause between the device's reconnect attempts (doubling from 50 ms).
RECONNECT_MAX_S = 1.0
#: Seconds ``close`` waits for frames still being published and for the last words.
CLOSE_FLUSH_S = 1.0
_SAMPLES = int(MsgType.SAMPLES)


def frame_qos(frame: bytes) -> int:
    """SAMPLES at QoS 0, every other frame at QoS 1. The type is message byte 1; COBS
    leaves it at offset 2 when the first code byte spans at least two data bytes (a
    shorter first block means a zero version or type byte: not SAMPLES)."""
    return 0 if len(frame) > 2 and frame[0] >= 3 and frame[2] == _SAMPLES else 1


def inbound_bytes(payload: bytes) -> bytes | None:
    """What the decoder gets for one publish; None when it is dropped undecoded (empty or
    longer than any frame). Each publish stands alone: a delimiter after it ends whatever
    it held, so garbage in one publish cannot spoil the next."""
    if not payload or len(payload) > MAX_FRAME_PAYLOAD:
        return None
    return payload if payload[-1] == 0 else payload + b"\x00"


class FrameSplitter:
    """Cuts the byte stream a session produces into whole frames (delimiter kept)."""

    def __init__(self) -> None:
        self._tail = b""

    def split(self, data: bytes) -> list[bytes]:
        chunk = self._tail + bytes(data) if self._tail else bytes(data)
        frames: list[bytes] = []
        start = 0
        while True:
            end = chunk.find(0, start)
            if end < 0:
                break
            if end > start:  # a lone delimiter (a receiver flush) carries nothing here
                frames.append(chunk[start : end + 1])
            start = end + 1
        self._tail = chunk[start:]
        if len(self._tail) > MAX_ENCODED:  # never a frame: same rule as the decoder
            self._tail = b""
        return frames


@dataclass
class MqttLinkStats:
    """What one end's broker connection did; frame-level errors are the decoder's."""

    connects: int = 0
    connect_failures: int = 0
    publishes_rx: int = 0
    publishes_tx: int = 0
    oversize_dropped: int = 0
    empty_dropped: int = 0
    foreign_dropped: int = 0  # publishes on a topic this end does not read frames from
    publish_failures: int = 0
    dropped_offline: int = 0  # frames the device sent while the broker was away
    last_error: str = ""
    errors: list[str] = field(default_factory=list)


def read_password(broker: MqttBroker) -> str | None:
    """The password from the URL, else the first line of ``password_file``."""
    if broker.password is not None or broker.password_file is None:
        return broker.password
    try:
        with open(broker.password_file) as handle:
            return handle.readline().rstrip("\r\n")
    except OSError as exc:
        raise LinkClosed(f"cannot read MQTT password file {broker.password_file}: {exc}") from exc


def tls_context(broker: MqttBroker) -> ssl.SSLContext | None:
    if not broker.tls:
        return None
    try:
        return ssl.create_default_context(cafile=broker.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise LinkClosed(f"cannot load the MQTT CA file {broker.ca_file}: {exc}") from exc


def client_for(
    broker: MqttBroker,
    identifier: str,
    keepalive_s: int = KEEPALIVE_S,
    will: aiomqtt.Will | None = None,
) -> aiomqtt.Client:
    """A new aiomqtt client (clean session, MQTT 3.1.1) for ``broker``."""
    client = aiomqtt.Client(
        broker.host,
        broker.port,
        username=broker.username,
        password=read_password(broker),
        identifier=identifier,
        will=will,
        clean_session=True,
        keepalive=keepalive_s,
        timeout=BROKER_TIMEOUT_S,
        tls_context=tls_context(broker),
        logger=log,
        # One small frame per publish: Nagle's algorithm would hold each behind the last.
        socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
    )
    # Publishes are not awaited one by one (a session sends several frames at once), so
    # many in flight is the normal state, not a reason to warn.
    client.pending_calls_threshold = 1_000_000
    return client


def _paho(client: aiomqtt.Client) -> mqtt.Client:
    """The paho client under an aiomqtt client, for publishing frames without awaiting each.

    aiomqtt's ``publish`` waits for every message with a task, an event and a timeout, and
    looks its id up among all pending calls; at the thousands of frames per second of a
    fleet that costs more than the frames, and the lookup grows with the backlog until the
    loop collapses. The frames do not need that wait: the sessions resend commands by id
    and a sample gap is counted, not retried. paho's ``publish`` only queues the packet;
    aiomqtt's socket callbacks on the same event loop write it out."""
    return client._client


def _unique_identifier(role: str, device_id: str) -> str:
    return f"neurostim-{role}-{device_id}-{os.getpid()}-{os.urandom(3).hex()}"


class _MqttEnd(LinkContext):
    """One broker connection loop shared by both ends (subclasses say what to read,
    where to write and what to do on connect)."""

    def __init__(
        self,
        broker: MqttBroker,
        device_id: str,
        frames_in: str,
        frames_out: str,
        keepalive_s: int,
    ) -> None:
        self.broker = broker
        self.device_id = device_id
        self.stats = MqttLinkStats()
        self._frames_in = frames_in
        self._frames_out = frames_out
        self._keepalive_s = keepalive_s
        self._inbox: asyncio.Queue[bytes | LinkClosed] = asyncio.Queue()
        self._splitter = FrameSplitter()
        self._client: aiomqtt.Client | None = None
        self._closing = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._attempted = asyncio.Event()  # the first connect attempt ended (either way)

    @property
    def connected(self) -> bool:
        return self._client is not None

    @property
    def description(self) -> str:
        return f"mqtt {self.broker} {self._frames_in} / {self._frames_out}"

    # -- what subclasses decide --------------------------------------------------------

    def _new_client(self) -> aiomqtt.Client:
        raise NotImplementedError

    def _subscriptions(self) -> tuple[str, ...]:
        return (self._frames_in,)

    async def _on_connect(self, client: aiomqtt.Client) -> None:
        """Called after subscribing, before any frame is sent on this connection."""

    def _on_other(self, topic_name: str, payload: bytes) -> bool:
        """A publish not on the frame topic; True when the subclass consumed it."""
        return False

    def _connection_lost(self, reason: str) -> bool:
        """True: connect again after a pause. False: the link is over."""
        return False

    # -- the connection loop -----------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"mqtt {self.device_id}")

    async def _run(self) -> None:
        delay_s = 0.05
        while not self._closing:
            reason = ""
            try:
                client = self._new_client()
                async with client:
                    for name in self._subscriptions():
                        await client.subscribe(name, qos=1)
                    await self._on_connect(client)
                    self._client = client
                    self.stats.connects += 1
                    delay_s = 0.05
                    self._attempted.set()
                    async for message in client.messages:
                        self._on_message(message)
            except aiomqtt.MqttError as exc:
                reason = f"broker {self.broker}: {exc}"
            except LinkClosed as exc:
                reason = str(exc)
            finally:
                was_connected = self._client is not None
                self._client = None
            if self._closing:
                break
            if not was_connected:
                self.stats.connect_failures += 1
            self.stats.last_error = reason
            if len(self.stats.errors) < 100:
                self.stats.errors.append(reason)
            self._attempted.set()
            if not self._connection_lost(reason):
                self._inbox.put_nowait(LinkClosed(reason or f"broker {self.broker} closed"))
                return
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, RECONNECT_MAX_S)

    def _on_message(self, message: aiomqtt.Message) -> None:
        name = message.topic.value
        raw = message.payload
        payload = (
            raw if isinstance(raw, bytes) else bytes(raw) if isinstance(raw, bytearray) else b""
        )
        self.stats.publishes_rx += 1
        if name != self._frames_in:
            if not self._on_other(name, payload):
                self.stats.foreign_dropped += 1
            return
        data = inbound_bytes(payload)
        if data is None:
            if payload:
                self.stats.oversize_dropped += 1
            else:
                self.stats.empty_dropped += 1
            return
        self._inbox.put_nowait(data)

    # -- Link --------------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        if self._closed:
            raise LinkClosed(f"{self.description} is closed")
        frames = self._splitter.split(data)
        client = self._client
        if client is None:
            self._send_offline(len(frames))
            return
        paho = _paho(client)
        for frame in frames:
            info = paho.publish(self._frames_out, frame, qos=frame_qos(frame))
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self.stats.publish_failures += 1
        self.stats.publishes_tx += len(frames)

    def _send_offline(self, n_frames: int) -> None:
        raise LinkClosed(f"{self.description}: not connected to the broker")

    async def _flush(self, client: aiomqtt.Client, timeout_s: float) -> None:
        """Wait until every queued frame has been written to the broker's socket."""
        paho = _paho(client)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while paho.want_write() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)

    async def receive(self) -> bytes:
        if self._closed:
            raise LinkClosed(f"{self.description} is closed")
        item = await self._inbox.get()
        if isinstance(item, LinkClosed):
            self._closed = True
            raise item
        return item

    async def _before_close(self, client: aiomqtt.Client) -> None:
        """Last words on a live connection (the device's offline record)."""

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        client = self._client
        if client is not None:
            await self._flush(client, CLOSE_FLUSH_S)  # the last frames (a BYE) leave first
            with contextlib.suppress(aiomqtt.MqttError, asyncio.TimeoutError):
                await asyncio.wait_for(self._before_close(client), CLOSE_FLUSH_S)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._task
        self._closed = True
        self._inbox.put_nowait(LinkClosed(f"{self.description} closed"))


class MqttControllerLink(_MqttEnd):
    """The controller's end: reads ``up`` and ``presence``, writes ``down``."""

    def __init__(
        self,
        broker: MqttBroker,
        device_id: str,
        presence: PresenceTracker | None = None,
        keepalive_s: int = KEEPALIVE_S,
    ) -> None:
        super().__init__(
            broker, device_id, topic(device_id, UP), topic(device_id, DOWN), keepalive_s
        )
        self.presence = presence or PresenceTracker()
        self._presence_topic = topic(device_id, PRESENCE)

    @property
    def description(self) -> str:
        return f"mqtt {self.broker} device {self.device_id}"

    def _new_client(self) -> aiomqtt.Client:
        return client_for(
            self.broker, _unique_identifier("controller", self.device_id), self._keepalive_s
        )

    def _subscriptions(self) -> tuple[str, ...]:
        return (self._frames_in, self._presence_topic)

    def _on_other(self, topic_name: str, payload: bytes) -> bool:
        if topic_name != self._presence_topic:
            return False
        record = self.presence.update(topic_name, payload)
        if record is not None:
            log.info(
                "device %s %s (session %d, firmware %s)",
                record.device_id,
                "online" if record.online else "offline",
                record.session,
                record.firmware,
            )
        return True


async def open_controller_link(
    url: MqttURL, presence: PresenceTracker | None = None, keepalive_s: int = KEEPALIVE_S
) -> MqttControllerLink:
    """Connect to the broker and subscribe; raises LinkClosed when that fails."""
    link = MqttControllerLink(url.broker, url.device_id, presence, keepalive_s)
    link.start()
    await link._attempted.wait()
    if not link.connected:
        reason = link.stats.last_error or f"cannot connect to {url.broker}"
        await link.close()
        raise LinkClosed(reason)
    return link


class MqttTransport:
    """The transport registry's opener for ``mqtt://``. It keeps one presence tracker per
    device across reconnects, so a record older than one already seen stays stale."""

    def __init__(self, keepalive_s: int = KEEPALIVE_S) -> None:
        self.keepalive_s = keepalive_s
        self.presence: dict[str, PresenceTracker] = {}

    async def __call__(self, url: DeviceURL) -> MqttControllerLink:
        if not isinstance(url, MqttURL):
            raise LinkClosed(f"{url}: not an mqtt:// URL")
        tracker = self.presence.setdefault(url.device_id, PresenceTracker())
        return await open_controller_link(url, tracker, self.keepalive_s)


class MqttDeviceLink(_MqttEnd):
    """The device's end: reads ``down``, writes ``up``, owns the ``presence`` topic.

    ``firmware`` goes into the presence record; ``counter`` numbers the broker sessions
    (a new value at every connect, the Last Will included)."""

    def __init__(
        self,
        broker: MqttBroker,
        device_id: str,
        firmware: str,
        counter: SessionCounter,
        keepalive_s: int = KEEPALIVE_S,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            broker, device_id, topic(device_id, DOWN), topic(device_id, UP), keepalive_s
        )
        self.firmware = firmware
        self.counter = counter
        self.birth: Presence | None = None  # the record of the current (or last) connection
        self._presence_topic = topic(device_id, PRESENCE)
        self._wall_clock = wall_clock

    @property
    def description(self) -> str:
        return f"mqtt {self.broker} as {self.device_id}"

    def _new_client(self) -> aiomqtt.Client:
        birth = Presence(
            self.device_id, self.firmware, self.counter.next(), True, self._wall_clock()
        )
        self.birth = birth
        will = aiomqtt.Will(self._presence_topic, birth.offline().encode(), qos=1, retain=True)
        return client_for(
            self.broker, f"neurostim-device-{self.device_id}", self._keepalive_s, will
        )

    async def _on_connect(self, client: aiomqtt.Client) -> None:
        assert self.birth is not None
        await client.publish(self._presence_topic, self.birth.encode(), qos=1, retain=True)

    def _connection_lost(self, reason: str) -> bool:
        log.info("device %s lost the broker (%s); reconnecting", self.device_id, reason)
        return True

    def _send_offline(self, n_frames: int) -> None:
        self.stats.dropped_offline += n_frames

    async def _before_close(self, client: aiomqtt.Client) -> None:
        if self.birth is not None:
            b = self.birth
            goodbye = Presence(b.device_id, b.firmware, b.session, False, self._wall_clock())
            await client.publish(self._presence_topic, goodbye.encode(), qos=1, retain=True)

    async def wait_connected(self, timeout_s: float) -> bool:
        """True once the first connect succeeded within ``timeout_s``."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self.connected:
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True
