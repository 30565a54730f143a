"""``neurostim sim``: the real controller against the simulated patient, headless, in
lockstep virtual time (PX4-SITL style), scored against the patient's ground truth.

Every sample and command crosses the real codec and sessions (firmware_bridge);
the pump moves bytes synchronously instead of through an event loop, and time
jumps from one deadline to the next, so a virtual day takes seconds to minutes.
``--realtime`` paces the same run against the wall clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from controller.config import ControllerConfig
from controller.detector.types import DetectorOutput, DetectorState
from controller.loop import Backoff
from controller.policy import build_policy
from controller.run import build_core
from firmware_bridge.clock import VirtualClock
from firmware_bridge.events import StatusReceived, StimStateReceived
from firmware_bridge.lockstep import LockstepPump, Wire
from firmware_bridge.messages import StimState
from firmware_bridge.session import SessionState
from insilico import scoring
from insilico.peer import ControllerPeer
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
from simulator.firmware import FirmwareConfig, VirtualFirmware
from simulator.link_faults import LinkFaultInjector, LinkFaultSettings
from simulator.physiology.patient import PatientSimulation
from simulator.physiology.scenario import Scenario, link_fault_settings_at
from simulator.signals import GroundTruthEvent

#: Progress callback: (virtual seconds done, virtual seconds planned).
Progress = Callable[[float, float], None]

#: Longest wait for the device to confirm zero output after the run (virtual seconds).
RAMP_DOWN_TIMEOUT_S = 300.0


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


class WallPacer:
    """Holds a lockstep run back to the wall clock (``--realtime``)."""

    def __init__(
        self,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sleep = sleep
        self._now = now
        self._origin: float | None = None

    def wait_until(self, virtual_s: float) -> None:
        """Sleep until the wall clock has run ``virtual_s`` since the first call's point."""
        now = self._now()
        if self._origin is None:
            self._origin = now - virtual_s
        ahead_s = self._origin + virtual_s - now
        if ahead_s > 0:
            self._sleep(ahead_s)


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

    def on_event(self, event: object, now: float) -> None:
        if isinstance(event, StatusReceived):
            impedances = event.status.impedance_ohm
            values = [impedances[i] for i in self.stim_channels if i < len(impedances)]
            if values:
                self.meter.impedance(sum(values) / len(values))
        elif isinstance(event, StimStateReceived):
            self._on_stim_state(event.state, now)

    def _on_stim_state(self, state: StimState, now: float) -> None:
        previous = self.last_state
        was_on = previous is not None and previous.enabled
        if state.enabled and not was_on:
            self.sessions += 1
        self.last_state = state
        self.delivered_charge_uc = state.delivered_charge_uc
        self.meter.report(now, state.amplitude_ma, state.frequency_hz, state.pulse_width_us)

    def output_stopped(self) -> bool:
        """The device reports its output off and at zero."""
        state = self.last_state
        return state is not None and not state.enabled and state.amplitude_ma == 0.0

    def on_core(self, kind: str, payload: object) -> None:
        if kind != "detector" or not isinstance(payload, DetectorOutput):
            return
        output = payload
        self.final_state = output.state.value
        if output.changed and output.state is DetectorState.PRODROME:
            self.detections.append(output.t_s)
        line = self.timeline
        amplitude = self.last_state.amplitude_ma if self.last_state is not None else 0.0
        same_step = bool(line.t_s) and (
            math.floor(output.t_s / line.step_s) == math.floor(line.t_s[-1] / line.step_s)
        )
        if same_step:  # keep the last value of each step
            line.t_s[-1], line.score[-1] = output.t_s, output.score
            line.state[-1], line.amplitude_ma[-1] = output.state.value, amplitude
            return
        line.t_s.append(output.t_s)
        line.score.append(output.score)
        line.state.append(output.state.value)
        line.amplitude_ma.append(amplitude)


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
    pacer: WallPacer | None = None,
    progress_every_s: float = 600.0,
) -> SimReport:
    """Run ``spec`` to its end and return the scored report."""
    wall_start = time.perf_counter()
    source = spec.scenario.build_source(seed_override=spec.seed, model_override=spec.model)
    firmware = VirtualFirmware(
        source,
        FirmwareConfig(
            seed=spec.run_seed,
            samples_per_frame=spec.samples_per_frame,
            source_block_samples=spec.source_block_samples,
        ),
        start_s=0.0,
    )
    start = datetime(2000, 1, 1) + timedelta(hours=spec.scenario.spec.start_time_of_day_h)
    config = on_patient_clock(spec.config, spec.scenario.spec.start_time_of_day_h)
    core = build_core(config, spec.audit_path, spec.record_path, start, _truth_annotations(source))
    seen = _Observations(stim_channels=firmware.info.stim_channels)
    seen.timeline = Timeline(
        step_s=max(1.0, spec.duration_s / spec.timeline_points),
        upper_threshold=spec.config.detector.upper_threshold,
        lower_threshold=spec.config.detector.lower_threshold,
    )
    core.listeners.append(seen.on_core)
    loop_cfg = config.loop
    peer = ControllerPeer(
        core,
        backoff=Backoff(loop_cfg.reconnect_backoff_initial_s, loop_cfg.reconnect_backoff_max_s),
        observer=seen.on_event,
    )
    clock = VirtualClock()
    to_device, to_controller = _wires(spec)
    pump = LockstepPump(peer, firmware, clock, a_to_b=to_device, b_to_a=to_controller)
    peer.start(clock.now())
    chunk_s = 0.05 if pacer is not None else progress_every_s

    def advance(until_s: float, stop: Callable[[], bool] | None = None) -> None:
        """Run in chunks (progress, pacing) to ``until_s`` or until ``stop()``."""
        while clock.now() < until_s:
            pump.run_until(min(clock.now() + chunk_s, until_s), stop=stop)
            if pacer is not None:
                pacer.wait_until(clock.now())
            if progress is not None:
                progress(min(clock.now(), spec.duration_s), spec.duration_s)
            if stop is not None and stop():
                return

    try:
        if pacer is not None:
            pacer.wait_until(clock.now())  # the wall clock starts with virtual t = 0
        advance(spec.duration_s)
        if peer.session.state is SessionState.READY:
            # Stop at the envelope's ramp-down rate, as `neurostim run` does, and run until
            # the device reports zero output (or the timeout).
            peer.shut_down(clock.now())
            advance(clock.now() + RAMP_DOWN_TIMEOUT_S, stop=seen.output_stopped)
    finally:
        core.close(clock.now())
    wall_s = time.perf_counter() - wall_start
    return _report(spec, source, firmware, peer, seen, clock.now(), wall_s)


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


def _truth_annotations(source: PatientSimulation) -> Callable[[], list[tuple[float, str]]]:
    def drain() -> list[tuple[float, str]]:
        return [(e.t_s, e.annotation()) for e in source.drain_ground_truth()]

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


def attacks_from(events: list[GroundTruthEvent], spans: list[PhaseSpan]) -> list[AttackReport]:
    ends = {span.start_s: span.end_s for span in spans if span.phase == "attack"}
    return [
        AttackReport(t_s=e.t_s, aura=e.detail.get("aura") == "yes", end_s=ends.get(e.t_s))
        for e in events
        if e.kind == "attack_onset"
    ]


def _report(
    spec: SimSpec,
    source: PatientSimulation,
    firmware: VirtualFirmware,
    peer: ControllerPeer,
    seen: _Observations,
    end_s: float,
    wall_s: float,
) -> SimReport:
    truth = sorted(source.ground_truth, key=lambda e: e.t_s)
    duration_s = spec.duration_s
    spans = phase_spans(truth, duration_s)
    attacks = attacks_from(truth, spans)
    attack_periods = [(a.t_s, a.end_s) for a in attacks if a.t_s < duration_s]
    seen.meter.finish(end_s)
    stim_time_s, teed_j = seen.meter.on_s, seen.meter.teed_j
    stats = peer.core.stats
    session, device = peer.session.stats, firmware.session.stats
    prediction = scoring.score_prediction(
        seen.detections,
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
        detections=[DetectionReport(t_s=t) for t in seen.detections],
        phases=spans,
        stimulation=StimulationReport(
            time_on_s=stim_time_s,
            sessions=seen.sessions,
            charge_uc=seen.delivered_charge_uc,
            teed_j=teed_j,
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
            connects=peer.connects,
            link_losses=peer.link_losses,
        ),
        scores=Scores(prediction=prediction, therapy=therapy),
        detector_final_state=seen.final_state,
        timeline=seen.timeline,
    )
