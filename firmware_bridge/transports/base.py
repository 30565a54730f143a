"""The async link interface every transport implements: bytes in, bytes out, nothing more."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

from firmware_bridge.errors import LinkClosed

__all__ = ["Link", "LinkClosed", "LinkContext"]


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

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class LinkContext:
    """Mixin that makes a link an async context manager: ``async with link:`` closes it."""

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
