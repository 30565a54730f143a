"""The feature configuration resolved for one sampling rate: sample counts and bin indices.

Kept apart from the pydantic model so the hot path works on plain integers and index
arrays, and so every "does not fit this sampling rate" error is raised in one place,
before any data flows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FeatureLayout:
    """Everything the extractor needs to know about windows, segments and bins.

    Segments follow scipy.signal.welch: ``segment_samples`` long (nfft = nperseg, no
    zero padding), stepping by ``segment_step_samples``; inside a window of
    ``window_samples`` there are ``segments_per_window`` of them, starting at the window
    start.  Segment FFTs are computed on a grid of ``segment_grid_samples`` (gcd of hop
    and segment step) so successive windows share them.  Time-domain statistics are kept
    per block of ``block_samples`` (gcd of window and hop) so each window is a whole
    number of blocks.  The ``*_weights`` arrays are the band masks as float matrices, so
    band sums and means are single matrix products.
    """

    sampling_rate_hz: float
    window_samples: int
    hop_samples: int
    segment_samples: int
    segment_step_samples: int
    segments_per_window: int
    segment_grid_samples: int
    block_samples: int
    freqs_hz: np.ndarray
    df_hz: float
    band_names: tuple[str, ...]
    band_bin_mask: np.ndarray
    band_sum_weights: np.ndarray
    conn_bins: np.ndarray
    band_conn_mask: np.ndarray
    band_conn_sum_weights: np.ndarray
    band_conn_mean_weights: np.ndarray
    alpha_peak_bins: np.ndarray
    line_bins: np.ndarray
    total_bins: np.ndarray
    theta_index: int
    alpha_index: int
    taper: np.ndarray
    psd_scale: np.ndarray

    @property
    def n_bands(self) -> int:
        """Number of configured bands."""
        return len(self.band_names)

    @property
    def n_freqs(self) -> int:
        """Number of one-sided frequency bins of a segment."""
        return int(self.freqs_hz.size)


def periodic_hann(n_samples: int) -> np.ndarray:
    """The periodic ("DFT-even") Hann window scipy.signal.welch(window='hann') uses.

    The same operations as ``scipy.signal.get_window("hann", n)`` (a symmetric window one
    sample longer, last sample dropped), so the same bits; written out because importing
    scipy.signal costs about half a second at every start of a command.
    """
    if n_samples <= 1:
        return np.ones(n_samples)
    fac = np.linspace(-np.pi, np.pi, n_samples + 1, dtype=np.float64)
    window = np.zeros(n_samples + 1)
    for k, coefficient in enumerate((0.5, 0.5)):
        window += coefficient * np.cos(k * fac)
    return window[:-1]


def whole_samples(name: str, duration_s: float, sampling_rate_hz: float) -> int:
    """``duration_s * sampling_rate_hz`` as an int, or ValueError if it is not whole."""
    exact = duration_s * sampling_rate_hz
    count = round(exact)
    if count < 1 or abs(exact - count) > 1e-9 * max(1.0, exact):
        raise ValueError(
            f"{name}={duration_s} s is {exact:g} samples at {sampling_rate_hz:g} Hz; "
            "it must be a whole number of samples (>= 1)"
        )
    return int(count)


def _band_mask(freqs_hz: np.ndarray, lo_hz: float, hi_hz: float) -> np.ndarray:
    """Bins with lo <= f < hi (half-open, so adjacent bands never share a bin)."""
    return np.asarray((freqs_hz >= lo_hz) & (freqs_hz < hi_hz))


def build_layout(
    *,
    sampling_rate_hz: float,
    window_s: float,
    hop_s: float,
    segment_s: float,
    overlap: float,
    bands_hz: Mapping[str, tuple[float, float]],
    alpha_peak_range_hz: tuple[float, float],
    line_noise_hz: float | None,
    line_noise_halfwidth_hz: float,
) -> FeatureLayout:
    """Resolve the configuration for ``sampling_rate_hz``; ValueError names what does not fit."""
    if not (math.isfinite(sampling_rate_hz) and sampling_rate_hz > 0):
        raise ValueError(f"sampling_rate_hz={sampling_rate_hz} must be finite and > 0")
    fs = float(sampling_rate_hz)
    nyquist_hz = fs / 2.0
    window_n = whole_samples("window_s", window_s, fs)
    hop_n = whole_samples("hop_s", hop_s, fs)
    segment_n = whole_samples("segment_s", segment_s, fs)
    if segment_n < 2:
        raise ValueError(f"segment_s={segment_s} s gives {segment_n} sample(s); need >= 2")
    overlap_exact = segment_n * overlap
    overlap_n = round(overlap_exact)
    if abs(overlap_exact - overlap_n) > 1e-9 * max(1.0, overlap_exact):
        raise ValueError(
            f"overlap={overlap} of a {segment_n}-sample segment is {overlap_exact:g} samples; "
            "it must be a whole number of samples"
        )
    step_n = segment_n - overlap_n
    if step_n < 1:
        raise ValueError(f"overlap={overlap} leaves no segment step")
    segments_per_window = (window_n - segment_n) // step_n + 1

    freqs_hz = np.fft.rfftfreq(segment_n, d=1.0 / fs)
    df_hz = fs / segment_n

    band_names = tuple(bands_hz)
    masks = []
    for name, (lo_hz, hi_hz) in bands_hz.items():
        if not 0.0 < lo_hz < hi_hz <= nyquist_hz:
            raise ValueError(
                f"band {name!r} [{lo_hz}, {hi_hz}) Hz must lie within (0, {nyquist_hz:g}] Hz "
                f"(Nyquist at {fs:g} Hz)"
            )
        mask = _band_mask(freqs_hz, lo_hz, hi_hz)
        if not mask.any():
            raise ValueError(
                f"band {name!r} [{lo_hz}, {hi_hz}) Hz contains no frequency bin "
                f"(bin spacing {df_hz:g} Hz with segment_s={segment_s})"
            )
        masks.append(mask)
    band_bin_mask = np.array(masks, dtype=bool)
    conn_bins = np.flatnonzero(band_bin_mask.any(axis=0))
    band_conn_mask = band_bin_mask[:, conn_bins]

    a_lo, a_hi = alpha_peak_range_hz
    if not 0.0 < a_lo < a_hi <= nyquist_hz:
        raise ValueError(
            f"alpha_peak_range_hz [{a_lo}, {a_hi}] must lie within (0, {nyquist_hz:g}] Hz"
        )
    alpha_peak_bins = np.flatnonzero((freqs_hz >= a_lo) & (freqs_hz <= a_hi))
    if alpha_peak_bins.size == 0:
        raise ValueError(f"alpha_peak_range_hz [{a_lo}, {a_hi}] contains no frequency bin")

    if line_noise_hz is None:
        line_bins = np.zeros(0, dtype=np.intp)
    else:
        if line_noise_hz + line_noise_halfwidth_hz > nyquist_hz:
            raise ValueError(
                f"line_noise_hz={line_noise_hz} +- {line_noise_halfwidth_hz} Hz exceeds the "
                f"Nyquist frequency {nyquist_hz:g} Hz; set line_noise_hz to None to disable"
            )
        line_bins = np.flatnonzero(np.abs(freqs_hz - line_noise_hz) <= line_noise_halfwidth_hz)
        if line_bins.size == 0:
            raise ValueError(
                f"line_noise_hz={line_noise_hz} +- {line_noise_halfwidth_hz} Hz contains no bin"
            )
    lowest_hz = min(lo for lo, _ in bands_hz.values())
    total_bins = np.flatnonzero(freqs_hz >= lowest_hz)

    taper = periodic_hann(segment_n)
    scale = 1.0 / (fs * float(np.sum(taper * taper)))
    psd_scale = np.full(freqs_hz.size, 2.0 * scale)
    psd_scale[0] = scale
    if segment_n % 2 == 0:
        psd_scale[-1] = scale  # the unpaired Nyquist bin is not doubled (as in scipy)

    return FeatureLayout(
        sampling_rate_hz=fs,
        window_samples=window_n,
        hop_samples=hop_n,
        segment_samples=segment_n,
        segment_step_samples=step_n,
        segments_per_window=segments_per_window,
        segment_grid_samples=math.gcd(hop_n, step_n),
        block_samples=math.gcd(window_n, hop_n),
        freqs_hz=freqs_hz,
        df_hz=df_hz,
        band_names=band_names,
        band_bin_mask=band_bin_mask,
        band_sum_weights=band_bin_mask.T.astype(np.float64),
        conn_bins=conn_bins,
        band_conn_mask=band_conn_mask,
        band_conn_sum_weights=band_conn_mask.astype(np.float64),
        band_conn_mean_weights=band_conn_mask / band_conn_mask.sum(axis=1, keepdims=True),
        alpha_peak_bins=alpha_peak_bins,
        line_bins=line_bins,
        total_bins=total_bins,
        theta_index=band_names.index("theta"),
        alpha_index=band_names.index("alpha"),
        taper=taper,
        psd_scale=psd_scale,
    )
