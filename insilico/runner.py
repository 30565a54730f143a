"""``neurostim sim``: the real controller against the simulated patient, headless, in
lockstep virtual time (PX4-SITL style), scored against the patient's ground truth.

Every sample and command crosses the real codec and sessions (firmware_bridge);
the pump moves bytes synchronously instead of through an event loop, and time
jumps from one deadline to the next, so a virtual day takes seconds to minutes.
``--realtime`` paces the same run against the wall clock.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from controller.config import ControllerConfig
from controller.detector.signature import calibrated_detector_config
from controller.detector.types import DetectorOutput, DetectorState
from controller.node import ControllerNode
from controller.observations import (
    DeviceStatus,
    DeviceStimState,
    LinkState,
    NodeEvent,
)
from controller.policy import build_policy
from controller.run import build_node
from firmware_bridge.clock import VirtualClock
from firmware_bridge.lockstep import LockstepPump, Wire
from firmware_bridge.messages import StimState
from insilico import scoring
from insilico.device_setup import merged_overrides, resolve_device
from insilico.report import (
    AttackReport,
    DetectionReport,
    GroundTruthReport,
    LinkReport,
    PhaseSpan,
    SafetyReport,
    Scores,
    SimReport,
    SiteReport,
    StimulationReport,
    Timeline,
)
from insilico.stimulation import StimulationMeter
from simulator.devices import DEFAULT_DEVICE
from simulator.firmware import VirtualFirmware, firmware_config_for
from simulator.link_faults import LinkFaultInjector, LinkFaultSettings
from simulator.physiology.patient import PatientSimulation
from simulator.physiology.scenario import Scenario, link_fault_settings_at
from simulator.signals import GroundTruthEvent

#: Progress callback: (virtual seconds done, virtual seconds planned).
Progress = Callable[[float, float], None]


@dataclass(frozen=True)
class SimSpec:
    """One headless run: a scenario, for how long, with which controller configuration."""

    scenario: Scenario
    duration_s: float
    config: ControllerConfig
    seed: int | None = None  # run seed; None: the scenario's
    model: str | None = None  # None: the scenario's
    #: SAMPLES frame size of the simulated device: 125 samples = 500 ms at 250 Hz, the
    #: controller's feature hop (docs/insilico.md; every sample still crosses the codec).
    samples_per_frame: int = 125
    #: Samples per signal-model read: 2 s (stimulation changes reach the signal within 2 s).
    source_block_samples: int = 500
    record_path: Path | None = None
    audit_path: Path | None = None
    max_lead_h: float = 48.0
    min_lead_min: float = 30.0
    timeline_points: int = 5000
    #: The device preset (simulator.devices, or a short name such as ``e-tns``).
    device: str = DEFAULT_DEVICE
    #: A patient already running (e.g. after a run-in): the device powers up at its current
    #: time and the run is scored from there; None: a fresh one from the scenario.
    source: PatientSimulation | None = None

    @property
    def run_seed(self) -> int:
        return self.scenario.seed if self.seed is None else self.seed

    @property
    def model_name(self) -> str:
        return self.scenario.model if self.model is None else self.model


def with_policy(config: ControllerConfig, policy: str) -> ControllerConfig:
    """``config`` running ``policy``; ``closed-loop`` names the configured closed-loop policy
    (the configured one if it is closed-loop, else ``prodrome-session``)."""
    if policy == "closed-loop":
        configured = config.policy.name
        policy = configured if build_policy(config.policy).closed_loop else "prodrome-session"
    document = config.model_dump(exclude_unset=True)  # keep "set by the user" knowable
    document.setdefault("policy", {})["name"] = policy
    return ControllerConfig.model_validate(document)


@dataclass
class _Observations:
    """What the controller side saw, kept for the report (device-reported, never assumed)."""

    stim_channels: tuple[int, ...]
    meter: StimulationMeter = field(default_factory=StimulationMeter)
    delivered_charge_uc: float = 0.0
    sessions: int = 0
    last_state: StimState | None = None
    detections: list[float] = field(default_factory=list)
    final_state: str = DetectorState.CALIBRATING.value
    timeline: Timeline = field(default_factory=lambda: Timeline(step_s=1.0))
    #: The timeline step of its last point (computed once per point, not again per window).
    _last_step: int | None = field(default=None, init=False)
    #: The impedances of the last STATUS that priced the meter: the device repeats its
    #: STATUS, and the session hands out the same object for an equal one.
    _impedances: tuple[int, ...] | None = field(default=None, init=False)

    def attach(self, node: ControllerNode) -> None:
        """Observe ``node``: its detector outputs (every hop) read without their events."""
        node.subscribe(self.on_event, outputs=self.on_output)

    def on_event(self, event: NodeEvent) -> None:
        if isinstance(event, DeviceStatus):
            impedances = event.status.impedance_ohm
            if impedances is not self._impedances:  # a repeated STATUS: priced already
                self._impedances = impedances
                self._on_impedances(impedances)
        elif isinstance(event, DeviceStimState):
            self._on_stim_state(event.state, event.t_s)

    def _on_impedances(self, impedances: tuple[int, ...]) -> None:
        values = [impedances[i] for i in self.stim_channels if i < len(impedances)]
        if values:
            self.meter.impedance(sum(values) / len(values))

    def _on_stim_state(self, state: StimState, now: float) -> None:
        previous = self.last_state
        was_on = previous is not None and previous.enabled
        if state.enabled and not was_on:
            self.sessions += 1
        self.last_state = state
        self.delivered_charge_uc = state.delivered_charge_uc
        self.meter.report(now, state.amplitude_ma, state.frequency_hz, state.pulse_width_us)

    def on_output(self, output: DetectorOutput) -> None:
        state = output.state
        value = _STATE_VALUES[state]
        self.final_state = value
        if output.changed and state is _PRODROME:
            self.detections.append(output.t_s)
        line = self.timeline
        amplitude = self.last_state.amplitude_ma if self.last_state is not None else 0.0
        t_s = output.t_s
        times = line.t_s
        step = math.floor(t_s / line.step_s)
        if times and step == self._last_step:  # keep the last value of each step
            times[-1], line.score[-1] = t_s, output.score
            line.state[-1], line.amplitude_ma[-1] = value, amplitude
            return
        self._last_step = step
        times.append(t_s)
        line.score.append(output.score)
        line.state.append(value)
        line.amplitude_ma.append(amplitude)


# Read at every detector window: a dict lookup and a global instead of an Enum member's
# ``value`` and a class attribute (both descriptor calls on Python 3.11).
_STATE_VALUES = {state: state.value for state in DetectorState}
_PRODROME = DetectorState.PRODROME


def on_patient_clock(config: ControllerConfig, start_time_of_day_h: float) -> ControllerConfig:
    """``config`` with the open-loop schedule's day aligned to the simulated patient's clock
    (device t = 0 is ``start_time_of_day_h``), unless the configuration sets it itself."""
    open_loop = config.policy.open_loop
    if "day_start_offset_s" in open_loop.model_fields_set:
        return config
    document = config.model_dump(exclude_unset=True)
    policy = document.setdefault("policy", {})
    policy.setdefault("open_loop", {})["day_start_offset_s"] = start_time_of_day_h * 3600.0
    return ControllerConfig.model_validate(document)


def run_sim(
    spec: SimSpec,
    progress: Progress | None = None,
    rate: float | None = None,
    progress_every_s: float = 600.0,
    clock: VirtualClock | None = None,
) -> SimReport:
    """Run ``spec`` to its end and return the scored report; ``rate`` paces virtual time
    against the wall clock (1: real time), else it runs as fast as it can."""
    wall_start = time.perf_counter()
    source, firmware = build_device(spec)
    power_up_s = source.t_s  # on the patient's clock (> 0 after a run-in)
    end_s = spec.duration_s
    power_up_h = spec.scenario.spec.start_time_of_day_h + power_up_s / 3600.0
    start = datetime(2000, 1, 1) + timedelta(hours=power_up_h)
    config = on_patient_clock(spec.config, power_up_h % 24.0)
    node = build_node(
        config,
        spec.audit_path,
        spec.record_path,
        start,
        _truth_annotations(source, power_up_s),
        client_name="neurostim sim",
        retry_first_connect=True,
    )
    detector_config, _ = calibrated_detector_config(spec.config.detector)  # as loaded
    seen = _Observations(
        stim_channels=firmware.info.stim_channels,
        timeline=Timeline(
            step_s=max(1.0, spec.duration_s / spec.timeline_points),
            upper_threshold=detector_config.upper_threshold,
            lower_threshold=detector_config.lower_threshold,
        ),
    )
    seen.attach(node)
    clock = clock or VirtualClock(rate=rate)
    to_device, to_controller = _wires(spec)
    # Both send their sessions' bytes and nothing else: the pump looks at the outboxes.
    pump = LockstepPump(
        node, firmware, clock, a_to_b=to_device, b_to_a=to_controller, session_peers=True
    )
    node.start(clock.now())
    chunk_s = 0.05 if clock.rate is not None else progress_every_s

    def advance(until_s: float, stop: Callable[[], bool] | None = None) -> None:
        """Run in chunks (progress, pacing) to ``until_s`` or until ``stop()``."""
        while clock.now() < until_s:
            pump.run_until(min(clock.now() + chunk_s, until_s), stop=stop)
            if progress is not None:
                progress(min(clock.now(), end_s), spec.duration_s)
            if stop is not None and stop():
                return

    try:
        advance(end_s, stop=lambda: node.failure is not None)
        if node.failure is not None:
            raise node.failure
        # Stop as `neurostim run` does: the node's ramped stop, confirmed by the device.
        node.request_stop(clock.now(), "duration")
        if node.state is LinkState.STOPPING:
            advance(clock.now() + node.stop_timeout_s + 1.0, stop=lambda: node.finished)
    finally:
        node.close(clock.now())
    wall_s = time.perf_counter() - wall_start
    return _report(spec, source, firmware, node, seen, clock.now(), wall_s, power_up_s)


def build_device(spec: SimSpec) -> tuple[PatientSimulation, VirtualFirmware]:
    """The simulated patient and the firmware of ``spec.device`` around it (firmware limits,
    electrode, impedance and battery from the preset; the patient's dose counted in the
    preset's labelled sessions). The device powers up at the patient's current time: its
    clock (and the controller's) starts at 0 there, whatever the patient's time."""
    device = resolve_device(spec.device)
    source = spec.source
    if source is None:
        source = device_scenario(spec.scenario, spec.device).build_source(
            seed_override=spec.seed, model_override=spec.model
        )
    firmware = VirtualFirmware(
        source,
        firmware_config_for(
            device.name,
            seed=spec.run_seed,
            samples_per_frame=spec.samples_per_frame,
            source_block_samples=spec.source_block_samples,
        ),
        start_s=0.0,
    )
    return source, firmware


def device_scenario(scenario: Scenario, device: str) -> Scenario:
    """``scenario`` whose patient counts dose in ``device``'s labelled sessions (unless the
    scenario's own patient overrides say otherwise)."""
    patient = scenario.spec.patient
    overrides = merged_overrides(patient.overrides, resolve_device(device))
    if overrides == patient.overrides:
        return scenario
    spec = scenario.spec.model_copy(
        update={"patient": patient.model_copy(update={"overrides": overrides})}
    )
    return dataclasses.replace(scenario, spec=spec)


def _wires(spec: SimSpec) -> tuple[Wire | None, Wire | None]:
    """Link impairments of the scenario on both directions (None: a clean link)."""
    events = list(spec.scenario.link_faults)
    if not events:
        return None, None

    def schedule(t_s: float) -> LinkFaultSettings:
        return link_fault_settings_at(events, t_s)

    to_device = LinkFaultInjector(seed=spec.run_seed + 1, schedule=schedule)
    to_controller = LinkFaultInjector(seed=spec.run_seed, schedule=schedule)
    return to_device.process, to_controller.process


def _truth_annotations(
    source: PatientSimulation, power_up_s: float
) -> Callable[[], list[tuple[float, str]]]:
    def drain() -> list[tuple[float, str]]:
        return [(e.t_s - power_up_s, e.annotation()) for e in source.drain_ground_truth()]

    return drain


def phase_spans(events: list[GroundTruthEvent], end_s: float) -> list[PhaseSpan]:
    """The cycle's phases as spans, from the ground truth's ``phase_change`` events."""
    spans: list[PhaseSpan] = []
    phase, start = "interictal", 0.0
    for event in events:
        if event.kind != "phase_change":
            continue
        if event.t_s > start:
            spans.append(PhaseSpan(phase=phase, start_s=start, end_s=event.t_s))
        phase, start = str(event.detail["to"]), event.t_s
    if end_s > start:
        spans.append(PhaseSpan(phase=phase, start_s=start, end_s=end_s))
    return spans


def device_time_truth(events: list[GroundTruthEvent], power_up_s: float) -> list[GroundTruthEvent]:
    """The patient's ground truth on the device's clock (t = 0 at power-up), in time order;
    events before the power-up (a run-in) come out negative."""
    ordered = sorted(events, key=lambda e: e.t_s)
    if power_up_s == 0.0:
        return ordered
    return [dataclasses.replace(e, t_s=e.t_s - power_up_s) for e in ordered]


def clipped_spans(spans: list[PhaseSpan], start_s: float) -> list[PhaseSpan]:
    """The spans from ``start_s`` on (the one running then starts there)."""
    return [
        PhaseSpan(phase=span.phase, start_s=max(span.start_s, start_s), end_s=span.end_s)
        for span in spans
        if span.end_s > start_s
    ]


def attacks_from(events: list[GroundTruthEvent], spans: list[PhaseSpan]) -> list[AttackReport]:
    ends = {span.start_s: span.end_s for span in spans if span.phase == "attack"}
    return [
        AttackReport(t_s=e.t_s, aura=e.detail.get("aura") == "yes", end_s=ends.get(e.t_s))
        for e in events
        if e.kind == "attack_onset"
    ]


def alarms_in_run(detections_s: list[float], duration_s: float) -> list[float]:
    """The detections of the run [0, duration_s]: a PRODROME onset during the node's ramped
    stop after the run is neither scored nor reported (the patient's run has ended)."""
    return [t for t in detections_s if t <= duration_s]


def _report(
    spec: SimSpec,
    source: PatientSimulation,
    firmware: VirtualFirmware,
    node: ControllerNode,
    seen: _Observations,
    end_s: float,
    wall_s: float,
    power_up_s: float = 0.0,
) -> SimReport:
    duration_s = spec.duration_s
    everything = device_time_truth(source.ground_truth, power_up_s)
    spans = clipped_spans(phase_spans(everything, duration_s), 0.0)
    attacks = [a for a in attacks_from(everything, spans) if a.t_s >= 0.0]
    truth = [e for e in everything if e.t_s >= 0.0]
    attack_periods = [(a.t_s, a.end_s) for a in attacks if a.t_s < duration_s]
    alarms_s = alarms_in_run(seen.detections, duration_s)
    seen.meter.finish(end_s)
    stim_time_s, teed_j = seen.meter.on_s, seen.meter.teed_j
    stats = node.core.stats
    session, device = node.session.stats, firmware.session.stats
    prediction = scoring.score_prediction(
        alarms_s,
        attack_periods,
        duration_s,
        max_lead_h=spec.max_lead_h,
        min_lead_min=spec.min_lead_min,
    )
    therapy = scoring.score_therapy(
        attack_periods,
        duration_s,
        stim_time_s=stim_time_s,
        charge_uc=seen.delivered_charge_uc,
        teed_j=teed_j,
    )
    preset = resolve_device(spec.device)
    return SimReport(
        scenario=spec.scenario.name,
        seed=spec.run_seed,
        policy=spec.config.policy.name,
        model=spec.model_name,
        virtual_s=end_s,
        wall_s=wall_s,
        realtime_factor=end_s / wall_s if wall_s > 0 else math.inf,
        sites=[SiteReport(label=s.label, x_mm=s.x_mm, y_mm=s.y_mm) for s in source.sites],
        ground_truth=[
            GroundTruthReport(t_s=e.t_s, kind=e.kind, site=e.site, detail=dict(e.detail))
            for e in truth
        ],
        attacks=attacks,
        detections=[DetectionReport(t_s=t) for t in alarms_s],
        phases=spans,
        stimulation=StimulationReport(
            time_on_s=stim_time_s,
            sessions=seen.sessions,
            charge_uc=seen.delivered_charge_uc,
            teed_j=teed_j,
            charge_per_session_uc=(
                seen.delivered_charge_uc / seen.sessions if seen.sessions else None
            ),
            dose_se=seen.delivered_charge_uc / preset.session_charge_uc,
        ),
        safety=SafetyReport(
            clamps=dict(stats.clamps),
            refusals=dict(stats.refusals),
            nacks=stats.nacks,
            command_timeouts=stats.timeouts,
            faults=stats.faults,
        ),
        link=LinkReport(
            frames_rx=session.frames_rx,
            frames_tx=session.frames_tx,
            lost=session.frames_lost + device.frames_lost,
            crc_errors=session.decoder.crc_errors + device.decoder.crc_errors,
            retries=session.retransmits,
            sample_gaps=session.sample_gaps,
            samples=session.samples_rx,
            connects=node.connects,
            link_losses=node.link_losses,
        ),
        scores=Scores(prediction=prediction, therapy=therapy),
        detector_final_state=seen.final_state,
        timeline=seen.timeline,
        start_s=power_up_s,
        device=preset.name,
        therapy_calibration=preset.calibration_note,
    )
