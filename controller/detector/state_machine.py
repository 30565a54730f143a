"""The detector's state machine: NORMAL -> SUSPECT -> PRODROME with hysteresis and durations.

Per window, in this order of precedence:

1. too few good channels -> UNKNOWN (the core state and its timers are kept, paused);
2. baseline not calibrated -> CALIBRATING;
3. blanked window (or no score) -> the core state is reported unchanged, timers paused;
4. otherwise the smoothed score drives the core state:

   - NORMAL: score > upper -> SUSPECT; the onset timer starts at 0 with this window.
   - SUSPECT: score > upper -> the onset timer grows by the window's credited time; once it
     reaches ``onset_s`` -> PRODROME.  lower <= score <= upper -> stay SUSPECT but the timer
     is cleared (the score must stay above *continuously*; it restarts at 0 with the next
     window above).  score < lower -> back to NORMAL.
   - PRODROME: score < lower -> the termination timer starts at 0 with the first window
     below and grows by each further window below; once it reaches ``termination_s`` ->
     NORMAL.  Any window at or above lower clears it.

Durations are measured from the first window beyond the threshold, in credited time (the
hop), so with a 0.5 s hop and ``onset_s = 5`` PRODROME comes exactly 10 windows after the
window that entered SUSPECT.  A transition advances at most one step per window, so NORMAL
never jumps to PRODROME (even with ``onset_s = 0`` one SUSPECT window comes first).
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.detector.types import DetectorState
from firmware_bridge.frozen import build_frozen

CORE_STATES = (DetectorState.NORMAL, DetectorState.SUSPECT, DetectorState.PRODROME)

# The states as globals: the machine compares them at every window, and on Python 3.11
# reading an Enum member through its class is a descriptor call.
_NORMAL, _SUSPECT, _PRODROME = CORE_STATES
_UNKNOWN = DetectorState.UNKNOWN
_CALIBRATING = DetectorState.CALIBRATING


@dataclass(frozen=True)
class WindowInput:
    """What the state machine needs to know about one window."""

    dt_s: float  # time credited to the window (time since the previous window, capped)
    score: float | None  # smoothed score; None = not scorable (treated like a blanked window)
    blanked: bool = False
    enough_channels: bool = True
    calibrated: bool = True


@dataclass(frozen=True)
class Transition:
    """The state after one window, whether it changed, and why."""

    state: DetectorState
    changed: bool
    reason: str


def _reached(timer_s: float, duration_s: float) -> bool:
    """timer >= duration, tolerant of the rounding of summed hops (e.g. 0.1 s)."""
    return timer_s >= duration_s - 1e-9 * max(1.0, duration_s)


class ProdromeStateMachine:
    """Dual-threshold state machine with onset and termination durations (module docstring)."""

    def __init__(
        self,
        upper_threshold: float,
        lower_threshold: float,
        onset_s: float,
        termination_s: float,
        calibrated: bool = False,
    ) -> None:
        if not lower_threshold < upper_threshold:
            raise ValueError(
                f"lower_threshold={lower_threshold} must be < upper_threshold={upper_threshold}"
            )
        if onset_s < 0 or termination_s < 0:
            raise ValueError("onset_s and termination_s must be >= 0")
        self.upper_threshold = upper_threshold
        self.lower_threshold = lower_threshold
        self.onset_s = onset_s
        self.termination_s = termination_s
        self._core = _NORMAL
        self._state = _NORMAL if calibrated else _CALIBRATING
        self._above_s: float | None = None
        self._below_s: float | None = None

    @property
    def state(self) -> DetectorState:
        """The state reported for the last window (CALIBRATING/NORMAL before any)."""
        return self._state

    @property
    def core_state(self) -> DetectorState:
        """NORMAL, SUSPECT or PRODROME: the state kept through UNKNOWN and blanking."""
        return self._core

    @property
    def onset_timer_s(self) -> float | None:
        """Time the score has stayed above upper while SUSPECT (None: not running)."""
        return self._above_s

    @property
    def termination_timer_s(self) -> float | None:
        """Time the score has stayed below lower while PRODROME (None: not running)."""
        return self._below_s

    def step(self, window: WindowInput) -> Transition:
        """Advance by one window and report the resulting state."""
        state, changed, reason = self.advance(
            window.dt_s, window.score, window.blanked, window.enough_channels, window.calibrated
        )
        return build_frozen(Transition, {"state": state, "changed": changed, "reason": reason})

    def advance(
        self,
        dt_s: float,
        score: float | None,
        blanked: bool,
        enough_channels: bool,
        calibrated: bool,
    ) -> tuple[DetectorState, bool, str]:
        """:meth:`step` with the window's fields as arguments and the transition's as a
        tuple (state, changed, reason): the detector's hot path, one object fewer."""
        previous = self._state
        if not enough_channels:
            self._state = _UNKNOWN
            reason = f"too few good channels; {self._core.value} and its timers held"
        elif not calibrated:
            self._state = _CALIBRATING
            reason = "calibrating the baseline"
        elif blanked or score is None:
            self._state = self._core
            why = "blanked" if blanked else "no scorable feature"
            reason = f"{why}: {self._core.value} and its timers held"
        else:
            reason = self._advance(score, 0.0 if dt_s < 0.0 else dt_s)  # max(dt_s, 0.0)
            self._state = self._core
        return self._state, self._state is not previous, reason

    def _advance(self, score: float, dt_s: float) -> str:
        upper, lower = self.upper_threshold, self.lower_threshold
        if self._core is _NORMAL:
            if score > upper:
                self._core = _SUSPECT
                self._above_s = 0.0
                return f"score {score:.3f} > upper {upper:.3f}: SUSPECT, onset timer started"
            return f"score {score:.3f} <= upper {upper:.3f}"
        if self._core is _SUSPECT:
            if score > upper:
                self._above_s = 0.0 if self._above_s is None else self._above_s + dt_s
                if _reached(self._above_s, self.onset_s):
                    self._core = _PRODROME
                    self._above_s = None
                    self._below_s = None
                    return f"score above upper {upper:.3f} for {self.onset_s:g} s: PRODROME"
                return f"score {score:.3f} above upper for {self._above_s:g} s"
            if score < lower:
                self._core = _NORMAL
                self._above_s = None
                return f"score {score:.3f} < lower {lower:.3f}: back to NORMAL"
            self._above_s = None
            return f"score {score:.3f} between thresholds: onset timer cleared"
        # PRODROME
        if score < lower:
            self._below_s = 0.0 if self._below_s is None else self._below_s + dt_s
            if _reached(self._below_s, self.termination_s):
                self._core = _NORMAL
                self._below_s = None
                return f"score below lower {lower:.3f} for {self.termination_s:g} s: NORMAL"
            return f"score {score:.3f} below lower for {self._below_s:g} s"
        self._below_s = None
        return f"score {score:.3f} >= lower {lower:.3f}: PRODROME holds"
