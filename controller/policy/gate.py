"""When a policy should (re)issue a request: on a new wish, or when the device disagrees.

Policies compute what they want at every update; the gate turns that into requests so
the loop is not flooded with identical ones. A request is repeated when the device
reports the opposite on/off state (the envelope refused it, the device NACKed it, or its
watchdog stopped stimulation): the policy acts on the state the device reports
(DESIGN principle 4). Amplitude differences are not repeated, since the envelope may
have clamped the request on purpose.
"""

from __future__ import annotations

from controller.detector.types import DetectorOutput, DetectorState
from controller.policy.types import StimRequest
from firmware_bridge.messages import STIM_OFF, StimSetting, StimState

OFF = STIM_OFF


class RequestGate:
    def __init__(self) -> None:
        self._last: StimSetting | None = None

    def request(
        self, desired: StimSetting, reason: str, delivered: StimState | None
    ) -> StimRequest | None:
        contradicted = delivered is not None and delivered.enabled != desired.enabled
        if self._last is None or desired != self._last or contradicted:
            self._last = desired
            return StimRequest(desired, reason)
        return None


def detector_not_ready(detector: DetectorOutput | None) -> str | None:
    """Why a closed-loop policy must hold the safe program, or None when it may decide."""
    if detector is None:
        return "no detector output yet: hold the safe program"
    if detector.state in (DetectorState.UNKNOWN, DetectorState.CALIBRATING):
        return f"detector {detector.state.value}: hold the safe program"
    return None
