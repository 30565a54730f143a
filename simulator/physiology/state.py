"""The interface between the migraine-cycle model and the signal models.

The cycle model (``simulator.physiology.cycle``) decides, once per generated
block, how the physiology should look; the signal models
(``simulator.physiology.spectral`` and ``simulator.physiology.jansen_rit``)
turn that into samples. Everything is per site, arrays of shape (n_sites,).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Canonical band order used by ``band_gain`` rows; edges in Hz.
BANDS_HZ: tuple[tuple[str, float, float], ...] = (
    ("delta", 1.0, 4.0),
    ("theta", 4.0, 8.0),
    ("alpha", 8.0, 13.0),
    ("beta", 13.0, 30.0),
    ("gamma", 30.0, 45.0),
)
BAND_NAMES: tuple[str, ...] = tuple(name for name, _, _ in BANDS_HZ)


@dataclass
class ModulationState:
    """Physiological modulation for one block, relative to the patient's own baseline.

    band_gain: (5, n_sites) multiplicative *power* gain per band (1 = baseline), rows in
        BANDS_HZ order.
    alpha_peak_hz: (n_sites,) alpha peak frequency in Hz for this block.
    coherence_gain: multiplier on the inter-site shared (coherent) fraction (1 = baseline).
    suppression: (n_sites,) 0..1 fraction of cortical activity suppressed (CSD; 1 = silent).
    dc_offset_uv: (n_sites,) slow DC shift in µV (CSD: negative, a few mV subdurally).
    input_drive: (n_sites,) additive change of the mean external input to the neural mass
        in pulses/s (used by jansen-rit; the spectral model ignores it).
    """

    band_gain: np.ndarray
    alpha_peak_hz: np.ndarray
    coherence_gain: float
    suppression: np.ndarray
    dc_offset_uv: np.ndarray
    input_drive: np.ndarray

    @classmethod
    def baseline(cls, n_sites: int, alpha_peak_hz: float = 10.0) -> ModulationState:
        return cls(
            band_gain=np.ones((len(BANDS_HZ), n_sites)),
            alpha_peak_hz=np.full(n_sites, alpha_peak_hz),
            coherence_gain=1.0,
            suppression=np.zeros(n_sites),
            dc_offset_uv=np.zeros(n_sites),
            input_drive=np.zeros(n_sites),
        )
