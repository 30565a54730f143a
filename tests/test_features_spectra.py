"""Spectral features against scipy, MNE and direct reference implementations.

Tolerances: the streaming extractor performs the same floating-point operations as
scipy.signal.welch / coherence up to summation order, so spectra agree to ~1e-15
relative; the tests allow rtol 1e-9 (and atol 1e-12 of the largest value for bins near
zero).  MNE's psd_array_welch (window='hann', n_per_seg = n_fft = segment, n_overlap =
segment/2, remove_dc=True, average='mean') uses scipy's one-sided density scaling
(µV²/Hz for µV input), so the same tolerance applies.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from mne.time_frequency import psd_array_welch

from controller.features import FeatureExtractor, FeatureFrame, FeaturesConfig

RTOL = 1e-9


def _frames(
    data_uv: np.ndarray, fs: float, config: FeaturesConfig | None = None, chunk: int = 13
) -> tuple[FeatureExtractor, list[FeatureFrame]]:
    extractor = FeatureExtractor(data_uv.shape[0], fs, config, keep_spectra=True)
    frames: list[FeatureFrame] = []
    for start in range(0, data_uv.shape[1], chunk):
        frames.extend(extractor.push(data_uv[:, start : start + chunk]))
    return extractor, frames


def _window(data_uv: np.ndarray, frame: FeatureFrame, fs: float) -> np.ndarray:
    first = round(frame.t_start_s * fs)
    last = round(frame.t_end_s * fs)
    return data_uv[:, first:last]


def _welch_kwargs(extractor: FeatureExtractor) -> dict[str, object]:
    layout = extractor.layout
    return {
        "window": "hann",
        "nperseg": layout.segment_samples,
        "noverlap": layout.segment_samples - layout.segment_step_samples,
        "detrend": "constant",
    }


def _assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    atol = 1e-12 * float(np.max(np.abs(expected)))
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=atol)


GEOMETRIES = [
    pytest.param(250.0, FeaturesConfig(), id="default-250Hz"),
    pytest.param(
        200.0,
        FeaturesConfig(window_s=2.2, hop_s=0.4, segment_s=0.8, overlap=0.25),
        id="leftover-samples-hop-not-step",
    ),
    pytest.param(
        250.0,
        FeaturesConfig(
            window_s=1.5,
            hop_s=0.3,
            segment_s=0.5,
            overlap=0.2,
            line_noise_hz=None,
            alpha_peak_range_hz=(7.0, 14.0),
        ),
        id="odd-nfft",
    ),
]


@pytest.mark.parametrize(("fs", "config"), GEOMETRIES)
def test_psd_and_band_power_equal_scipy_welch(fs: float, config: FeaturesConfig) -> None:
    rng = np.random.default_rng(11)
    data = 20.0 * rng.standard_normal((4, int(6 * fs))) + 3.0
    extractor, frames = _frames(data, fs, config)
    layout = extractor.layout
    assert len(frames) == (data.shape[1] - layout.window_samples) // layout.hop_samples + 1
    for frame in frames:
        freqs, psd = scipy.signal.welch(
            _window(data, frame, fs), fs, scaling="density", **_welch_kwargs(extractor)
        )
        assert frame.spectra is not None
        np.testing.assert_array_equal(frame.spectra.freqs_hz, freqs)
        _assert_close(frame.spectra.psd_uv2_per_hz, psd)
        df = freqs[1] - freqs[0]
        for b, name in enumerate(frame.band_names):
            lo, hi = config.bands_hz[name]
            in_band = (freqs >= lo) & (freqs < hi)
            _assert_close(frame.band_power_uv2[:, b], psd[:, in_band].sum(axis=1) * df)


@pytest.mark.parametrize(("fs", "config"), GEOMETRIES)
def test_coherence_equals_scipy_coherence(fs: float, config: FeaturesConfig) -> None:
    rng = np.random.default_rng(12)
    shared = rng.standard_normal(int(6 * fs))
    data = rng.standard_normal((4, shared.size)) + np.array([[1.0], [0.8], [0.0], [0.3]]) * shared
    extractor, frames = _frames(data, fs, config)
    layout = extractor.layout
    i, j = np.triu_indices(4, k=1)
    for frame in frames[::2]:
        window = _window(data, frame, fs)
        freqs, coherence = scipy.signal.coherence(
            window[i],
            window[j],
            fs,
            window="hann",
            nperseg=layout.segment_samples,
            noverlap=layout.segment_samples - layout.segment_step_samples,
        )
        assert frame.spectra is not None
        conn = layout.conn_bins
        np.testing.assert_array_equal(frame.spectra.conn_freqs_hz, freqs[conn])
        np.testing.assert_allclose(
            frame.spectra.coherence[:, i, j], coherence[:, conn].T, rtol=RTOL, atol=1e-12
        )
        for b, name in enumerate(frame.band_names):
            lo, hi = config.bands_hz[name]
            in_band = (freqs >= lo) & (freqs < hi)
            np.testing.assert_allclose(
                frame.coherence[b, i, j],
                coherence[:, in_band].mean(axis=1),
                rtol=RTOL,
                atol=1e-12,
            )
            assert np.all(np.diag(frame.coherence[b]) == 0.0)
            np.testing.assert_array_equal(frame.coherence[b], frame.coherence[b].T)


def test_psd_equals_mne_psd_array_welch() -> None:
    fs = 250.0
    rng = np.random.default_rng(13)
    data = 15.0 * rng.standard_normal((3, 1500))
    extractor, frames = _frames(data, fs)
    seg = extractor.layout.segment_samples
    for frame in frames[::3]:
        psd_mne, freqs_mne = psd_array_welch(
            _window(data, frame, fs),
            fs,
            fmin=0.0,
            fmax=np.inf,
            n_fft=seg,
            n_per_seg=seg,
            n_overlap=seg // 2,
            window="hann",
            remove_dc=True,
            average="mean",
            output="power",
            verbose=False,
        )
        assert frame.spectra is not None
        np.testing.assert_allclose(frame.spectra.freqs_hz, freqs_mne)
        _assert_close(frame.spectra.psd_uv2_per_hz, psd_mne)


def _segments(x: np.ndarray, seg: int, step: int) -> np.ndarray:
    """scipy.signal.welch's segments of a window: (segments, channels, seg)."""
    starts = range(0, x.shape[1] - seg + 1, step)
    return np.stack([x[:, s : s + seg] for s in starts])


def _reference_cross_spectra(window: np.ndarray, extractor: FeatureExtractor) -> np.ndarray:
    """Per-segment cross spectra conj(X_i) X_j (segments, bins, ch, ch), written plainly."""
    layout = extractor.layout
    segs = _segments(window, layout.segment_samples, layout.segment_step_samples)
    taper = scipy.signal.get_window("hann", layout.segment_samples)
    spectra = np.fft.rfft((segs - segs.mean(axis=2, keepdims=True)) * taper, axis=2)
    return np.conj(spectra)[:, :, None, :] * spectra[:, None, :, :]  # (s, i, j, f)


@pytest.mark.parametrize("measure", ["wpli", "plv"])
def test_phase_measure_equals_reference_formula(measure: str) -> None:
    """wpli = |E[Im Sxy]| / E[|Im Sxy|], plv = |E[Sxy/|Sxy|]| (mne-connectivity), E pooled over
    the window's segments and the band's bins."""
    fs = 250.0
    config = FeaturesConfig(phase_measure=measure)  # type: ignore[arg-type]
    rng = np.random.default_rng(14)
    source = rng.standard_normal(1600)
    data = rng.standard_normal((3, 1600))
    data[1] += np.roll(source, 6)
    data[2] += source
    extractor, frames = _frames(data, fs, config)
    freqs = extractor.layout.freqs_hz
    for frame in frames[::2]:
        sxy = _reference_cross_spectra(_window(data, frame, fs), extractor)
        for b, name in enumerate(frame.band_names):
            lo, hi = config.bands_hz[name]
            band = sxy[..., (freqs >= lo) & (freqs < hi)]
            for i in range(3):
                for j in range(i + 1, 3):
                    values = band[:, i, j, :]
                    if measure == "wpli":
                        expected = abs(values.imag.sum()) / np.abs(values.imag).sum()
                    else:
                        expected = abs((values / np.abs(values)).mean())
                    assert frame.phase_sync[b, i, j] == pytest.approx(expected, rel=1e-9)
                    assert frame.phase_sync[b, j, i] == frame.phase_sync[b, i, j]


def _alpha_source(rng: np.random.Generator, n: int, fs: float) -> np.ndarray:
    """Broadband 8-13 Hz activity: white noise through a Butterworth band-pass."""
    sos = scipy.signal.butter(4, [8.0, 13.0], btype="bandpass", fs=fs, output="sos")
    return scipy.signal.sosfiltfilt(sos, rng.standard_normal(n))


def test_alpha_sine_gives_alpha_peak_and_alpha_power() -> None:
    fs = 250.0
    t = np.arange(2500) / fs
    rng = np.random.default_rng(15)
    data = np.vstack(
        [
            20.0 * np.sin(2 * np.pi * 10.0 * t),
            20.0 * np.sin(2 * np.pi * 10.3 * t),
            20.0 * np.sin(2 * np.pi * 6.0 * t),
        ]
    ) + 0.5 * rng.standard_normal((3, t.size))
    _, frames = _frames(data, fs)
    alpha = frames[0].band_names.index("alpha")
    theta = frames[0].band_names.index("theta")
    for frame in frames:
        assert frame.alpha_peak_hz[0] == pytest.approx(10.0, abs=0.05)
        assert frame.alpha_peak_hz[1] == pytest.approx(10.3, abs=0.25)
        assert frame.relative_power[0, alpha] > 0.95
        assert frame.relative_power[1, alpha] > 0.95
        assert frame.relative_power[2, theta] > 0.95
        assert frame.theta_alpha_ratio[2] > 10.0 > frame.theta_alpha_ratio[0]
        np.testing.assert_allclose(frame.relative_power.sum(axis=1), 1.0, rtol=1e-12)


def test_shared_component_is_coherent_and_independent_noise_is_not() -> None:
    fs = 250.0
    config = FeaturesConfig(window_s=10.0, hop_s=2.0)
    rng = np.random.default_rng(16)
    n = int(30 * fs)
    source = _alpha_source(rng, n, fs)
    source *= 10.0 / source.std()
    data = rng.standard_normal((4, n))
    data[0] += source
    data[1] += source
    _, frames = _frames(data, fs, config, chunk=250)
    alpha = frames[0].band_names.index("alpha")
    for frame in frames:
        assert frame.coherence[alpha, 0, 1] > 0.9
        assert frame.coherence[alpha, 2, 3] < 0.3
        assert frame.coherence[alpha, 0, 2] < 0.3
        # node strength of the coupled pair exceeds that of the independent channels
        assert frame.node_strength[alpha, 0] > frame.node_strength[alpha, 3]


def test_wpli_is_low_for_zero_lag_and_high_for_lagged_coupling() -> None:
    fs = 250.0
    config = FeaturesConfig(window_s=10.0, hop_s=2.0)
    rng = np.random.default_rng(17)
    n = int(30 * fs)
    source = _alpha_source(rng, n, fs)
    source *= 10.0 / source.std()
    lag = round(0.025 * fs)  # 25 ms: a quarter cycle at 10 Hz, 72-117 deg over 8-13 Hz
    data = 2.0 * rng.standard_normal((3, n))
    data[0] += source
    data[1] += source
    data[2] += np.roll(source, lag)
    _, frames = _frames(data, fs, config, chunk=250)
    alpha = frames[0].band_names.index("alpha")
    zero_lag = np.array([frame.phase_sync[alpha, 0, 1] for frame in frames])
    for frame in frames:
        assert frame.coherence[alpha, 0, 1] > 0.8  # coupled ...
        assert frame.phase_sync[alpha, 0, 2] > 0.9  # ... and lagged: wPLI sees it
    # ... but at zero lag wPLI sees only the noise cross-terms, whose sign is random
    assert zero_lag.max() < 0.4
    assert zero_lag.mean() < 0.25
