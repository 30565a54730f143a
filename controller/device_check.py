"""Defence in depth: does the device do what it was told? A pure, sans-IO monitor.

The controller treats the device's STIM_STATE as the truth about the output
(docs/protocol.md section 3); this module checks that truth against what was
commanded, so a device that jumps, slews too fast, overshoots, keeps stimulating
after an off or an ESTOP, or miscounts its charge is noticed. What to do about a
finding (audit it, fall back to the safe program, send ESTOP on a repeated or a
dangerous one) is the caller's decision.

API (all times in seconds on the controller's clock; ``now`` is when a report arrived):

- ``DeviceCheck(info, config)``: one per device session.
- ``connected(now)``: after every (re)connect. The next STIM_STATE is taken as the
  baseline (the device may still be delivering what an earlier controller asked for)
  and yields no finding.
- ``commanded(command_id, setting, sent_s)``: every STIM_SET when it is sent (before its
  ACK, whatever the answer: a refused command only makes the checks more lenient).
- ``estop_sent(command_id, sent_s)``: every ESTOP when it is sent.
- ``latch_cleared(t_s)``: when the ESTOP latch is cleared on purpose (ESTOP_CLEAR sent,
  or a new handshake with a protocol-1.0 device, which clears it as a side effect).
- ``stim_state(state, now)`` / ``status(status, now)``: every report; returns findings.
- ``check_time(now)``: now and then (e.g. once per second); returns the findings about
  reports that should have come and did not.

Each finding is a frozen ``DeviceFinding``: ``kind``, ``severity`` (``fault`` or
``dangerous``), the ``measured`` value, the ``limit`` it broke, a ``text`` for the audit
log, and the time. Kinds and the tolerance of each (``DeviceCheckConfig``):

- ``ramp_too_fast``: between two STIM_STATE reports the amplitude rose by more than the
  commanded ramp rates allow over that time. Reports may arrive up to
  ``link_latency_s`` late, so the time the device had is known only within that margin:
  the allowed rise is the integral of each in-force command's rate (device maximum when
  it asked 0) from when the command was sent until ``link_latency_s`` after the next one
  was, over the reports' interval widened by ``link_latency_s``, plus
  ``amplitude_tol_ma`` (float32 reports). Dangerous when the rise breaks even the
  device's own ``max_ramp_rate_ma_per_s`` (its slew limiter is not working).
- ``above_commanded``: the reported amplitude, or the target it heads for, is above the
  highest amplitude commanded for that time, by more than ``amplitude_tol_ma``. After a
  decrease the old level stays allowed while the device ramps down at the commanded rate,
  plus twice ``link_latency_s`` (command out, report back) and ``stop_grace_s``.
  Dangerous when the reported amplitude also breaks a hard limit of DEVICE_INFO
  (amplitude, charge per phase or charge density at the reported pulse width).
- ``output_after_stop``: output above ``amplitude_tol_ma`` after an off or an ESTOP had
  time to take effect (the ramp time at the commanded rate, none for ESTOP, plus the same
  margins), or no report showing the output at 0 within ``report_interval_s`` after that.
  Always dangerous.
- ``charge_inconsistent``: the delivered-charge counter moved by an amount that no
  amplitude between the two reports' amplitudes, at either report's pulse width and
  rate, gives over the reports' interval (within ``link_latency_s`` either way), beyond
  ``charge_rel_tol`` and ``charge_abs_tol_uc``; or it went backwards. Between two reports
  the protocol allows only a linear ramp or a constant (every command, ramp end and stop
  is reported), so those bounds hold for a device that follows it. When a command was
  sent between the reports (a report of its effect may have been lost), the bounds widen
  to 0 and the highest amplitude commanded meanwhile. Always a fault.
- ``estop_not_latched``: after an ESTOP had time to arrive, a STIM_STATE without the
  ESTOP bit or a STATUS without the ESTOP fault flag, with no clear since. A fault.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from firmware_bridge.messages import DeviceInfo, FaultCode, Status, StimSetting, StimState


class FindingKind(Enum):
    RAMP_TOO_FAST = "ramp_too_fast"
    ABOVE_COMMANDED = "above_commanded"
    OUTPUT_AFTER_STOP = "output_after_stop"
    CHARGE_INCONSISTENT = "charge_inconsistent"
    ESTOP_NOT_LATCHED = "estop_not_latched"


class Severity(Enum):
    FAULT = "fault"
    DANGEROUS = "dangerous"


@dataclass(frozen=True)
class DeviceFinding:
    kind: FindingKind
    severity: Severity
    measured: float
    limit: float
    text: str
    t_s: float


@dataclass(frozen=True)
class DeviceCheckConfig:
    #: Longest one-way delay of a command or a report on the link. Serial links take
    #: milliseconds; 0.1 s leaves room for a network transport.
    link_latency_s: float = 0.1
    #: A device answers within 50 ms (protocol 1.1) and reports a ramp's end at once.
    stop_grace_s: float = 0.1
    #: STIM_STATE carries amplitudes as float32; a microamp is far below clinical effect.
    amplitude_tol_ma: float = 1e-3
    #: The longest gap between STIM_STATE reports while output is on or ramping (1 s) plus
    #: the report's travel.
    report_interval_s: float = 1.1
    charge_rel_tol: float = 1e-3
    charge_abs_tol_uc: float = 1e-3


@dataclass(frozen=True)
class _Command:
    sent_s: float
    command_id: int
    target_ma: float  # 0 for an off or an ESTOP
    rate_ma_per_s: float  # the slew the device should use (its maximum when asked 0)
    enabled: bool
    estop: bool


@dataclass
class _Ceiling:
    """An older, higher amplitude still allowed while the device ramps down from it."""

    level_ma: float
    until_s: float


@dataclass
class _StopCheck:
    command: _Command
    deadline_s: float
    reported: bool = False  # a finding was already made for it


class DeviceCheck:
    """Checks a device's reports against the commands sent to it (see the module doc)."""

    def __init__(self, info: DeviceInfo, config: DeviceCheckConfig = DeviceCheckConfig()) -> None:
        self.info = info
        self.config = config
        self._max_rate = info.limits.max_ramp_rate_ma_per_s
        self._commands: list[_Command] = []
        self._target_ma = 0.0
        self._ceilings: list[_Ceiling] = []
        self._stops: list[_StopCheck] = []
        self._last: tuple[float, StimState] | None = None
        self._baseline_due = True
        self._estop_s: float | None = None
        #: ``check_time`` finds nothing before this time (no stop is due a report yet):
        #: the loop asks at every timer step, and almost always nothing is due.
        self.next_check_s = math.inf

    # -- what the controller did --------------------------------------------------------

    def connected(self, now: float) -> None:
        self._baseline_due = True
        self._last = None
        self._schedule()

    def commanded(self, command_id: int, setting: StimSetting, sent_s: float) -> None:
        rate = setting.ramp_rate_ma_per_s
        rate = self._max_rate if not rate > 0 else min(rate, self._max_rate)
        target = setting.amplitude_ma if setting.enabled else 0.0
        self._add(_Command(sent_s, command_id, target, rate, setting.enabled, False))

    def estop_sent(self, command_id: int, sent_s: float) -> None:
        self._add(_Command(sent_s, command_id, 0.0, float("inf"), False, True))
        if self._estop_s is None:
            self._estop_s = sent_s

    def latch_cleared(self, t_s: float) -> None:
        self._estop_s = None

    # -- what the device said -----------------------------------------------------------

    def stim_state(self, state: StimState, now: float) -> list[DeviceFinding]:
        findings: list[DeviceFinding] = []
        if self._baseline_due:
            self._baseline_due = False
            # Whatever the device delivers at connect is where the checks start from: what
            # it is on its way to counts as commanded, and it may ramp at its own maximum.
            level = max(state.amplitude_ma, state.target_amplitude_ma)
            if state.enabled:
                self._add(_Command(now, 0, level, self._max_rate, True, False))
            elif level > self._ceiling(now):
                self._ceilings.append(_Ceiling(level, now + self._down_time(level)))
        else:
            findings += self._check_level(state, now)
            if self._last is not None:
                findings += self._check_ramp(self._last, state, now)
                findings += self._check_charge(self._last, state, now)
        findings += self._check_latch(state.estop_latched, "STIM_STATE", now)
        self._last = (now, state)
        self._prune(now)
        return findings

    def status(self, status: Status, now: float) -> list[DeviceFinding]:
        latched = bool(status.fault_flags & (1 << FaultCode.ESTOP))
        return self._check_latch(latched, "STATUS", now)

    def check_time(self, now: float) -> list[DeviceFinding]:
        findings: list[DeviceFinding] = []
        last = self._last
        for stop in self._stops:
            if stop.reported or now < stop.deadline_s + self.config.report_interval_s:
                continue
            if self._settled(stop):
                continue
            amplitude = last[1].amplitude_ma if last is not None else float("nan")
            stop.reported = True
            self._schedule()
            findings.append(
                self._finding(
                    FindingKind.OUTPUT_AFTER_STOP,
                    Severity.DANGEROUS,
                    amplitude,
                    0.0,
                    f"no report of zero output {now - stop.command.sent_s:.2f} s after "
                    f"{self._name(stop.command)}",
                    now,
                )
            )
        return findings

    # -- internals ------------------------------------------------------------------------

    def _add(self, command: _Command) -> None:
        ceiling = self._ceiling(command.sent_s)
        until = command.sent_s + self._down_time(max(ceiling, command.target_ma), command)
        if command.target_ma < ceiling:
            self._ceilings.append(_Ceiling(ceiling, until))
        if not command.enabled:
            self._stops.append(_StopCheck(command, until))
            self._schedule()
        self._target_ma = command.target_ma
        self._commands.append(command)

    def _down_time(self, from_ma: float, command: _Command | None = None) -> float:
        """How long a device may take, after ``command`` is sent (or on its own, at its
        maximum rate), to be seen at the command's target coming down from ``from_ma``."""
        rate = self._max_rate if command is None else command.rate_ma_per_s
        to_ma = 0.0 if command is None else command.target_ma
        cfg = self.config
        return max(0.0, from_ma - to_ma) / rate + 2 * cfg.link_latency_s + cfg.stop_grace_s

    def _ceiling(self, t_s: float) -> float:
        level = self._target_ma
        for c in self._ceilings:
            if c.until_s >= t_s and c.level_ma > level:
                level = c.level_ma
        return level

    def _check_level(self, state: StimState, now: float) -> list[DeviceFinding]:
        tol = self.config.amplitude_tol_ma
        ceiling = self._ceiling(now)
        measured = max(state.amplitude_ma, state.target_amplitude_ma)
        if not measured > ceiling + tol:
            return []
        stopped = self._target_ma == 0.0 and self._commands and not self._commands[-1].enabled
        if stopped and ceiling == 0.0 and state.amplitude_ma > tol:
            for stop in self._stops:
                if stop.deadline_s <= now:
                    stop.reported = True
            return [
                self._finding(
                    FindingKind.OUTPUT_AFTER_STOP,
                    Severity.DANGEROUS,
                    state.amplitude_ma,
                    0.0,
                    f"{state.amplitude_ma:.3f} mA still delivered after "
                    f"{self._name(self._commands[-1])}",
                    now,
                )
            ]
        which = "amplitude" if state.amplitude_ma >= state.target_amplitude_ma else "target"
        severity = Severity.DANGEROUS if self._breaks_hard_limit(state) else Severity.FAULT
        return [
            self._finding(
                FindingKind.ABOVE_COMMANDED,
                severity,
                measured,
                ceiling,
                f"reported {which} {measured:.3f} mA above the {ceiling:.3f} mA commanded",
                now,
            )
        ]

    def _breaks_hard_limit(self, state: StimState) -> bool:
        limits = self.info.limits
        amplitude = max(state.amplitude_ma, state.target_amplitude_ma)
        charge_uc = amplitude * state.pulse_width_us * 1e-3
        return (
            amplitude > limits.max_amplitude_ma
            or charge_uc > limits.max_charge_per_phase_uc
            or charge_uc / self.info.electrode_area_cm2 > limits.max_charge_density_uc_per_cm2
        )

    def _allowed_rise(self, t0: float, t1: float, device_rate: bool) -> float:
        """Integral of the in-force commands' up-rates over [t0, t1]."""
        latency = self.config.link_latency_s
        total = 0.0
        commands = self._commands
        for i, c in enumerate(commands):
            if not c.enabled:
                continue
            start = c.sent_s
            end = commands[i + 1].sent_s + latency if i + 1 < len(commands) else t1
            overlap = min(end, t1) - max(start, t0)
            if overlap > 0:
                total += (self._max_rate if device_rate else c.rate_ma_per_s) * overlap
        return total

    def _check_ramp(
        self, last: tuple[float, StimState], state: StimState, now: float
    ) -> list[DeviceFinding]:
        t_prev, prev = last
        rise = state.amplitude_ma - prev.amplitude_ma
        tol = self.config.amplitude_tol_ma
        t0 = t_prev - self.config.link_latency_s
        allowed = self._allowed_rise(t0, now, device_rate=False) + tol
        if not rise > allowed:
            return []
        device_allowed = self._allowed_rise(t0, now, device_rate=True) + tol
        severity = Severity.DANGEROUS if rise > device_allowed else Severity.FAULT
        return [
            self._finding(
                FindingKind.RAMP_TOO_FAST,
                severity,
                rise,
                allowed,
                f"amplitude rose {rise:.3f} mA in {now - t_prev:.3f} s; the commanded ramp "
                f"allows {allowed:.3f} mA",
                now,
            )
        ]

    def _check_charge(
        self, last: tuple[float, StimState], state: StimState, now: float
    ) -> list[DeviceFinding]:
        t_prev, prev = last
        cfg = self.config
        delta = state.delivered_charge_uc - prev.delivered_charge_uc
        dt = now - t_prev
        # µC per mA per second at either report's pulse width and rate
        k_prev = prev.pulse_width_us * 1e-3 * prev.frequency_hz
        k_now = state.pulse_width_us * 1e-3 * state.frequency_hz
        lo_ma = min(prev.amplitude_ma, state.amplitude_ma)
        hi_ma = max(prev.amplitude_ma, state.amplitude_ma)
        changed = [c for c in self._commands if t_prev - cfg.link_latency_s <= c.sent_s <= now]
        if changed:
            # The report of a change may have been lost: the output may have been anywhere
            # between off and the highest amplitude commanded meanwhile.
            lo_ma = 0.0
            hi_ma = max([hi_ma, *(c.target_ma for c in changed)])
        low = lo_ma * min(k_prev, k_now) * max(0.0, dt - cfg.link_latency_s)
        high = hi_ma * max(k_prev, k_now) * (dt + cfg.link_latency_s)
        margin_low = low * cfg.charge_rel_tol + cfg.charge_abs_tol_uc
        margin_high = high * cfg.charge_rel_tol + cfg.charge_abs_tol_uc
        if low - margin_low <= delta <= high + margin_high:
            return []
        limit = high if delta > high else low
        return [
            self._finding(
                FindingKind.CHARGE_INCONSISTENT,
                Severity.FAULT,
                delta,
                limit,
                f"charge counter moved {delta:.4g} µC in {dt:.3f} s; the reported output "
                f"gives {low:.4g}-{high:.4g} µC",
                now,
            )
        ]

    def _check_latch(self, latched: bool, report: str, now: float) -> list[DeviceFinding]:
        cfg = self.config
        if latched or self._estop_s is None:
            return []
        if now < self._estop_s + 2 * cfg.link_latency_s + cfg.stop_grace_s:
            return []
        return [
            self._finding(
                FindingKind.ESTOP_NOT_LATCHED,
                Severity.FAULT,
                0.0,
                1.0,
                f"{report} shows no ESTOP latch {now - self._estop_s:.2f} s after an ESTOP",
                now,
            )
        ]

    def _prune(self, now: float) -> None:
        """Forget what can no longer matter: keeps the state small over long sessions."""
        self._ceilings = [c for c in self._ceilings if c.until_s >= now]
        self._stops = [s for s in self._stops if not s.reported and now < s.deadline_s + 10.0]
        self._schedule()
        horizon = now - 2 * self.config.link_latency_s - 1.0
        commands = self._commands
        while len(commands) > 1 and commands[1].sent_s + self.config.link_latency_s < horizon:
            commands.pop(0)

    def _settled(self, stop: _StopCheck) -> bool:
        """The last report answers for ``stop``: it came after the deadline (and was
        checked), or it showed the output already at 0."""
        last = self._last
        return last is not None and (
            last[0] >= stop.deadline_s or last[1].amplitude_ma <= self.config.amplitude_tol_ma
        )

    def _schedule(self) -> None:
        """``next_check_s``: when the first stop neither reported nor settled by the last
        report is due its zero report (called whenever the stops or the last report
        change, the only inputs of ``check_time`` besides the time)."""
        interval_s = self.config.report_interval_s
        self.next_check_s = min(
            (
                s.deadline_s + interval_s
                for s in self._stops
                if not s.reported and not self._settled(s)
            ),
            default=math.inf,
        )

    @staticmethod
    def _name(command: _Command) -> str:
        return f"ESTOP {command.command_id}" if command.estop else f"off {command.command_id}"

    @staticmethod
    def _finding(
        kind: FindingKind, severity: Severity, measured: float, limit: float, text: str, t: float
    ) -> DeviceFinding:
        return DeviceFinding(kind, severity, float(measured), float(limit), text, t)
