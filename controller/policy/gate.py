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

    def wanted(self, desired: StimSetting, delivered: StimState | None) -> bool:
        """Whether ``desired`` is to be requested now (a new wish, or the device reports the
        opposite on/off state); remembers it when it is. Policies that build their reason
        only for a request ask this first: most updates request nothing."""
        contradicted = delivered is not None and delivered.enabled != desired.enabled
        last = self._last
        if last is None or (desired is not last and desired != last) or contradicted:
            self._last = desired
            return True
        return False

    def request(
        self, desired: StimSetting, reason: str, delivered: StimState | None
    ) -> StimRequest | None:
        return StimRequest(desired, reason) if self.wanted(desired, delivered) else None


# The states in which a closed-loop policy holds the safe program, as globals: compared
# at every window by identity (an Enum member's hash is a Python-level call).
_UNKNOWN = DetectorState.UNKNOWN
_CALIBRATING = DetectorState.CALIBRATING


def detector_ready(detector: DetectorOutput | None) -> bool:
    """A closed-loop policy may decide on this output (not UNKNOWN or CALIBRATING, and
    there is one); else it holds the safe program."""
    if detector is None:
        return False
    state = detector.state
    return state is not _UNKNOWN and state is not _CALIBRATING


def detector_not_ready(detector: DetectorOutput | None) -> str | None:
    """Why a closed-loop policy must hold the safe program, or None when it may decide."""
    if detector_ready(detector):
        return None
    if detector is None:
        return "no detector output yet: hold the safe program"
    return f"detector {detector.state.value}: hold the safe program"
