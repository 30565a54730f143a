"""The stimulation artifact as the device's ADC sees it.

A stimulator pulsing at ``f`` Hz leaves a component at ``f`` in the recorded
voltage. Sampled at ``fs``, a sinusoid at ``f`` is indistinguishable from one at the
signed alias ``f - fs * round(f / fs)``, so a 130 Hz stimulus sampled at 250 Hz shows
at |130 - 250| = 120 Hz. The artifact is rendered directly at that alias with a phase
that runs on across blocks, so blocks join without a jump.

Modelling assumptions (docs/simulator_models.md): fundamental only (pulse harmonics are
ignored), amplitude proportional to the delivered current with a per-site coupling
factor, no dependence on pulse width, no amplifier saturation (clipping is a sensor
fault, see ``sensor_faults``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.signals import StimulationInput


def signed_alias_hz(frequency_hz: float, sampling_rate_hz: float) -> float:
    """Frequency in [-fs/2, fs/2] whose samples equal those of ``frequency_hz``."""
    if sampling_rate_hz <= 0:
        raise ValueError("sampling_rate_hz must be > 0")
    return float(frequency_hz - sampling_rate_hz * np.round(frequency_hz / sampling_rate_hz))


def aliased_frequency_hz(frequency_hz: float, sampling_rate_hz: float) -> float:
    """Apparent frequency (0..fs/2) of a sinusoid at ``frequency_hz`` sampled at ``fs``."""
    return abs(signed_alias_hz(frequency_hz, sampling_rate_hz))


@dataclass(frozen=True)
class ArtifactParams:
    """Size of the stimulation artifact."""

    #: Artifact amplitude (µV, sinusoid peak) per mA of stimulation current. Assumption:
    #: chosen so a few mA give an artifact comparable to or larger than the EEG (tens
    #: to hundreds of µV), as seen with stimulation near recording contacts.
    uv_per_ma: float = 50.0


class StimulationArtifact:
    """Renders the aliased, phase-continuous stimulation artifact for each block."""

    def __init__(
        self,
        n_sites: int,
        sampling_rate_hz: float,
        params: ArtifactParams | None = None,
        site_gain: np.ndarray | None = None,
    ) -> None:
        if n_sites <= 0 or sampling_rate_hz <= 0:
            raise ValueError("n_sites and sampling_rate_hz must be > 0")
        self._fs = float(sampling_rate_hz)
        self._params = params if params is not None else ArtifactParams()
        if site_gain is None:
            # Assumption: equal coupling at every site unless the caller models distance.
            self._site_gain = np.ones(n_sites)
        else:
            self._site_gain = np.asarray(site_gain, dtype=np.float64).reshape(-1)
            if self._site_gain.shape != (n_sites,):
                raise ValueError(f"site_gain must have shape ({n_sites},)")
        self._phase_rad = 0.0

    @property
    def phase_rad(self) -> float:
        """Phase at the next sample (radians, 0..2*pi)."""
        return self._phase_rad

    def render(self, n_samples: int, stim: StimulationInput) -> np.ndarray:
        """Artifact for the next ``n_samples`` (µV, shape (n_sites, n_samples)).

        Zero while stimulation is off; the phase then holds and resumes with the next
        active block.
        """
        if n_samples < 0:
            raise ValueError("n_samples must be >= 0")
        out = np.zeros((self._site_gain.size, n_samples))
        if not stim.active or n_samples == 0:
            return out
        step_rad = 2.0 * np.pi * signed_alias_hz(stim.frequency_hz, self._fs) / self._fs
        phase = self._phase_rad + step_rad * np.arange(n_samples)
        amplitude_uv = self._params.uv_per_ma * stim.amplitude_ma
        np.multiply.outer(self._site_gain * amplitude_uv, np.sin(phase), out=out)
        self._phase_rad = float(np.mod(self._phase_rad + step_rad * n_samples, 2.0 * np.pi))
        return out
