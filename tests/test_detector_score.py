"""Summary features, z-scores, signature score and smoothing (controller/detector/score.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from controller.detector import (
    DetectorConfig,
    ScoreSmoother,
    SignatureFeature,
    SignatureWeights,
    SummaryFeatures,
    z_scores,
)
from controller.detector.score import AlphaPeakVariability
from tests.test_detector_detector import make_frame

GOOD3 = np.array([True, True, True, False])


def test_summaries_average_good_channels_only() -> None:
    names = [
        "beta_rel_power.mean",
        "beta_power_uv2.mean",
        "beta_log_power.mean",
        "alpha_peak_hz.mean",
        "line_length_uv.mean",
        "coherence.alpha.mean",
        "wpli.beta.mean",
        "mean_connectivity.theta",
        "theta_alpha_ratio.mean",
    ]
    summary = SummaryFeatures(names, 4, alpha_peak_variability_s=10.0)
    frame = make_frame(
        0,
        rel_beta=[0.1, 0.2, 0.3, 0.9],
        line_length_uv=[10.0, 20.0, 30.0, 1e6],
        alpha_peak_hz=[9.0, 0.0, 11.0, 13.0],  # 0.0 = no peak: left out of the mean
        band_power_uv2=100.0,
        coherence=0.4,
    )
    values = dict(zip(names, summary.values(frame, GOOD3, 0.5, learn=True), strict=True))
    assert values["beta_rel_power.mean"] == pytest.approx(0.2)
    assert values["beta_power_uv2.mean"] == pytest.approx(100.0)
    assert values["beta_log_power.mean"] == pytest.approx(2.0)
    assert values["alpha_peak_hz.mean"] == pytest.approx(10.0)
    assert values["line_length_uv.mean"] == pytest.approx(20.0)
    for name in ("coherence.alpha.mean", "wpli.beta.mean", "mean_connectivity.theta"):
        assert values[name] == pytest.approx(0.4)
    assert values["theta_alpha_ratio.mean"] == pytest.approx(1.0)
    lonely = summary.values(frame, np.array([True, False, False, False]), 0.5, learn=False)
    assert math.isnan(lonely[names.index("coherence.alpha.mean")])  # no good pair
    assert all(math.isnan(v) for v in summary.values(frame, np.zeros(4, bool), 0.5, False))


def test_alpha_peak_variability_is_the_running_sd_per_channel() -> None:
    tracker = AlphaPeakVariability(2, tau_s=10.0)
    good = np.array([True, True])
    for k in range(400):
        peak = 10.0 + (1.0 if k % 2 else -1.0)  # channel 0 alternates 9/11 Hz: SD 1 Hz
        tracker.update(np.array([peak, 10.0]), good, 0.5)
        if k < 20:
            assert math.isnan(tracker.value_hz(good))  # followed < tau_s
    assert tracker.value_hz(np.array([True, False])) == pytest.approx(1.0, rel=0.05)
    assert tracker.value_hz(np.array([False, True])) == pytest.approx(0.0, abs=1e-12)
    assert tracker.value_hz(good) == pytest.approx(0.5, rel=0.05)


def test_variability_learns_only_when_allowed() -> None:
    summary = SummaryFeatures(["alpha_peak_hz.variability"], 4, alpha_peak_variability_s=1.0)
    for k in range(20):
        summary.values(make_frame(k, alpha_peak_hz=10.0 + (k % 2)), GOOD3, 0.5, learn=True)
    settled = summary.values(make_frame(20), GOOD3, 0.5, learn=False)[0]
    assert settled > 0.3
    for k in range(21, 40):  # blanked windows with wild peaks do not change it
        summary.values(make_frame(k, alpha_peak_hz=13.0), GOOD3, 0.5, learn=False)
    assert summary.values(make_frame(40), GOOD3, 0.5, learn=False)[0] == settled


def test_z_scores_are_clipped_and_keep_missing_values() -> None:
    z = z_scores(
        np.array([3.0, np.nan, 1e308, -1e308]),
        np.array([1.0, 0.0, -1e308, 0.0]),
        np.array([2.0, 1.0, 1e-12, 1.0]),
        z_clip=10.0,
    )
    assert z[0] == 1.0 and math.isnan(z[1]) and z[2] == 10.0 and z[3] == -10.0


def test_directions_and_weighted_mean() -> None:
    features = [
        SignatureFeature(name="beta_rel_power.mean", direction="up", weight=1.0),
        SignatureFeature(name="delta_rel_power.mean", direction="down", weight=3.0),
        SignatureFeature(name="theta_log_power.mean", direction="both", weight=1.0),
    ]
    w = SignatureWeights(features)
    z = np.array([2.0, -1.0, -3.0])
    signed = w.signed(z)
    np.testing.assert_allclose(signed, [2.0, 1.0, 3.0 - math.sqrt(2 / math.pi)])
    assert w.score(z) == pytest.approx((2.0 + 3.0 * 1.0 + signed[2]) / 5.0)
    assert w.score(np.array([np.nan, 2.0, np.nan])) == pytest.approx(-2.0)  # missing left out
    assert w.score(np.full(3, np.nan)) is None
    # "both" is centred: its mean over standard normal z is ~0.
    rng = np.random.default_rng(0)
    both = SignatureWeights([SignatureFeature(name="theta_log_power.mean", direction="both")])
    assert np.mean(both.signed(rng.normal(size=200_000))) == pytest.approx(0.0, abs=0.01)


def test_smoother_starts_at_the_first_score_and_has_the_configured_time_constant() -> None:
    s = ScoreSmoother(10.0)
    assert s.value is None
    assert s.update(4.0, 0.0) == 4.0
    for _ in range(2000):
        s.update(0.0, 0.5)
    assert s.value == pytest.approx(0.0, abs=1e-12)
    for _ in range(20):  # 10 s = one time constant
        s.update(1.0, 0.5)
    assert s.value == pytest.approx(1.0 - math.exp(-1.0), rel=1e-9)
    early = ScoreSmoother(1000.0)
    early.update(1.0, 0.5)
    early.update(3.0, 0.5)
    assert early.value == pytest.approx(2.0, rel=1e-3)  # bias-corrected: ~ the plain mean
    assert ScoreSmoother(0.0).update(5.0, 0.5) == 5.0


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValidationError, match="lower_threshold"):
        DetectorConfig(upper_threshold=1.0, lower_threshold=1.0)
    with pytest.raises(ValidationError, match="calibration_s"):
        DetectorConfig(calibration_s=86_400.0)
    with pytest.raises(ValidationError, match=r"unknown summary feature 'beta_rel_power\.ch0'"):
        SignatureFeature(name="beta_rel_power.ch0")
    with pytest.raises(ValidationError, match="duplicate"):
        DetectorConfig(features=[SignatureFeature(name="coherence.beta.mean")] * 2)
    with pytest.raises(ValidationError, match="extra"):
        DetectorConfig.model_validate({"onset_ms": 5})
    config = DetectorConfig()
    config.check_features(("delta", "theta", "alpha", "beta", "gamma"), "wpli")
    with pytest.raises(ValueError, match="band 'beta'"):
        config.check_features(("delta", "theta", "alpha"), "wpli")
    with pytest.raises(ValueError, match="phase_measure='plv'"):
        DetectorConfig(features=[SignatureFeature(name="wpli.alpha.mean")]).check_features(
            ("alpha",), "plv"
        )
    assert config.resolved_min_good_channels(8) == 4
    assert config.resolved_min_good_channels(5) == 3
