"""The robust per-patient baseline (controller/detector/baseline.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from controller.detector import Baseline, BaselineMismatchError, BaselineSettings, Detector
from controller.detector.baseline import (
    MAD_TO_SD,
    MIN_CALIBRATION_VALUES,
    StreamingMedianMad,
    _CalibrationBuffer,
)
from controller.detector.config import DetectorConfig, SignatureFeature

NAMES = ("a", "b")


def calibrated(rows: np.ndarray, calibration_s: float | None = None, **settings: Any) -> Baseline:
    n = rows.shape[0]
    b = Baseline(NAMES, BaselineSettings(calibration_s=calibration_s or float(n), **settings))
    done = [b.add_calibration(row, 1.0) for row in rows]
    assert done[-1] and not any(done[:-1])
    return b


def test_median_and_scaled_mad_on_known_data() -> None:
    rng = np.random.default_rng(0)
    a = rng.permutation(np.arange(1.0, 101.0))  # median 50.5, MAD 25
    b = np.where(np.arange(100) % 4 == 0, np.nan, rng.normal(size=100))  # NaN = missing
    base = calibrated(np.column_stack([a, b]))
    assert base.ready and base.calibrated_s == 100.0
    assert base.location[0] == 50.5
    assert base.scale[0] == pytest.approx(MAD_TO_SD * 25.0, rel=1e-12)
    finite = b[np.isfinite(b)]
    med = np.median(finite)
    assert base.location[1] == pytest.approx(med, rel=1e-12)
    assert base.scale[1] == pytest.approx(MAD_TO_SD * np.median(np.abs(finite - med)), rel=1e-12)


def test_scale_matches_sd_of_normal_data_and_ignores_outliers() -> None:
    rng = np.random.default_rng(1)
    rows = rng.normal(5.0, 2.0, size=(4000, 2))
    rows[::50] = 1e6  # 2 % wild artifacts
    base = calibrated(rows, **{"max_calibration_windows": 4096})
    np.testing.assert_allclose(base.location, 5.0, atol=0.12)
    np.testing.assert_allclose(base.scale, 2.0, rtol=0.08)


def test_calibration_waits_for_enough_values_of_every_feature() -> None:
    b = Baseline(NAMES, BaselineSettings(calibration_s=5.0))
    rows = [np.array([1.0, np.nan])] * 30 + [np.array([1.0, 2.0])] * MIN_CALIBRATION_VALUES
    done = [b.add_calibration(r, 1.0) for r in rows]
    assert done.index(True) == len(rows) - 1
    with pytest.raises(ValueError, match="already calibrated"):
        b.add_calibration(rows[0], 1.0)


def test_not_ready_baseline_refuses_location_and_save(tmp_path: Path) -> None:
    b = Baseline(NAMES)
    assert not b.ready
    with pytest.raises(ValueError, match="not calibrated"):
        _ = b.location
    with pytest.raises(ValueError, match="not calibrated"):
        b.save(tmp_path / "x.json")


def test_calibration_buffer_is_bounded_and_keeps_a_uniform_subsample() -> None:
    buf = _CalibrationBuffer(1, capacity=64)
    for i in range(1000):
        buf.offer(np.array([float(i)]))
    rows = buf.rows[:, 0]
    assert rows.shape[0] <= 64
    stride = int(rows[1] - rows[0])
    assert stride == 16
    np.testing.assert_array_equal(rows, np.arange(0, 1000, stride, dtype=float))
    assert buf.finite_counts[0] == rows.shape[0]


def test_calibration_over_a_long_period_stays_within_the_cap() -> None:
    ramp = np.arange(10_000.0)
    base = calibrated(np.column_stack([ramp, -ramp]), max_calibration_windows=128)
    assert abs(base.location[0] - 4999.5) <= 64  # within one stride of the true median
    assert abs(base.location[1] + 4999.5) <= 64


def test_adaptation_tracks_a_new_distribution_with_the_configured_time_constant() -> None:
    rng = np.random.default_rng(2)
    base = calibrated(rng.normal(0.0, 1.0, size=(200, 2)), adaptation_tau_s=100.0)
    for x in rng.normal(3.0, 2.0, size=(20_000, 2)):  # 200 time constants at dt = 1 s
        base.adapt(x, 1.0)
    np.testing.assert_allclose(base.location, 3.0, atol=0.3)
    np.testing.assert_allclose(base.scale, 2.0, rtol=0.15)
    assert base.adapted_s == 20_000.0


def test_adaptation_has_bounded_influence_and_skips_missing_values() -> None:
    tracker = StreamingMedianMad(np.zeros(2), np.ones(2), floor_fraction=0.01)
    rate = 1e-3
    tracker.update(np.array([1e12, np.nan]), rate)
    assert tracker.location[0] == pytest.approx(math.sqrt(math.pi / 2) * rate)
    assert tracker.location[1] == 0.0 and tracker.scale[1] == 1.0
    # Whatever the data, the location moves at most 1.2533 * scale * rate per window.
    for _ in range(100):
        tracker.update(np.array([1e12, -1e12]), rate)
    assert abs(tracker.location[0]) < 101 * 1.2533 * rate * tracker.scale.max() + 1e-12


def test_zero_mad_can_grow() -> None:
    base = calibrated(np.ones((40, 2)), adaptation_tau_s=60.0)
    assert np.all(base.scale == 0.0)
    assert np.all(base.effective_scale() > 0.0)
    rng = np.random.default_rng(3)
    for x in rng.normal(1.0, 0.5, size=(5000, 2)):
        base.adapt(x, 1.0)
    assert np.all(base.scale > 0.2)


def test_save_load_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    base = calibrated(rng.normal(size=(300, 2)), adaptation_tau_s=600.0)
    base.adapt(np.array([0.3, -0.2]), 0.5)
    path = tmp_path / "baseline.json"
    base.save(path)
    data = json.loads(path.read_text())
    assert data["format"] == "neurostim.detector.baseline" and data["version"] == 1
    assert data["features"] == list(NAMES)
    loaded = Baseline.load(path)
    assert loaded.ready and loaded.feature_names == NAMES
    np.testing.assert_array_equal(loaded.location, base.location)
    np.testing.assert_array_equal(loaded.scale, base.scale)
    assert loaded.settings == base.settings
    assert (loaded.calibrated_s, loaded.adapted_s) == (base.calibrated_s, base.adapted_s)
    x = np.array([1.0, 2.0])
    loaded.adapt(x, 0.5)
    base.adapt(x, 0.5)
    np.testing.assert_array_equal(loaded.location, base.location)


def test_loading_a_baseline_with_other_features_is_a_clear_error(tmp_path: Path) -> None:
    config = DetectorConfig(
        features=[
            SignatureFeature(name="beta_rel_power.mean"),
            SignatureFeature(name="coherence.alpha.mean"),
        ],
        calibration_s=10.0,
    )
    b = Baseline(("beta_rel_power.mean", "theta_log_power.mean"), BaselineSettings(10.0))
    while not b.ready:
        b.add_calibration(np.array([0.2, 1.0]), 1.0)
    path = tmp_path / "other.json"
    b.save(path)
    with pytest.raises(BaselineMismatchError, match=r"missing \['coherence.alpha.mean'\]"):
        Detector(config, ["c0", "c1"], baseline=Baseline.load(path))
    same = Baseline(config.feature_names, BaselineSettings(10.0))
    Detector(config, ["c0", "c1"], baseline=same)  # matching names are accepted


def test_corrupt_or_foreign_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a baseline file"):
        Baseline.load(path)
    path.write_text(json.dumps({"format": "neurostim.detector.baseline", "version": 99}))
    with pytest.raises(ValueError, match="version 99"):
        Baseline.load(path)
