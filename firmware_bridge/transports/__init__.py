"""Byte transports behind one async ``Link`` interface (in-memory, serial, MQTT)."""

from firmware_bridge.transports.base import Link, LinkClosed
from firmware_bridge.transports.memory import MemoryLink, memory_link_pair

__all__ = ["Link", "LinkClosed", "MemoryLink", "memory_link_pair"]
