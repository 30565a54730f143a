"""The async link interface every transport implements: bytes in, bytes out, nothing more."""

from __future__ import annotations

from typing import Protocol


class LinkClosed(ConnectionError):
    """The link is gone (peer closed, port vanished); reconnecting is the caller's decision."""


class Link(Protocol):
    """A bidirectional byte pipe. Frame boundaries are not preserved: the codec finds them."""

    @property
    def description(self) -> str: ...

    async def send(self, data: bytes) -> None:
        """Queue ``data`` for the peer; raises LinkClosed when the link is down."""
        ...

    async def receive(self) -> bytes:
        """Wait for the next chunk of bytes (never empty); raises LinkClosed at end."""
        ...

    async def close(self) -> None: ...
