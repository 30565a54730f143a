"""The compiled feature path (kernels.py, compiled.py) against the numpy reference path.

Both paths must give the same frames: flags and shapes exactly, values to rounding (the
compiled kernels sum in a different order).  The numpy path is the one checked against
scipy.signal and MNE in test_features_spectra.py.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest
import scipy.fft

from controller.features import FeatureExtractor, FeatureFrame, FeaturesConfig
from controller.features.compiled import CompiledWindows, rfft_rows
from controller.features.frame import SignalQuality, WindowSpectra
from controller.features.kernels import NUMBA_AVAILABLE, sanitize

pytestmark = pytest.mark.skipif(not NUMBA_AVAILABLE, reason="numba not installed")

FS = 250.0
RTOL = 1e-9


def _assert_close(left: object, right: object, name: str) -> None:
    if isinstance(left, np.ndarray):
        assert isinstance(right, np.ndarray), name
        assert left.shape == right.shape and left.dtype == right.dtype, name
        if left.dtype == bool:
            np.testing.assert_array_equal(left, right, err_msg=name)
        else:
            scale = max(1.0, float(np.max(np.abs(right), initial=0.0)))
            np.testing.assert_allclose(left, right, rtol=RTOL, atol=RTOL * scale, err_msg=name)
    elif isinstance(left, SignalQuality | WindowSpectra):
        for field in fields(left):
            _assert_close(getattr(left, field.name), getattr(right, field.name), field.name)
    else:
        assert left == right, name


def _assert_frames_match(compiled: FeatureFrame, reference: FeatureFrame) -> None:
    for field in fields(FeatureFrame):
        _assert_close(getattr(compiled, field.name), getattr(reference, field.name), field.name)


def _data(n_channels: int, seconds: float, seed: int, corrupt: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    t = np.arange(n) / FS
    data = 10.0 * rng.standard_normal((n_channels, n))
    data += 15.0 * np.sin(2 * np.pi * 10.3 * t)  # shared alpha: coherent, with a peak
    if corrupt and n_channels >= 4:
        data[1, 700:705] = np.nan  # invalid samples, zero-filled
        data[2, ::97] = 3000.0  # at the rail
        data[3, 1000:1800] = 0.0  # flat for a while
        data[0] += 40.0 * np.sin(2 * np.pi * 50.0 * t)  # line noise
    return data


def _frames(extractor: FeatureExtractor, data: np.ndarray, chunk: int) -> list[FeatureFrame]:
    frames: list[FeatureFrame] = []
    for start in range(0, data.shape[1], chunk):
        frames.extend(extractor.push(data[:, start : start + chunk]))
    return frames


CASES = {
    "default": (FeaturesConfig(), 8, 125, True),
    "gcd-grid": (FeaturesConfig(window_s=2.2, hop_s=0.4, segment_s=0.8, overlap=0.25), 4, 13, True),
    "plv-phase-summary": (
        FeaturesConfig(phase_measure="plv", summary_measure="phase"),
        5,
        7,
        True,
    ),
    "one-segment-hop-is-window": (
        FeaturesConfig(window_s=1.0, hop_s=1.0, segment_s=1.0, overlap=0.0),
        3,
        40,
        True,
    ),
    "odd-fft-length": (
        FeaturesConfig(window_s=1.992, hop_s=0.996, segment_s=0.996, overlap=0.0),
        4,
        11,
        True,
    ),
    "no-line-noise": (FeaturesConfig(line_noise_hz=None), 2, 1000, False),
    "one-channel": (FeaturesConfig(), 1, 50, False),
    "overlapping-bands": (
        FeaturesConfig(
            bands_hz={"theta": (4.0, 8.0), "alpha": (8.0, 13.0), "wide": (2.0, 30.0)},
            alpha_peak_range_hz=(7.0, 14.0),
        ),
        3,
        33,
        True,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("keep_spectra", [False, True])
def test_compiled_frames_equal_numpy_frames(case: str, keep_spectra: bool) -> None:
    config, n_channels, chunk, corrupt = CASES[case]
    data = _data(n_channels, 12.0, seed=7, corrupt=corrupt)
    fast, slow = (
        FeatureExtractor(
            n_channels, FS, config, 2999.0, keep_spectra=keep_spectra, t0_s=3.5, use_numba=numba
        )
        for numba in (True, False)
    )
    assert fast.uses_numba and not slow.uses_numba
    fast_frames, slow_frames = _frames(fast, data, chunk), _frames(slow, data, chunk)
    assert len(fast_frames) == len(slow_frames) > 10
    for compiled, reference in zip(fast_frames, slow_frames, strict=True):
        _assert_frames_match(compiled, reference)
    if corrupt and n_channels >= 4:  # the bad-channel paths were exercised
        assert any(not f.quality.good.all() for f in slow_frames)


def test_compiled_path_survives_reset_and_random_chunks() -> None:
    data = _data(6, 10.0, seed=3, corrupt=True)
    rng = np.random.default_rng(5)
    fast = FeatureExtractor(6, FS, use_numba=True)
    slow = FeatureExtractor(6, FS, use_numba=False)
    for extractor in (fast, slow):
        extractor.push(data[:, :900])
        extractor.reset(t0_s=100.0)
    cuts = np.sort(rng.choice(np.arange(1, data.shape[1]), size=60, replace=False))
    fast_frames: list[FeatureFrame] = []
    slow_frames: list[FeatureFrame] = []
    for piece in np.split(data, cuts, axis=1):
        fast_frames.extend(fast.push(piece))
        slow_frames.extend(slow.push(piece))
    assert len(fast_frames) == len(slow_frames) > 10
    for compiled, reference in zip(fast_frames, slow_frames, strict=True):
        _assert_frames_match(compiled, reference)


def test_frames_own_their_arrays() -> None:
    """Later windows must not overwrite an earlier frame's arrays (ring buffers are reused)."""
    data = _data(4, 8.0, seed=11, corrupt=False)
    extractor = FeatureExtractor(4, FS)
    first = _frames(extractor, data[:, :600], 125)[0]
    snapshot = {
        f.name: np.copy(getattr(first, f.name))
        for f in fields(FeatureFrame)
        if isinstance(getattr(first, f.name), np.ndarray)
    }
    assert len(_frames(extractor, data[:, 600:], 125)) > 5
    for name, values in snapshot.items():
        np.testing.assert_array_equal(getattr(first, name), values, err_msg=name)


def test_rfft_rows_is_scipy_rfft_bit_for_bit() -> None:
    x = np.random.default_rng(2).standard_normal((8, 250))
    out = np.empty((8, 126), dtype=np.complex128)
    np.testing.assert_array_equal(rfft_rows(x, out), scipy.fft.rfft(x, axis=1))


def _event_by_separate_calls(
    self: CompiledWindows,
    buffer: np.ndarray,
    sanitize_start: int,
    end: int,
    max_abs_uv: float,
    invalid: np.ndarray,
    block_key: int,
    has_previous: bool,
    segment_key: int,
    window_start: int,
    t_start_s: float,
    t_end_s: float,
) -> FeatureFrame | None:
    """CompiledWindows.event as one kernel call per step: the fused call's slow twin."""
    layout = self._context.layout
    sanitize(buffer, sanitize_start, end, max_abs_uv, invalid)
    if block_key >= 0:
        self.add_block(block_key, buffer, end - layout.block_samples, has_previous, invalid)
    if segment_key >= 0:
        self.add_segment(segment_key, buffer, end - layout.segment_samples)
    return None if window_start < 0 else self.frame(window_start, t_start_s, t_end_s)


def _assert_frames_identical(left: FeatureFrame, right: FeatureFrame) -> None:
    for field in fields(FeatureFrame):
        a, b = getattr(left, field.name), getattr(right, field.name)
        if isinstance(a, SignalQuality | WindowSpectra):
            for inner in fields(a):
                np.testing.assert_array_equal(getattr(a, inner.name), getattr(b, inner.name))
        elif isinstance(a, np.ndarray):
            assert a.dtype == b.dtype, field.name
            np.testing.assert_array_equal(a, b, err_msg=field.name)
        else:
            assert a == b, field.name


@pytest.mark.parametrize("keep_spectra", [True, False])
@pytest.mark.parametrize("case", list(CASES))
def test_fused_event_gives_the_frames_of_separate_kernel_calls_bit_for_bit(
    case: str, keep_spectra: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without spectra the event is one kernel call with the FFT inside it (rocket-fft);
    with them, two kernels and scipy's FFT between them: both as the separate calls."""
    config, n_channels, chunk, corrupt = CASES[case]
    data = _data(n_channels, 12.0, seed=13, corrupt=corrupt)
    fused = FeatureExtractor(n_channels, FS, config, 2999.0, keep_spectra=keep_spectra)
    fused_frames = _frames(fused, data, chunk)
    monkeypatch.setattr(CompiledWindows, "event", _event_by_separate_calls)
    separate = FeatureExtractor(n_channels, FS, config, 2999.0, keep_spectra=keep_spectra)
    separate_frames = _frames(separate, data, chunk)
    assert len(fused_frames) == len(separate_frames) > 10
    for left, right in zip(fused_frames, separate_frames, strict=True):
        _assert_frames_identical(left, right)


@pytest.mark.parametrize("use_numba", [True, False])
def test_push_counts_gives_the_frames_of_push_of_the_scaled_block_bit_for_bit(
    use_numba: bool,
) -> None:
    rng = np.random.default_rng(21)
    counts = rng.integers(-32768, 32767, (5, 3000), dtype=np.int16)
    counts[1, 400:420] = 32767  # at the rail: clipped
    wire_order = np.ascontiguousarray(counts.T).T  # strided, as decoded from a frame
    scale = np.array([0.1, 0.25, 0.05, 1.0, 0.3])
    by_counts, by_uv = (
        FeatureExtractor(5, FS, clip_level_uv=32767.0 * scale, use_numba=use_numba)
        for _ in range(2)
    )
    counted: list[FeatureFrame] = []
    scaled: list[FeatureFrame] = []
    for start in range(0, counts.shape[1], 125):
        counted.extend(by_counts.push_counts(wire_order[:, start : start + 125], scale))
        scaled.extend(by_uv.push(counts[:, start : start + 125] * scale[:, None]))
    assert len(counted) == len(scaled) > 10
    for left, right in zip(counted, scaled, strict=True):
        _assert_frames_identical(left, right)
