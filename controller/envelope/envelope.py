"""The safety envelope: the last step before any stimulation command leaves the controller.

Sans-IO: the loop feeds it observations (device state, status, link, detector) and
requests with their time, and sends only what ``review``/``supervise`` return.
See docs/controller.md for the rules and their sources.
"""

from __future__ import annotations

import math

from controller.detector.types import DetectorState
from controller.envelope.accounting import DeliveryAccounting, RollingCount, is_active
from controller.envelope.clamp import ClampResult, clamp_off, clamp_setting
from controller.envelope.config import EnvelopeConfig
from controller.envelope.decision import EnvelopeDecision, Rule
from controller.envelope.limits import EffectiveEnvelope, effective_envelope
from controller.policy.types import StimRequest
from firmware_bridge.messages import STIM_OFF, DeviceInfo, FaultCode, Status, StimSetting, StimState

# Device faults that forbid stimulation: a broken lead, a latched emergency stop, a flat
# battery (docs/protocol.md section 5). A watchdog fault clears when the controller is
# heard again and low battery still allows stimulation.
_STOPPING_FAULTS = (FaultCode.IMPEDANCE, FaultCode.ESTOP, FaultCode.BATTERY_EMPTY)


class SafetyEnvelope:
    """Reviews every requested setting against the effective envelope and the budgets.

    Raises EnvelopeConflict at construction when ``config`` asks for more than ``device``
    allows. ``closed_loop`` makes an UNKNOWN detector state switch to the fallback program
    (open-loop policies do not depend on the detector).
    """

    def __init__(
        self, config: EnvelopeConfig, device: DeviceInfo, *, closed_loop: bool = True
    ) -> None:
        self.config = config
        self.device = device
        self.effective: EffectiveEnvelope = effective_envelope(config, device)
        self._closed_loop = closed_loop
        #: ``supervise`` found nothing to do with no session running and nothing delivered:
        #: it answers None again until an observation or a sent setting changes its inputs.
        self._quiet = False
        lim = device.limits
        # How long a report may be trusted: the device watchdog, a full ramp down at the
        # device's own rate, and the 1 s STIM_STATE period (docs/protocol.md).
        stale_cap_s = (
            device.watchdog_ms / 1000.0 + lim.max_amplitude_ma / lim.max_ramp_rate_ma_per_s + 1.0
        )
        self._accounting = DeliveryAccounting(stale_cap_s)
        self._session_starts = RollingCount()
        self._session_start_s: float | None = None  # observed session
        self._pending_start_s: float | None = None  # sent "on", not yet seen delivering
        self._observed: StimState | None = None
        self._observed_t_s: float | None = None
        self._last_sent: StimSetting | None = None
        self._last_sent_t_s: float | None = None
        self._resend_required = False
        self._link_up = True
        self._detector_state: DetectorState | None = None
        self._impedance_problem: tuple[Rule, str] | None = (
            (Rule.IMPEDANCE_UNMEASURED, "no electrode impedance reported yet")
            if self._stim_electrodes()
            else None
        )
        self._device_faults: frozenset[FaultCode] = frozenset()
        #: The impedances and fault flags the two verdicts above were drawn from (None:
        #: no STATUS yet).
        self._judged_status: tuple[tuple[int, ...], int] | None = None

    @property
    def closed_loop(self) -> bool:
        return self._closed_loop

    @closed_loop.setter
    def closed_loop(self, closed_loop: bool) -> None:
        self._closed_loop = closed_loop
        self._quiet = False

    # --- observations -----------------------------------------------------------------

    def observe_stim_state(self, state: StimState, t_s: float) -> None:
        """What the device reports it delivers: budgets and sessions count from this."""
        self._quiet = False
        self._accounting.observe(state, t_s)
        active = is_active(state)
        if active:
            if self._session_start_s is None:
                start = t_s if self._pending_start_s is None else min(self._pending_start_s, t_s)
                self._session_start_s = start
                self._session_starts.add(start)
            elif self._pending_start_s is not None:
                self._session_starts.add(self._pending_start_s)  # over-counting: safe side
            self._pending_start_s = None
        elif self._pending_start_s is None:
            self._session_start_s = None  # the session ended
        if state.watchdog_tripped or state.estop_latched:
            self._resend_required = True
        self._observed = state
        self._observed_t_s = t_s

    def observe_status(self, status: Status, t_s: float) -> None:
        """Electrode impedances (window check) and device fault flags.

        Judged again only when they differ from the last STATUS's: a device reports once a
        second, and its impedances and faults rarely change between reports.
        """
        judged = (status.impedance_ohm, status.fault_flags)
        if judged == self._judged_status:
            return
        self._judged_status = judged
        self._quiet = False
        electrodes = self._stim_electrodes()
        problems: list[str] = []
        unmeasured: list[str] = []
        for index in electrodes:
            if index >= len(status.impedance_ohm):
                unmeasured.append(f"electrode {index}: no impedance in STATUS")
                continue
            ohm = status.impedance_ohm[index]
            if not self.config.impedance_min_ohm <= ohm <= self.config.impedance_max_ohm:
                problems.append(
                    f"electrode {index}: {ohm} Ω outside {self.config.impedance_min_ohm:g}-"
                    f"{self.config.impedance_max_ohm:g} Ω"
                )
        self._impedance_problem = None
        if unmeasured:
            self._impedance_problem = (Rule.IMPEDANCE_UNMEASURED, "; ".join(unmeasured))
        elif problems:
            self._impedance_problem = (Rule.IMPEDANCE_WINDOW, "; ".join(problems))
        active = set(status.active_faults())
        self._device_faults = frozenset(code for code in _STOPPING_FAULTS if code in active)

    def observe_link(self, up: bool, t_s: float) -> None:
        """Link loss holds the fallback; after it, the device's state must be re-established."""
        if not up:
            self._resend_required = True
        self._link_up = up
        self._quiet = False

    def observe_detector(self, state: DetectorState) -> None:
        if state is not self._detector_state:
            self._detector_state = state
            self._quiet = False

    # --- decisions --------------------------------------------------------------------

    def review(self, request: StimRequest, t_s: float) -> EnvelopeDecision:
        """What may be sent for ``request`` at ``t_s``; the loop must send every setting.

        Order: link (nothing can be sent), turning off (never refused), hard stops
        (device fault, impedance, budgets, session length, sessions per 24 h: off),
        UNKNOWN detector for closed-loop (fallback program), then the clamps and the
        minimum interval between changes.
        """
        setting = request.setting
        if not self._link_up:
            return self._link_down_decision(Rule.LINK_DOWN.value)
        if not setting.enabled:
            return self._send_off(setting, t_s, None, False, f"requested: {request.reason}")
        stop = self._hard_stop(t_s, starting=not self._session_running())
        if stop is not None:
            rule, detail = stop
            return self._send_off(STIM_OFF, t_s, rule.value, True, detail)
        if self._closed_loop and self._detector_state is DetectorState.UNKNOWN:
            return self.fallback_decision(t_s, Rule.DETECTOR_UNKNOWN.value)
        return self._review_enabled(setting, t_s, None, False, f"requested: {request.reason}")

    def supervise(self, t_s: float) -> EnvelopeDecision | None:
        """Time-based rules without a request: call it at every update of the loop.

        Stops running stimulation when a session outlasts ``max_session_s``, a daily
        budget runs out, the impedance leaves its window or the device reports a fault,
        and applies the fallback program on an UNKNOWN detector state (closed loop).
        Returns None when nothing has to be sent.
        """
        if self._quiet:
            return None
        if not self._link_up:
            return None  # nothing can be sent; the device's watchdog stops stimulation
        stop = self._hard_stop(t_s, starting=False)
        if stop is not None:
            rule, detail = stop
            decision = self._send_off(STIM_OFF, t_s, rule.value, True, detail)
        elif self._closed_loop and self._detector_state is DetectorState.UNKNOWN:
            decision = self.fallback_decision(t_s, Rule.DETECTOR_UNKNOWN.value)
        else:
            # No hard stop now. With no session running and nothing delivered, time alone
            # cannot bring one (the budgets' totals only shrink as buckets leave the
            # window, and no on-time or session length grows): the answer stays None
            # until an observation or a sent setting clears ``_quiet``.
            self._quiet = not self._session_running() and not self._accounting.delivering
            return None
        return decision if decision.setting is not None else None

    def fallback_decision(self, t_s: float, reason: str) -> EnvelopeDecision:
        """The safe program for ``reason`` (a rule name or the loop's own, e.g. a NACK).

        Off by default. An enabled fallback program is reviewed like a request: hard
        stops turn it into off, the minimum change interval still applies.
        """
        if not self._link_up:
            return self._link_down_decision(reason)
        program = self.config.fallback
        if program.enabled:
            stop = self._hard_stop(t_s, starting=not self._session_running())
            if stop is None:
                setting = StimSetting(
                    True, program.amplitude_ma, program.pulse_width_us, program.frequency_hz
                )
                return self._review_enabled(
                    setting, t_s, reason, True, f"fallback program: {reason}"
                )
            rule, detail = stop
            return self._send_off(STIM_OFF, t_s, rule.value, True, detail)
        return self._send_off(STIM_OFF, t_s, reason, True, f"fallback (off): {reason}")

    def off_decision(self, t_s: float, reason: str) -> EnvelopeDecision:
        """Turn stimulation off at the configured ramp-down rate (shutdown, operator)."""
        if not self._link_up:
            return self._link_down_decision(reason)
        return self._send_off(STIM_OFF, t_s, None, False, reason)

    def _link_down_decision(self, reason: str) -> EnvelopeDecision:
        return EnvelopeDecision(
            None,
            [],
            reason,
            True,
            "link down: nothing can be sent; the device's watchdog stops stimulation",
        )

    def _hard_stop(self, t_s: float, *, starting: bool) -> tuple[Rule, str] | None:
        """The first rule that forbids stimulating now (``starting``: a new session)."""
        cfg = self.config
        if self._device_faults:
            names = ", ".join(sorted(code.name for code in self._device_faults))
            return Rule.DEVICE_FAULT, f"device reports fault(s): {names}"
        if self._impedance_problem is not None:
            return self._impedance_problem
        charge_uc = self._accounting.charge_uc(t_s)
        if charge_uc >= cfg.daily_charge_budget_uc:
            return Rule.DAILY_CHARGE_BUDGET, (
                f"{charge_uc:.1f} µC delivered in 24 h, budget {cfg.daily_charge_budget_uc:g} µC"
            )
        on_time_s = self._accounting.on_time_s(t_s)
        if on_time_s >= cfg.daily_on_time_budget_s:
            return Rule.DAILY_ON_TIME_BUDGET, (
                f"{on_time_s:.1f} s stimulated in 24 h, budget {cfg.daily_on_time_budget_s:g} s"
            )
        length_s = self.session_length_s(t_s)
        if length_s is not None and self._session_running() and length_s >= cfg.max_session_s:
            return Rule.MAX_SESSION_LENGTH, (
                f"session running {length_s:.1f} s, maximum {cfg.max_session_s:g} s"
            )
        if starting:
            sessions = self.sessions_24h(t_s)
            if sessions >= cfg.max_sessions_per_24h:
                return Rule.MAX_SESSIONS_PER_24H, (
                    f"{sessions} sessions started in 24 h, maximum {cfg.max_sessions_per_24h}"
                )
        return None

    def _send_off(
        self, setting: StimSetting, t_s: float, refused: str | None, fallback: bool, detail: str
    ) -> EnvelopeDecision:
        result = clamp_off(setting, self.effective)
        off = result.setting
        if off is None or not self._off_needed(off):
            return EnvelopeDecision(
                None, result.clamps, refused, fallback, f"{detail} (already off)"
            )
        self._record_sent(off, t_s)
        return EnvelopeDecision(off, result.clamps, refused, fallback, detail)

    def _review_enabled(
        self,
        setting: StimSetting,
        t_s: float,
        refused: str | None,
        fallback: bool,
        detail: str,
    ) -> EnvelopeDecision:
        result: ClampResult = clamp_setting(setting, self.effective, self._reference_amplitude_ma())
        fitted = result.setting
        if fitted is None:
            rule = result.refused.value if result.refused is not None else refused
            return EnvelopeDecision(None, result.clamps, rule, fallback, result.detail)
        if self._unchanged(fitted):
            return EnvelopeDecision(
                None, result.clamps, refused, fallback, "unchanged: already sent"
            )
        interval_s = self.config.min_change_interval_s
        last_t_s = self._last_sent_t_s
        if last_t_s is not None and t_s - last_t_s < interval_s:
            since_s = t_s - last_t_s
            return EnvelopeDecision(
                None,
                result.clamps,
                Rule.MIN_CHANGE_INTERVAL.value,
                fallback,
                f"{since_s:.3f} s since the last change, minimum {interval_s:g} s",
            )
        self._record_sent(fitted, t_s)
        return EnvelopeDecision(fitted, result.clamps, refused, fallback, detail)

    def _record_sent(self, setting: StimSetting, t_s: float) -> None:
        self._quiet = False
        if setting.enabled and not self._session_running():
            self._pending_start_s = t_s
        elif not setting.enabled and self._pending_start_s is not None:
            # Never seen delivering, but it may have started: count it (safe side).
            self._session_starts.add(self._pending_start_s)
            self._pending_start_s = None
        self._last_sent = setting
        self._last_sent_t_s = t_s
        self._resend_required = False

    def _stim_electrodes(self) -> tuple[int, ...]:
        if self.device.n_electrodes == 0:
            return ()
        return self.device.stim_channels or tuple(range(self.device.n_electrodes))

    # helpers for the state shown to the loop and the console

    @property
    def last_sent(self) -> StimSetting | None:
        return self._last_sent

    def on_time_s(self, t_s: float) -> float:
        """Observed stimulation time in the rolling 24 h window."""
        return self._accounting.on_time_s(t_s)

    def charge_uc(self, t_s: float) -> float:
        """Observed delivered charge in the rolling 24 h window."""
        return self._accounting.charge_uc(t_s)

    def sessions_24h(self, t_s: float) -> int:
        """Sessions started in the rolling 24 h window, counting one sent but not yet seen."""
        pending = 1 if self._pending_start_s is not None else 0
        return self._session_starts.count(t_s) + pending

    def session_length_s(self, t_s: float) -> float | None:
        start = (
            self._session_start_s if self._session_start_s is not None else (self._pending_start_s)
        )
        return None if start is None else t_s - start

    def _session_running(self) -> bool:
        return self._pending_start_s is not None or (
            self._observed is not None and is_active(self._observed)
        )

    def _reference_amplitude_ma(self) -> float | None:
        """The lowest amplitude the device may be at or heading to (None when unknown)."""
        known = []
        if self._observed is not None:
            known += [self._observed.amplitude_ma, self._observed.target_amplitude_ma]
        if self._last_sent is not None:
            known.append(self._last_sent.amplitude_ma if self._last_sent.enabled else 0.0)
        finite = [v for v in known if math.isfinite(v)]
        return min(finite) if finite else None

    def _unchanged(self, setting: StimSetting) -> bool:
        """``setting`` is what was last sent and nothing says the device lost it."""
        if self._last_sent is None or self._resend_required or setting != self._last_sent:
            return False
        contradicted = (
            self._observed is not None
            and self._observed_t_s is not None
            and self._last_sent_t_s is not None
            and self._observed_t_s > self._last_sent_t_s
            and self._observed.enabled != setting.enabled
        )
        return not contradicted

    def _off_needed(self, off: StimSetting) -> bool:
        if self._last_sent is None:
            return self._observed is None or is_active(self._observed)
        return not self._unchanged(off)
