"""What the rig's tests share: the JUnit schema check and a device served on a pty."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import xmlschema

from firmware_bridge.clock import MonotonicClock
from firmware_bridge.transports.pty_link import PtyDeviceLink
from simulator.firmware import VirtualFirmware
from simulator.serve import serve_firmware

JUNIT_XSD = Path(__file__).parent / "data" / "junit.xsd"


def assert_valid_junit(path: Path) -> None:
    xmlschema.XMLSchema(str(JUNIT_XSD)).validate(str(path))


@contextlib.asynccontextmanager
async def served_on_pty(firmware: VirtualFirmware) -> AsyncIterator[str]:
    """Serve ``firmware`` (built with ``start_s = MonotonicClock().now()``) on a new pty;
    yields its serial:// URL."""
    link = PtyDeviceLink()
    task = asyncio.create_task(serve_firmware(firmware, link, MonotonicClock()))
    try:
        yield link.url
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await link.close()
