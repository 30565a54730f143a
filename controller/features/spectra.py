"""Welch spectra built from per-segment FFTs, so successive windows share segments.

Each Welch segment is transformed once, when its last sample arrives
(:func:`segment_spectra`); a window's PSD, coherence and phase synchrony are then formed
from the segments inside it (:func:`window_spectra`).  Conventions follow
scipy.signal.welch / scipy.signal.csd / scipy.signal.coherence exactly (constant detrend
per segment, periodic Hann taper, one-sided density scaling, mean over segments), and
the phase measures follow the formulas of mne-connectivity
(wpli = |E[Im Sxy]| / E[|Im Sxy|], plv = |E[Sxy/|Sxy|]|).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.fft

from controller.features.layout import FeatureLayout

PhaseMeasure = Literal["wpli", "plv"]


@dataclass(frozen=True)
class ChannelPairs:
    """The channel pairs i < j in row-major (np.triu_indices) order, and their flat index."""

    first: np.ndarray
    second: np.ndarray
    flat: np.ndarray
    n_channels: int

    @classmethod
    def of(cls, n_channels: int) -> ChannelPairs:
        """All pairs of ``n_channels`` channels."""
        first, second = np.triu_indices(n_channels, k=1)
        return cls(first, second, first * n_channels + second, n_channels)


@dataclass(frozen=True)
class SegmentSpectra:
    """One segment's spectra: all that windows containing the segment need of it.

    ``psd`` is scaled like scipy.signal.welch (µV²/Hz, one-sided).  ``spectrum_conn`` is
    the raw FFT at the bins inside the bands (bins, channels): the window's cross spectra
    are formed from it in one batched matrix product.  ``phase_num`` / ``phase_den`` are
    the segment's band sums for the phase measure (wPLI: sum Im Sxy and sum |Im Sxy|;
    PLV: sum Sxy/|Sxy| and the number of bins), (bands, pairs).
    """

    psd: np.ndarray
    spectrum_conn: np.ndarray
    phase_num: np.ndarray
    phase_den: np.ndarray


@dataclass(frozen=True)
class WindowSpectralFeatures:
    """Spectral results of one window; pair arrays are (bands or bins, pairs)."""

    psd: np.ndarray
    band_coherence: np.ndarray
    band_phase_sync: np.ndarray
    coherence_bins: np.ndarray


def _phase_sums(
    spectrum: np.ndarray, layout: FeatureLayout, pairs: ChannelPairs, measure: PhaseMeasure
) -> tuple[np.ndarray, np.ndarray]:
    """Band sums over the segment's bins of the phase measure's terms, per pair."""
    re = np.ascontiguousarray(spectrum.real)
    im = np.ascontiguousarray(spectrum.imag)
    first, second = pairs.first, pairs.second
    # Sxy = conj(X_i) X_j: Im = re_i im_j - im_i re_j (gathers of real arrays are cheapest)
    cross_imag = np.take(re, first, axis=1) * np.take(im, second, axis=1)
    cross_imag -= np.take(im, first, axis=1) * np.take(re, second, axis=1)
    weights = layout.band_conn_sum_weights
    if measure == "wpli":
        return weights @ cross_imag, weights @ np.abs(cross_imag)
    cross_real = np.take(re, first, axis=1) * np.take(re, second, axis=1)
    cross_real += np.take(im, first, axis=1) * np.take(im, second, axis=1)
    magnitude = np.hypot(cross_real, cross_imag)
    unit = np.zeros(cross_real.shape, dtype=np.complex128)
    np.divide(cross_real, magnitude, out=unit.real, where=magnitude > 0)
    np.divide(cross_imag, magnitude, out=unit.imag, where=magnitude > 0)
    counts = np.broadcast_to(weights.sum(axis=1)[:, None], (weights.shape[0], first.size))
    return weights.astype(np.complex128) @ unit, counts.copy()


def segment_spectra(
    x_uv: np.ndarray, layout: FeatureLayout, pairs: ChannelPairs, phase_measure: PhaseMeasure
) -> SegmentSpectra:
    """Spectra of one segment ``x_uv`` (channels, segment_samples) of finite µV values."""
    detrended = x_uv - x_uv.mean(axis=1, keepdims=True)
    spectrum = scipy.fft.rfft(detrended * layout.taper, axis=1)
    psd = (spectrum.real**2 + spectrum.imag**2) * layout.psd_scale
    in_bands = np.ascontiguousarray(spectrum[:, layout.conn_bins].T)  # (conn bins, channels)
    phase_num, phase_den = _phase_sums(in_bands, layout, pairs, phase_measure)
    return SegmentSpectra(psd=psd, spectrum_conn=in_bands, phase_num=phase_num, phase_den=phase_den)


def _sum(arrays: Sequence[np.ndarray]) -> np.ndarray:
    total = arrays[0].copy()
    for array in arrays[1:]:
        total += array
    return total


def window_spectra(
    segments: Sequence[SegmentSpectra], layout: FeatureLayout, pairs: ChannelPairs
) -> WindowSpectralFeatures:
    """Combine a window's segments into its Welch PSD, band coherence and phase synchrony.

    Band coherence is the mean over the band's bins of the magnitude-squared coherence
    spectrum |<Sxy>|² / (<Sxx><Syy>) (<.> = mean over segments, as scipy.signal.coherence).
    It is computed as |sum_s conj(Y_si) Y_sj|² with Y = X / sqrt(sum_s |X_s|²) per bin and
    channel, one batched matrix product for all pairs.  The phase measure pools segments
    and bins of the band.  Undefined ratios (0/0, from a silent or zero-filled channel)
    are 0.
    """
    psd = _sum([s.psd for s in segments]) / len(segments)
    stacked = np.stack([s.spectrum_conn for s in segments], axis=1)  # (bins, segs, ch)
    auto = (stacked.real**2 + stacked.imag**2).sum(axis=1)
    inv_root = np.zeros_like(auto)
    np.sqrt(auto, out=inv_root, where=auto > 0)
    np.divide(1.0, inv_root, out=inv_root, where=inv_root > 0)
    normalised = stacked * inv_root[:, None, :]
    cross = np.matmul(np.conj(normalised).transpose(0, 2, 1), normalised)
    upper = np.take(cross.reshape(cross.shape[0], -1), pairs.flat, axis=1)
    coherence_bins = upper.real**2 + upper.imag**2
    np.minimum(coherence_bins, 1.0, out=coherence_bins)  # Cauchy-Schwarz, up to rounding
    band_coherence = layout.band_conn_mean_weights @ coherence_bins

    phase_num = np.abs(_sum([s.phase_num for s in segments]))
    phase_den = _sum([s.phase_den for s in segments])
    band_phase = np.divide(phase_num, phase_den, out=np.zeros_like(phase_num), where=phase_den > 0)
    np.minimum(band_phase, 1.0, out=band_phase)
    return WindowSpectralFeatures(
        psd=psd,
        band_coherence=band_coherence,
        band_phase_sync=band_phase,
        coherence_bins=coherence_bins,
    )


@dataclass(frozen=True)
class PsdFeatures:
    """Per-channel features read off the window's PSD."""

    band_power_uv2: np.ndarray
    relative_power: np.ndarray
    theta_alpha_ratio: np.ndarray
    alpha_peak_hz: np.ndarray
    line_noise_ratio: np.ndarray


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def alpha_peak_hz(psd: np.ndarray, layout: FeatureLayout) -> np.ndarray:
    """Frequency of the PSD maximum in the alpha search range, refined by a parabola.

    The parabola goes through the peak bin and its two neighbours (neighbours may lie
    outside the search range); the offset is limited to half a bin and the result to the
    search range.  A channel with no power in the range gets 0.0 ("no peak").
    """
    bins = layout.alpha_peak_bins
    local = psd[:, bins]
    peak = bins[np.argmax(local, axis=1)]
    rows = np.arange(psd.shape[0])
    centre = psd[rows, peak]
    left = psd[rows, np.maximum(peak - 1, 0)]
    right = psd[rows, np.minimum(peak + 1, psd.shape[1] - 1)]
    curvature = left - 2.0 * centre + right
    interior = (peak > 0) & (peak < psd.shape[1] - 1) & (curvature < 0)
    offset = np.divide(0.5 * (left - right), curvature, out=np.zeros_like(centre), where=interior)
    offset = np.clip(offset, -0.5, 0.5)
    freqs = layout.freqs_hz
    peak_hz = np.clip(freqs[peak] + offset * layout.df_hz, freqs[bins[0]], freqs[bins[-1]])
    return np.where(centre > 0, peak_hz, 0.0)


def psd_features(psd: np.ndarray, layout: FeatureLayout) -> PsdFeatures:
    """Band power (sum of PSD bins with lo <= f < hi, times df, in µV²) and what follows."""
    band_power = (psd @ layout.band_sum_weights) * layout.df_hz
    relative = _safe_ratio(band_power, band_power.sum(axis=1, keepdims=True))
    theta_alpha = _safe_ratio(band_power[:, layout.theta_index], band_power[:, layout.alpha_index])
    if layout.line_bins.size:
        line = psd[:, layout.line_bins].sum(axis=1)
        total = psd[:, layout.total_bins].sum(axis=1)
        line_ratio = np.minimum(_safe_ratio(line, total), 1.0)  # line bins lie in total
    else:
        line_ratio = np.zeros(psd.shape[0])
    return PsdFeatures(
        band_power_uv2=band_power,
        relative_power=relative,
        theta_alpha_ratio=theta_alpha,
        alpha_peak_hz=alpha_peak_hz(psd, layout),
        line_noise_ratio=line_ratio,
    )
