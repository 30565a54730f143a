"""Deliberately broken simulated devices: each is one realistic firmware bug, and the rig
must fail each on at least one named case (docs/hil.md, "Proving the rig can fail").

Every variant is the correct ``VirtualFirmware`` with one thing changed, so the case that
fails is the one that checks that thing.
"""

from __future__ import annotations

import dataclasses
import random

from firmware_bridge.events import EstopRequested, Event, WatchdogExpired
from firmware_bridge.framing import PROTOCOL_MAJOR, Frame
from firmware_bridge.messages import Hello, MsgType
from firmware_bridge.session import DeviceSession
from simulator.firmware import FirmwareConfig, VirtualFirmware
from simulator.signals import NoiseSource


class NoWatchdog(VirtualFirmware):
    """Ignores the watchdog: a silent controller leaves the output running."""

    def _on_event(self, event: Event, now: float) -> None:
        if isinstance(event, WatchdogExpired):
            return
        super()._on_event(event, now)


class NoRampLimit(VirtualFirmware):
    """Declares 5 mA/s in DEVICE_INFO but its output stage jumps (1000 mA/s)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.output.max_ramp_rate_ma_per_s = 1000.0


class AcceptsOverLimit(VirtualFirmware):
    """Checks the amplitude against a wrong constant: accepts up to 100 mA while
    DEVICE_INFO says 12.7 mA."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        wrong = dataclasses.replace(self.config.limits, max_amplitude_ma=100.0)
        self.config = dataclasses.replace(self.config, limits=wrong)


class AppliesDuplicates(VirtualFirmware):
    """Remembers no answers: a retransmitted STIM_SET is applied a second time."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.session._memory_size = 0


class WrongCrcSometimes(VirtualFirmware):
    """A DMA race corrupts one outgoing frame in 10 (seeded)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._rng = random.Random(7)

    def data_to_send(self) -> bytes:
        data = super().data_to_send()
        if not data:
            return data
        frames = data.split(b"\x00")
        for i, frame in enumerate(frames):
            if len(frame) > 4 and self._rng.random() < 1 / 10:
                b = bytearray(frame)
                b[-1] = b[-1] % 255 + 1  # another non-zero byte: still one frame
                frames[i] = bytes(b)
        return b"\x00".join(frames)


class SampleGaps(VirtualFirmware):
    """Drops one SAMPLES frame in 15 when its transmit buffer is busy."""

    def _acquire_frame(self, t_frame: float) -> None:
        if (self.samples_acquired // self.config.samples_per_frame) % 15 == 7:
            self.samples_acquired += self.config.samples_per_frame
            return
        super()._acquire_frame(t_frame)


class SlowAck(VirtualFirmware):
    """Handles received bytes 120 ms late (a command queue polled by a slow main loop)."""

    DELAY_S = 0.120

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._inbox: list[tuple[float, bytes]] = []

    def receive_data(self, data: bytes, now: float) -> None:
        self.advance_to(now)
        self._inbox.append((now + self.DELAY_S, data))

    def advance_to(self, now: float) -> None:
        while self._inbox and self._inbox[0][0] <= now:
            due, data = self._inbox.pop(0)
            super().receive_data(data, due)
        super().advance_to(now)

    def next_deadline(self) -> float:
        due = super().next_deadline()
        return min(due, self._inbox[0][0]) if self._inbox else due


class EstopIgnored(VirtualFirmware):
    """ACKs ESTOP and reports the latch, but never cuts the output."""

    def _on_event(self, event: Event, now: float) -> None:
        if isinstance(event, EstopRequested):
            self.session.ack(event.command_id, MsgType.ESTOP, now)
            self.output.estop_latched = True
            self._report_state(now)
            return
        super()._on_event(event, now)


class _AnyMajorSession(DeviceSession):
    def _on_hello(self, frame: Frame, now: float) -> list[Event]:
        msg = self._parse(frame)
        if isinstance(msg, Hello) and msg.major != PROTOCOL_MAJOR:
            payload = Hello(PROTOCOL_MAJOR, msg.minor, msg.client).encode()
            frame = dataclasses.replace(frame, payload=payload)
        return super()._on_hello(frame, now)


class AnyMajorAccepted(VirtualFirmware):
    """Answers every HELLO with DEVICE_INFO, whatever major it asks for."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.session = _AnyMajorSession(self.info, key=self.config.signing_key)


class StatusNeverSent(VirtualFirmware):
    """Updates its fault flags but never sends STATUS."""

    def _send_status(self, now: float) -> None:
        self._update_condition_faults(now)
        self._status_due = False
        self._next_status_s = (
            now + self.config.status_interval_s if self.session.handshaken else None
        )


#: Variant -> the cases it must fail (docs/hil.md's table is checked against this).
BROKEN_DEVICES: dict[type[VirtualFirmware], tuple[str, ...]] = {
    NoWatchdog: ("WD-001", "FT-003"),
    NoRampLimit: ("RP-001",),
    AcceptsOverLimit: ("NK-001",),
    AppliesDuplicates: ("ID-001",),
    WrongCrcSometimes: ("RB-007",),
    SampleGaps: ("SS-001",),
    SlowAck: ("ID-005",),
    EstopIgnored: ("ES-001",),
    AnyMajorAccepted: ("HS-001",),
    StatusNeverSent: ("ST-001", "HS-004"),
}


def build(variant: type[VirtualFirmware], start_s: float, seed: int = 5) -> VirtualFirmware:
    return variant(NoiseSource(seed=seed), FirmwareConfig(seed=seed), start_s)
