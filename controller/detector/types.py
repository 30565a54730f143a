"""What the detector tells the rest of the controller (shared by policies, the loop, analyze)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class DetectorState(StrEnum):
    CALIBRATING = "CALIBRATING"  # learning the baseline: no decisions yet
    NORMAL = "NORMAL"
    SUSPECT = "SUSPECT"
    PRODROME = "PRODROME"
    UNKNOWN = "UNKNOWN"  # too few good channels: the policy must hold the safe program


@dataclass(frozen=True)
class DetectorOutput:
    """The detector's verdict for one feature window."""

    t_s: float  # end of the window, seconds on the device's sample clock
    state: DetectorState
    score: float | None  # prodrome signature score (None while calibrating or UNKNOWN)
    changed: bool  # the state changed with this window
    blanked: bool  # score ignored (after a stimulation change, during artifacts)
    good_channels: int
    reason: str = ""  # why the state is what it is (for the audit log)
    z_scores: dict[str, float] = field(default_factory=dict)
