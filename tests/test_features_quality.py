"""Signal-quality flags, time-domain features and quality gating of the summaries."""

from __future__ import annotations

import numpy as np
import pytest

from controller.features import FeatureExtractor, FeatureFrame, FeaturesConfig, extract_features

FS = 250.0


def _noise(n_channels: int, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 10.0 * rng.standard_normal((n_channels, int(seconds * FS)))


def _run(
    data_uv: np.ndarray,
    config: FeaturesConfig | None = None,
    clip_level_uv: float | np.ndarray | None = None,
) -> list[FeatureFrame]:
    return extract_features(data_uv, FS, config, chunk_samples=25, clip_level_uv=clip_level_uv)


def _window(data_uv: np.ndarray, frame: FeatureFrame) -> np.ndarray:
    return data_uv[:, round(frame.t_start_s * FS) : round(frame.t_end_s * FS)]


def test_clean_noise_is_good_everywhere() -> None:
    frames = _run(_noise(4, 5, seed=1), clip_level_uv=3276.7)
    for frame in frames:
        q = frame.quality
        assert q.good.all()
        assert not (q.flatline.any() or q.clipped.any() or q.invalid.any())
        assert q.n_good == 4
        assert np.all(q.line_noise_ratio < 0.1)


def test_flatline_channel_is_flagged() -> None:
    data = _noise(3, 5, seed=2)
    data[1] = 42.0  # a constant offset: the electrode is disconnected
    data[2, : int(2.5 * FS)] = -7.0
    frames = _run(data)
    for frame in frames:
        assert frame.quality.flatline[1]
        assert not frame.quality.good[1]
        assert frame.quality.std_uv[1] == pytest.approx(0.0, abs=1e-9)
        assert not frame.quality.flatline[0]
        flat_window = frame.t_end_s <= 2.5
        assert frame.quality.flatline[2] == flat_window


def test_std_and_line_length_match_direct_computation() -> None:
    data = _noise(3, 5, seed=3) + np.array([[1e4], [0.0], [-50.0]])  # large DC offsets too
    frames = _run(data)
    for frame in frames:
        window = _window(data, frame)
        np.testing.assert_allclose(frame.quality.std_uv, window.std(axis=1), rtol=1e-9)
        np.testing.assert_allclose(
            frame.line_length_uv, np.abs(np.diff(window, axis=1)).sum(axis=1), rtol=1e-9
        )


def test_clipping_counts_samples_at_the_rail() -> None:
    scale_uv_per_count = 0.1
    rail_uv = 32767 * scale_uv_per_count
    data = _noise(3, 5, seed=4)
    rng = np.random.default_rng(5)
    hits = rng.choice(data.shape[1], size=int(0.05 * data.shape[1]), replace=False)
    data[0, hits] = rail_uv
    data[1, hits[:3]] = -32768 * scale_uv_per_count  # three samples: below the 1 % default
    frames = _run(data, clip_level_uv=np.full(3, rail_uv))
    for frame in frames:
        window = _window(data, frame)
        expected = (np.abs(window) >= rail_uv).mean(axis=1)
        np.testing.assert_allclose(frame.quality.clipped_fraction, expected)
        assert frame.quality.clipped[0]
        assert not frame.quality.clipped[1]
        assert not frame.quality.clipped[2]
    # without a rail, nothing can be clipped
    assert not any(frame.quality.clipped.any() for frame in _run(data))


@pytest.mark.parametrize("mains_hz", [50.0, 60.0])
def test_line_noise_flags_only_the_contaminated_channel(mains_hz: float) -> None:
    data = _noise(3, 5, seed=6)
    t = np.arange(data.shape[1]) / FS
    data[2] += 40.0 * np.sin(2 * np.pi * mains_hz * t)
    matched = _run(data, FeaturesConfig(line_noise_hz=mains_hz))
    for frame in matched:
        assert frame.quality.line_noise_ratio[2] > 0.5
        assert frame.quality.line_noise_ratio[0] < 0.1
        assert list(frame.quality.good) == [True, True, False]
    other = 60.0 if mains_hz == 50.0 else 50.0
    for frame in _run(data, FeaturesConfig(line_noise_hz=other)):
        assert frame.quality.good.all()
    for frame in _run(data, FeaturesConfig(line_noise_hz=None)):
        assert np.all(frame.quality.line_noise_ratio == 0.0)


def test_invalid_samples_are_flagged_and_never_reach_the_spectra() -> None:
    data = _noise(3, 6, seed=7)
    bad_at = int(3.1 * FS)
    corrupted = data.copy()
    corrupted[1, bad_at] = np.nan
    corrupted[1, bad_at + 5] = np.inf
    corrupted[1, bad_at + 9] = 5e6  # beyond max_abs_uv (1e6 µV)
    frames = _run(corrupted)
    zero_filled = data.copy()
    zero_filled[1, [bad_at, bad_at + 5, bad_at + 9]] = 0.0
    reference = _run(zero_filled)
    assert len(frames) == len(reference)
    for frame, ref in zip(frames, reference, strict=True):
        contains = round(frame.t_start_s * FS) <= bad_at < round(frame.t_end_s * FS)
        assert frame.quality.invalid[1] == contains
        assert frame.quality.good[1] == (not contains)
        assert not frame.quality.invalid[[0, 2]].any()
        for values in (
            frame.band_power_uv2,
            frame.coherence,
            frame.phase_sync,
            frame.line_length_uv,
            frame.alpha_peak_hz,
        ):
            assert np.all(np.isfinite(values))
        # the spectral estimate is that of the zero-filled signal
        np.testing.assert_array_equal(frame.band_power_uv2, ref.band_power_uv2)
        np.testing.assert_array_equal(frame.coherence, ref.coherence)


def test_summaries_leave_out_bad_channels() -> None:
    rng = np.random.default_rng(8)
    data = _noise(4, 5, seed=9)
    shared = 10.0 * rng.standard_normal(data.shape[1])
    data += shared  # all channels coherent
    data[3] = 0.0  # a flat channel
    for measure in ("coherence", "phase"):
        config = FeaturesConfig(summary_measure=measure)
        for frame in _run(data, config):
            good = frame.quality.good
            assert list(good) == [True, True, True, False]
            matrix = frame.coherence if measure == "coherence" else frame.phase_sync
            sub = matrix[:, :3, :3]
            expected_mean = sub.sum(axis=(1, 2)) / 6.0
            np.testing.assert_allclose(frame.mean_connectivity, expected_mean, rtol=1e-12)
            np.testing.assert_allclose(
                frame.node_strength[:, :3], sub.sum(axis=2) / 2.0, rtol=1e-12
            )
            assert np.all(frame.node_strength[:, 3] == 0.0)
            np.testing.assert_allclose(
                frame.mean_coherence, frame.coherence[:, :3, :3].sum(axis=(1, 2)) / 6.0
            )


def test_fewer_than_two_good_channels_give_zero_summaries() -> None:
    data = _noise(3, 4, seed=10)
    data[1:] = 1.0
    for frame in _run(data):
        assert frame.quality.n_good == 1
        assert np.all(frame.mean_connectivity == 0.0)
        assert np.all(frame.node_strength == 0.0)


def test_clip_level_must_be_positive() -> None:
    with pytest.raises(ValueError, match="clip_level_uv"):
        FeatureExtractor(2, FS, clip_level_uv=[100.0, 0.0])
