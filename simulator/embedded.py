"""The embedded simulated device behind ``sim://`` URLs: an in-memory link, same process."""

from __future__ import annotations

import asyncio

from firmware_bridge.clock import Clock, MonotonicClock
from firmware_bridge.transports.base import Link
from firmware_bridge.transports.memory import memory_link_pair
from firmware_bridge.url import SimURL
from simulator.device_factory import build_firmware
from simulator.serve import serve_firmware

_background: set[asyncio.Task[None]] = set()


async def open_embedded_device(url: SimURL, clock: Clock | None = None) -> Link:
    """Start a simulated device serving on one end of a memory link; return the other end.

    The device runs as a task in the running event loop until the returned link is closed.
    """
    firmware = build_firmware(url.scenario, url.params)
    controller_end, device_end = memory_link_pair(f"sim://{url.scenario}")
    task = asyncio.create_task(serve_firmware(firmware, device_end, clock or MonotonicClock()))
    _background.add(task)
    task.add_done_callback(_background.discard)
    return controller_end
