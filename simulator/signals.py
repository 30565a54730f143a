"""Signal sources: what the simulated device's ADC sees.

The virtual firmware asks its source for the next block of samples and
quantises it to int16 counts. A source knows nothing about the protocol or
the controller; the physiology model (``simulator.physiology``) is one
source, the seeded ``NoiseSource`` below is the simplest useful one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Site:
    """A recording site on the cortical surface (2-D sheet coordinates in mm)."""

    label: str
    x_mm: float
    y_mm: float


@dataclass(frozen=True)
class StimulationInput:
    """Stimulation actually being delivered during a block (the device's state)."""

    amplitude_ma: float = 0.0
    pulse_width_us: float = 0.0
    frequency_hz: float = 0.0

    @property
    def active(self) -> bool:
        return self.amplitude_ma > 0.0 and self.frequency_hz > 0.0

    @property
    def charge_per_phase_uc(self) -> float:
        """Q = I * PW (mA * ms = µC)."""
        return self.amplitude_ma * self.pulse_width_us * 1e-3


NO_STIMULATION = StimulationInput()


@dataclass(frozen=True)
class GroundTruthEvent:
    """Something that happened in the simulated patient (never sent over the protocol)."""

    t_s: float
    kind: str
    site: str | None = None
    detail: dict[str, float | str] = field(default_factory=dict)

    def annotation(self) -> str:
        """The recording annotation text: ``truth <kind> [site]``."""
        return f"truth {self.kind} {self.site}" if self.site else f"truth {self.kind}"


class SignalSource(Protocol):
    """A multi-channel signal generator advanced block by block.

    ``read(n, stim)`` returns the next ``n`` samples as float64 µV with shape
    (channels, samples) and advances the source's own time by ``n`` samples.
    ``stim`` is the stimulation delivered during that block.
    """

    @property
    def sites(self) -> tuple[Site, ...]: ...

    @property
    def sampling_rate_hz(self) -> float: ...

    def read(self, n_samples: int, stim: StimulationInput) -> np.ndarray: ...

    def impedance_ohm(self) -> np.ndarray | None:
        """Per-electrode impedance override (sensor faults), or None for nominal."""
        ...

    def drain_ground_truth(self) -> list[GroundTruthEvent]:
        """Ground-truth events since the last call (for scoring and recordings)."""
        ...


DEFAULT_SITES: tuple[Site, ...] = (
    # Eight sites on a fronto-occipital strip of the left hemisphere, 10-20-like labels.
    Site("Fp1", -20.0, 80.0),
    Site("F3", -45.0, 45.0),
    Site("C3", -60.0, 0.0),
    Site("P3", -45.0, -45.0),
    Site("O1", -20.0, -85.0),
    Site("F7", -70.0, 40.0),
    Site("T7", -80.0, 0.0),
    Site("P7", -70.0, -45.0),
)


class NoiseSource:
    """Seeded placeholder EEG: 1/f background plus an alpha rhythm and white sensor noise.

    Deterministic for a given seed and call sequence. Stimulation adds an
    artifact at the stimulation frequency proportional to amplitude, aliased
    as the device's sampling would alias it.
    """

    def __init__(
        self,
        sites: tuple[Site, ...] = DEFAULT_SITES,
        sampling_rate_hz: float = 250.0,
        seed: int = 0,
        alpha_hz: float = 10.0,
        alpha_uv: float = 20.0,
        background_uv: float = 10.0,
        sensor_noise_uv: float = 1.0,
        artifact_uv_per_ma: float = 50.0,
    ) -> None:
        self._sites = sites
        self._fs = float(sampling_rate_hz)
        self._rng = np.random.default_rng(seed)
        self._alpha_hz = alpha_hz
        self._alpha_uv = alpha_uv
        self._background_uv = background_uv
        self._sensor_noise_uv = sensor_noise_uv
        self._artifact_uv_per_ma = artifact_uv_per_ma
        n = len(sites)
        self._phase = self._rng.uniform(0.0, 2 * np.pi, n)
        self._brown_zi = np.zeros((n, 1))
        self._n_read = 0

    @property
    def sites(self) -> tuple[Site, ...]:
        return self._sites

    @property
    def sampling_rate_hz(self) -> float:
        return self._fs

    def read(self, n_samples: int, stim: StimulationInput) -> np.ndarray:
        from scipy.signal import lfilter  # here: scipy.signal costs ~0.5 s to import

        n_ch = len(self._sites)
        t = (self._n_read + np.arange(n_samples)) / self._fs
        # Leaky-integrated white noise: a 1/f^2-ish background that stays bounded.
        white = self._rng.standard_normal((n_ch, n_samples))
        leak = 0.98
        background, self._brown_zi = lfilter([1.0], [1.0, -leak], white, axis=1, zi=self._brown_zi)
        phase = 2 * np.pi * self._alpha_hz * t[None, :] + self._phase[:, None]
        alpha = self._alpha_uv * np.sin(phase)
        noise = self._sensor_noise_uv * self._rng.standard_normal((n_ch, n_samples))
        out = self._background_uv * 0.2 * background + alpha + noise
        if stim.active:
            artifact = self._artifact_uv_per_ma * stim.amplitude_ma
            out += artifact * np.sin(2 * np.pi * stim.frequency_hz * t)[None, :]
        self._n_read += n_samples
        return out

    def impedance_ohm(self) -> np.ndarray | None:
        return None

    def drain_ground_truth(self) -> list[GroundTruthEvent]:
        return []
