"""The ``off`` policy: no stimulation, and it says so whenever the device delivers some."""

from __future__ import annotations

from controller.detector.types import DetectorOutput
from controller.policy.gate import OFF, RequestGate
from controller.policy.types import StimRequest
from firmware_bridge.messages import StimState


class OffPolicy:
    name = "off"
    closed_loop = False

    def __init__(self) -> None:
        self._gate = RequestGate()

    def decide(
        self, t_s: float, detector: DetectorOutput | None, delivered: StimState | None
    ) -> StimRequest | None:
        return self._gate.request(OFF, "off policy", delivered)
