"""Streaming behaviour: chunking, timing, offline equivalence, configuration, robustness."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pydantic import ValidationError

from controller.features import FeatureExtractor, FeatureFrame, FeaturesConfig, extract_features
from controller.features.frame import SignalQuality

FS = 250.0


def _push_in_chunks(
    extractor: FeatureExtractor, data_uv: np.ndarray, chunk: int
) -> list[FeatureFrame]:
    frames: list[FeatureFrame] = []
    for start in range(0, data_uv.shape[1], chunk):
        frames.extend(extractor.push(data_uv[:, start : start + chunk]))
    return frames


def _assert_frames_identical(a: FeatureFrame, b: FeatureFrame) -> None:
    for field in fields(FeatureFrame):
        left, right = getattr(a, field.name), getattr(b, field.name)
        if isinstance(left, SignalQuality):
            for q_field in fields(SignalQuality):
                np.testing.assert_array_equal(
                    getattr(left, q_field.name), getattr(right, q_field.name)
                )
        elif isinstance(left, np.ndarray):
            np.testing.assert_array_equal(left, right, err_msg=field.name)
        else:
            assert left == right, field.name


def _test_data(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = 10.0 * rng.standard_normal((4, int(seconds * FS)))
    data[2, 700:705] = np.nan  # exercise the invalid path across chunk boundaries too
    data[3, ::97] = 3000.0
    return data


@pytest.mark.parametrize(
    "config",
    [FeaturesConfig(), FeaturesConfig(window_s=2.2, hop_s=0.4, segment_s=0.8, overlap=0.25)],
    ids=["default", "gcd-grid"],
)
def test_frames_do_not_depend_on_chunk_size(config: FeaturesConfig) -> None:
    data = _test_data(6.0, seed=21)
    results = {}
    for chunk in (1, 7, 10, 1000):
        extractor = FeatureExtractor(4, FS, config, clip_level_uv=2999.0)
        results[chunk] = _push_in_chunks(extractor, data, chunk)
    reference = results[1000]
    assert len(reference) > 5
    for chunk in (1, 7, 10):
        assert len(results[chunk]) == len(reference)
        for a, b in zip(results[chunk], reference, strict=True):
            _assert_frames_identical(a, b)


def test_frame_times_count_samples_and_honour_t0() -> None:
    config = FeaturesConfig()
    extractor = FeatureExtractor(2, FS, config, t0_s=100.0)
    data = np.random.default_rng(22).standard_normal((2, 1374))
    frames = extractor.push(data[:, :499])
    assert frames == []  # less than one window
    frames = extractor.push(data[:, 499:500])
    assert [(f.t_start_s, f.t_end_s) for f in frames] == [(100.0, 102.0)]
    frames = extractor.push(data[:, 500:])
    # windows end every hop (125 samples) after the first: at 625, 750, ..., 1250 <= 1374
    expected = [(100.0 + 0.5 * k, 102.0 + 0.5 * k) for k in range(1, 7)]
    assert [(f.t_start_s, f.t_end_s) for f in frames] == expected
    assert extractor.samples_pushed == 1374


def test_reset_restarts_windows_and_times() -> None:
    data = np.random.default_rng(23).standard_normal((2, 1000))
    extractor = FeatureExtractor(2, FS)
    first = extractor.push(data)
    extractor.reset(t0_s=50.0)
    assert extractor.samples_pushed == 0
    again = extractor.push(data)
    assert len(again) == len(first)
    assert again[0].t_start_s == 50.0
    np.testing.assert_array_equal(again[0].band_power_uv2, first[0].band_power_uv2)


def test_offline_extraction_is_the_streaming_path() -> None:
    data = _test_data(5.0, seed=24)
    streamed = _push_in_chunks(FeatureExtractor(4, FS, t0_s=3.0), data, 17)
    offline = extract_features(data, FS, chunk_samples=333, t0_s=3.0)
    assert len(offline) == len(streamed)
    for a, b in zip(offline, streamed, strict=True):
        _assert_frames_identical(a, b)


def test_push_rejects_wrong_shapes() -> None:
    extractor = FeatureExtractor(3, FS)
    with pytest.raises(ValueError, match=r"\(3, n_samples\)"):
        extractor.push(np.zeros((2, 10)))
    with pytest.raises(ValueError, match=r"\(3, n_samples\)"):
        extractor.push(np.zeros(10))
    assert extractor.push(np.zeros((3, 0))) == []


def test_flat_dict_names_are_stable() -> None:
    data = np.random.default_rng(25).standard_normal((3, 500))
    extractor = FeatureExtractor(3, FS, channel_names=["Fp1", "O1", "O2"])
    (frame,) = extractor.push(data)
    flat = frame.as_flat_dict()
    assert flat["alpha_power_uv2.O1"] == frame.band_power_uv2[1, 2]
    assert flat["theta_rel_power.Fp1"] == frame.relative_power[0, 1]
    assert flat["theta_alpha_ratio.O2"] == frame.theta_alpha_ratio[2]
    assert flat["alpha_peak_hz.O2"] == frame.alpha_peak_hz[2]
    assert flat["line_length_uv.Fp1"] == frame.line_length_uv[0]
    assert flat["coherence.alpha.mean"] == frame.mean_coherence[2]
    assert flat["wpli.beta.mean"] == frame.mean_phase_sync[3]
    assert flat["mean_connectivity.gamma"] == frame.mean_connectivity[4]
    assert flat["node_strength.delta.O1"] == frame.node_strength[0, 1]
    assert flat["quality.good.O2"] == 1.0
    assert flat["quality.n_good"] == 3.0
    n_ch, n_bands = 3, 5
    per_channel = n_bands * 2 + 3 + n_bands + 5  # powers, rel powers, ratio/peak/LL, strength, q
    per_band = 3
    assert len(flat) == n_ch * per_channel + n_bands * per_band + 1
    with_pairs = frame.as_flat_dict(include_pairs=True)
    assert with_pairs["coherence.alpha.Fp1~O2"] == frame.coherence[2, 0, 2]
    assert with_pairs["wpli.alpha.O1~O2"] == frame.phase_sync[2, 1, 2]
    assert len(with_pairs) == len(flat) + n_bands * 3 * 2
    assert all(isinstance(v, float) for v in with_pairs.values())


def test_channel_names_must_be_distinct_and_complete() -> None:
    with pytest.raises(ValueError, match="channel_names"):
        FeatureExtractor(2, FS, channel_names=["a", "a"])
    with pytest.raises(ValueError, match="channel_names"):
        FeatureExtractor(2, FS, channel_names=["a"])


# -- configuration ------------------------------------------------------------------------


def test_default_configuration_values() -> None:
    config = FeaturesConfig()
    assert (config.window_s, config.hop_s, config.segment_s, config.overlap) == (2.0, 0.5, 1.0, 0.5)
    assert config.bands_hz == {
        "delta": (1.0, 4.0),
        "theta": (4.0, 8.0),
        "alpha": (8.0, 13.0),
        "beta": (13.0, 30.0),
        "gamma": (30.0, 45.0),
    }
    layout = config.layout(250.0)
    assert (layout.window_samples, layout.hop_samples, layout.segment_samples) == (500, 125, 250)
    assert layout.segments_per_window == 3


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"window_s": 0.5}, "", "window_s=0.5 must be >= segment_s=1.0"),
        ({"hop_s": 3.0}, "", "hop_s=3.0 must be <= window_s=2.0"),
        ({"overlap": 0.95}, "overlap", "less than or equal to 0.9"),
        ({"window_s": -1.0}, "window_s", "greater than 0"),
        ({"bands_hz": {"theta": [4, 8], "alpha": [13, 8]}}, "bands_hz", "must be < hi_hz"),
        ({"bands_hz": {"alpha": [8, 13]}}, "bands_hz", "band 'theta' is required"),
        (
            {"bands_hz": {"theta": [4, 8], "alpha": [8, 13], "Bad-Name": [1, 2]}},
            "bands_hz",
            "must match",
        ),
        ({"phase_measure": "pli"}, "phase_measure", "'wpli' or 'plv'"),
        ({"window_secs": 2.0}, "window_secs", "Extra inputs are not permitted"),
    ],
)
def test_invalid_configuration_names_the_field(
    kwargs: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        FeaturesConfig(**kwargs)  # type: ignore[arg-type]
    error = info.value.errors()[0]
    assert field in ".".join(str(part) for part in error["loc"])
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("config", "fs", "message"),
    [
        (FeaturesConfig(hop_s=0.5), 333.0, "hop_s=0.5 s is 166.5 samples"),
        (FeaturesConfig(hop_s=1.0, overlap=0.3), 255.0, "overlap=0.3 of a 255-sample segment"),
        (FeaturesConfig(), 80.0, r"band 'gamma' \[30.0, 45.0\) Hz must lie within \(0, 40\]"),
        (FeaturesConfig(line_noise_hz=60.0), 120.0, "exceeds the Nyquist"),
        (
            FeaturesConfig(segment_s=0.25, window_s=1.0, hop_s=0.25),
            256.0,
            "band 'delta' .* contains no frequency bin",
        ),
    ],
)
def test_layout_rejects_what_does_not_fit_the_sampling_rate(
    config: FeaturesConfig, fs: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        config.layout(fs)


def test_config_round_trips_through_toml_like_data() -> None:
    data = {
        "window_s": 4.0,
        "hop_s": 1.0,
        "bands_hz": {"theta": [4, 8], "alpha": [8, 12.5]},
        "line_noise_hz": 60.0,
        "phase_measure": "plv",
    }
    config = FeaturesConfig.model_validate(data)
    assert config.bands_hz["alpha"] == (8.0, 12.5)
    assert FeaturesConfig.model_validate(config.model_dump()) == config


# -- robustness -----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    blocks=st.lists(
        arrays(
            np.float64,
            st.tuples(st.just(3), st.integers(min_value=0, max_value=160)),
            elements=st.floats(
                min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False
            ),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_random_finite_blocks_never_produce_nan_and_keep_ranges(
    blocks: list[np.ndarray],
) -> None:
    config = FeaturesConfig(window_s=1.0, hop_s=0.25, segment_s=0.5)
    extractor = FeatureExtractor(3, 128.0, config, clip_level_uv=1e5)
    for block in blocks:
        for frame in extractor.push(block):
            for name in (
                "band_power_uv2",
                "relative_power",
                "theta_alpha_ratio",
                "alpha_peak_hz",
                "line_length_uv",
                "coherence",
                "phase_sync",
                "mean_connectivity",
                "node_strength",
                "mean_coherence",
            ):
                values = getattr(frame, name)
                assert np.all(np.isfinite(values)), name
            assert np.all((frame.coherence >= 0.0) & (frame.coherence <= 1.0))
            assert np.all((frame.phase_sync >= 0.0) & (frame.phase_sync <= 1.0))
            assert np.all((frame.relative_power >= 0.0) & (frame.relative_power <= 1.0))
            assert np.all(np.isfinite(frame.quality.line_noise_ratio))
            assert np.all(np.isfinite(frame.quality.std_uv))
