"""The detector's compiled kernels against its numpy formulation.

Element-wise updates must match bit for bit; the reductions (summary means, score) to
rounding; a whole Detector run must reach the same decisions either way.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from controller.detector import Detector, DetectorConfig, SignatureFeature, SummaryFeatures
from controller.detector.baseline import MAD_TO_SD, MIN_SCALE, StreamingMedianMad, floored_scale
from controller.detector.kernels import NUMBA_AVAILABLE, line_length_z
from controller.detector.score import AlphaPeakVariability, SignatureWeights, z_scores
from controller.detector.types import DetectorOutput
from controller.features import FeatureExtractor
from tests.test_detector_detector import make_frame

pytestmark = pytest.mark.skipif(not NUMBA_AVAILABLE, reason="numba not installed")


def _random_values(rng: np.random.Generator, n: int) -> np.ndarray:
    values = rng.normal(2.0, 3.0, n)
    values[rng.random(n) < 0.2] = np.nan
    values[rng.random(n) < 0.1] = 0.0
    return values


def test_median_mad_step_is_the_numpy_update_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    n = 64
    location = rng.normal(0.0, 2.0, n)
    scale = np.abs(rng.normal(1.0, 1.0, n))
    scale[:5] = 0.0  # zero MAD: the floor takes over
    fast = StreamingMedianMad(location, scale, 0.01)
    slow = StreamingMedianMad(location, scale, 0.01)
    for step in range(300):
        values = _random_values(rng, n)
        use = rng.random(n) < 0.8
        rate = 0.0 if step % 50 == 0 else float(rng.uniform(0.0, 0.3))
        fast.update(values, rate, use)
        slow.update_numpy(np.where(use, values, np.nan), rate)
        np.testing.assert_array_equal(fast.location, slow.location)
        np.testing.assert_array_equal(fast.scale, slow.scale)


def test_alpha_variability_step_is_the_numpy_update_bit_for_bit() -> None:
    rng = np.random.default_rng(1)
    n = 16
    fast, slow = AlphaPeakVariability(n, 10.0), AlphaPeakVariability(n, 10.0)
    for _ in range(200):
        peaks = rng.uniform(-1.0, 13.0, n)  # <= 0 means "no peak"
        peaks[rng.random(n) < 0.1] = np.nan
        good = rng.random(n) < 0.8
        dt_s = float(rng.choice([0.0, 0.5, 2.0]))
        fast.update(peaks, good, dt_s)
        slow.update_numpy(peaks, good, dt_s)
        for name in ("_mean", "_var", "_followed_s", "_started"):
            np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name), err_msg=name)
        for mask in (good, np.ones(n, bool), np.zeros(n, bool)):
            compiled, reference = fast.value_hz_compiled(mask), slow.value_hz(mask)
            assert compiled == pytest.approx(reference, rel=1e-12, nan_ok=True)


def test_line_length_z_matches_the_numpy_expression() -> None:
    rng = np.random.default_rng(2)
    n = 12
    location, scale = rng.uniform(50, 150, n), rng.uniform(0, 20, n)
    scale[0] = 0.0
    line_length = rng.uniform(0, 400, n)
    judged = rng.random(n) < 0.7
    z_out = np.empty(n)
    jumped = line_length_z(line_length, judged, location, scale, 0.01, MIN_SCALE, 3.0, z_out)
    z = (line_length - location) / floored_scale(scale, location, 0.01)
    np.testing.assert_array_equal(z_out[judged], z[judged])
    assert np.all(np.isnan(z_out[~judged]))
    assert jumped == int(np.count_nonzero(judged & (z > 3.0)))


ALL_KINDS = [
    "beta_rel_power.mean",
    "beta_power_uv2.mean",
    "theta_log_power.mean",
    "alpha_peak_hz.mean",
    "alpha_peak_hz.variability",
    "line_length_uv.mean",
    "coherence.alpha.mean",
    "wpli.beta.mean",
    "mean_connectivity.theta",
    "theta_alpha_ratio.mean",
]


@pytest.mark.parametrize(
    "good", [[True] * 4, [True, True, True, False], [False, True, False, False], [False] * 4]
)
def test_summary_values_match_the_numpy_getters(good: list[bool]) -> None:
    fast = SummaryFeatures(ALL_KINDS, 4, alpha_peak_variability_s=1.0, use_numba=True)
    slow = SummaryFeatures(ALL_KINDS, 4, alpha_peak_variability_s=1.0, use_numba=False)
    mask = np.asarray(good)
    for index in range(8):
        frame = make_frame(
            index,
            rel_beta=[0.1, 0.2, 0.3, 0.9],
            alpha_peak_hz=[9.0 + 0.1 * index, 0.0, 11.0 - 0.2 * index, 12.0],
            line_length_uv=[100.0, 120.0 + index, 80.0, 1e4],
            band_power_uv2=3.0 + index,
        )
        compiled = fast.values(frame, mask, 0.5, learn=True)
        reference = slow.values(frame, mask, 0.5, learn=True)
        np.testing.assert_allclose(compiled, reference, rtol=1e-12, equal_nan=True)


def test_compiled_score_matches_z_scores_and_weights() -> None:
    rng = np.random.default_rng(3)
    features = [
        SignatureFeature(name=name, weight=float(w), direction=d)
        for name, w, d in zip(
            ALL_KINDS, rng.uniform(0.1, 2.0, 10), ["up", "down", "both"] * 4, strict=False
        )
    ]
    weights = SignatureWeights(features)
    for _ in range(100):
        values = _random_values(rng, 10) * 10.0
        location, scale = rng.normal(0, 5, 10), np.abs(rng.normal(0, 1, 10))
        z_out = np.empty(10)
        score = weights.score_compiled(values, location, scale, 0.01, 4.0, z_out)
        z = z_scores(values, location, floored_scale(scale, location, 0.01), 4.0)
        np.testing.assert_array_equal(z_out, z)
        reference = weights.score(z)
        if reference is None:
            assert score is None
        else:
            assert score == pytest.approx(reference, rel=1e-12, abs=1e-12)


#: Every compiled detector kernel, by the module that calls it.
DETECTOR_KERNELS = {
    "controller.detector.baseline": ("median_mad_step",),
    "controller.detector.detector": ("line_length_z", "steady_window"),
    "controller.detector.score": (
        "alpha_variability_step",
        "alpha_variability_value",
        "signature_score",
        "summary_values",
    ),
}


def _count_kernel_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Wrap every compiled detector kernel; the dict counts calls by kernel name."""
    import importlib

    calls: dict[str, int] = {}
    for module_name, names in DETECTOR_KERNELS.items():
        module = importlib.import_module(module_name)
        for name in names:
            kernel = getattr(module, name)

            def counted(*args, _kernel=kernel, _name=name):  # type: ignore[no-untyped-def]
                calls[_name] = calls.get(_name, 0) + 1
                return _kernel(*args)

            monkeypatch.setattr(module, name, counted)
    return calls


def test_detector_decisions_do_not_depend_on_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real extractor -> both detector paths: same outputs (scores to rounding).

    ``use_numba=False`` must be numpy in every part of the detector (baseline tracker,
    artifact gate, alpha variability, summary, score): the numpy run calls no kernel.
    """
    fs, n_ch = 250.0, 6
    rng = np.random.default_rng(4)
    n = int(240 * fs)
    t = np.arange(n) / fs
    data = 10.0 * rng.standard_normal((n_ch, n)) + 8.0 * np.sin(2 * np.pi * 10.0 * t)
    shift = (t > 150) & (t < 200)
    data += np.where(shift, 12.0 * np.sin(2 * np.pi * 20.0 * t + rng.uniform(0, 1, (n_ch, 1))), 0)
    data[2, int(100 * fs) : int(101 * fs)] += 500.0 * rng.standard_normal(int(fs))  # artifact
    data[4, int(120 * fs) : int(140 * fs)] = 0.0  # a channel goes flat
    config = DetectorConfig(
        features=[SignatureFeature(name=name) for name in ALL_KINDS],
        alpha_peak_variability_s=10.0,
        calibration_s=40.0,
        baseline_adaptation_tau_s=600.0,
        score_smoothing_s=5.0,
        onset_s=5.0,
        termination_s=5.0,
    )
    calls = _count_kernel_calls(monkeypatch)
    names = FeatureExtractor(n_ch, fs).channel_names

    def run(detector: Detector) -> list[DetectorOutput]:
        extractor = FeatureExtractor(n_ch, fs)
        return [
            detector.update(frame)
            for start in range(0, n, 125)
            for frame in extractor.push(data[:, start : start + 125])
        ]

    slow = Detector(config, names, stim_channels=[1], use_numba=False)
    slow_outputs = run(slow)
    assert calls == {}, f"the numpy detector called compiled kernels: {calls}"
    separate = Detector(config, names, stim_channels=[1], fuse_steady_state=False)
    separate_outputs = run(separate)
    every_kernel = {k for names in DETECTOR_KERNELS.values() for k in names}
    assert set(calls) == every_kernel - {"steady_window"}
    calls.clear()
    fast = Detector(config, names, stim_channels=[1], use_numba=True)
    fast_outputs = run(fast)
    assert "steady_window" in calls and set(calls) <= every_kernel
    # The fused steady-state call is the separate kernels in one: the same outputs exactly.
    assert fast_outputs == separate_outputs
    assert len(fast_outputs) == len(slow_outputs)
    seen: set[tuple[str, bool]] = set()
    for a, b in zip(fast_outputs, slow_outputs, strict=True):
        assert (a.t_s, a.state, a.changed, a.blanked, a.good_channels) == (
            b.t_s,
            b.state,
            b.changed,
            b.blanked,
            b.good_channels,
        )
        assert (a.score is None) == (b.score is None)
        if a.score is not None and b.score is not None:
            assert a.score == pytest.approx(b.score, rel=1e-9, abs=1e-12)
        assert a.z_scores.keys() == b.z_scores.keys()
        for key, value in a.z_scores.items():
            assert value == pytest.approx(b.z_scores[key], rel=1e-9, abs=1e-9)
        seen.add((a.state.value, a.blanked or a.good_channels < n_ch))
        if a.blanked:
            assert a.reason.split(" (max")[0] == b.reason.split(" (max")[0]
    # calibration, scoring, an artifact and a bad channel while calibrated, a prodrome
    assert {("CALIBRATING", False), ("NORMAL", False), ("NORMAL", True)} <= seen
    assert ("PRODROME", False) in seen
    assert fast.baseline.ready and slow.baseline.ready
    np.testing.assert_allclose(fast.baseline.location, slow.baseline.location, rtol=1e-9)
    np.testing.assert_allclose(
        fast.baseline.scale, slow.baseline.scale, rtol=1e-9, atol=1e-12 * MAD_TO_SD
    )
    assert not math.isnan(float(fast.baseline.location[0]))


@pytest.mark.parametrize(
    ("stim_channels", "change_at_s", "stim_from_110_s"),
    [((4,), None, None), ((1,), 90.0, None), ((0, 4), 130.0, None), ((), None, (4,))],
    ids=["stim-channel-goes-flat", "blanking-after-a-change", "both", "stim-channel-set-later"],
)
def test_fused_steady_window_equals_the_separate_kernels_exactly(
    stim_channels: tuple[int, ...],
    change_at_s: float | None,
    stim_from_110_s: tuple[int, ...] | None,
) -> None:
    """Blanking by a bad stimulation channel (also one named after the fused call began),
    by a change, by a line-length jump and too few good channels all pass through the
    fused call: every output field is identical."""
    fs, n_ch = 250.0, 6
    rng = np.random.default_rng(9)
    n = int(200 * fs)
    t = np.arange(n) / fs
    data = 10.0 * rng.standard_normal((n_ch, n)) + 8.0 * np.sin(2 * np.pi * 10.0 * t)
    data[2, int(100 * fs) : int(101 * fs)] += 500.0 * rng.standard_normal(int(fs))
    data[4, int(120 * fs) : int(140 * fs)] = 0.0
    data[:4, int(160 * fs) : int(165 * fs)] = 0.0  # too few good channels for a while
    config = DetectorConfig(
        features=[SignatureFeature(name=name) for name in ALL_KINDS],
        alpha_peak_variability_s=10.0,
        calibration_s=40.0,
        score_smoothing_s=5.0,
        onset_s=2.0,
        termination_s=2.0,
        min_good_channels=3,
    )
    names = FeatureExtractor(n_ch, fs).channel_names

    def run(detector: Detector) -> list[DetectorOutput]:
        extractor = FeatureExtractor(n_ch, fs)
        outputs = []
        for start in range(0, n, 125):
            for frame in extractor.push(data[:, start : start + 125]):
                if change_at_s is not None and frame.t_end_s == change_at_s:
                    detector.blank_after_change(frame.t_end_s)
                if stim_from_110_s is not None and frame.t_end_s == 110.0:
                    detector.stim_channels = stim_from_110_s
                outputs.append(detector.update(frame))
        return outputs

    fused = run(Detector(config, names, stim_channels=stim_channels))
    separate = run(Detector(config, names, stim_channels=stim_channels, fuse_steady_state=False))
    assert fused == separate
    reasons = " ".join(o.reason for o in fused)
    assert "line length jump" in reasons and "good channels <" in reasons
    if 4 in stim_channels or stim_from_110_s:
        assert "flagged bad" in reasons
    if change_at_s is not None:
        assert "stimulation change" in reasons
