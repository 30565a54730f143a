"""The Detector on hand-built FeatureFrames: calibration, gating, blanking, adaptation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from controller.detector import Baseline, Detector, DetectorConfig, DetectorState, SignatureFeature
from controller.detector.detector import ARTIFACT_WARMUP_WINDOWS, _credited_s
from controller.features import FeatureFrame, SignalQuality

BANDS = ("delta", "theta", "alpha", "beta", "gamma")
HOP_S = 0.5
WINDOW_S = 2.0
CYCLE = (0.19, 0.20, 0.21)  # calibration values of relative beta: median 0.20, MAD 0.01
SCALE = 1.4826 * 0.01


def make_frame(
    index: int,
    n_ch: int = 4,
    *,
    rel_beta: float | Sequence[float] = 0.2,
    good: Sequence[bool] | None = None,
    line_length_uv: float | Sequence[float] | np.ndarray = 100.0,
    alpha_peak_hz: float | Sequence[float] = 10.0,
    band_power_uv2: float = 10.0,
    coherence: float = 0.3,
) -> FeatureFrame:
    """A frame of window ``index`` (hop 0.5 s, window 2 s) with the given summary values."""
    t_end = WINDOW_S + index * HOP_S
    good_mask = np.ones(n_ch, bool) if good is None else np.asarray(good, bool)
    rel = np.full((n_ch, len(BANDS)), 0.2)
    rel[:, 3] = rel_beta
    zeros = np.zeros(n_ch)
    n_bands = len(BANDS)
    conn = np.full((n_bands, n_ch, n_ch), coherence)
    for b in range(n_bands):
        np.fill_diagonal(conn[b], 0.0)
    return FeatureFrame(
        t_start_s=t_end - WINDOW_S,
        t_end_s=t_end,
        band_names=BANDS,
        channel_names=tuple(f"c{i}" for i in range(n_ch)),
        band_power_uv2=np.full((n_ch, n_bands), band_power_uv2),
        relative_power=rel,
        theta_alpha_ratio=np.ones(n_ch),
        alpha_peak_hz=np.broadcast_to(np.asarray(alpha_peak_hz, float), (n_ch,)).copy(),
        line_length_uv=np.broadcast_to(np.asarray(line_length_uv, float), (n_ch,)).copy(),
        coherence=conn,
        phase_sync=conn.copy(),
        phase_measure="wpli",
        summary_measure="coherence",
        mean_coherence=np.full(n_bands, coherence),
        mean_phase_sync=np.full(n_bands, coherence),
        mean_connectivity=np.full(n_bands, coherence),
        node_strength=np.full((n_bands, n_ch), coherence),
        quality=SignalQuality(
            flatline=~good_mask,
            clipped=np.zeros(n_ch, bool),
            line_noise_ratio=zeros,
            invalid=np.zeros(n_ch, bool),
            good=good_mask,
            std_uv=np.ones(n_ch),
            clipped_fraction=zeros,
        ),
    )


def config(**overrides: object) -> DetectorConfig:
    base: dict[str, object] = {
        "features": [SignatureFeature(name="beta_rel_power.mean", direction="up")],
        "calibration_s": 10.0,
        "score_smoothing_s": 0.0,
        "onset_s": 2.0,
        "termination_s": 3.0,
        "upper_threshold": 1.0,
        "lower_threshold": 0.5,
        "blanking_after_change_s": 15.0,
    }
    base.update(overrides)
    return DetectorConfig.model_validate(base)


def calibrate(det: Detector, start: int = 0) -> int:
    """Feed the calibration cycle until the baseline is ready; return the next window index."""
    i = start
    while not det.baseline.ready:
        out = det.update(make_frame(i, rel_beta=CYCLE[i % 3]))
        assert out.state is DetectorState.CALIBRATING and out.score is None
        i += 1
    return i


def test_calibrating_first_for_exactly_the_calibration_time_then_scored() -> None:
    det = Detector(config(), ["c0", "c1", "c2", "c3"])
    assert det.state is DetectorState.CALIBRATING
    outputs = [det.update(make_frame(i, rel_beta=CYCLE[i % 3])) for i in range(21)]
    # The first window is credited 0 s, each later one the 0.5 s hop: 10 s needs 21 windows.
    assert [o.state for o in outputs] == [DetectorState.CALIBRATING] * 21
    assert "calibrated over 10.0 s" in outputs[20].reason
    assert det.baseline.location[0] == pytest.approx(0.20, abs=1e-12)
    assert det.baseline.scale[0] == pytest.approx(SCALE, abs=1e-12)
    out = det.update(make_frame(21, rel_beta=CYCLE[0]))
    assert out.state is DetectorState.NORMAL and out.changed
    location, scale = det.baseline.location[0], det.baseline.scale[0]  # adapted a little
    x = 0.2 + 0.6 * SCALE
    out = det.update(make_frame(22, rel_beta=x))
    expected = (x - location) / scale
    assert expected == pytest.approx(0.6, abs=1e-3)
    assert out.score == pytest.approx(expected, rel=1e-12)  # one feature, no smoothing: z
    assert out.z_scores == {"beta_rel_power.mean": pytest.approx(expected, rel=1e-12)}


def test_prodrome_onset_and_termination_through_the_detector() -> None:
    det = Detector(config(), ["c0", "c1", "c2", "c3"])
    i = calibrate(det)
    states = []
    for k in range(30):
        states.append(det.update(make_frame(i + k, rel_beta=0.2 + 3 * SCALE)).state)
    assert states[0] is DetectorState.SUSPECT
    assert states.index(DetectorState.PRODROME) == 4  # onset 2 s = 4 hops
    i += 30
    states = [det.update(make_frame(i + k, rel_beta=0.2)).state for k in range(10)]
    assert states.index(DetectorState.NORMAL) == 6  # termination 3 s = 6 hops after the first


def test_unknown_below_min_good_channels_and_recovery() -> None:
    det = Detector(config(), ["c0", "c1", "c2", "c3"])
    assert det.min_good_channels == 2
    i = calibrate(det)
    high = 0.2 + 3 * SCALE
    assert det.update(make_frame(i, rel_beta=high)).state is DetectorState.SUSPECT
    out = det.update(make_frame(i + 1, rel_beta=high, good=[True, False, False, False]))
    assert out.state is DetectorState.UNKNOWN and out.changed and out.score is None
    assert out.good_channels == 1 and "1 good channels < 2" in out.reason
    for k in range(2, 20):  # a long outage does not advance the onset timer
        out = det.update(make_frame(i + k, rel_beta=high, good=[True, False, False, False]))
        assert out.state is DetectorState.UNKNOWN
    states = [
        det.update(make_frame(i + 20 + k, rel_beta=high, good=[True, True, False, False])).state
        for k in range(4)
    ]
    assert states == [DetectorState.SUSPECT] * 3 + [DetectorState.PRODROME]


def test_unknown_during_calibration_does_not_count_towards_it() -> None:
    det = Detector(config(), ["c0", "c1", "c2", "c3"])
    outs = [
        det.update(make_frame(i, rel_beta=0.2, good=[True, False, False, False])) for i in range(40)
    ]
    assert all(o.state is DetectorState.UNKNOWN for o in outs)
    assert det.baseline.calibrated_s == 0.0


def test_only_good_channels_enter_the_summaries() -> None:
    det = Detector(config(), ["c0", "c1", "c2", "c3"])
    i = calibrate(det)
    # A wild value on a bad channel is ignored (3 good channels remain).
    out = det.update(make_frame(i, rel_beta=[0.2, 0.2, 0.2, 0.9], good=[True, True, True, False]))
    assert out.score == pytest.approx(0.0)


def test_blanking_after_a_change_pauses_calibration_and_timers() -> None:
    det = Detector(config(), ["c0", "c1", "c2", "c3"])
    det.blank_until(5.0)  # windows starting before 5 s: start = 0.5 i, indices 0..9
    outs = [det.update(make_frame(i, rel_beta=CYCLE[i % 3])) for i in range(40)]
    blanked = [i for i, o in enumerate(outs) if o.blanked]
    assert blanked == list(range(10))  # start = 0.5 i < 5.0
    first_scored = next(i for i, o in enumerate(outs) if o.state is not DetectorState.CALIBRATING)
    assert first_scored == 10 + 20  # 20 usable windows of 0.5 s each (indices 10..29)
    i = 40
    high = 0.2 + 3 * SCALE
    assert det.update(make_frame(i, rel_beta=high)).state is DetectorState.SUSPECT
    det.blank_after_change(t_change_s=make_frame(i).t_end_s)  # 15 s of blanking
    assert det.blanked_until_s == pytest.approx(make_frame(i).t_end_s + 15.0)
    states = []
    for k in range(1, 60):
        out = det.update(make_frame(i + k, rel_beta=high))
        states.append((out.state, out.blanked))
    n_blanked = sum(b for _, b in states)
    assert n_blanked == 33  # start = 20 + 0.5 k < t_change + 15 s = 37 s: k = 1..33
    assert all(s is DetectorState.SUSPECT for s, b in states if b)
    first_prodrome = next(k for k, (s, _) in enumerate(states) if s is DetectorState.PRODROME)
    assert first_prodrome == n_blanked + 4 - 1


def test_stimulation_channel_flagged_bad_blanks_the_window() -> None:
    det = Detector(config(), ["c0", "c1", "c2", "c3"], stim_channels=[3])
    i = calibrate(det)
    out = det.update(make_frame(i, good=[True, True, True, False]))
    assert out.blanked and "stimulation channel(s) ['c3'] flagged bad" in out.reason
    det.stim_channels = [0]
    assert det.stim_channels == (0,)
    out = det.update(make_frame(i + 1, good=[True, True, True, False]))
    assert not out.blanked
    with pytest.raises(ValueError, match="out of range"):
        det.stim_channels = [4]


def test_line_length_jump_blanks_and_a_lasting_change_is_absorbed() -> None:
    rng = np.random.default_rng(0)
    det = Detector(config(calibration_s=60.0), ["c0", "c1", "c2", "c3"])

    def ll() -> np.ndarray:
        return 100.0 + rng.normal(0.0, 2.0, 4)

    i = 0
    for _ in range(ARTIFACT_WARMUP_WINDOWS + 10):
        assert not det.update(make_frame(i, rel_beta=CYCLE[i % 3], line_length_uv=ll())).blanked
        i += 1
    calibrated_before = det.baseline.calibrated_s
    jump = ll()
    jump[2] = 200.0  # ~50 robust z
    out = det.update(make_frame(i, rel_beta=0.2, line_length_uv=jump))
    assert out.blanked and "line length jump" in out.reason and "'c2'" in out.reason
    assert det.baseline.calibrated_s == calibrated_before  # artifacts never calibrate
    i += 1
    assert not det.update(make_frame(i, rel_beta=0.2, line_length_uv=ll())).blanked
    # A lasting doubling of line length is blanked at first, then absorbed by the reference.
    blanked = []
    for _ in range(4000):
        i += 1
        blanked.append(
            det.update(make_frame(i, rel_beta=CYCLE[i % 3], line_length_uv=2 * ll())).blanked
        )
    assert blanked[0]
    assert not any(blanked[-100:])
    assert 100 < blanked.index(False) < 1000  # ~1.5 reference time constants (120 s)


def test_baseline_adapts_in_normal_only() -> None:
    det = Detector(config(baseline_adaptation_tau_s=60.0), ["c0", "c1", "c2", "c3"])
    i = calibrate(det)
    before = det.baseline.location
    for k in range(10):  # NORMAL, values slightly high but below the lower threshold
        assert det.update(make_frame(i + k, rel_beta=0.2 + 0.3 * SCALE)).state is (
            DetectorState.NORMAL
        )
    moved, moved_scale = det.baseline.location, det.baseline.scale
    assert moved[0] > before[0]
    i += 10
    for k in range(40):  # SUSPECT then PRODROME: the baseline is frozen
        out = det.update(make_frame(i + k, rel_beta=0.2 + 5 * SCALE))
        assert out.state in (DetectorState.SUSPECT, DetectorState.PRODROME)
        np.testing.assert_array_equal(det.baseline.location, moved)
        np.testing.assert_array_equal(det.baseline.scale, moved_scale)
    assert out.state is DetectorState.PRODROME


def test_baseline_frozen_in_normal_while_score_above_lower() -> None:
    """Between the thresholds the state stays NORMAL, but the baseline must not learn it."""
    det = Detector(
        config(baseline_adaptation_tau_s=60.0, score_smoothing_s=0.0), ["c0", "c1", "c2", "c3"]
    )
    i = calibrate(det)
    before, before_scale = det.baseline.location, det.baseline.scale
    for k in range(20):  # z = 0.8: above lower (0.5), below upper (1.0)
        out = det.update(make_frame(i + k, rel_beta=0.2 + 0.8 * SCALE))
        assert out.state is DetectorState.NORMAL and out.score == pytest.approx(0.8, rel=1e-6)
        np.testing.assert_array_equal(det.baseline.location, before)
        np.testing.assert_array_equal(det.baseline.scale, before_scale)
    i += 20
    det.update(make_frame(i, rel_beta=0.2 + 0.3 * SCALE))  # back below lower: adapts again
    assert det.baseline.location[0] > before[0]


def test_loaded_baseline_starts_in_normal(tmp_path: Path) -> None:
    det = Detector(config(), ["c0", "c1", "c2", "c3"])
    calibrate(det)
    path = tmp_path / "b.json"
    det.baseline.save(path)
    det2 = Detector(config(), ["c0", "c1", "c2", "c3"], baseline=Baseline.load(path))
    assert det2.state is DetectorState.NORMAL
    out = det2.update(make_frame(0, rel_beta=0.2))
    assert out.state is DetectorState.NORMAL and out.score == pytest.approx(0.0)
    assert det2.thresholds == (1.0, 0.5)


def test_unknown_band_and_wrong_channel_count_are_clear_errors() -> None:
    det = Detector(
        config(features=[SignatureFeature(name="sigma_rel_power.mean")]), ["c0", "c1", "c2", "c3"]
    )
    with pytest.raises(ValueError, match=r"'sigma_rel_power\.mean': band 'sigma'"):
        det.update(make_frame(0))
    with pytest.raises(ValueError, match="frame has 3 channels"):
        Detector(config(), ["c0", "c1", "c2", "c3"]).update(make_frame(0, n_ch=3))
    with pytest.raises(ValueError, match="min_good_channels=5 exceeds"):
        Detector(config(min_good_channels=5), ["c0", "c1", "c2", "c3"])


def test_credited_time_is_min_of_the_clamped_gap_and_window_bit_for_bit() -> None:
    """_credited_s replaces min(max(gap, 0), max(window, 0)): the same float, NaN and the
    sign of zero included."""
    edges = [0.0, -0.0, 0.5, -0.5, 2.0, 1e-300, math.inf, -math.inf, math.nan]
    for gap_s in edges:
        for window_s in edges:
            expected = min(max(gap_s, 0.0), max(window_s, 0.0))
            assert repr(_credited_s(gap_s, window_s)) == repr(expected), (gap_s, window_s)
