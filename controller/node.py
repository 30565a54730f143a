"""``ControllerNode``: the one object that owns the closed loop, under every shell.

Session (protocol) + core (features, detector, policy, envelope) + reconnection backoff +
the stop and E-stop state machine + the audit log and the recording, behind the lockstep
peer interface (``receive_data``, ``data_to_send``, ``next_deadline``, ``on_time``), like
h11's ``Connection``: no sockets, no sleeps, no clock reads. ``neurostim run`` (asyncio),
``neurostim sim``/``trial`` (lockstep) and the console drive this same object, so the
rules below exist once:

- Reconnection: a peer that goes silent is re-handshaken on the same link after the
  backoff; a link that closes is reported by the shell (``link_down``), which opens a new
  one when ``wants_link`` says so.
- Stop: ``request_stop`` sends the envelope's ramped stop and waits, up to
  ``stop_timeout_s``, for the ACK and then a STIM_STATE with the output off at zero. A
  refused or lost stop, or one not confirmed in time, is followed by ESTOP.
- E-stop: sent at once in every state, never reviewed by the envelope; therapy stays held
  after it is cleared until the operator resumes.
- Durability: with an audit log on a writer thread, a command is not sent until every
  earlier stimulation record is on disk (the shell calls ``on_time`` when it is).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from controller.audit import AuditLog
from controller.backoff import Backoff
from controller.core import (
    NOTHING,
    Annotation,
    Command,
    ControllerCore,
    CoreResult,
    Outcome,
    describe_setting,
)
from controller.detector.types import DetectorOutput
from controller.device_check import DeviceCheck, DeviceFinding, Severity
from controller.observations import (
    CommandAnswered,
    CommandIssued,
    DetectorUpdated,
    DeviceFault,
    DeviceMisbehaved,
    DeviceStatus,
    DeviceStimState,
    EnvelopeBudgets,
    EstopChanged,
    LinkChanged,
    LinkCounters,
    LinkState,
    MarkerAdded,
    NodeEvent,
    NodeSnapshot,
    StopOutcome,
    Stopped,
)
from controller.recording_sink import RecordingSink
from firmware_bridge.errors import BridgeError, DeviceUnreachable, ProtocolMismatch
from firmware_bridge.events import (
    CommandAcked,
    CommandCancelled,
    CommandNacked,
    CommandTimedOut,
    Connected,
    FaultReceived,
    HandshakeFailed,
    MarkerReceived,
    PeerLost,
    SamplesReceived,
    StatusReceived,
    StimStateReceived,
    VersionRejected,
)
from firmware_bridge.framing import PROTOCOL_MAJOR, PROTOCOL_MINOR
from firmware_bridge.frozen import build_frozen
from firmware_bridge.messages import DeviceInfo, Status, StimSetting, StimState
from firmware_bridge.session import ControllerSession, LinkStats

log = logging.getLogger(__name__)

#: Builds the recording once the device has described itself (labels, rate, scales).
RecordingFactory = Callable[[DeviceInfo], RecordingSink]
#: A recording factory for a file the operator names while the loop runs.
RecordingOpener = Callable[[Path], RecordingFactory]
#: Annotations from outside the protocol, on the device's sample clock (index / rate):
#: e.g. a simulator's ground truth. Returns (t_device_s, text) pairs not yet delivered.
AnnotationSource = Callable[[], list[tuple[float, str]]]
Subscriber = Callable[[NodeEvent], None]
#: Takes the detector's outputs instead of their events (``ControllerNode.subscribe``).
OutputReader = Callable[[DetectorOutput], None]

#: MARKER code of an operator's note (device markers carry their own codes).
OPERATOR_MARKER_CODE = 1
#: Two device faults within this window, or one dangerous one, end in ESTOP: one odd
#: report may be a glitch, a second one means the device cannot be trusted.
REPEATED_FINDING_WINDOW_S = 600.0

# The link states as module constants: the per-step checks compare against them four
# times a virtual second, and on Python 3.11 reading an Enum member through its class is
# a descriptor call, several times the cost of reading a global.
_READY = LinkState.READY
_STOPPING = LinkState.STOPPING
_STOPPED = LinkState.STOPPED
_FAILED = LinkState.FAILED
#: Stopped or failed: the link may close (``finished``; the timer steps read it directly).
_FINISHED = (_STOPPED, _FAILED)
#: What the device reports on its own (besides STATUS): the core records it, then
#: observers are told.
_REPORTS = (StimStateReceived, FaultReceived, MarkerReceived)


@dataclass(frozen=True)
class RecordingChange:
    """What became of starting or stopping the recording: done, or refused and why."""

    done: bool
    path: str | None
    reason: str = ""


@dataclass(frozen=True)
class ManualResult:
    """What became of an operator's setting: sent (perhaps clamped) or refused by a rule."""

    sent: StimSetting | None
    refused_rule: str | None
    detail: str = ""
    clamped_rules: tuple[str, ...] = ()


class ControllerNode:
    def __init__(
        self,
        core: ControllerCore,
        audit: AuditLog,
        *,
        recording_factory: RecordingFactory | None = None,
        annotation_source: AnnotationSource | None = None,
        backoff: Backoff | None = None,
        stop_timeout_s: float | None = None,
        client_name: str = "neurostim controller",
        key: bytes | None = None,
        session_factory: Callable[[], ControllerSession] | None = None,
        retry_first_connect: bool = False,
        recording_opener: RecordingOpener | None = None,
    ) -> None:
        """``retry_first_connect``: keep trying when the first handshake gets no answer
        (a simulated link that drops frames); otherwise that is a failure the shell reports
        as an unreachable device. ``recording_opener``: how ``start_recording`` makes a
        recording of a file named while the loop runs (None: it refuses)."""
        loop_cfg = core.config.loop
        self.core = core
        self.audit = audit
        self.backoff = backoff or Backoff(
            loop_cfg.reconnect_backoff_initial_s, loop_cfg.reconnect_backoff_max_s
        )
        self.stop_timeout_s = (
            loop_cfg.shutdown_ramp_down_timeout_s if stop_timeout_s is None else stop_timeout_s
        )
        self._new_session = session_factory or (
            lambda: ControllerSession(client_name=client_name, key=key)
        )
        self.session = self._new_session()
        self._recording_factory = recording_factory
        self._annotation_source = annotation_source
        self.recording: RecordingSink | None = None
        self.state = LinkState.IDLE
        self.failure: BridgeError | None = None
        self.stop_outcome: StopOutcome | None = None
        self.connects = 0
        self.link_losses = 0
        self.reconnect_attempts = 0
        self._failed_attempts = 0
        self._link_open = True
        self._reconnect_at: float | None = None
        self._past_link = _zero_counters()
        self._sent: dict[int, Command] = {}  # command id -> the core's command
        self._held: list[Command] = []  # waiting for earlier records to reach the disk
        self._estop_ids: set[int] = set()
        self._estop_sent = False
        self._requested: StimSetting | None = None
        self._stop_reason = ""
        self._stop_command_id: int | None = None
        self._stop_acked = False
        self._stop_deadline: float | None = None
        self._active_faults: dict[str, bool] = {}
        self.check: DeviceCheck | None = None
        self._finding_times: list[float] = []
        self._device_latched = False
        self._subscribers: list[Subscriber] = []
        self._update_subscribers: list[Subscriber] = []  # take DetectorUpdated events
        self._output_readers: list[OutputReader] = []
        self._closed = False
        self._now = 0.0
        self._retry_first_connect = retry_first_connect
        self._recording_opener = recording_opener

    # -- observation -------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber, outputs: OutputReader | None = None) -> None:
        """Call ``subscriber`` with every typed event, in order, on the caller's thread.

        With ``outputs``, each detector output goes to it, in order with the subscriber's
        events, instead of a ``DetectorUpdated`` to the subscriber: an observer that reads
        only the output (the headless sim's, every hop) costs no event object. Readers
        take an output before the subscribers take its event."""
        self._subscribers.append(subscriber)
        if outputs is None:
            self._update_subscribers.append(subscriber)
        else:
            self._output_readers.append(outputs)

    @property
    def finished(self) -> bool:
        """Stopped or failed: the shell may close the link."""
        return self.state in _FINISHED

    @property
    def holding(self) -> bool:
        """Commands wait for earlier stimulation records to reach the disk."""
        return bool(self._held)

    @property
    def wants_link(self) -> bool:
        """The link is closed and the backoff is over: the shell should open a new one."""
        return (
            not self._link_open
            and self._reconnect_at is None
            and not self.finished
            and not self._reconnect_would_clear_latch
        )

    @property
    def _reconnect_would_clear_latch(self) -> bool:
        """A 1.0 device clears its E-stop latch on any handshake: while an E-stop sent from
        here stands, only the operator's ``clear_estop`` may reconnect to it."""
        info = self.core.info
        return self._estop_sent and info is not None and info.minor < 1

    def snapshot(self, now: float | None = None) -> NodeSnapshot:
        t_s = self._now if now is None else now
        core, envelope = self.core, self.core.envelope
        reported = core.delivered
        return NodeSnapshot(
            t_s=t_s,
            link=self.state,
            device=core.info,
            counters=self.link_counters(),
            features=core.last_frame,
            detector=core.last_output,
            thresholds=_thresholds(core),
            calibration_s=core.config.detector.calibration_s,
            calibration_elapsed_s=_calibration_elapsed_s(core),
            policy=core.policy.name,
            manual=core.manual,
            requested=self._requested,
            reported=reported,
            budgets=None if envelope is None else _budgets(core, t_s),
            clamps=dict(core.stats.clamps),
            refusals=dict(core.stats.refusals),
            active_faults=tuple(name for name, on in self._active_faults.items() if on),
            estop_latched=self._estop_sent or self._device_latched,
            estop_hold=core.estop_hold,
            stop=self.stop_outcome,
            audit_path=None if self.audit.path is None else str(self.audit.path),
            audit_records=self.audit.seq,
            audit_overflows=self.audit.overflows,
            record_path=None if self.recording is None else str(self.recording.path),
            recording=self.recording is not None and self.recording.open,
        )

    def link_counters(self) -> LinkCounters:
        now = _counters(self.session.stats)
        past = self._past_link
        return LinkCounters(
            connects=self.connects,
            link_losses=self.link_losses,
            reconnect_attempts=self.reconnect_attempts,
            **{key: past[key] + now[key] for key in now},
        )

    # -- lockstep peer interface -------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        self._now = now
        events = self.session.receive_data(data, now)
        if events:  # not for a chunk of heartbeats
            self._handle(events, now)

    def data_to_send(self) -> bytes:
        return self.session.data_to_send()

    def next_deadline(self) -> float | None:
        due = None if self.state in _FINISHED else self.session.next_deadline()
        extra = self._reconnect_at
        if extra is not None and (due is None or extra < due):
            due = extra
        extra = self._stop_deadline
        if extra is not None and (due is None or extra < due):
            due = extra
        return due

    def on_time(self, now: float) -> None:
        self._now = now
        if self._held:
            self._send_held(now)
        if self._reconnect_at is not None and now >= self._reconnect_at:
            self._reconnect_at = None
            if self._reconnect_would_clear_latch:
                self._set_state(LinkState.BACKOFF, now, "E-stop held: reconnect on clear")
            elif self._link_open:
                self._handshake(now)
        if self._stop_deadline is not None and now >= self._stop_deadline:
            self._finish_stop(now, False, "device did not confirm zero output before the timeout")
        if self.state not in _FINISHED:
            events = self.session.handle_timeout(now)
            if events:
                self._handle(events, now)
        check = self.check
        if check is not None and now >= check.next_check_s and self.state is _READY:
            findings = check.check_time(now)
            if findings:
                self._on_findings(findings, now)

    # -- link lifecycle (shells that open links) ---------------------------------------

    def start(self, now: float) -> None:
        """Begin the first handshake on a link that is open."""
        self._now = now
        self._handshake(now)

    def link_down(self, now: float, reason: str = "link closed") -> None:
        """The transport closed: forget the session and wait the backoff before a new link."""
        self._now = now
        self._link_open = False
        was_ready = self.state in (_READY, _STOPPING)
        self._retire_session()
        if self.state is _STOPPING:
            self._finish_stop(now, False, f"link lost during the ramp-down: {reason}")
            return
        if self.finished:
            return
        if was_ready:
            self._lost(now, reason)
        elif self.connects == 0 and self.state is LinkState.CONNECTING:
            self._fail(now, DeviceUnreachable(f"link closed before the handshake: {reason}"))
            return
        self._schedule_reconnect(now)

    def link_up(self, now: float) -> None:
        """A new link is open (after ``wants_link``): handshake on it."""
        self._now = now
        self._link_open = True
        self._handshake(now)

    def link_open_failed(self, now: float, reason: str) -> None:
        """Opening a new link failed: wait the next backoff step."""
        self._now = now
        log.warning("reconnect failed: %s", reason)
        self._schedule_reconnect(now)

    # -- operator inputs ---------------------------------------------------------------

    def request_stop(self, now: float, reason: str = "operator") -> None:
        """Ramp stimulation down and finish once the device confirms zero output."""
        self._now = now
        if self.state is _STOPPING or self.finished:
            return
        self._stop_reason = reason
        if self.state is not _READY:
            self._finish_stop(now, False, "not connected: the device's watchdog stops its output")
            return
        self._set_state(_STOPPING, now, reason)
        self._stop_deadline = now + self.stop_timeout_s
        self._carry(self.core.shutdown(now), now)

    def estop(self, now: float) -> None:
        """ESTOP now, in every state: never reviewed by the envelope, never held."""
        self._now = now
        self._send_estop(now)
        self._carry(self.core.operator_estop(now), now)
        self._emit(EstopChanged(now, True, "operator"))
        log.warning("E-stop sent")

    def clear_estop(self, now: float) -> None:
        """Clear the device's E-stop latch on purpose; therapy stays held until ``resume``.

        A 1.1 device gets ESTOP_CLEAR (signed when signing is on); a 1.0 device clears its
        latch only on a new handshake, so the node re-handshakes on the same link (the
        core keeps its pipeline for the same device).
        """
        self._now = now
        self._carry(self.core.operator_clear_estop(now), now)
        self._estop_sent = False
        self._emit(EstopChanged(now, False, "operator"))
        if self.check is not None:
            self.check.latch_cleared(now)
        if self.state is not _READY:
            if self._link_open and self._reconnect_at is None and not self.finished:
                self._handshake(now)  # a reconnect held back for the latch's sake
            return
        info = self.session.info
        if info is not None and info.minor >= 1:
            self._estop_ids.add(self.session.send_estop_clear(now))
        else:
            self._handshake(now)

    def resume(self, now: float) -> None:
        """Let the policy decide again (after a cleared E-stop or a manual setting)."""
        self._now = now
        self._carry(self.core.operator_resume(now), now)

    def manual_setting(self, setting: StimSetting, now: float) -> ManualResult:
        """An operator's setting, reviewed by the envelope like any policy request."""
        self._now = now
        result = self.core.operator_setting(setting, now)
        self._carry(result, now)
        refusal = result.refusals[0] if result.refusals else None
        sent = result.commands[0].setting if result.commands else None
        return ManualResult(
            sent=sent,
            refused_rule=None if refusal is None else refusal.rule,
            detail="" if refusal is None else refusal.detail,
            clamped_rules=tuple(c.rule for c in result.clamps),
        )

    def marker(self, text: str, now: float) -> None:
        """An operator's note: audited, in the recording, and sent to the device."""
        self._now = now
        self._carry(self.core.operator_marker(text, now), now)
        if self.state is _READY:
            self.session.send_marker(OPERATOR_MARKER_CODE, text, now)
        self._emit(MarkerAdded(now, text, "operator"))

    def set_policy(self, name: str, now: float) -> None:
        """Switch policy by name; raises ValueError naming the choices for an unknown one."""
        self._now = now
        self._carry(self.core.set_policy(name, now), now)

    def start_recording(self, path: Path, now: float) -> RecordingChange:
        """Record the device's samples into ``path`` from now until ``stop_recording``.

        Refused while a recording runs (one file at a time: a second one would split the
        samples), before the device has described what it records, or without an opener.
        """
        self._now = now
        refusal = self._recording_refusal()
        if refusal:
            return RecordingChange(False, None, refusal)
        assert self._recording_opener is not None and self.core.info is not None
        factory = self._recording_opener(path)
        self.recording = factory(self.core.info)
        self._recording_factory = factory  # a reconnect to the same device keeps this file
        self.audit.record("recording_started", now, path=str(self.recording.path))
        return RecordingChange(True, str(self.recording.path))

    def stop_recording(self, now: float) -> RecordingChange:
        """Close the running recording (a valid EDF+ file from its start to now)."""
        self._now = now
        recording = self.recording
        if recording is None or not recording.open:
            return RecordingChange(False, None, "no recording is running")
        recording.close()
        self.recording = None
        self._recording_factory = None  # a reconnect must not reopen (overwrite) the file
        self.audit.record("recording_stopped", now, path=str(recording.path))
        return RecordingChange(True, str(recording.path))

    def _recording_refusal(self) -> str:
        if self.recording is not None and self.recording.open:
            return f"a recording is already running ({self.recording.path}): stop it first"
        if self._recording_opener is None:
            return "this controller was built without a way to open recordings"
        if self.core.info is None:
            return "no device yet: the recording needs its channels and rate"
        if self._closed:
            return "the controller is closed"
        return ""

    def close(self, now: float) -> None:
        """Write the final record, close the recording and the audit log (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._carry(self.core.closing(now), now)
        if self.recording is not None:
            self.recording.close()
        self.audit.close()

    # -- internals ---------------------------------------------------------------------

    def _handshake(self, now: float) -> None:
        self._set_state(LinkState.CONNECTING, now)
        self.session.connect(now)

    def _handle(self, events: Sequence[object], now: float) -> None:
        for event in events:
            if isinstance(event, SamplesReceived):
                self._on_samples(event, now)
            elif isinstance(event, StatusReceived):  # second: a STATUS comes every second
                self._on_status(event.status, now)
            elif isinstance(event, _REPORTS):
                self._carry(self.core.on_event(event, now), now)
                self._observe(event, now)
            elif isinstance(event, CommandAcked | CommandNacked | CommandTimedOut):
                self._on_answer(event, now)
            elif isinstance(event, CommandCancelled):
                self._estop_ids.discard(event.command_id)
                self.audit.record(
                    "command_cancelled",
                    now,
                    sync=True,
                    command_id=event.command_id,
                    reason=event.reason,
                )
            elif isinstance(event, Connected):
                self._on_connected(event.info, now)
            elif isinstance(event, PeerLost):
                if self.state is _STOPPING:
                    self._finish_stop(now, False, "device silent during the ramp-down")
                    continue
                self._lost(now, f"device silent for {event.silent_s:.2f} s")
                self._schedule_reconnect(now)
            elif isinstance(event, HandshakeFailed):
                if self.connects == 0 and not self._retry_first_connect:
                    self._fail(
                        now,
                        DeviceUnreachable(
                            f"no answer to HELLO after {event.attempts} attempts: is it a "
                            "neurostim device at this address?"
                        ),
                    )
                else:
                    self._schedule_reconnect(now)
            elif isinstance(event, VersionRejected):
                self._fail(now, ProtocolMismatch(event.message(PROTOCOL_MAJOR, PROTOCOL_MINOR)))

    def _on_connected(self, info: DeviceInfo, now: float) -> None:
        self.connects += 1
        self._failed_attempts = 0
        self._sent.clear()
        self._held.clear()
        result = self.core.on_connected(info, now)  # may raise EnvelopeConflict
        self.check = DeviceCheck(info)
        self.check.connected(now)
        if self.recording is None and self._recording_factory is not None:
            self.recording = self._recording_factory(info)
        self._set_state(_READY, now, info.device_id)
        log.info("connected to %s (firmware %s)", info.device_id, info.firmware_version)
        self._carry(result, now)

    def _on_samples(self, event: SamplesReceived, now: float) -> None:
        recording = self.recording
        if recording is not None:
            recording.write_counts(event.first_index, event.counts)
            if self._annotation_source is not None:
                for t_device_s, text in self._annotation_source():
                    self._carry_annotation(t_device_s, text)
        outputs, decided = self.core.push_samples(event, now)
        if decided is not NOTHING:
            self._carry(decided, now)
        else:
            self._emit_outputs(outputs)
        if self.state is not _STOPPING:
            self.audit.tick(now)

    def _on_status(self, status: Status, now: float) -> None:
        """The envelope and the device check judge the STATUS; observers are told."""
        self.core.on_status(status, now)
        self._emit(build_frozen(DeviceStatus, {"t_s": now, "status": status}))
        check = self.check
        if check is not None:
            findings = check.status(status, now)
            if findings:
                self._on_findings(findings, now)

    def _carry_annotation(self, t_device_s: float, text: str) -> None:
        if self.recording is not None:
            self.recording.annotate(Annotation(text, t_device_s))

    def _on_answer(self, event: CommandAcked | CommandNacked | CommandTimedOut, now: float) -> None:
        cid = event.command_id
        if cid in self._estop_ids:
            self._estop_ids.discard(cid)
            outcome = _outcome(event)
            self.audit.record("stop_answer", now, sync=True, command_id=cid, outcome=outcome)
            self._emit(CommandAnswered(now, cid, outcome, _nack_reason(event)))
            return
        command = self._sent.pop(cid, None)
        outcome = _outcome(event)
        detail: dict[str, object] = {"command_id": cid}
        if isinstance(event, CommandNacked):
            detail["reason"] = event.reason_name
        else:
            detail["attempts"] = event.attempts
        if command is not None:
            self._carry(self.core.on_command_outcome(command.token, outcome, now, **detail), now)
        self._emit(CommandAnswered(now, cid, outcome, _nack_reason(event)))
        if outcome != "ack":
            log.warning("command %d %s %s", cid, outcome, detail.get("reason", ""))
        if cid == self._stop_command_id and self.state is _STOPPING:
            if outcome == "ack":
                self._stop_acked = True
            else:
                self._finish_stop(now, False, f"ramp-down command {outcome}")

    def _observe(self, event: object, now: float) -> None:
        if isinstance(event, StimStateReceived):
            self._on_stim_state(event.state, now)
        elif isinstance(event, FaultReceived):
            self._active_faults[event.fault.code_name] = event.fault.active
            self._emit(DeviceFault(now, event.fault))
        elif isinstance(event, MarkerReceived):
            self._emit(MarkerAdded(now, event.marker.text, "device"))

    def _on_stim_state(self, state: StimState, now: float) -> None:
        self._emit(DeviceStimState(now, state))
        if state.estop_latched != self._device_latched:
            self._device_latched = state.estop_latched
            self._emit(EstopChanged(now, state.estop_latched, "device"))
        if self.check is not None:
            self._on_findings(self.check.stim_state(state, now), now)
        if (
            self.state is _STOPPING
            and self._stop_acked
            and not state.enabled
            and state.amplitude_ma == 0.0
        ):
            # Output confirmed off: say goodbye, so the device's log shows a clean exit
            # instead of a watchdog fault (a 1.0 device gets nothing).
            self.session.send_bye(now)
            self._finish_stop(now, True, None)

    def _on_findings(self, findings: list[DeviceFinding], now: float) -> None:
        """A device that does not do what it was told: the safe program, and ESTOP when
        it is dangerous or happens again."""
        for finding in findings:
            self._emit(
                DeviceMisbehaved(now, finding.kind.value, finding.severity.value, finding.text)
            )
            log.warning("device misbehaves: %s", finding.text)
            self._carry(
                self.core.on_device_finding(
                    finding.kind.value,
                    finding.severity.value,
                    now,
                    measured=finding.measured,
                    limit=finding.limit,
                    text=finding.text,
                ),
                now,
            )
            self._finding_times = [
                t for t in self._finding_times if now - t < REPEATED_FINDING_WINDOW_S
            ]
            self._finding_times.append(now)
            dangerous = finding.severity is Severity.DANGEROUS
            if dangerous or len(self._finding_times) >= 2:
                self._send_estop(now)
                self.audit.record(
                    "estop",
                    now,
                    sync=True,
                    reason=f"device {finding.kind.value}"
                    + (" (dangerous)" if dangerous else " (repeated)"),
                )
                self._emit(EstopChanged(now, True, "controller"))

    def _send_estop(self, now: float) -> None:
        cid = self.session.send_estop(now)
        self._estop_ids.add(cid)
        self._estop_sent = True
        if self.check is not None:
            self.check.estop_sent(cid, now)

    def _carry(self, result: CoreResult, now: float) -> None:
        """Write what the core recorded, annotate, tell observers, send its commands."""
        audit = self.audit
        for entry in result.records:
            audit.record(entry.kind, entry.t_s, sync=entry.sync, **entry.fields)
        if self.recording is not None:
            for annotation in result.annotations:
                self.recording.annotate(annotation)
        self._emit_outputs(result.outputs)
        if self._subscribers:
            for clamp in result.clamps:
                self._emit(clamp)
            for refusal in result.refusals:
                self._emit(refusal)
        for command in result.commands:
            if self.state is not _READY and self.state is not _STOPPING:
                self._carry(self.core.on_command_outcome(command.token, "lost", now), now)
            elif audit.durable and not self._held:
                self._send(command, now)
            else:
                self._held.append(command)

    def _emit_outputs(self, outputs: tuple[DetectorOutput, ...]) -> None:
        """Each output to the output readers, then as a DetectorUpdated to the other
        subscribers (every hop: ``_emit`` spelled out, the event built only if one takes it)."""
        readers, subscribers = self._output_readers, self._update_subscribers
        for output in outputs:
            for reader in readers:
                reader(output)
            if subscribers:
                event = build_frozen(DetectorUpdated, {"t_s": output.t_s, "output": output})
                for subscriber in subscribers:
                    subscriber(event)

    def _send_held(self, now: float) -> None:
        while self._held and self.audit.durable:
            self._send(self._held.pop(0), now)

    def _send(self, command: Command, now: float) -> None:
        cid = self.session.send_stim_set(command.setting, now)
        if self.check is not None:
            self.check.commanded(cid, command.setting, now)
        self._sent[cid] = command
        if command.origin == "shutdown":
            self._stop_command_id = cid
        self._requested = command.setting
        self._carry(self.core.note_sent(command, cid, now), now)
        self._emit(CommandIssued(now, cid, command.setting, command.reason, command.origin))
        log.info("command %d: %s (%s)", cid, describe_setting(command.setting), command.reason)

    def _lost(self, now: float, reason: str) -> None:
        self.link_losses += 1
        self._sent.clear()
        self._held.clear()
        self._carry(self.core.on_link_down(now), now)
        self._set_state(LinkState.BACKOFF, now, reason)
        log.warning("link lost: %s", reason)

    def _schedule_reconnect(self, now: float) -> None:
        if self.finished:
            return
        delay = self.backoff.delay_s(self._failed_attempts)
        self._failed_attempts += 1
        self.reconnect_attempts += 1
        self._reconnect_at = now + delay
        self._set_state(LinkState.BACKOFF, now, f"reconnect in {delay:.1f} s")

    def _retire_session(self) -> None:
        """A closed link ends its session: keep its counters, start the next one fresh."""
        now = _counters(self.session.stats)
        self._past_link = {key: self._past_link[key] + now[key] for key in now}
        self.session = self._new_session()

    def _finish_stop(self, now: float, ramped_down: bool, error: str | None) -> None:
        self._stop_deadline = None
        if not ramped_down and self.state is _STOPPING and self._link_open:
            # A stop that is not confirmed ends with the stop that needs no confirmation.
            self._send_estop(now)
            self.audit.record("estop", now, sync=True, reason=error or "stop failed")
        outcome = StopOutcome(ramped_down, self._stop_reason or "stop", error)
        self.stop_outcome = outcome
        self._set_state(_STOPPED, now, error or "ramped down")
        self._emit(Stopped(now, outcome))
        if error:
            log.warning("stop: %s", error)

    def _fail(self, now: float, failure: BridgeError) -> None:
        self.failure = failure
        self._reconnect_at = None
        self._set_state(_FAILED, now, str(failure))

    def _set_state(self, state: LinkState, now: float, detail: str = "") -> None:
        if state is self.state:
            return
        self.state = state
        self._emit(LinkChanged(now, state, detail))

    def _emit(self, event: NodeEvent) -> None:
        for subscriber in self._subscribers:
            subscriber(event)


def _outcome(event: CommandAcked | CommandNacked | CommandTimedOut) -> Outcome:
    if isinstance(event, CommandAcked):
        return "ack"
    return "nack" if isinstance(event, CommandNacked) else "timeout"


def _nack_reason(event: object) -> str:
    return event.reason_name if isinstance(event, CommandNacked) else ""


_COUNTER_KEYS = (
    "frames_rx",
    "frames_tx",
    "frames_lost",
    "crc_errors",
    "retransmits",
    "samples",
    "sample_gaps",
    "samples_missing",
)


def _counters(st: LinkStats) -> dict[str, int]:
    return {
        "frames_rx": st.frames_rx,
        "frames_tx": st.frames_tx,
        "frames_lost": st.frames_lost,
        "crc_errors": st.crc_errors,
        "retransmits": st.retransmits,
        "samples": st.samples_rx,
        "sample_gaps": st.sample_gaps,
        "samples_missing": st.samples_missing,
    }


def _zero_counters() -> dict[str, int]:
    return dict.fromkeys(_COUNTER_KEYS, 0)


def _thresholds(core: ControllerCore) -> tuple[float, float]:
    """(lower, upper) as the detector uses them: a patient's calibration file sets its own."""
    if core.detector is not None:
        upper, lower = core.detector.thresholds
        return (lower, upper)
    return (core.config.detector.lower_threshold, core.config.detector.upper_threshold)


def _calibration_elapsed_s(core: ControllerCore) -> float:
    """Credited calibration seconds so far; the whole period once the baseline is ready
    (also a baseline loaded from a calibration file)."""
    detector = core.detector
    if detector is None:
        return 0.0
    baseline = detector.baseline
    required_s = core.config.detector.calibration_s
    return required_s if baseline.ready else min(baseline.calibrated_s, required_s)


def _budgets(core: ControllerCore, t_s: float) -> EnvelopeBudgets:
    envelope = core.envelope
    assert envelope is not None
    eff, cfg = envelope.effective, envelope.config
    return EnvelopeBudgets(
        max_amplitude_ma=eff.max_amplitude_ma,
        max_charge_density_uc_per_cm2=eff.max_charge_density_uc_per_cm2,
        max_shannon_k=eff.shannon_k_max,
        sessions_24h=envelope.sessions_24h(t_s),
        max_sessions_24h=cfg.max_sessions_per_24h,
        stimulation_s_24h=envelope.on_time_s(t_s),
        max_stimulation_s_24h=cfg.daily_on_time_budget_s,
        charge_uc_24h=envelope.charge_uc(t_s),
        max_charge_uc_24h=cfg.daily_charge_budget_uc,
    )
