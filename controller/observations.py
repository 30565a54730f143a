"""What observers of a controller node see: one frozen snapshot at any time, and a stream
of typed, frozen events. The console, the headless reports and any tool read only these,
never the node's internals, so no observer can come to depend on how the node works."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from controller.detector.types import DetectorOutput
from controller.features import FeatureFrame
from firmware_bridge.messages import DeviceInfo, Fault, Status, StimSetting, StimState


class LinkState(StrEnum):
    IDLE = "idle"  # not started
    CONNECTING = "connecting"  # handshaking
    READY = "ready"
    BACKOFF = "backoff"  # lost; waiting to reconnect
    STOPPING = "stopping"  # ramping stimulation down before leaving
    STOPPED = "stopped"
    FAILED = "failed"  # unreachable or another protocol version: the shell gives up


@dataclass(frozen=True)
class LinkCounters:
    connects: int
    link_losses: int
    reconnect_attempts: int
    frames_rx: int
    frames_tx: int
    frames_lost: int
    crc_errors: int
    retransmits: int
    samples: int
    sample_gaps: int
    samples_missing: int


@dataclass(frozen=True)
class EnvelopeBudgets:
    """Used and left of the rolling 24 h budgets, and the limits the gauges show."""

    max_amplitude_ma: float
    max_charge_density_uc_per_cm2: float | None
    max_shannon_k: float
    sessions_24h: int
    max_sessions_24h: int
    stimulation_s_24h: float
    max_stimulation_s_24h: float
    charge_uc_24h: float
    max_charge_uc_24h: float


@dataclass(frozen=True)
class StopOutcome:
    ramped_down: bool
    reason: str  # who asked: signal, duration, operator, ...
    error: str | None = None


@dataclass(frozen=True)
class NodeSnapshot:
    t_s: float
    link: LinkState
    device: DeviceInfo | None
    counters: LinkCounters
    features: FeatureFrame | None
    detector: DetectorOutput | None
    thresholds: tuple[float, float]
    calibration_s: float  # credited seconds the detector's baseline needs
    calibration_elapsed_s: float  # credited so far (= calibration_s once calibrated)
    policy: str
    manual: bool
    requested: StimSetting | None  # the last command sent
    reported: StimState | None  # what the device says it delivers
    budgets: EnvelopeBudgets | None
    clamps: dict[str, int]
    refusals: dict[str, int]
    active_faults: tuple[str, ...]
    estop_latched: bool  # by the operator here, or as the device reports it
    estop_hold: bool  # therapy held after an E-stop until the operator resumes
    stop: StopOutcome | None
    audit_path: str | None
    audit_records: int
    audit_overflows: int
    record_path: str | None
    recording: bool


# -- events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkChanged:
    t_s: float
    state: LinkState
    detail: str = ""


@dataclass(frozen=True)
class DetectorUpdated:
    """Every detector window (the console's score trace, the reports' timeline)."""

    t_s: float
    output: DetectorOutput


@dataclass(frozen=True)
class CommandIssued:
    t_s: float
    command_id: int
    setting: StimSetting
    reason: str
    origin: str


@dataclass(frozen=True)
class CommandAnswered:
    t_s: float
    command_id: int
    outcome: str  # ack, nack, timeout
    reason: str = ""  # the NACK reason


@dataclass(frozen=True)
class Clamped:
    t_s: float
    rule: str
    field: str
    requested: float
    allowed: float


@dataclass(frozen=True)
class Refused:
    t_s: float
    rule: str
    reason: str
    detail: str
    origin: str


@dataclass(frozen=True)
class DeviceStimState:
    t_s: float
    state: StimState


@dataclass(frozen=True)
class DeviceStatus:
    t_s: float
    status: Status


@dataclass(frozen=True)
class DeviceFault:
    t_s: float
    fault: Fault


@dataclass(frozen=True)
class DeviceMisbehaved:
    """The device's reports disagree with what it was commanded (defence in depth)."""

    t_s: float
    kind: str
    severity: str  # fault or dangerous
    text: str


@dataclass(frozen=True)
class MarkerAdded:
    t_s: float
    text: str
    origin: str  # operator or device


@dataclass(frozen=True)
class EstopChanged:
    t_s: float
    latched: bool
    by: str  # operator, device


@dataclass(frozen=True)
class Stopped:
    t_s: float
    outcome: StopOutcome


NodeEvent = (
    LinkChanged
    | DetectorUpdated
    | CommandIssued
    | CommandAnswered
    | Clamped
    | Refused
    | DeviceStimState
    | DeviceStatus
    | DeviceFault
    | DeviceMisbehaved
    | MarkerAdded
    | EstopChanged
    | Stopped
)
