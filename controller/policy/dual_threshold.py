"""The ``dual-threshold`` policy: adaptive-DBS style amplitude stepping.

As in Percept BrainSense dual-threshold aDBS (device manuals): above the upper threshold the
amplitude steps up, below the lower one it steps down, in between it holds, always
between a minimum and a maximum, at most one step per update interval (30 s, the Summit
RC+S decision interval, device manuals). The amplitude is min + n × step (capped at max),
so repeated steps cannot drift. An amplitude of 0 is requested as off.
"""

from __future__ import annotations

import math

from controller.detector.types import DetectorOutput
from controller.policy.config import DualThresholdConfig, TherapySettingConfig
from controller.policy.gate import OFF, RequestGate, detector_not_ready
from controller.policy.types import StimRequest
from firmware_bridge.messages import StimState


class DualThresholdPolicy:
    name = "dual-threshold"
    closed_loop = True

    def __init__(self, config: DualThresholdConfig, therapy: TherapySettingConfig) -> None:
        self.config = config
        self.therapy = therapy
        self._gate = RequestGate()
        self._max_steps = math.ceil(
            (config.max_amplitude_ma - config.min_amplitude_ma) / config.step_ma - 1e-9
        )
        self._steps = 0
        self._last_step_t_s: float | None = None
        self._reason = "dual-threshold: start at the minimum amplitude"

    @property
    def amplitude_ma(self) -> float:
        cfg = self.config
        return min(cfg.min_amplitude_ma + self._steps * cfg.step_ma, cfg.max_amplitude_ma)

    def decide(
        self, t_s: float, detector: DetectorOutput | None, delivered: StimState | None
    ) -> StimRequest | None:
        hold = detector_not_ready(detector)
        if hold is not None or detector is None:
            # Restart from the minimum once the detector is back.
            self._steps, self._last_step_t_s = 0, None
            return self._gate.request(OFF, hold or "no detector output", delivered)
        if not detector.blanked and detector.score is not None:
            self._maybe_step(t_s, detector.score)
        amplitude = self.amplitude_ma
        setting = OFF if amplitude <= 0.0 else self.therapy.setting(amplitude)
        return self._gate.request(setting, self._reason, delivered)

    def _maybe_step(self, t_s: float, score: float) -> None:
        cfg = self.config
        if self._last_step_t_s is not None and t_s - self._last_step_t_s < cfg.update_interval_s:
            return
        if score > cfg.upper_threshold and self._steps < self._max_steps:
            self._steps += 1
            self._reason = f"score {score:.3f} > upper {cfg.upper_threshold:g}: step up"
        elif score < cfg.lower_threshold and self._steps > 0:
            self._steps -= 1
            self._reason = f"score {score:.3f} < lower {cfg.lower_threshold:g}: step down"
        else:
            return
        self._last_step_t_s = t_s
