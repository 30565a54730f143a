"""Events the sans-IO sessions return from ``receive_data`` and ``handle_timeout``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware_bridge.messages import (
    DeviceInfo,
    Fault,
    Hello,
    Marker,
    Status,
    StimSetting,
    StimState,
)

# --- seen by the controller ---------------------------------------------------------------


@dataclass(frozen=True)
class Connected:
    """Handshake done: the device described itself."""

    info: DeviceInfo


@dataclass(frozen=True)
class VersionRejected:
    """The device speaks another major version; the session is FAILED."""

    device_major: int
    device_minor: int
    text: str

    def message(self, own_major: int, own_minor: int) -> str:
        return (
            f"device speaks protocol {self.device_major}.{self.device_minor}, this controller "
            f"speaks {own_major}.{own_minor}: {self.text}"
        )


@dataclass(frozen=True)
class HandshakeFailed:
    """No DEVICE_INFO after every HELLO retry: nothing that speaks this protocol answered."""

    attempts: int


@dataclass(frozen=True, eq=False)
class SamplesReceived:
    """A block of counts (channels, samples); ``first_index`` is unwrapped to 64 bits."""

    first_index: int
    counts: np.ndarray
    timestamp_us: int
    missing_before: int  # samples lost just before this block (0 when contiguous)


def samples_received(
    first_index: int, counts: np.ndarray, timestamp_us: int, missing_before: int
) -> SamplesReceived:
    """``SamplesReceived(first_index, counts, timestamp_us, missing_before)`` without the
    frozen dataclass's ``__init__`` (``build_frozen``'s way, its dictionary filled in place
    instead of from a dictionary built for it): the event of every SAMPLES frame."""
    event = _new(SamplesReceived)
    fields = event.__dict__
    fields["first_index"] = first_index
    fields["counts"] = counts
    fields["timestamp_us"] = timestamp_us
    fields["missing_before"] = missing_before
    return event


_new = object.__new__


@dataclass(frozen=True)
class CommandAcked:
    command_id: int
    command_type: int
    attempts: int


@dataclass(frozen=True)
class CommandNacked:
    command_id: int
    command_type: int
    reason: int
    reason_name: str


@dataclass(frozen=True)
class CommandTimedOut:
    command_id: int
    command_type: int
    attempts: int


@dataclass(frozen=True)
class CommandCancelled:
    """A pending command the session stopped retransmitting, never answered: an
    ESTOP_CLEAR overtaken by an ESTOP (a late clear must not undo the newer stop)."""

    command_id: int
    command_type: int
    reason: str


@dataclass(frozen=True)
class StimStateReceived:
    state: StimState


@dataclass(frozen=True)
class StatusReceived:
    status: Status


@dataclass(frozen=True)
class FaultReceived:
    fault: Fault


@dataclass(frozen=True)
class MarkerReceived:
    marker: Marker


@dataclass(frozen=True)
class PeerLost:
    """No valid frame from the peer within its timeout."""

    silent_s: float


# --- seen by the device -------------------------------------------------------------------


@dataclass(frozen=True)
class HandshakeCompleted:
    hello: Hello


@dataclass(frozen=True)
class HandshakeRefused:
    hello: Hello


@dataclass(frozen=True)
class StimSetRequested:
    """A new (not duplicate, authenticated when signing is on) STIM_SET: the firmware decides."""

    command_id: int
    setting: StimSetting


@dataclass(frozen=True)
class EstopRequested:
    """An ESTOP: executed every time it arrives, before a handshake too (never de-duplicated)."""

    command_id: int


@dataclass(frozen=True)
class EstopClearRequested:
    """A new (not duplicate, authenticated when signing is on) ESTOP_CLEAR."""

    command_id: int


@dataclass(frozen=True)
class ByeRequested:
    """The controller is leaving; the session has ended (no SAMPLES, heartbeats or watchdog
    until the next HELLO). The firmware stops any output left and answers with ACK."""

    command_id: int


@dataclass(frozen=True)
class WatchdogExpired:
    """The controller has been silent for ``watchdog_ms``: stop stimulation."""

    silent_s: float


@dataclass(frozen=True)
class ControllerReturned:
    """A valid frame from the controller after the watchdog expired."""


Event = (
    Connected
    | VersionRejected
    | HandshakeFailed
    | SamplesReceived
    | CommandAcked
    | CommandNacked
    | CommandTimedOut
    | CommandCancelled
    | StimStateReceived
    | StatusReceived
    | FaultReceived
    | MarkerReceived
    | PeerLost
    | HandshakeCompleted
    | HandshakeRefused
    | StimSetRequested
    | EstopRequested
    | EstopClearRequested
    | ByeRequested
    | WatchdogExpired
    | ControllerReturned
)
