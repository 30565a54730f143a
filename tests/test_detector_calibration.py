"""Per-patient calibration on synthetic feature streams with a known planted signature."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.config import ConfigError, load_config
from controller.detector import Baseline, Detector, DetectorConfig, DetectorState
from controller.detector.calibration import (
    CalibrationError,
    CalibrationSettings,
    calibrate,
    excluded_mask,
    replay_alarms,
    replay_alarms_reference,
    score_alarms,
    signed_score,
    smoothed_scores,
)
from controller.detector.feature_log import FeatureLog
from controller.detector.signature import PatientSignature, calibrated_detector_config
from firmware_bridge.units import SECONDS_PER_DAY as DAY_S
from insilico.scoring import score_prediction

NAMES = (
    "beta_rel_power.mean",
    "delta_rel_power.mean",
    "theta_log_power.mean",
    "alpha_log_power.mean",
    "coherence.alpha.mean",
    "line_length_uv.mean",
)
LOCATION = np.array([0.2, 0.3, 1.0, 2.0, 0.5, 30.0])
SD = np.array([0.02, 0.03, 0.1, 0.1, 0.05, 3.0])
#: The planted signature: beta up 1.5 SD, delta down 1.0 SD in the 8 h before each onset.
PLANTED = {0: 1.5, 1: -1.0}
PRODROME_S = 8 * 3600.0


def planted_log(
    seed: int, days: float = 24.0, block_s: float = 300.0, n_attacks: int = 6
) -> tuple[FeatureLog, list[float]]:
    """Block means (noise SD 0.3) and sampled single windows (noise SD 1), in SD units."""
    rng = np.random.default_rng(seed)
    onsets = list(np.cumsum(rng.uniform(2.5, 3.5, n_attacks)) * DAY_S)
    duration_s = max(days * DAY_S, onsets[-1] + DAY_S)

    def shift(t: np.ndarray) -> np.ndarray:
        x = np.zeros((t.size, len(NAMES)))
        for onset in onsets:
            inside = (t >= onset - PRODROME_S) & (t < onset)
            for column, size in PLANTED.items():
                x[inside, column] += size
        return x

    n_blocks = int(duration_s // block_s)
    t_blocks = (np.arange(n_blocks) + 1.0) * block_s
    blocks = LOCATION + SD * (shift(t_blocks) + 0.3 * rng.standard_normal((n_blocks, len(NAMES))))
    t_samples = np.arange(10.0, duration_s, 10.0)
    samples = LOCATION + SD * (shift(t_samples) + rng.standard_normal((t_samples.size, len(NAMES))))
    log = FeatureLog(
        NAMES, block_s, t_blocks, blocks, np.full(n_blocks, block_s), t_samples, samples, duration_s
    )
    return log, onsets


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_calibration_recovers_planted_signs_and_weights(seed: int) -> None:
    log, onsets = planted_log(seed)
    signature = calibrate(log, onsets, DetectorConfig(), CalibrationSettings(max_features=2))
    by_name = {f.name: f for f in signature.features}
    assert set(by_name) == {"beta_rel_power.mean", "delta_rel_power.mean"}
    assert by_name["beta_rel_power.mean"].direction == "up"
    assert by_name["delta_rel_power.mean"].direction == "down"
    # weight = shift / variance: equal noise, so the ratio of the planted shifts (1.0 / 1.5)
    assert by_name["beta_rel_power.mean"].weight == pytest.approx(1.0)
    assert by_name["delta_rel_power.mean"].weight == pytest.approx(1.0 / 1.5, rel=0.15)
    # the noise features show no consistent pre-attack shift
    for name in NAMES[2:]:
        assert abs(signature.evidence[name]) < abs(signature.evidence["delta_rel_power.mean"]) / 5
    assert signature.run_in.sensitivity == 1.0


@pytest.mark.parametrize("target", [0.1, 0.2, 0.3])
def test_threshold_meets_the_time_in_warning_on_the_run_in(target: float) -> None:
    log, onsets = planted_log(6)
    # A weak signature, so the warning budget binds: half-size shifts.
    blocks = LOCATION + (log.block_mean - LOCATION) * 0.5
    log = FeatureLog(
        NAMES,
        log.block_s,
        log.block_end_s,
        blocks,
        log.block_usable_s,
        log.sample_t_s,
        log.sample_values,
        log.duration_s,
    )
    settings_ = CalibrationSettings(target_time_in_warning=target, occurrence_periods_h=(24.0,))
    signature = calibrate(log, onsets, DetectorConfig(), settings_)
    assert signature.run_in.time_in_warning <= target
    # Replaying the saved signature's score reproduces the fit's alarms and time in warning.
    config = DetectorConfig()
    index = [NAMES.index(f.name) for f in signature.features]
    location = signature.baseline.location
    scale = signature.baseline.effective_scale()
    z = np.clip((log.block_mean[:, index] - location) / scale, -10, 10)
    signs = np.array([1.0 if f.direction == "up" else -1.0 for f in signature.features])
    weights = np.array([f.weight for f in signature.features])
    smoothed = smoothed_scores(
        signed_score(z, signs, weights), config.score_smoothing_s, log.block_s
    )
    alarms = replay_alarms(
        log.block_end_s,
        smoothed,
        signature.upper_threshold,
        signature.lower_threshold,
        config.onset_s,
        config.termination_s,
        log.block_s,
    )
    again = score_alarms(alarms, onsets, log.duration_s, occurrence_period_h=24.0, horizon_min=30.0)
    assert again.time_in_warning == pytest.approx(signature.run_in.time_in_warning)
    assert again.predicted == signature.run_in.predicted


def test_sensitivity_grows_with_the_warning_budget() -> None:
    log, onsets = planted_log(7)
    blocks = LOCATION + (log.block_mean - LOCATION) * 0.4
    log = FeatureLog(
        NAMES,
        log.block_s,
        log.block_end_s,
        blocks,
        log.block_usable_s,
        log.sample_t_s,
        log.sample_values,
        log.duration_s,
    )
    found = [
        calibrate(
            log,
            onsets,
            DetectorConfig(),
            CalibrationSettings(target_time_in_warning=t, occurrence_periods_h=(24.0,)),
        ).run_in.predicted
        for t in (0.05, 0.15, 0.5)
    ]
    assert found == sorted(found)


def test_baseline_never_learns_from_the_48_h_before_an_attack() -> None:
    log, onsets = planted_log(8)
    reference = calibrate(log, onsets, DetectorConfig(), CalibrationSettings(max_features=2))
    # Anything at all in [onset - 48 h, onset + 24 h) must not change the baseline.
    hidden = excluded_mask(log.sample_t_s, onsets, 48 * 3600.0, 24 * 3600.0)
    assert 0 < hidden.mean() < 1
    wild = log.sample_values.copy()
    wild[hidden] = 1e3
    changed = FeatureLog(
        NAMES,
        log.block_s,
        log.block_end_s,
        log.block_mean,
        log.block_usable_s,
        log.sample_t_s,
        wild,
        log.duration_s,
    )
    again = calibrate(changed, onsets, DetectorConfig(), CalibrationSettings(max_features=2))
    np.testing.assert_array_equal(again.baseline.location, reference.baseline.location)
    np.testing.assert_array_equal(again.baseline.scale, reference.baseline.scale)
    # ... and the baseline is the interictal one: the planted beta shift is not in it.
    beta = list(again.baseline.feature_names).index("beta_rel_power.mean")
    assert again.baseline.location[beta] == pytest.approx(LOCATION[0], abs=0.1 * SD[0])


def test_too_few_attacks_or_interictal_time_are_calibration_errors() -> None:
    log, onsets = planted_log(9)
    with pytest.raises(CalibrationError, match="4 attack onset"):
        calibrate(log, onsets[:4], DetectorConfig())
    with pytest.raises(CalibrationError, match="sampled windows lie outside"):
        calibrate(
            log,
            onsets,
            DetectorConfig(),
            CalibrationSettings(
                baseline_exclusion_before_h=240.0, baseline_exclusion_after_h=720.0
            ),
        )
    with pytest.raises(ValueError, match="target_time_in_warning"):
        CalibrationSettings(target_time_in_warning=1.5)


def test_signature_file_round_trip_and_detector_loads_it(tmp_path: Path) -> None:
    log, onsets = planted_log(10)
    signature = calibrate(log, onsets, DetectorConfig())
    path = tmp_path / "patient.json"
    signature.save(path)
    loaded = PatientSignature.load(path)
    assert loaded.features == signature.features
    assert loaded.upper_threshold == signature.upper_threshold
    assert loaded.lower_threshold == signature.lower_threshold
    assert loaded.occurrence_period_h == signature.occurrence_period_h
    assert loaded.run_in == signature.run_in
    np.testing.assert_array_equal(loaded.baseline.location, signature.baseline.location)
    np.testing.assert_array_equal(loaded.baseline.scale, signature.baseline.scale)
    assert loaded.to_dict() == signature.to_dict()

    config = DetectorConfig(calibration_file=str(path), onset_s=120.0)
    applied, baseline = calibrated_detector_config(config)
    assert applied.feature_names == tuple(f.name for f in signature.features)
    assert (applied.upper_threshold, applied.lower_threshold) == (
        signature.upper_threshold,
        signature.lower_threshold,
    )
    assert applied.onset_s == 120.0 and applied.calibration_file is None
    assert isinstance(baseline, Baseline) and baseline.ready
    detector = Detector(config, ["c0", "c1", "c2", "c3"])
    assert detector.state is DetectorState.NORMAL  # calibrated: no CALIBRATING phase
    assert detector.thresholds == (signature.upper_threshold, signature.lower_threshold)
    assert detector.config.feature_names == applied.feature_names


def test_bad_calibration_files_are_clear_config_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ValueError, match="cannot read calibration file"):
        DetectorConfig(calibration_file=str(missing))
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"format": "something else"}')
    toml = tmp_path / "c.toml"
    toml.write_text(f'[detector]\ncalibration_file = "{foreign}"\n')
    with pytest.raises(ConfigError, match="not a calibration file"):
        load_config(toml)
    broken = tmp_path / "broken.json"
    log, onsets = planted_log(11)
    data = calibrate(log, onsets, DetectorConfig()).to_dict()
    del data["upper_threshold"]
    broken.write_text(__import__("json").dumps(data))
    with pytest.raises(ValueError, match="missing field 'upper_threshold'"):
        PatientSignature.load(broken)


# --- the run-in's scoring and replay agree with their references --------------------------

times = st.lists(st.floats(0.0, 20 * DAY_S, allow_nan=False), max_size=12)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(alarms=times, onsets=times, period_h=st.sampled_from([6.0, 12.0, 48.0]))
def test_score_alarms_equals_the_insilico_scoring(
    alarms: list[float], onsets: list[float], period_h: float
) -> None:
    duration_s = 20 * DAY_S
    ours = score_alarms(alarms, onsets, duration_s, occurrence_period_h=period_h, horizon_min=30.0)
    theirs = score_prediction(
        alarms,
        [(o, o + 3600.0) for o in onsets],
        duration_s,
        max_lead_h=period_h,
        min_lead_min=30.0,
    )
    assert ours.attacks == theirs.attacks and ours.predicted == theirs.predicted
    assert ours.time_in_warning == pytest.approx(theirs.time_in_warning, abs=1e-12)
    assert ours.p_value == (pytest.approx(theirs.p_value) if theirs.p_value is not None else None)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(
    scores=st.lists(
        st.one_of(st.floats(-3.0, 3.0, allow_nan=False), st.just(float("nan"))),
        min_size=1,
        max_size=200,
    ),
    onset_blocks=st.integers(0, 5),
    termination_blocks=st.integers(0, 5),
)
def test_replay_equals_the_state_machine(
    scores: list[float], onset_blocks: int, termination_blocks: int
) -> None:
    t = (np.arange(len(scores)) + 1.0) * 60.0
    s = np.array(scores)
    args = (t, s, 1.0, 0.2, onset_blocks * 60.0, termination_blocks * 60.0, 60.0)
    assert replay_alarms(*args) == replay_alarms_reference(*args)
