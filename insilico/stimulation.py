"""Stimulation time and energy from the device's STIM_STATE reports, as they arrive.

The device reports its output at least once a second while it stimulates or ramps,
and at every change and ramp end; between reports the amplitude moves linearly
(the output stage slews at a constant rate), so a piecewise-linear trace through
the reports is the delivered amplitude. The meter integrates segment by segment, so
a month of continuous stimulation costs no memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from insilico.scoring import ramp_teed_j


@dataclass(frozen=True)
class _Report:
    t_s: float
    amplitude_ma: float
    frequency_hz: float
    pulse_width_us: float


class StimulationMeter:
    """Seconds of non-zero output and TEED (Koss 2005: ∫ I² R f PW dt) of a report stream.

    R is the stimulation electrode's impedance as the device last reported it (STATUS);
    energy integrated before the first impedance report is priced at that first one.
    """

    def __init__(self) -> None:
        self.on_s = 0.0
        self.teed_j = 0.0
        self._last: _Report | None = None
        self._impedance_ohm = math.nan
        self._unpriced_j_per_ohm = 0.0

    def impedance(self, ohm: float) -> None:
        if math.isnan(self._impedance_ohm):
            self.teed_j += self._unpriced_j_per_ohm * ohm
            self._unpriced_j_per_ohm = 0.0
        self._impedance_ohm = ohm

    def report(
        self, t_s: float, amplitude_ma: float, frequency_hz: float, pulse_width_us: float
    ) -> None:
        self._close_segment(t_s, amplitude_ma)
        self._last = _Report(t_s, amplitude_ma, frequency_hz, pulse_width_us)

    def finish(self, end_s: float) -> None:
        """The last report holds until ``end_s``."""
        if self._last is not None:
            self.report(max(end_s, self._last.t_s), self._last.amplitude_ma, 0.0, 0.0)

    def _close_segment(self, t_s: float, amplitude_ma: float) -> None:
        last = self._last
        if last is None or t_s <= last.t_s:
            return
        if last.amplitude_ma > 0.0 or amplitude_ma > 0.0:
            self.on_s += t_s - last.t_s
        j_per_ohm = ramp_teed_j(
            t_s - last.t_s,
            last.amplitude_ma * 1e-3,
            amplitude_ma * 1e-3,
            1.0,
            last.frequency_hz,
            last.pulse_width_us,
        )
        if math.isnan(self._impedance_ohm):
            self._unpriced_j_per_ohm += j_per_ohm
        else:
            self.teed_j += j_per_ohm * self._impedance_ohm
