"""What a policy is: detector output and delivered state in, a requested setting out.

A policy never talks to the device: the safety envelope reviews every request and the
loop sends only what the envelope allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from controller.detector.types import DetectorOutput
from firmware_bridge.messages import StimSetting, StimState


@dataclass(frozen=True)
class StimRequest:
    """A setting the policy wants delivered, and why (for the audit log)."""

    setting: StimSetting
    reason: str


class Policy(Protocol):
    """``decide`` returns a request, or None to keep what is running.

    ``closed_loop`` policies depend on the detector: while it is UNKNOWN or CALIBRATING
    (or has said nothing yet) they hold the safe program (off), and the envelope applies
    its fallback program on UNKNOWN.
    """

    name: str
    closed_loop: bool

    def decide(
        self, t_s: float, detector: DetectorOutput | None, delivered: StimState | None
    ) -> StimRequest | None: ...
