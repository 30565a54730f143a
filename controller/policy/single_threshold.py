"""The ``single-threshold`` policy: stimulate while the detector score is above a threshold.

Like the Percept BrainSense single-threshold mode (device manuals), with the onset and
termination timing left to the detector. Blanked windows hold the previous decision.
"""

from __future__ import annotations

from controller.detector.types import DetectorOutput
from controller.policy.config import SingleThresholdConfig, TherapySettingConfig
from controller.policy.gate import OFF, RequestGate, detector_not_ready
from controller.policy.types import StimRequest
from firmware_bridge.messages import StimSetting, StimState


class SingleThresholdPolicy:
    name = "single-threshold"
    closed_loop = True

    def __init__(self, config: SingleThresholdConfig, therapy: TherapySettingConfig) -> None:
        self.config = config
        self.therapy = therapy
        self._gate = RequestGate()
        self._desired: StimSetting = OFF
        self._reason = "single-threshold: start off"

    def decide(
        self, t_s: float, detector: DetectorOutput | None, delivered: StimState | None
    ) -> StimRequest | None:
        hold = detector_not_ready(detector)
        if hold is not None or detector is None:
            self._desired, self._reason = OFF, hold or "no detector output"
        elif not detector.blanked and detector.score is not None:
            threshold = self.config.threshold
            if detector.score > threshold:
                self._desired = self.therapy.setting()
                self._reason = f"score {detector.score:.3f} > threshold {threshold:g}"
            else:
                self._desired = OFF
                self._reason = f"score {detector.score:.3f} <= threshold {threshold:g}"
        return self._gate.request(self._desired, self._reason, delivered)
