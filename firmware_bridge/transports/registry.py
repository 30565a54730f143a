"""Transports by URL scheme: one table from a device URL's scheme to the code that opens it.

firmware_bridge imports nothing of ours, so transports that live elsewhere (the embedded
simulated device behind ``sim://``, served by the simulator package) are registered from
outside by the composition root; serial and MQTT are built in. ``open_link`` is the only way any
shell (run, sim, console, rig) turns a URL into a ``Link``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from firmware_bridge.errors import LinkClosed
from firmware_bridge.transports.base import Link
from firmware_bridge.url import DeviceURL, SerialURL, parse_device_url, scheme_of

#: Opens the transport a parsed URL names; raises LinkClosed when it cannot.
Opener = Callable[[DeviceURL], Awaitable[Link]]


async def _open_serial(url: DeviceURL) -> Link:
    from firmware_bridge.transports.serial_link import SerialLink

    assert isinstance(url, SerialURL)
    return await SerialLink.open(url.port, url.baud)


_mqtt_transport: list[Opener] = []


async def _open_mqtt(url: DeviceURL) -> Link:
    """aiomqtt is imported on first use; one ``MqttTransport`` per process keeps each
    device's presence tracker across reconnects."""
    if not _mqtt_transport:
        from firmware_bridge.transports.mqtt import MqttTransport

        _mqtt_transport.append(MqttTransport())
    return await _mqtt_transport[0](url)


class TransportRegistry:
    """Scheme -> opener. ``register`` replaces an earlier entry for the same scheme."""

    def __init__(self) -> None:
        self._openers: dict[str, Opener] = {}

    def register(self, scheme: str, opener: Opener) -> None:
        self._openers[scheme] = opener

    def unregister(self, scheme: str) -> None:
        self._openers.pop(scheme, None)

    def opener(self, scheme: str) -> Opener | None:
        return self._openers.get(scheme)

    @property
    def schemes(self) -> tuple[str, ...]:
        return tuple(sorted(self._openers))

    @contextmanager
    def registered(self, scheme: str, opener: Opener) -> Iterator[None]:
        """Register ``opener`` for the block, then restore what was there (tests, tools)."""
        before = self._openers.get(scheme)
        self.register(scheme, opener)
        try:
            yield
        finally:
            if before is None:
                self.unregister(scheme)
            else:
                self.register(scheme, before)

    async def open(self, url: str | DeviceURL) -> Link:
        """Open the transport a device URL names; raises LinkClosed or DeviceURLError."""
        parsed = parse_device_url(url) if isinstance(url, str) else url
        scheme = scheme_of(parsed)
        opener = self._openers.get(scheme)
        if opener is None:
            why = "no transport is registered for it in this program"
            if scheme == "sim":
                why = "sim:// needs the simulator: run through the neurostim command"
            raise LinkClosed(f"{parsed}: {why}")
        return await opener(parsed)


#: The process-wide registry the command line fills and every shell opens links through.
transports = TransportRegistry()
transports.register("serial", _open_serial)
transports.register("mqtt", _open_mqtt)


async def open_link(url: str | DeviceURL) -> Link:
    """Open ``url`` through the process-wide registry."""
    return await transports.open(url)
