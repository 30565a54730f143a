"""Device presence on an MQTT broker (docs/protocol.md section 1.6): topics, the retained
birth/death record, the per-device session counter and the rule that picks the current
record ("the highest session wins; offline ends a session").

A broker that dies cannot send the wills of its clients, and one with persistence brings
their last retained "online" back after a restart; the session counter is what keeps such
a stale record from being taken for the device's current connection.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

ROOT = "neurostim/v1"
UP = "up"
DOWN = "down"
PRESENCE = "presence"
PRESENCE_WILDCARD = f"{ROOT}/+/{PRESENCE}"
#: A presence record is a few hundred bytes; anything much longer is not one.
MAX_PRESENCE_BYTES = 4096


def topic(device_id: str, leaf: str) -> str:
    """``neurostim/v1/<device_id>/<leaf>`` for leaf up, down or presence."""
    return f"{ROOT}/{device_id}/{leaf}"


def device_of(topic_name: str) -> str | None:
    """The device id in a ``neurostim/v1/<id>/<leaf>`` topic, None for any other topic."""
    parts = topic_name.split("/")
    if len(parts) != 4 or f"{parts[0]}/{parts[1]}" != ROOT or not parts[2]:
        return None
    return parts[2]


@dataclass(frozen=True)
class Presence:
    """One birth (online) or death (offline) record of a device's broker session."""

    device_id: str
    firmware: str
    session: int
    online: bool
    t_unix: float

    def encode(self) -> bytes:
        return json.dumps(
            {
                "device_id": self.device_id,
                "firmware": self.firmware,
                "session": self.session,
                "online": self.online,
                "t_unix": self.t_unix,
            },
            separators=(",", ":"),
        ).encode()

    def offline(self) -> Presence:
        """The death record of the same session (the Last Will)."""
        return Presence(self.device_id, self.firmware, self.session, False, self.t_unix)

    @classmethod
    def decode(cls, payload: bytes) -> Presence | None:
        """The record in ``payload``, or None when it is not a valid one (never raises)."""
        if not payload or len(payload) > MAX_PRESENCE_BYTES:
            return None
        try:
            raw = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None
        if not isinstance(raw, dict):
            return None
        device_id, firmware = raw.get("device_id"), raw.get("firmware")
        session, online, t_unix = raw.get("session"), raw.get("online"), raw.get("t_unix")
        if not isinstance(device_id, str) or not isinstance(firmware, str):
            return None
        if isinstance(session, bool) or not isinstance(session, int) or session < 1:
            return None
        if not isinstance(online, bool):
            return None
        if isinstance(t_unix, bool) or not isinstance(t_unix, int | float):
            return None
        if not math.isfinite(t_unix):
            return None
        return cls(device_id, firmware, session, online, float(t_unix))


class PresenceTracker:
    """The current presence record per device, from records seen in any order."""

    def __init__(self) -> None:
        self.current: dict[str, Presence] = {}
        self.stale = 0  # records of an older session (or online after offline of the same)
        self.invalid = 0  # payloads that are no record, or name another device

    def update(self, topic_name: str, payload: bytes) -> Presence | None:
        """Take a presence publish; return the device's new current record if it changed."""
        device_id = device_of(topic_name)
        record = Presence.decode(payload)
        if device_id is None or record is None or record.device_id != device_id:
            self.invalid += 1
            return None
        known = self.current.get(device_id)
        if known is not None:
            if record.session < known.session:
                self.stale += 1
                return None
            if record.session == known.session:
                if record == known:
                    return None
                if not known.online:  # a will ends its session for good
                    self.stale += 1
                    return None
        self.current[device_id] = record
        return record


class SessionCounterError(ValueError):
    """The stored session counter cannot be read: starting again at 1 would make every
    birth look stale to consumers that remember the old counter."""


class SessionCounter:
    """The presence session counter of one device, persisted in a small text file so it
    keeps increasing across restarts of the device."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def in_dir(cls, state_dir: str | Path, device_id: str) -> SessionCounter:
        return cls(Path(state_dir) / f"{device_id}.session")

    def last(self) -> int:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise SessionCounterError(f"cannot read {self.path}: {exc}") from None
        try:
            value = int(text.strip())
        except ValueError:
            raise SessionCounterError(f"{self.path}: not a session counter") from None
        if value < 0:
            raise SessionCounterError(f"{self.path}: negative session counter")
        return value

    def next(self) -> int:
        """Increase, store durably (write, fsync, rename), return the new value."""
        value = self.last() + 1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as handle:
            handle.write(f"{value}\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        with contextlib.suppress(OSError):
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        return value
