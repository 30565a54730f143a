"""End to end: synthetic multichannel EEG -> the real FeatureExtractor -> the Detector.

After calibration a shared beta-band source is switched on (relative beta up, relative delta
down, beta coherence up: the signature's directions) and later off again.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt

from controller.detector import Detector, DetectorConfig, DetectorOutput, DetectorState
from controller.detector.config import SignatureFeature
from controller.features import FeatureExtractor

FS_HZ = 250.0
N_CH = 8
SHIFT_ON_S, SHIFT_OFF_S, END_S = 50.0, 110.0, 180.0
CHUNK = 25  # 100 ms blocks, as SAMPLES frames arrive


def shared_band_noise(rng: np.random.Generator, lo_hz: float, hi_hz: float, n: int) -> np.ndarray:
    sos = butter(4, [lo_hz, hi_hz], btype="bandpass", fs=FS_HZ, output="sos")
    x = sosfiltfilt(sos, rng.standard_normal(n))
    return x / x.std()


def synthetic_eeg(seed: int, beta_uv: float) -> np.ndarray:
    """(channels, samples) µV: white noise + shared alpha; shared beta between the shift times."""
    rng = np.random.default_rng(seed)
    n = int(END_S * FS_HZ)
    t = np.arange(n) / FS_HZ
    data = 10.0 * rng.standard_normal((N_CH, n))
    data += 8.0 * shared_band_noise(rng, 8.0, 12.0, n)
    shift = (t >= SHIFT_ON_S) & (t < SHIFT_OFF_S)
    data += np.where(shift, beta_uv * shared_band_noise(rng, 15.0, 25.0, n), 0.0)
    return data


def detector_config() -> DetectorConfig:
    return DetectorConfig(
        features=[
            SignatureFeature(name="delta_rel_power.mean", direction="down"),
            SignatureFeature(name="beta_rel_power.mean", direction="up"),
            SignatureFeature(name="coherence.beta.mean", direction="up"),
        ],
        calibration_s=30.0,
        baseline_adaptation_tau_s=600.0,
        score_smoothing_s=10.0,
        onset_s=10.0,
        termination_s=10.0,
        upper_threshold=1.0,
        lower_threshold=0.5,
    )


Snapshot = tuple[np.ndarray, np.ndarray]  # baseline (location, effective scale)


def run(seed: int, beta_uv: float) -> tuple[list[DetectorOutput], dict[str, Snapshot]]:
    """Detector outputs and baseline snapshots taken after each state change."""
    data = synthetic_eeg(seed, beta_uv)
    extractor = FeatureExtractor(N_CH, FS_HZ)
    detector = Detector(detector_config(), extractor.channel_names)
    outputs: list[DetectorOutput] = []
    snapshots: dict[str, Snapshot] = {}
    for start in range(0, data.shape[1], CHUNK):
        for frame in extractor.push(data[:, start : start + CHUNK]):
            out = detector.update(frame)
            outputs.append(out)
            if out.changed:
                baseline = detector.baseline
                snapshots[f"{out.state.value}@{out.t_s:.1f}"] = (
                    baseline.location,
                    baseline.effective_scale(),
                )
    return outputs, snapshots


def transitions(outputs: list[DetectorOutput]) -> list[tuple[DetectorState, float]]:
    return [(o.state, o.t_s) for o in outputs if o.changed]


def test_shift_drives_normal_suspect_prodrome_and_back() -> None:
    outputs, _ = run(seed=0, beta_uv=4.0)
    states = [s for s, _ in transitions(outputs)]
    assert outputs[0].state is DetectorState.CALIBRATING
    assert states == [
        DetectorState.NORMAL,
        DetectorState.SUSPECT,
        DetectorState.PRODROME,
        DetectorState.NORMAL,
    ]
    (_, t_normal), (_, t_suspect), (_, t_prodrome), (_, t_back) = transitions(outputs)
    assert 30.0 < t_normal < SHIFT_ON_S
    assert SHIFT_ON_S < t_suspect < SHIFT_ON_S + 15.0
    assert t_prodrome - t_suspect >= 10.0  # onset_s
    assert t_back - SHIFT_OFF_S >= 10.0  # termination_s
    assert t_back < END_S
    assert not any(o.blanked for o in outputs)
    assert all(o.good_channels == N_CH for o in outputs)
    # The shift moved the features the signature expects.
    during = [o for o in outputs if SHIFT_ON_S + 2.0 <= o.t_s <= SHIFT_OFF_S]
    z = {k: np.mean([o.z_scores[k] for o in during]) for k in during[0].z_scores}
    assert z["beta_rel_power.mean"] > 1.0
    assert z["delta_rel_power.mean"] < -0.2
    assert z["coherence.beta.mean"] > 3.0


def test_baseline_frozen_while_suspect_or_prodrome_and_adapting_in_normal() -> None:
    _, snapshots = run(seed=0, beta_uv=4.0)
    normal, suspect, prodrome, back = snapshots.values()
    # Adapting in NORMAL: the location changed between calibration and the shift.
    assert not np.array_equal(normal[0], suspect[0])
    # Frozen from SUSPECT through PRODROME until NORMAL returns.
    np.testing.assert_array_equal(suspect[0], prodrome[0])
    np.testing.assert_array_equal(suspect[1], prodrome[1])
    # The window that returns to NORMAL is the first to adapt again: one bounded step.
    moved = np.abs(back[0] - prodrome[0])
    assert moved.max() > 0
    rate = 1 - np.exp(-0.5 / 600.0)
    assert np.all(moved <= np.sqrt(np.pi / 2) * rate * prodrome[1] * (1 + 1e-9))


def test_without_the_shift_it_stays_normal() -> None:
    outputs, _ = run(seed=1, beta_uv=0.0)
    scored = [o for o in outputs if o.state is not DetectorState.CALIBRATING]
    assert scored and all(o.state is DetectorState.NORMAL for o in scored)
    assert max(o.score for o in scored if o.score is not None) < 1.0


@pytest.mark.parametrize("seed", [2, 3])
def test_other_seeds_detect_too(seed: int) -> None:
    outputs, _ = run(seed=seed, beta_uv=4.0)
    assert [s for s, _ in transitions(outputs)] == [
        DetectorState.NORMAL,
        DetectorState.SUSPECT,
        DetectorState.PRODROME,
        DetectorState.NORMAL,
    ]


def test_flat_channels_make_it_unknown_and_it_recovers() -> None:
    data = synthetic_eeg(seed=4, beta_uv=0.0)
    lost = slice(int(60.0 * FS_HZ), int(70.0 * FS_HZ))
    data[:5, lost] = 0.0  # 5 of 8 channels flat: 3 good < 4 required
    extractor = FeatureExtractor(N_CH, FS_HZ)
    detector = Detector(detector_config(), extractor.channel_names)
    outputs = [
        detector.update(frame)
        for start in range(0, data.shape[1], CHUNK)
        for frame in extractor.push(data[:, start : start + CHUNK])
    ]
    unknown = [o for o in outputs if o.state is DetectorState.UNKNOWN]
    # Windows (2 s) lying entirely inside the flat 10 s are flagged flat on 5 channels.
    assert unknown and all(o.score is None and o.good_channels == 3 for o in unknown)
    assert min(o.t_s for o in unknown) >= 62.0 and max(o.t_s for o in unknown) <= 70.0
    assert [s for s, _ in transitions(outputs)] == [
        DetectorState.NORMAL,
        DetectorState.UNKNOWN,
        DetectorState.NORMAL,
    ]
