"""The patient's physiology without signals: migraine cycle + stimulation response.

One piece of code steps both for the full simulation (``PatientSimulation``, fed the
charge the device delivered) and for the physiology-only trial tier (fed a fixed
stimulation schedule): the same patient, seed and step give the same attacks.
"""

from __future__ import annotations

import numpy as np

from simulator.physiology.cycle import MigraineCycle, Phase, PhaseChange
from simulator.physiology.response import StimulationResponse
from simulator.signals import GroundTruthEvent

#: Independent random streams of one simulated patient, in spawn order. Appending a
#: stream keeps the others unchanged (SeedSequence children are indexed by position).
STREAMS: tuple[str, ...] = ("cycle", "signature", "csd", "model", "sensor", "variability")


def patient_streams(seed: int, patient_seed: int) -> dict[str, np.random.SeedSequence]:
    """The seed sequences of one run of one patient, by name."""
    children = np.random.SeedSequence([seed, patient_seed]).spawn(len(STREAMS))
    return dict(zip(STREAMS, children, strict=True))


class PatientCourse:
    """Cycle and response stepped together; dose in, phase changes out."""

    def __init__(self, cycle: MigraineCycle, response: StimulationResponse) -> None:
        self.cycle = cycle
        self.response = response

    def step(
        self, charge_uc: float, on_s: float, dt_s: float
    ) -> tuple[list[PhaseChange], list[GroundTruthEvent]]:
        """Advance by ``dt_s`` in which ``charge_uc`` was delivered during ``on_s`` seconds."""
        in_prodrome = self.cycle.phase is Phase.PRODROME
        reduction = self.response.step_dose(charge_uc, on_s, dt_s, in_prodrome)
        return self.cycle.advance(dt_s, reduction, self.response.rise_factor)
