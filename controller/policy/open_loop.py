"""The ``open-loop`` policy: continuous stimulation, or fixed daily sessions.

Scheduled mode follows the Cefaly prevention regimen (20 min daily, device labelling): the
time of day is ``(t_s + day_start_offset_s) mod 86400``. Open loop ignores the detector.
The ``sham`` policy is this schedule at the sham setting (a trial's sham arm).
"""

from __future__ import annotations

from controller.detector.types import DetectorOutput
from controller.policy.config import SECONDS_PER_DAY, OpenLoopConfig, TherapySettingConfig
from controller.policy.gate import OFF, RequestGate
from controller.policy.types import StimRequest
from firmware_bridge.messages import StimState


class OpenLoopPolicy:
    name = "open-loop"
    closed_loop = False

    def __init__(
        self, config: OpenLoopConfig, therapy: TherapySettingConfig, name: str = "open-loop"
    ) -> None:
        self.name = name
        self.config = config
        self.therapy = therapy
        self._gate = RequestGate()

    def time_of_day_s(self, t_s: float) -> float:
        return (t_s + self.config.day_start_offset_s) % SECONDS_PER_DAY

    def session_start_s(self, t_s: float) -> float | None:
        """Time of day at which the scheduled session containing ``t_s`` began, if any."""
        tod = self.time_of_day_s(t_s)
        for start in self.config.session_times_of_day_s:
            if (tod - start) % SECONDS_PER_DAY < self.config.session_s:
                return start
        return None

    def decide(
        self, t_s: float, detector: DetectorOutput | None, delivered: StimState | None
    ) -> StimRequest | None:
        if self.config.mode == "continuous":
            return self._gate.request(self.therapy.setting(), f"{self.name} continuous", delivered)
        start = self.session_start_s(t_s)
        if start is None:
            return self._gate.request(OFF, f"{self.name}: outside the daily sessions", delivered)
        reason = f"{self.name}: daily session from {start:g} s after midnight"
        return self._gate.request(self.therapy.setting(), reason, delivered)
