"""One exception root for the protocol package, so a caller can catch every bridge failure
with one ``except BridgeError`` and still tell the kinds apart."""

from __future__ import annotations


class BridgeError(Exception):
    """Root of every error raised by firmware_bridge."""


class LinkClosed(BridgeError, ConnectionError):
    """The link is gone (peer closed, port vanished); reconnecting is the caller's decision."""


class DeviceUnreachable(BridgeError, ConnectionError):
    """Nothing answered the handshake, or the link failed."""


class ProtocolMismatch(BridgeError, ConnectionError):
    """The device answered but speaks another major protocol version."""


class DeviceURLError(BridgeError, ValueError):
    """A device URL that cannot be understood; the message says what is wrong."""
