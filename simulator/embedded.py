"""The embedded simulated device behind ``sim://`` URLs: an in-memory link, same process."""

from __future__ import annotations

import asyncio

from firmware_bridge.clock import AsyncioClock, Clock
from firmware_bridge.transports.base import Link
from firmware_bridge.transports.memory import memory_link_pair
from firmware_bridge.url import DeviceURL, DeviceURLError, SimURL
from simulator.device_factory import DeviceSpecError, SimulatedDevice, build_device
from simulator.link_faults import FaultyLink, LinkFaultInjector
from simulator.serve import serve_firmware

_background: set[asyncio.Task[None]] = set()


def device_link(device: SimulatedDevice, link: Link, clock: Clock, seed: int = 0) -> Link:
    """The device's end of ``link``, impaired as its scenario says (or as it is)."""
    if device.link_faults is None:
        return link
    start = device.firmware.start_s
    outgoing = LinkFaultInjector(seed=seed, schedule=device.link_faults, origin_s=start)
    incoming = LinkFaultInjector(seed=seed + 1, schedule=device.link_faults, origin_s=start)
    return FaultyLink(link, clock, outgoing, incoming)


async def open_embedded_url(url: DeviceURL) -> Link:
    """``open_embedded_device`` as a transport registry opener for ``sim``."""
    if not isinstance(url, SimURL):
        raise DeviceURLError(f"{url}: not a sim:// URL")
    return await open_embedded_device(url)


async def open_embedded_device(url: SimURL, clock: Clock | None = None) -> Link:
    """Start a simulated device serving on one end of a memory link; return the other end.

    The device runs as a task in the running event loop until the returned link is closed.
    """
    link, _ = await open_embedded(url, clock)
    return link


async def open_embedded(url: SimURL, clock: Clock | None = None) -> tuple[Link, SimulatedDevice]:
    """``open_embedded_device`` that also hands back the device (for its ground truth)."""
    clock = clock or AsyncioClock()
    try:
        device = build_device(url.scenario, url.params, start_s=clock.now())
    except DeviceSpecError as exc:
        raise DeviceURLError(f"{url}: {exc}") from None
    controller_end, device_end = memory_link_pair(f"sim://{url.scenario}")
    served = device_link(device, device_end, clock, seed=url.seed or 0)
    task = asyncio.create_task(serve_firmware(device.firmware, served, clock))
    _background.add(task)
    task.add_done_callback(_background.discard)
    return controller_end, device


class GroundTruthFeed:
    """Serves ``sim://`` URLs and collects the simulated patients' ground-truth events as
    recording annotations on the device's sample clock (for the composition root).

    ``clock``: the time the devices run on (default: the event loop's); a shell that paces
    a simulated device (the console's speed and pause) sets it with ``use_clock`` and
    shares it with its controller."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._devices: list[SimulatedDevice] = []
        self.clock = clock

    def use_clock(self, clock: Clock) -> None:
        self.clock = clock

    async def open(self, url: SimURL) -> Link:
        link, device = await open_embedded(url, self.clock)
        self._devices.append(device)
        return link

    async def open_url(self, url: DeviceURL) -> Link:
        """The transport registry's opener for ``sim``."""
        if not isinstance(url, SimURL):
            raise DeviceURLError(f"{url}: not a sim:// URL")
        return await self.open(url)

    def drain(self) -> list[tuple[float, str]]:
        events = []
        for device in self._devices:
            for e in device.firmware.source.drain_ground_truth():
                events.append((e.t_s, e.annotation()))
        return events
