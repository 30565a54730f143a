"""Measure the streaming feature pipeline against recomputing each window with scipy.

Used by ``neurostim bench controller`` and benchmarks/bench_features.py.  Wall-clock
timing uses ``time.perf_counter`` (injectable): this module measures, it does not
control anything.

Two per-window recomputations from scratch are timed on the same data in the same run:

- *core*: scipy.signal.welch on all channels and scipy.signal.coherence on all channel
  pairs at once (broadcast over pairs, its fastest use), reduced to band power and band
  coherence.  A subset of the pipeline's work, so its ratio is a lower bound.
- *full*: the same features the pipeline emits, recomputed per window: the core, plus
  wPLI/PLV from scipy.signal.spectrogram's per-segment FFTs, the PSD features (same
  reduction code as the pipeline) and std / line length / invalid samples with numpy.

Both sides report the best of ``repeats`` runs, as timeit does, because the machine may
be shared.  ``max_abs_diff`` is the largest difference between the pipeline's frame and
the full recomputation over relative power, coherence and phase synchrony (all in
[0, 1]): it shows both computed the same thing.

``detector_ms_per_update`` times a calibrated default Detector on the same frames
(controller/detector/bench.py); ``combined_realtime_factor`` is hop / (features +
detector time per hop), the controller core's share of a lockstep simulation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from time import perf_counter

import numpy as np
import scipy.signal

from controller.detector.bench import detector_ms_per_update
from controller.features.config import FeaturesConfig
from controller.features.extractor import FeatureExtractor
from controller.features.frame import FeatureFrame
from controller.features.layout import FeatureLayout
from controller.features.spectra import psd_features


@dataclass(frozen=True)
class FeatureBenchCase:
    """One benchmark setting (the RC+S and Percept sensing specifications: 8 sites @ 250 Hz
    default; 64 ch @ 1 kHz)."""

    label: str
    n_channels: int
    sampling_rate_hz: float
    duration_s: float
    chunk_s: float = 0.05
    scipy_windows: int = 8
    repeats: int = 3


@dataclass(frozen=True)
class FeatureBenchRow:
    """Result of one case (times in ms; speed-ups = scipy time per window / ms_per_hop)."""

    label: str
    n_channels: int
    sampling_rate_hz: float
    n_frames: int
    ms_per_hop: float
    realtime_factor: float
    scipy_core_ms_per_window: float
    speedup_vs_scipy_core: float
    scipy_full_ms_per_window: float
    speedup_vs_scipy_full: float
    max_abs_diff: float
    detector_ms_per_update: float
    combined_realtime_factor: float  # features + detector, one update per hop

    def as_dict(self) -> dict[str, float | int | str]:
        """Plain values for JSON output."""
        return asdict(self)


@dataclass(frozen=True)
class ScipyWindowFeatures:
    """Features of one window recomputed from scratch (pairs in np.triu_indices order)."""

    band_power_uv2: np.ndarray
    relative_power: np.ndarray
    band_coherence: np.ndarray
    band_phase_sync: np.ndarray | None
    std_uv: np.ndarray | None
    line_length_uv: np.ndarray | None
    invalid: np.ndarray | None


DEFAULT_CASES = (
    FeatureBenchCase("8 ch @ 250 Hz", 8, 250.0, 120.0),
    FeatureBenchCase("64 ch @ 1 kHz", 64, 1000.0, 30.0),
)


def scipy_window_features(
    x_uv: np.ndarray, layout: FeatureLayout, config: FeaturesConfig, full: bool
) -> ScipyWindowFeatures:
    """Recompute a window's features with scipy; only band power/coherence unless ``full``."""
    fs = layout.sampling_rate_hz
    nperseg = layout.segment_samples
    noverlap = nperseg - layout.segment_step_samples
    _, psd = scipy.signal.welch(
        x_uv, fs, window="hann", nperseg=nperseg, noverlap=noverlap, detrend="constant"
    )
    i, j = np.triu_indices(x_uv.shape[0], k=1)
    _, coherence = scipy.signal.coherence(
        x_uv[i], x_uv[j], fs, window="hann", nperseg=nperseg, noverlap=noverlap
    )
    weights = layout.band_bin_mask / layout.band_bin_mask.sum(axis=1, keepdims=True)
    band_coherence = (coherence @ weights.T).T
    if not full:
        band_power = psd @ layout.band_sum_weights * layout.df_hz
        return ScipyWindowFeatures(band_power, band_power, band_coherence, None, None, None, None)

    per_channel = psd_features(psd, layout)
    _, _, segments = scipy.signal.spectrogram(
        x_uv,
        fs,
        window="hann",
        nperseg=nperseg,
        noverlap=noverlap,
        detrend="constant",
        mode="complex",
    )  # (channels, freqs, segments)
    in_bands = segments[:, layout.conn_bins, :]
    cross = np.conj(in_bands[i]) * in_bands[j]  # (pairs, bins, segments)
    mask = layout.band_conn_mask
    if config.phase_measure == "wpli":
        imag = cross.imag
        numerator = np.stack([imag[:, m, :].sum(axis=(1, 2)) for m in mask])
        denominator = np.stack([np.abs(imag[:, m, :]).sum(axis=(1, 2)) for m in mask])
        phase = np.divide(
            np.abs(numerator),
            denominator,
            out=np.zeros_like(numerator),
            where=denominator > 0,
        )
    else:
        magnitude = np.abs(cross)
        unit = np.divide(cross, magnitude, out=np.zeros_like(cross), where=magnitude > 0)
        phase = np.stack([np.abs(unit[:, m, :].mean(axis=(1, 2))) for m in mask])
    return ScipyWindowFeatures(
        band_power_uv2=per_channel.band_power_uv2,
        relative_power=per_channel.relative_power,
        band_coherence=band_coherence,
        band_phase_sync=phase,
        std_uv=x_uv.std(axis=1),
        line_length_uv=np.abs(np.diff(x_uv, axis=1)).sum(axis=1),
        invalid=~(np.abs(x_uv) <= config.max_abs_uv).all(axis=1),
    )


def _best_time_s(run: Callable[[], object], repeats: int, timer: Callable[[], float]) -> float:
    best_s = float("inf")
    for _ in range(repeats):
        started = timer()
        run()
        best_s = min(best_s, timer() - started)
    return best_s


def _difference(frame: FeatureFrame, reference: ScipyWindowFeatures) -> float:
    i, j = np.triu_indices(frame.coherence.shape[1], k=1)
    diffs = [np.max(np.abs(frame.relative_power - reference.relative_power))]
    if i.size:
        diffs.append(np.max(np.abs(frame.coherence[:, i, j] - reference.band_coherence)))
        if reference.band_phase_sync is not None:
            diffs.append(np.max(np.abs(frame.phase_sync[:, i, j] - reference.band_phase_sync)))
    return float(max(diffs))


def run_case(
    case: FeatureBenchCase,
    config: FeaturesConfig | None = None,
    seed: int = 0,
    timer: Callable[[], float] = perf_counter,
) -> FeatureBenchRow:
    """Time the streaming pipeline over the case's data, then scipy over some windows."""
    config = config if config is not None else FeaturesConfig()
    rng = np.random.default_rng(seed)
    n_samples = round(case.duration_s * case.sampling_rate_hz)
    data_uv = 10.0 * rng.standard_normal((case.n_channels, n_samples))
    extractor = FeatureExtractor(case.n_channels, case.sampling_rate_hz, config)
    layout = extractor.layout
    # warm-up (first-call costs of numpy/scipy), outside the timed runs
    extractor.push(data_uv[:, : layout.window_samples])
    scipy_window_features(data_uv[:, : layout.window_samples], layout, config, full=True)
    chunk = max(1, round(case.chunk_s * case.sampling_rate_hz))
    frames: list[FeatureFrame] = []

    def stream() -> None:
        extractor.reset()
        frames.clear()
        for start in range(0, n_samples, chunk):
            frames.extend(extractor.push(data_uv[:, start : start + chunk]))

    elapsed_s = _best_time_s(stream, case.repeats, timer)
    if not frames:
        raise ValueError(f"{case.label}: duration_s={case.duration_s} yields no window")

    picked = frames[:: max(1, len(frames) // case.scipy_windows)][: case.scipy_windows]
    core_s = full_s = max_diff = 0.0
    for frame in picked:
        first = round(frame.t_start_s * case.sampling_rate_hz)
        window = data_uv[:, first : first + layout.window_samples]
        core_s += _best_time_s(
            partial(scipy_window_features, window, layout, config, full=False),
            case.repeats,
            timer,
        )
        full_s += _best_time_s(
            partial(scipy_window_features, window, layout, config, full=True),
            case.repeats,
            timer,
        )
        reference = scipy_window_features(window, layout, config, full=True)
        max_diff = max(max_diff, _difference(frame, reference))
    ms_per_hop = 1e3 * elapsed_s / len(frames)
    core_ms = 1e3 * core_s / len(picked)
    full_ms = 1e3 * full_s / len(picked)
    detector_ms = detector_ms_per_update(frames, repeats=case.repeats, timer=timer)
    return FeatureBenchRow(
        label=case.label,
        n_channels=case.n_channels,
        sampling_rate_hz=case.sampling_rate_hz,
        n_frames=len(frames),
        ms_per_hop=ms_per_hop,
        realtime_factor=case.duration_s / elapsed_s,
        scipy_core_ms_per_window=core_ms,
        speedup_vs_scipy_core=core_ms / ms_per_hop,
        scipy_full_ms_per_window=full_ms,
        speedup_vs_scipy_full=full_ms / ms_per_hop,
        max_abs_diff=max_diff,
        detector_ms_per_update=detector_ms,
        combined_realtime_factor=1e3 * config.hop_s / (ms_per_hop + detector_ms),
    )


def bench_features_rows(
    cases: tuple[FeatureBenchCase, ...] = DEFAULT_CASES,
    config: FeaturesConfig | None = None,
    seed: int = 0,
) -> list[FeatureBenchRow]:
    """One row per case (default: 8 ch @ 250 Hz and 64 ch @ 1 kHz)."""
    return [run_case(case, config, seed) for case in cases]


def format_rows(rows: list[FeatureBenchRow]) -> str:
    """A readable table of benchmark rows."""
    header = (
        f"{'case':<15}{'frames':>7}{'ms/hop':>9}{'x realtime':>12}"
        f"{'core ms/win':>13}{'x core':>8}{'full ms/win':>13}{'x full':>8}{'max|diff|':>11}"
        f"{'det ms':>8}{'x rt f+d':>10}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row.label:<15}{row.n_frames:>7}{row.ms_per_hop:>9.3f}{row.realtime_factor:>12.1f}"
            f"{row.scipy_core_ms_per_window:>13.2f}{row.speedup_vs_scipy_core:>8.1f}"
            f"{row.scipy_full_ms_per_window:>13.2f}{row.speedup_vs_scipy_full:>8.1f}"
            f"{row.max_abs_diff:>11.1e}"
            f"{row.detector_ms_per_update:>8.3f}{row.combined_realtime_factor:>10.1f}"
        )
    return "\n".join(lines)
