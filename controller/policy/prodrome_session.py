"""The ``prodrome-session`` policy (the default closed loop): one session per prodrome.

On entering PRODROME it starts one therapy session of ``session_s`` (20 min, the Cefaly
prevention dose, device labelling), then ignores PRODROME entries for ``lockout_s`` after the
session ends. The session runs its full length even if the detector leaves PRODROME; an
UNKNOWN or CALIBRATING detector aborts it (safe program) and starts the lockout.
"""

from __future__ import annotations

from controller.detector.types import DetectorOutput, DetectorState
from controller.policy.config import ProdromeSessionConfig, TherapySettingConfig
from controller.policy.gate import OFF, RequestGate, detector_not_ready, detector_ready
from controller.policy.types import StimRequest
from firmware_bridge.messages import StimState

_PRODROME = DetectorState.PRODROME  # a global: read at every window


class ProdromeSessionPolicy:
    name = "prodrome-session"
    closed_loop = True

    def __init__(self, config: ProdromeSessionConfig, therapy: TherapySettingConfig) -> None:
        self.config = config
        self.therapy = therapy
        self._gate = RequestGate()
        self._previous_state: DetectorState | None = None
        self._session_end_s: float | None = None
        self._lockout_until_s: float | None = None

    @property
    def in_session(self) -> bool:
        return self._session_end_s is not None

    @property
    def lockout_until_s(self) -> float | None:
        return self._lockout_until_s

    def decide(
        self, t_s: float, detector: DetectorOutput | None, delivered: StimState | None
    ) -> StimRequest | None:
        state = detector.state if detector is not None else None
        entered = state is _PRODROME and self._previous_state is not state
        self._previous_state = state
        gate = self._gate
        if not detector_ready(detector):
            aborted = self._session_end_s is not None
            if aborted:
                self._session_end_s = None
                self._lockout_until_s = t_s + self.config.lockout_s
            if not gate.wanted(OFF, delivered):
                return None
            hold = detector_not_ready(detector) or ""
            if aborted:
                hold += "; session aborted, lockout started"
            return StimRequest(OFF, hold)
        if self._session_end_s is not None and t_s >= self._session_end_s:
            self._lockout_until_s = self._session_end_s + self.config.lockout_s
            self._session_end_s = None
        locked_out = self._lockout_until_s is not None and t_s < self._lockout_until_s
        if entered and self._session_end_s is None and not locked_out:
            self._session_end_s = t_s + self.config.session_s
        # The reasons are built only for a request: most windows request nothing.
        if self._session_end_s is not None:
            therapy = self.therapy.setting()
            if not gate.wanted(therapy, delivered):
                return None
            return StimRequest(therapy, f"prodrome session until t={self._session_end_s:g} s")
        if not gate.wanted(OFF, delivered):
            return None
        if self._lockout_until_s is not None and t_s < self._lockout_until_s:
            return StimRequest(OFF, f"lockout until t={self._lockout_until_s:g} s")
        return StimRequest(OFF, "no prodrome session")
