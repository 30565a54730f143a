"""Serial transport through pyserial: a device path (/dev/ttyUSB0, /dev/pts/N) or any
``serial_for_url`` URL (loop://, socket://host:port, spy://...).

Reads are event-driven (``loop.add_reader`` on the port's file descriptor) where the
port has one, otherwise a reader thread polls; writes go through a worker thread so
a slow UART never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

import serial

from firmware_bridge.transports.base import LinkClosed, LinkContext

DEFAULT_BAUD = 921_600
_READ_CHUNK = 65_536


class SerialLink(LinkContext):
    """A pyserial port as an async ``Link``."""

    def __init__(self, port: serial.SerialBase, description: str) -> None:
        self._port = port
        self._description = description
        self._queue: asyncio.Queue[bytes | BaseException] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._write_lock = asyncio.Lock()
        self._fd: int | None = None
        self._thread: threading.Thread | None = None
        try:
            self._fd = port.fileno()
        except (AttributeError, NotImplementedError, OSError, serial.SerialException):
            self._fd = None
        if self._fd is not None:
            self._loop.add_reader(self._fd, self._on_readable)
        else:
            self._thread = threading.Thread(target=self._poll, name="serial-reader", daemon=True)
            self._thread.start()

    @classmethod
    async def open(cls, url: str, baud: int = DEFAULT_BAUD) -> SerialLink:
        """Open ``url`` (a path or a pyserial URL); raises LinkClosed with the reason."""
        try:
            port = serial.serial_for_url(url, baudrate=baud, timeout=0, write_timeout=2.0)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkClosed(f"cannot open serial port {url}: {exc}") from exc
        return cls(port, f"serial {url} @ {baud} baud")

    @property
    def description(self) -> str:
        return self._description

    def _on_readable(self) -> None:
        try:
            data = self._port.read(_READ_CHUNK)
        except (serial.SerialException, OSError) as exc:
            self._stop_reading()
            self._queue.put_nowait(LinkClosed(f"{self._description}: {exc}"))
            return
        if data:
            self._queue.put_nowait(bytes(data))

    def _poll(self) -> None:
        while not self._closed:
            try:
                self._port.timeout = 0.05
                data = self._port.read(max(1, self._port.in_waiting))
            except (serial.SerialException, OSError, TypeError) as exc:
                if not self._closed:
                    self._loop.call_soon_threadsafe(
                        self._queue.put_nowait, LinkClosed(f"{self._description}: {exc}")
                    )
                return
            if data:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, bytes(data))

    def _stop_reading(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)
            self._fd = None

    async def send(self, data: bytes) -> None:
        if self._closed:
            raise LinkClosed(f"{self._description} is closed")
        async with self._write_lock:
            try:
                await asyncio.to_thread(self._port.write, data)
            except (serial.SerialException, OSError) as exc:
                raise LinkClosed(f"{self._description}: write failed: {exc}") from exc

    async def receive(self) -> bytes:
        if self._closed:
            raise LinkClosed(f"{self._description} is closed")
        item = await self._queue.get()
        if isinstance(item, BaseException):
            self._closed = True
            raise item
        return item

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_reading()
        with contextlib.suppress(Exception):
            self._port.close()
        self._queue.put_nowait(LinkClosed(f"{self._description} closed"))
