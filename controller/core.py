"""The controller's sans-IO core (DESIGN principle 1): protocol events and time in,
stimulation commands and audit records out.

features -> detector -> policy -> safety envelope, fed by SAMPLES frames. The
core acts on the state the device *reports* (STIM_STATE), never on what it asked
for. It never touches a socket or a clock: the async shell (controller.loop) and
the headless lockstep runner both drive this same object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from controller.audit import AuditLog
from controller.config import ControllerConfig
from controller.detector import Detector
from controller.detector.types import DetectorOutput
from controller.envelope import EnvelopeDecision, SafetyEnvelope
from controller.features import FeatureExtractor, FeatureFrame
from controller.policy import Policy, build_policy
from controller.recorder import EdfRecorder
from firmware_bridge.events import (
    CommandAcked,
    CommandNacked,
    CommandTimedOut,
    FaultReceived,
    MarkerReceived,
    SamplesReceived,
    StatusReceived,
    StimStateReceived,
)
from firmware_bridge.messages import DeviceInfo, StimSetting, StimState

RecorderFactory = Callable[[DeviceInfo], EdfRecorder]
#: Annotations from outside the protocol, on the device's sample clock (index / rate):
#: e.g. a simulator's ground truth. Returns (t_device_s, text) pairs not yet delivered.
AnnotationSource = Callable[[], list[tuple[float, str]]]


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


class ControllerCore:
    """One patient's closed loop; survives reconnects to the same device."""

    def __init__(
        self,
        config: ControllerConfig,
        audit: AuditLog,
        recorder_factory: RecorderFactory | None = None,
        annotation_source: AnnotationSource | None = None,
    ) -> None:
        self.config = config
        self.annotation_source = annotation_source
        self.audit = audit
        self.policy: Policy = build_policy(config.policy)
        self.stats = CoreStats()
        self.info: DeviceInfo | None = None
        self.envelope: SafetyEnvelope | None = None
        self.detector: Detector | None = None
        self.extractor: FeatureExtractor | None = None
        self.recorder: EdfRecorder | None = None
        self._recorder_factory = recorder_factory
        self._scales: np.ndarray = np.ones(0)
        self.delivered: StimState | None = None
        self.last_output: DetectorOutput | None = None
        self.last_frame: FeatureFrame | None = None
        self._in_flight: dict[int, StimSetting] = {}
        self.listeners: list[Callable[[str, object], None]] = []
        self._closed = False
        self._last_refusal: tuple[str, str] | None = None

    # -- connection lifecycle ----------------------------------------------------------

    def on_connected(self, info: DeviceInfo, now: float) -> None:
        """Build (or keep, for the same device) the pipeline; raises EnvelopeConflict when
        the configuration asks for more than the device allows."""
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
            if self._recorder_factory is not None and self.recorder is None:
                self.recorder = self._recorder_factory(info)
        self.info = info
        self._in_flight.clear()
        self._audit(
            "connect",
            now,
            device_id=info.device_id,
            firmware=info.firmware_version,
            channels=info.n_channels,
            sampling_rate_hz=info.sampling_rate_hz,
        )

    def on_link_down(self, now: float) -> None:
        if self.envelope is not None:
            self.envelope.observe_link(False, now)
        self._in_flight.clear()
        self._audit("link_lost", now)
        if self.recorder is not None:
            self.recorder.annotate_now("link lost")

    def close(self, now: float) -> None:
        """Close the recording and the audit log (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._audit("stop", now, sync=True)
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None
        self.audit.close()

    # -- events ------------------------------------------------------------------------

    def on_event(self, event: object, now: float) -> list[StimSetting]:
        """Feed one protocol event; returns the commands to send now (zero or one)."""
        if isinstance(event, SamplesReceived):
            return self._on_samples(event, now)
        if isinstance(event, StimStateReceived):
            self._on_stim_state(event.state, now)
        elif isinstance(event, StatusReceived):
            if self.envelope is not None:
                self.envelope.observe_status(event.status, now)
        elif isinstance(event, FaultReceived):
            f = event.fault
            self.stats.faults += 1
            self._audit("fault", now, sync=True, code=f.code_name, active=f.active, text=f.text)
            self._annotate(f"fault {f.code_name} {'raised' if f.active else 'cleared'}")
        elif isinstance(event, MarkerReceived):
            m = event.marker
            self._audit("marker", now, code=m.code, text=m.text)
            self._annotate(f"marker {m.code} {m.text}")
        elif isinstance(event, CommandAcked):
            self.stats.acks += 1
            self._in_flight.pop(event.command_id, None)
            self._audit("ack", now, command_id=event.command_id, attempts=event.attempts)
        elif isinstance(event, CommandNacked):
            self.stats.nacks += 1
            self._in_flight.pop(event.command_id, None)
            self._audit(
                "nack", now, sync=True, command_id=event.command_id, reason=event.reason_name
            )
        elif isinstance(event, CommandTimedOut):
            self.stats.timeouts += 1
            self._in_flight.pop(event.command_id, None)
            self._audit(
                "command_timeout",
                now,
                sync=True,
                command_id=event.command_id,
                attempts=event.attempts,
            )
        self.audit.tick(now)
        return []

    def on_command_sent(self, command_id: int, setting: StimSetting, now: float) -> None:
        self._in_flight[command_id] = setting
        self.stats.commands += 1
        self._audit("command", now, sync=True, command_id=command_id, **_setting_fields(setting))
        self._annotate(_describe(setting))
        if self.detector is not None and self.last_frame is not None:
            self.detector.blank_after_change(self.last_frame.t_end_s)

    def annotate_device_time(self, t_device_s: float, text: str) -> None:
        """Annotate the recording at a time on the device's sample clock (no-op unrecorded)."""
        recorder, info = self.recorder, self.info
        if recorder is None or info is None or recorder.index_origin is None:
            return
        t_s = t_device_s - recorder.index_origin / info.sampling_rate_hz
        recorder.annotate(max(0.0, t_s), text)

    def shutdown_setting(self, now: float) -> StimSetting:
        """The ramped stop sent on shutdown (always sent, even if the envelope thinks the
        output is off already: the device's report is what counts)."""
        ramp = self.envelope.effective.ramp_down_ma_per_s if self.envelope is not None else 0.0
        if self.envelope is not None:
            self.envelope.off_decision(now, "shutdown")
        setting = StimSetting(False, 0.0, 0, 0.0, ramp)
        self._audit("shutdown", now, sync=True, ramp_rate_ma_per_s=ramp)
        return setting

    # -- internals ---------------------------------------------------------------------

    def _on_samples(self, event: SamplesReceived, now: float) -> list[StimSetting]:
        assert self.extractor is not None and self.detector is not None
        self.stats.sample_blocks += 1
        if self.recorder is not None:
            self.recorder.write_counts(event.first_index, event.counts)
            if self.annotation_source is not None:
                for t_device_s, text in self.annotation_source():
                    self.annotate_device_time(t_device_s, text)
        block_uv = event.counts * self._scales[:, None]
        commands: list[StimSetting] = []
        for frame in self.extractor.push(block_uv):
            self.stats.windows += 1
            self.last_frame = frame
            commands = self._decide(frame, now) or commands
        self.audit.tick(now)
        return commands

    def _decide(self, frame: FeatureFrame, now: float) -> list[StimSetting]:
        assert self.detector is not None and self.envelope is not None
        output = self.detector.update(frame)
        self.last_output = output
        self.envelope.observe_detector(output.state)
        if output.changed:
            self.stats.state_changes += 1
            self._audit(
                "detector_state",
                now,
                sync=True,
                state=output.state.value,
                score=output.score,
                reason=output.reason,
            )
            self._annotate(f"detector {output.state.value}")
        self._notify("detector", output)
        if self._in_flight:
            return []  # one command at a time: decide again once the device has answered
        supervised = self.envelope.supervise(now)
        if supervised is not None:
            return self._apply(supervised, now, "supervision")
        request = self.policy.decide(now, output, self.delivered)
        if request is None:
            return []
        self.stats.decisions += 1
        fields = {"reason": request.reason, "policy": self.policy.name}
        self.audit.record("decision", now, sync=False, **fields, **_setting_fields(request.setting))
        return self._apply(self.envelope.review(request, now), now, request.reason)

    def _apply(self, decision: EnvelopeDecision, now: float, reason: str) -> list[StimSetting]:
        """Audit what the envelope did; whatever it allows is sent (it records it as sent)."""
        for clamp in decision.clamps:
            self.stats.clamps[clamp.rule] = self.stats.clamps.get(clamp.rule, 0) + 1
            self._audit(
                "clamp",
                now,
                rule=clamp.rule,
                field=clamp.field,
                requested=clamp.requested,
                allowed=clamp.allowed,
            )
        if decision.refused is None:
            self._last_refusal = None
        elif (decision.refused, reason) != self._last_refusal:
            # A policy that keeps asking every window gets one record per refusal spell.
            rule = decision.refused
            self._last_refusal = (rule, reason)
            self.stats.refusals[rule] = self.stats.refusals.get(rule, 0) + 1
            self._audit(
                "refusal",
                now,
                rule=rule,
                reason=reason,
                fallback=decision.fallback,
                detail=decision.detail,
            )
        return [] if decision.setting is None else [decision.setting]

    def _on_stim_state(self, state: StimState, now: float) -> None:
        previous = self.delivered
        self.delivered = state
        if self.envelope is not None:
            self.envelope.observe_stim_state(state, now)
        changed = previous is None or (
            previous.enabled,
            previous.target_amplitude_ma,
            previous.pulse_width_us,
            previous.frequency_hz,
            previous.estop_latched,
            previous.watchdog_tripped,
        ) != (
            state.enabled,
            state.target_amplitude_ma,
            state.pulse_width_us,
            state.frequency_hz,
            state.estop_latched,
            state.watchdog_tripped,
        )
        if changed:
            self._audit(
                "stim_state",
                now,
                sync=True,
                amplitude_ma=state.amplitude_ma,
                target_amplitude_ma=state.target_amplitude_ma,
                pulse_width_us=state.pulse_width_us,
                frequency_hz=state.frequency_hz,
                enabled=state.enabled,
                delivered_charge_uc=state.delivered_charge_uc,
            )
        self._notify("stim_state", state)

    def _audit(self, kind: str, now: float, *, sync: bool = False, **fields: object) -> None:
        self.audit.record(kind, now, sync=sync, **fields)

    def _annotate(self, text: str) -> None:
        if self.recorder is not None:
            self.recorder.annotate_now(text)

    def _notify(self, kind: str, payload: object) -> None:
        for listener in self.listeners:
            listener(kind, payload)


def _setting_fields(s: StimSetting) -> dict[str, object]:
    return {
        "enabled": s.enabled,
        "amplitude_ma": s.amplitude_ma,
        "pulse_width_us": s.pulse_width_us,
        "frequency_hz": s.frequency_hz,
        "ramp_rate_ma_per_s": s.ramp_rate_ma_per_s,
    }


def _describe(s: StimSetting) -> str:
    if not s.enabled:
        return "stimulation off"
    return f"stimulation {s.amplitude_ma:.2f} mA {s.pulse_width_us} us {s.frequency_hz:g} Hz"
