"""The controller's sans-IO core: protocol events, operator inputs and time in; commands,
audit records and recording annotations out, as values.

features -> detector -> policy -> safety envelope, fed by SAMPLES frames. The core acts on
the state the device *reports* (STIM_STATE), never on what it asked for. It touches no
socket, no file and no clock: ``ControllerNode`` feeds it and carries out what it returns
(sends the commands, writes the records), and every shell drives the node.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

import numpy as np

from controller.config import ControllerConfig
from controller.detector import Detector
from controller.detector.types import DetectorOutput, DetectorState
from controller.envelope import EnvelopeDecision, SafetyEnvelope
from controller.envelope.limits import within_envelope
from controller.features import FeatureExtractor, FeatureFrame
from controller.observations import Clamped, Refused
from controller.policy import POLICY_NAMES, Policy, StimRequest, build_policy
from firmware_bridge.events import (
    FaultReceived,
    MarkerReceived,
    SamplesReceived,
    StatusReceived,
    StimStateReceived,
)
from firmware_bridge.frozen import build_frozen
from firmware_bridge.messages import DeviceInfo, Status, StimSetting, StimState

#: Who asked for a command: the policy, the envelope's supervision, or the operator.
Origin = Literal["policy", "supervision", "operator", "shutdown"]
Outcome = Literal["ack", "nack", "timeout", "lost"]


@dataclass(frozen=True)
class AuditEntry:
    """One audit record to write; ``sync`` marks stimulation changes (fsynced at once)."""

    kind: str
    t_s: float
    sync: bool
    fields: Mapping[str, object]


@dataclass(frozen=True)
class Annotation:
    """A recording annotation: now in the recording, or at a time on the device's sample
    clock (``t_device_s``) for annotations that come from outside the protocol."""

    text: str
    t_device_s: float | None = None


@dataclass(frozen=True)
class Command:
    """A setting to send; ``token`` correlates the device's answer with this decision."""

    token: int
    setting: StimSetting
    reason: str
    origin: Origin


@dataclass(frozen=True)
class CoreResult:
    """Everything the core decided for one input, in order of decision."""

    commands: tuple[Command, ...] = ()
    records: tuple[AuditEntry, ...] = ()
    annotations: tuple[Annotation, ...] = ()
    outputs: tuple[DetectorOutput, ...] = ()
    clamps: tuple[Clamped, ...] = ()
    refusals: tuple[Refused, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.commands or self.records or self.annotations or self.outputs)


#: The result of an input that decided nothing (shared: results are immutable).
NOTHING = CoreResult()
#: Its fields, for a result that carries only the detector's outputs.
_NO_FIELDS = dict(NOTHING.__dict__)


@dataclass
class CoreStats:
    sample_blocks: int = 0
    windows: int = 0
    decisions: int = 0
    commands: int = 0
    acks: int = 0
    nacks: int = 0
    timeouts: int = 0
    clamps: dict[str, int] = field(default_factory=dict)
    refusals: dict[str, int] = field(default_factory=dict)
    faults: int = 0
    state_changes: int = 0


class _Collect:
    """The result under construction for one input."""

    def __init__(self) -> None:
        self.commands: list[Command] = []
        self.records: list[AuditEntry] = []
        self.annotations: list[Annotation] = []
        self.outputs: list[DetectorOutput] = []
        self.clamps: list[Clamped] = []
        self.refusals: list[Refused] = []

    def audit(self, kind: str, t_s: float, sync: bool = False, /, **fields: object) -> None:
        self.records.append(AuditEntry(kind, t_s, sync, MappingProxyType(fields)))

    def annotate(self, text: str, t_device_s: float | None = None) -> None:
        self.annotations.append(Annotation(text, t_device_s))

    def result(self) -> CoreResult:
        return build_frozen(
            CoreResult,
            {
                "commands": tuple(self.commands),
                "records": tuple(self.records),
                "annotations": tuple(self.annotations),
                "outputs": tuple(self.outputs),
                "clamps": tuple(self.clamps),
                "refusals": tuple(self.refusals),
            },
        )


#: A setting's fields as audited.
def setting_fields(s: StimSetting) -> dict[str, object]:
    return {
        "enabled": s.enabled,
        "amplitude_ma": s.amplitude_ma,
        "pulse_width_us": s.pulse_width_us,
        "frequency_hz": s.frequency_hz,
        "ramp_rate_ma_per_s": s.ramp_rate_ma_per_s,
    }


def describe_setting(s: StimSetting) -> str:
    if not s.enabled:
        return "stimulation off"
    return f"stimulation {s.amplitude_ma:.2f} mA {s.pulse_width_us} us {s.frequency_hz:g} Hz"


class ControllerCore:
    """One patient's closed loop; survives reconnects to the same device.

    One command is in flight at a time: once the core has returned a command it decides
    nothing more until ``on_command_outcome`` reports the device's answer, so every
    decision the envelope has recorded as sent is in some result's ``commands``.
    """

    def __init__(self, config: ControllerConfig) -> None:
        self.config = config
        self.policy: Policy = build_policy(config.policy)
        self.stats = CoreStats()
        self.info: DeviceInfo | None = None
        self.envelope: SafetyEnvelope | None = None
        self.detector: Detector | None = None
        self.extractor: FeatureExtractor | None = None
        self._scales: np.ndarray = np.ones(0)
        self.delivered: StimState | None = None
        self.last_output: DetectorOutput | None = None
        self.last_frame: FeatureFrame | None = None
        self.in_flight: Command | None = None
        #: Operator holds: after an E-stop nothing is resumed until ``resume``; a manual
        #: setting suspends the policy until ``set_policy`` or ``resume``.
        self.estop_hold = False
        self.manual = False
        #: After the shutdown command the policy decides nothing more.
        self.stopping = False
        #: A device that did not do what it was told gets the safe program and no more
        #: policy decisions until the operator resumes.
        self.device_hold = False
        self._tokens = itertools.count(1)
        self._last_refusal: tuple[str, str] | None = None

    # -- connection lifecycle ----------------------------------------------------------

    def on_connected(self, info: DeviceInfo, now: float) -> CoreResult:
        """Build (or keep, for the same device) the pipeline; raises EnvelopeConflict when
        the configuration asks for more than the device allows."""
        out = _Collect()
        envelope = SafetyEnvelope(self.config.envelope, info, closed_loop=self.policy.closed_loop)
        same_device = self.info is not None and self.info.device_id == info.device_id
        self.envelope = envelope
        if self.delivered is not None:
            envelope.observe_stim_state(self.delivered, now)
        envelope.observe_link(True, now)
        if not same_device or self.detector is None:
            labels = list(info.labels)
            self._scales = info.scales_uv_per_count
            self.extractor = FeatureExtractor(
                info.n_channels,
                float(info.sampling_rate_hz),
                self.config.features,
                clip_level_uv=32767.0 * self._scales,
                channel_names=labels,
            )
            self.detector = Detector(
                self.config.detector, labels, stim_channels=list(info.stim_channels)
            )
        self.info = info
        self.in_flight = None
        out.audit(
            "connect",
            now,
            device_id=info.device_id,
            firmware=info.firmware_version,
            channels=info.n_channels,
            sampling_rate_hz=info.sampling_rate_hz,
        )
        return out.result()

    def on_link_down(self, now: float) -> CoreResult:
        out = _Collect()
        if self.envelope is not None:
            self.envelope.observe_link(False, now)
        self.in_flight = None
        out.audit("link_lost", now)
        out.annotate("link lost")
        return out.result()

    # -- protocol events ---------------------------------------------------------------

    def on_event(self, event: object, now: float) -> CoreResult:
        """Feed one protocol event (answers to commands go to ``on_command_outcome``)."""
        if isinstance(event, SamplesReceived):
            return self.on_samples(event, now)
        if isinstance(event, StatusReceived):  # once a second; it records nothing
            self.on_status(event.status, now)
            return NOTHING
        out = _Collect()
        if isinstance(event, StimStateReceived):
            self._on_stim_state(event.state, now, out)
        elif isinstance(event, FaultReceived):
            f = event.fault
            self.stats.faults += 1
            out.audit("fault", now, True, code=f.code_name, active=f.active, text=f.text)
            out.annotate(f"fault {f.code_name} {'raised' if f.active else 'cleared'}")
        elif isinstance(event, MarkerReceived):
            m = event.marker
            out.audit("marker", now, code=m.code, text=m.text)
            out.annotate(f"marker {m.code} {m.text}")
        return out.result()

    def on_status(self, status: Status, now: float) -> None:
        """:meth:`on_event` of a STATUS (the node calls it directly, once a second): the
        envelope judges its impedances and fault flags; nothing is recorded."""
        if self.envelope is not None:
            self.envelope.observe_status(status, now)

    def on_command_outcome(
        self, token: int, outcome: Outcome, now: float, **detail: object
    ) -> CoreResult:
        """The device's answer to the command ``token`` (``lost``: the link went first)."""
        out = _Collect()
        if self.in_flight is not None and self.in_flight.token == token:
            self.in_flight = None
        if outcome == "ack":
            self.stats.acks += 1
            out.audit("ack", now, **detail)
        elif outcome == "nack":
            self.stats.nacks += 1
            out.audit("nack", now, True, **detail)
        elif outcome == "timeout":
            self.stats.timeouts += 1
            out.audit("command_timeout", now, True, **detail)
        return out.result()

    def note_sent(self, command: Command, command_id: int, now: float) -> CoreResult:
        """The record of a command that left: what was sent, under which id (fsynced)."""
        out = _Collect()
        self.stats.commands += 1
        out.audit(
            "command",
            now,
            True,
            command_id=command_id,
            origin=command.origin,
            reason=command.reason,
            **setting_fields(command.setting),
        )
        out.annotate(describe_setting(command.setting))
        return out.result()

    # -- operator inputs ---------------------------------------------------------------

    def operator_setting(self, setting: StimSetting, now: float) -> CoreResult:
        """An operator's setting: reviewed by the envelope like any policy request; the
        policy is suspended while it runs (until ``set_policy`` or ``resume``)."""
        out = _Collect()
        out.audit("operator_setting", now, **setting_fields(setting))
        if self.envelope is None:
            self._refuse(out, now, "not_connected", "operator", "operator", "no device connected")
            return out.result()
        if self.estop_hold:
            self._refuse(
                out, now, "estop_hold", "operator", "operator", "cleared E-stop: resume first"
            )
            return out.result()
        if self.in_flight is not None:
            self._refuse(
                out, now, "command_in_flight", "operator", "operator", "the device has not "
                "answered the previous command yet: try again"
            )
            return out.result()
        current_ma = None if self.delivered is None else self.delivered.amplitude_ma
        violations = within_envelope(setting, self.envelope.effective, current_ma)
        if violations:
            # An operator is told which rule stops the request; nothing is clamped behind
            # the operator's back and nothing is sent.
            self._refuse(out, now, violations[0], "operator", "operator", "; ".join(violations))
            return out.result()
        self.manual = True
        request = StimRequest(setting, "operator")
        self._apply(self.envelope.review(request, now), now, "operator", "operator", out)
        return out.result()

    def operator_estop(self, now: float) -> CoreResult:
        """Recorded at once; the node sends ESTOP whatever the envelope says."""
        out = _Collect()
        self.estop_hold = True
        if self.envelope is not None:
            self.envelope.off_decision(now, "estop")
        out.audit("estop", now, True)
        out.annotate("E-stop")
        return out.result()

    def operator_clear_estop(self, now: float) -> CoreResult:
        out = _Collect()
        out.audit("estop_clear", now, True)
        out.annotate("E-stop cleared")
        return out.result()

    def operator_resume(self, now: float) -> CoreResult:
        """Let the policy decide again after an E-stop or a manual setting."""
        out = _Collect()
        self.estop_hold = False
        self.manual = False
        self.device_hold = False
        out.audit("resume", now, True, policy=self.policy.name)
        return out.result()

    def set_policy(self, name: str, now: float) -> CoreResult:
        """Switch policy (ValueError for an unknown name); ends a manual setting."""
        if name not in POLICY_NAMES:
            raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(POLICY_NAMES)}")
        document = self.config.policy.model_dump()
        document["name"] = name
        policy_config = type(self.config.policy).model_validate(document)
        policy = build_policy(policy_config)
        out = _Collect()
        previous, self.policy = self.policy.name, policy
        self.manual = False
        if self.envelope is not None:
            self.envelope.closed_loop = policy.closed_loop
        out.audit("policy", now, True, policy=name, previous=previous)
        out.annotate(f"policy {name}")
        return out.result()

    def operator_marker(self, text: str, now: float) -> CoreResult:
        out = _Collect()
        out.audit("operator_marker", now, text=text)
        out.annotate(f"marker {text}")
        return out.result()

    def on_device_finding(
        self, kind: str, severity: str, now: float, **detail: object
    ) -> CoreResult:
        """The device did not do what it was told: record it, hold the policy and send the
        safe program (unless a command is in flight; the hold keeps the policy out)."""
        out = _Collect()
        self.device_hold = True
        out.audit("device_fault", now, True, finding=kind, severity=severity, **detail)
        out.annotate(f"device fault {kind}")
        if self.envelope is not None and self.in_flight is None:
            decision = self.envelope.fallback_decision(now, f"device {kind}")
            self._apply(decision, now, f"device {kind}", "supervision", out)
        return out.result()

    def shutdown(self, now: float) -> CoreResult:
        """The ramped stop (always sent, even if the envelope thinks the output is off
        already: the device's report is what counts)."""
        out = _Collect()
        self.stopping = True
        ramp = self.envelope.effective.ramp_down_ma_per_s if self.envelope is not None else 0.0
        if self.envelope is not None:
            self.envelope.off_decision(now, "shutdown")
        out.audit("shutdown", now, True, ramp_rate_ma_per_s=ramp)
        limits = None if self.info is None else self.info.limits
        self._issue(StimSetting.off(ramp, limits), "shutdown", "shutdown", out)
        return out.result()

    def closing(self, now: float) -> CoreResult:
        out = _Collect()
        out.audit("stop", now, True)
        return out.result()

    # -- internals ---------------------------------------------------------------------

    def on_samples(self, event: SamplesReceived, now: float) -> CoreResult:
        """:meth:`on_event` of a SAMPLES frame: :meth:`push_samples` as one result."""
        outputs, decided = self.push_samples(event, now)
        if decided is not NOTHING or not outputs:
            return decided
        return build_frozen(CoreResult, {**_NO_FIELDS, "outputs": outputs})

    def push_samples(
        self, event: SamplesReceived, now: float
    ) -> tuple[tuple[DetectorOutput, ...], CoreResult]:
        """A SAMPLES frame through features, detector, envelope and policy: the detector's
        outputs, and what was decided with them in one result (those outputs included), or
        NOTHING. Most hops decide nothing: the node then emits the outputs without a result
        to build and carry (it calls this at every frame)."""
        extractor, detector, envelope = self.extractor, self.detector, self.envelope
        assert extractor is not None and detector is not None and envelope is not None
        stats = self.stats
        stats.sample_blocks += 1
        frames = extractor.push_counts(event.counts, self._scales)
        if not frames:
            return (), NOTHING
        outputs: list[DetectorOutput] = []
        out: _Collect | None = None
        for frame in frames:
            stats.windows += 1
            self.last_frame = frame
            output = detector.update(frame)
            self.last_output = output
            outputs.append(output)
            envelope.observe_detector(output.state)
            out = self._decide(output, now, envelope, out)
        if out is None:
            return tuple(outputs), NOTHING
        out.outputs = outputs
        return tuple(outputs), out.result()

    def _decide(
        self,
        output: DetectorOutput,
        now: float,
        envelope: SafetyEnvelope,
        out: _Collect | None,
    ) -> _Collect | None:
        """One window's output through envelope and policy; ``out`` is made only when
        there is something to record (most windows have nothing)."""
        if output.changed:
            if out is None:
                out = _Collect()
            self.stats.state_changes += 1
            out.audit(
                "detector_state",
                now,
                True,
                state=output.state.value,
                score=output.score,
                reason=output.reason,
            )
            out.annotate(f"detector {output.state.value}")
        if self.in_flight is not None:
            return out  # one command at a time: decide again once the device has answered
        supervised = envelope.supervise(now)
        if supervised is not None:
            if out is None:
                out = _Collect()
            self._apply(supervised, now, "supervision", "supervision", out)
            return out
        if self.estop_hold or self.manual or self.stopping or self.device_hold:
            return out
        request = self.policy.decide(now, output, self.delivered)
        if request is None:
            return out
        if out is None:
            out = _Collect()
        self.stats.decisions += 1
        out.audit(
            "decision",
            now,
            reason=request.reason,
            policy=self.policy.name,
            **setting_fields(request.setting),
        )
        self._apply(envelope.review(request, now), now, request.reason, "policy", out)
        return out

    def _apply(
        self, decision: EnvelopeDecision, now: float, reason: str, origin: Origin, out: _Collect
    ) -> None:
        """Audit what the envelope did; whatever it allows is issued (it records it as sent)."""
        for clamp in decision.clamps:
            self.stats.clamps[clamp.rule] = self.stats.clamps.get(clamp.rule, 0) + 1
            out.clamps.append(
                Clamped(now, str(clamp.rule), clamp.field, clamp.requested, clamp.allowed)
            )
            out.audit(
                "clamp",
                now,
                rule=clamp.rule,
                field=clamp.field,
                requested=clamp.requested,
                allowed=clamp.allowed,
            )
        if decision.refused is None:
            self._last_refusal = None
        elif origin == "operator" or (decision.refused, reason) != self._last_refusal:
            # A policy that keeps asking every window gets one record per refusal spell;
            # an operator gets an answer every time.
            self._last_refusal = (decision.refused, reason)
            self._refuse(
                out, now, str(decision.refused), reason, origin, decision.detail,
                fallback=decision.fallback,
            )
        if decision.setting is not None:
            self._issue(decision.setting, reason, origin, out)

    def _refuse(
        self,
        out: _Collect,
        now: float,
        rule: str,
        reason: str,
        origin: Origin,
        detail: str,
        fallback: bool = False,
    ) -> None:
        self.stats.refusals[rule] = self.stats.refusals.get(rule, 0) + 1
        out.refusals.append(Refused(now, rule, reason, detail, origin))
        out.audit("refusal", now, rule=rule, reason=reason, fallback=fallback, detail=detail)

    def _issue(self, setting: StimSetting, reason: str, origin: Origin, out: _Collect) -> None:
        command = Command(next(self._tokens), setting, reason, origin)
        self.in_flight = command
        out.commands.append(command)

    def _on_stim_state(self, state: StimState, now: float, out: _Collect) -> None:
        previous = self.delivered
        self.delivered = state
        if self.envelope is not None:
            self.envelope.observe_stim_state(state, now)
        setting_changed = previous is None or (
            previous.enabled,
            previous.target_amplitude_ma,
            previous.pulse_width_us,
            previous.frequency_hz,
        ) != (state.enabled, state.target_amplitude_ma, state.pulse_width_us, state.frequency_hz)
        flags_changed = previous is not None and (
            previous.estop_latched,
            previous.watchdog_tripped,
        ) != (state.estop_latched, state.watchdog_tripped)
        if setting_changed and previous is not None:
            self._blank_for_change()
        if state.estop_latched and not self.estop_hold:
            # A latch the device reports (set by another controller, or before a
            # reconnect) holds therapy here too until an operator clears and resumes.
            self.estop_hold = True
            out.audit("estop_reported", now, True)
        if setting_changed or flags_changed:
            out.audit(
                "stim_state",
                now,
                True,
                amplitude_ma=state.amplitude_ma,
                target_amplitude_ma=state.target_amplitude_ma,
                pulse_width_us=state.pulse_width_us,
                frequency_hz=state.frequency_hz,
                enabled=state.enabled,
                estop_latched=state.estop_latched,
                delivered_charge_uc=state.delivered_charge_uc,
            )

    def _blank_for_change(self) -> None:
        """Blank the detector from the device-reported change on: the artefact starts when
        the output changes, not when a command leaves (it may be NACKed or never arrive)."""
        if self.detector is not None and self.last_frame is not None:
            self.detector.blank_after_change(self.last_frame.t_end_s)

    @property
    def detector_state(self) -> DetectorState | None:
        return None if self.last_output is None else self.last_output.state
