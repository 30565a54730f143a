"""What the safety envelope answers: the setting that may be sent, and every rule that fired."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from firmware_bridge.messages import StimSetting


class Rule(StrEnum):
    """Names of the envelope rules, as they appear in decisions and the audit log."""

    # clamps: the request is changed to fit
    AMPLITUDE_RANGE = "amplitude_range"
    PULSE_WIDTH_RANGE = "pulse_width_range"
    FREQUENCY_RANGE = "frequency_range"
    CHARGE_PER_PHASE = "charge_per_phase"
    CHARGE_DENSITY = "charge_density"
    SHANNON_K = "shannon_k"
    RAMP_RATE = "ramp_rate"
    # refusals: nothing (or the fallback) is sent
    INVALID_VALUE = "invalid_value"
    MIN_CHANGE_INTERVAL = "min_change_interval"
    MAX_SESSION_LENGTH = "max_session_length"
    MAX_SESSIONS_PER_24H = "max_sessions_per_24h"
    DAILY_ON_TIME_BUDGET = "daily_on_time_budget"
    DAILY_CHARGE_BUDGET = "daily_charge_budget"
    IMPEDANCE_UNMEASURED = "impedance_unmeasured"
    IMPEDANCE_WINDOW = "impedance_window"
    DEVICE_FAULT = "device_fault"
    LINK_DOWN = "link_down"
    DETECTOR_UNKNOWN = "detector_unknown"


@dataclass(frozen=True)
class Clamp:
    """One field changed to fit one rule: ``requested`` became ``allowed``."""

    rule: str
    field: str
    requested: float
    allowed: float


@dataclass(frozen=True)
class EnvelopeDecision:
    """The envelope's answer to one request (or to a fault).

    ``setting`` is what may be sent now; None means send nothing (keep what is running,
    or the request was refused). ``refused`` names the rule that refused the request;
    ``fallback`` is True when the safe program replaced the request. ``detail`` is the
    human-readable why, for the audit log.
    """

    setting: StimSetting | None
    clamps: list[Clamp] = field(default_factory=list)
    refused: str | None = None
    fallback: bool = False
    detail: str = ""
