"""The async shell around the virtual firmware: serve it on any Link, in real or virtual time."""

from __future__ import annotations

import asyncio
import contextlib

from firmware_bridge.clock import Clock
from firmware_bridge.transports.base import Link, LinkClosed
from simulator.firmware import VirtualFirmware


async def serve_firmware(
    firmware: VirtualFirmware,
    link: Link,
    clock: Clock,
    stop: asyncio.Event | None = None,
) -> None:
    """Run ``firmware`` on ``link`` until the link closes or ``stop`` is set.

    One task reads (bytes are handled the moment they arrive, so ACK latency is
    not tied to the frame period); one task runs timers (frames, heartbeats,
    watchdog, status) by sleeping on ``clock`` until the firmware's next deadline.
    """
    stop = stop or asyncio.Event()
    wake = asyncio.Event()

    async def flush() -> None:
        data = firmware.data_to_send()
        if data:
            await link.send(data)

    async def reader() -> None:
        while True:
            data = await link.receive()
            firmware.receive_data(data, clock.now())
            await flush()
            wake.set()  # a handshake or command may have moved the next deadline

    async def ticker() -> None:
        while True:
            firmware.advance_to(clock.now())
            await flush()
            wake.clear()
            sleeper = asyncio.ensure_future(clock.sleep_until(firmware.next_deadline()))
            waker = asyncio.ensure_future(wake.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()

    tasks = [asyncio.create_task(reader()), asyncio.create_task(ticker())]
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper and not task.cancelled():
                exc = task.exception()
                if exc is not None and not isinstance(exc, LinkClosed):
                    raise exc
    finally:
        for task in [*tasks, stopper]:
            task.cancel()
        for task in [*tasks, stopper]:
            with contextlib.suppress(asyncio.CancelledError, LinkClosed):
                await task
