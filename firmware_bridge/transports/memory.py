"""An in-memory link pair (asyncio queues): the embedded simulated device's transport."""

from __future__ import annotations

import asyncio

from firmware_bridge.transports.base import LinkClosed, LinkContext

_CLOSED = b""


class MemoryLink(LinkContext):
    """One end of an in-memory pipe. Chunks keep their order; nothing is lost unless closed."""

    def __init__(
        self,
        inbox: asyncio.Queue[bytes],
        outbox: asyncio.Queue[bytes],
        name: str = "memory",
    ) -> None:
        self._inbox = inbox
        self._outbox = outbox
        self._closed = False
        self._name = name

    @property
    def description(self) -> str:
        return self._name

    async def send(self, data: bytes) -> None:
        if self._closed:
            raise LinkClosed(f"{self._name} is closed")
        if data:
            self._outbox.put_nowait(bytes(data))

    async def receive(self) -> bytes:
        if self._closed:
            raise LinkClosed(f"{self._name} is closed")
        chunk = await self._inbox.get()
        if chunk == _CLOSED:
            self._closed = True
            raise LinkClosed(f"{self._name}: peer closed")
        return chunk

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._outbox.put_nowait(_CLOSED)
            self._inbox.put_nowait(_CLOSED)


def memory_link_pair(name: str = "memory") -> tuple[MemoryLink, MemoryLink]:
    """Two connected ends: what one sends, the other receives."""
    a_to_b: asyncio.Queue[bytes] = asyncio.Queue()
    b_to_a: asyncio.Queue[bytes] = asyncio.Queue()
    return (
        MemoryLink(b_to_a, a_to_b, f"{name}:a"),
        MemoryLink(a_to_b, b_to_a, f"{name}:b"),
    )
