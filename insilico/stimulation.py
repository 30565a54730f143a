"""Stimulation time and energy from the device's STIM_STATE reports.

The device reports its output at least once a second while it stimulates or ramps,
and at every change and ramp end; between reports the amplitude moves linearly
(the output stage slews at a constant rate), so a piecewise-linear trace through
the reports is the delivered amplitude.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from insilico.scoring import teed_j


def stimulation_time_and_teed(
    t_s: Sequence[float],
    amplitude_ma: Sequence[float],
    frequency_hz: Sequence[float],
    pulse_width_us: Sequence[float],
    impedance_ohm: Sequence[float],
    end_s: float,
) -> tuple[float, float]:
    """(seconds with non-zero output, TEED in joules) of a report trace.

    The last report holds until ``end_s``. R is the device-reported impedance of the
    stimulation electrode; reports before the first impedance measurement take the
    first measured one.
    """
    if not t_s:
        return 0.0, 0.0
    times = np.append(np.asarray(t_s, dtype=float), max(end_s, t_s[-1]))
    amps = np.append(np.asarray(amplitude_ma, dtype=float), amplitude_ma[-1])
    energy = teed_j(
        times,
        amps,
        np.append(_backfilled(np.asarray(impedance_ohm, dtype=float)), 0.0),
        np.append(np.asarray(frequency_hz, dtype=float), 0.0),
        np.append(np.asarray(pulse_width_us, dtype=float), 0.0),
    )
    span_s = np.diff(times)
    on_s = float(np.sum(span_s[(amps[:-1] > 0) | (amps[1:] > 0)]))
    return on_s, energy


def _backfilled(values: np.ndarray) -> np.ndarray:
    """NaNs replaced by the next known value (0 when none is ever known)."""
    known = np.flatnonzero(~np.isnan(values))
    if known.size == 0:
        return np.zeros_like(values)
    index = np.searchsorted(known, np.arange(values.size))
    return values[known[np.minimum(index, known.size - 1)]]
