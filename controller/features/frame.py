"""One window's features: the record the detector, the recorder and ``analyze`` consume.

Flat feature names (``FeatureFrame.as_flat_dict``) are part of the public interface: the
detector's TOML names features by them and the CSV writer uses them as column headers.
They are documented in docs/features.md; change them only together with that page.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SignalQuality:
    """Per-channel quality of one window; ``good`` is the channel mask the detector uses."""

    flatline: np.ndarray
    clipped: np.ndarray
    line_noise_ratio: np.ndarray
    invalid: np.ndarray
    good: np.ndarray
    std_uv: np.ndarray
    clipped_fraction: np.ndarray

    @property
    def n_good(self) -> int:
        """Number of good channels."""
        return int(np.count_nonzero(self.good))


@dataclass(frozen=True)
class WindowSpectra:
    """The window's Welch spectra, attached only when the extractor is asked to keep them.

    ``psd_uv2_per_hz`` equals scipy.signal.welch on the window; ``coherence`` (bins ×
    channels × channels, at ``conn_freqs_hz``) equals scipy.signal.coherence there.
    """

    freqs_hz: np.ndarray
    psd_uv2_per_hz: np.ndarray
    conn_freqs_hz: np.ndarray
    coherence: np.ndarray


@dataclass(frozen=True)
class FeatureFrame:
    """Features of the window [t_start_s, t_end_s) (times from the count of samples pushed).

    Shapes: band arrays are (channels, bands); connectivity matrices are
    (bands, channels, channels), symmetric with a zero diagonal; ``phase_measure`` says
    whether ``phase_sync`` holds wPLI or PLV.  ``mean_coherence`` / ``mean_phase_sync``
    (bands,) average the pairs of good channels; ``mean_connectivity`` and
    ``node_strength`` (bands, channels) summarise the measure named by
    ``summary_measure`` ("coherence" or "phase").
    """

    t_start_s: float
    t_end_s: float
    band_names: tuple[str, ...]
    channel_names: tuple[str, ...]
    band_power_uv2: np.ndarray
    relative_power: np.ndarray
    theta_alpha_ratio: np.ndarray
    alpha_peak_hz: np.ndarray
    line_length_uv: np.ndarray
    coherence: np.ndarray
    phase_sync: np.ndarray
    phase_measure: str
    summary_measure: str
    mean_coherence: np.ndarray
    mean_phase_sync: np.ndarray
    mean_connectivity: np.ndarray
    node_strength: np.ndarray
    quality: SignalQuality
    spectra: WindowSpectra | None = None

    def as_flat_dict(self, include_pairs: bool = False) -> dict[str, float]:
        """Scalar features under stable names (see docs/features.md, "Feature names").

        Pairwise connectivity (``coherence.alpha.ch0~ch1``) grows with the square of the
        channel count, so it is left out unless ``include_pairs``.
        """
        out: dict[str, float] = {}
        channels = self.channel_names
        for b, band in enumerate(self.band_names):
            for c, ch in enumerate(channels):
                out[f"{band}_power_uv2.{ch}"] = float(self.band_power_uv2[c, b])
            for c, ch in enumerate(channels):
                out[f"{band}_rel_power.{ch}"] = float(self.relative_power[c, b])
        for c, ch in enumerate(channels):
            out[f"theta_alpha_ratio.{ch}"] = float(self.theta_alpha_ratio[c])
            out[f"alpha_peak_hz.{ch}"] = float(self.alpha_peak_hz[c])
            out[f"line_length_uv.{ch}"] = float(self.line_length_uv[c])
        for b, band in enumerate(self.band_names):
            out[f"coherence.{band}.mean"] = float(self.mean_coherence[b])
            out[f"{self.phase_measure}.{band}.mean"] = float(self.mean_phase_sync[b])
            out[f"mean_connectivity.{band}"] = float(self.mean_connectivity[b])
            for c, ch in enumerate(channels):
                out[f"node_strength.{band}.{ch}"] = float(self.node_strength[b, c])
        if include_pairs:
            upper = np.triu_indices(len(channels), k=1)
            for b, band in enumerate(self.band_names):
                for i, j in zip(*upper, strict=True):
                    pair = f"{channels[i]}~{channels[j]}"
                    out[f"coherence.{band}.{pair}"] = float(self.coherence[b, i, j])
                    out[f"{self.phase_measure}.{band}.{pair}"] = float(self.phase_sync[b, i, j])
        q = self.quality
        for c, ch in enumerate(channels):
            out[f"quality.good.{ch}"] = float(q.good[c])
            out[f"quality.flatline.{ch}"] = float(q.flatline[c])
            out[f"quality.clipped.{ch}"] = float(q.clipped[c])
            out[f"quality.invalid.{ch}"] = float(q.invalid[c])
            out[f"quality.line_noise_ratio.{ch}"] = float(q.line_noise_ratio[c])
        out["quality.n_good"] = float(q.n_good)
        return out
