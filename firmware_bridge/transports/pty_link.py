"""The device end of a pseudo-terminal: the simulated device serves on the master side and
any program opens the slave path (``/dev/pts/N``) as if it were a real serial device.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty

from firmware_bridge.transports.base import LinkClosed, LinkContext


class PtyDeviceLink(LinkContext):
    """Master side of a new pty. Like a real UART, output that nobody reads is dropped
    (and counted) instead of blocking the device."""

    def __init__(self) -> None:
        self._master, self._slave = os.openpty()
        # Raw mode on the slave before anyone opens it: no echo, no line editing, 8-bit clean.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.slave_path = os.ttyname(self._slave)
        self.bytes_dropped = 0
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._closed = False
        self._loop.add_reader(self._master, self._on_readable)

    @property
    def description(self) -> str:
        return f"pty {self.slave_path}"

    @property
    def url(self) -> str:
        return f"serial://{self.slave_path}"

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 65_536)
        except BlockingIOError:
            return
        except OSError:
            return  # EIO while no client has the slave open: nothing to read
        if data:
            self._queue.put_nowait(data)

    async def send(self, data: bytes) -> None:
        if self._closed:
            raise LinkClosed("pty closed")
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                self.bytes_dropped += len(view)
                return
            except OSError as exc:
                raise LinkClosed(f"pty write failed: {exc}") from exc
            view = view[written:]

    async def receive(self) -> bytes:
        if self._closed:
            raise LinkClosed("pty closed")
        data = await self._queue.get()
        if not data:
            raise LinkClosed("pty closed")
        return data

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(b"")
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._master)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
