"""Replay of a small EDF+ written in the test: mapping, units, resampling, end handling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pyedflib import highlevel
from scipy import signal

from simulator.physiology.replay import (
    EdfReplaySource,
    ReplayExhaustedError,
    rational_ratio,
    unit_to_uv_factor,
)
from simulator.signals import NO_STIMULATION, SignalSource, Site

SOURCE_HZ = 256
DURATION_S = 20
SITES = (Site("Fp1", -20.0, 80.0), Site("O1", -20.0, -85.0), Site("C3", -60.0, 0.0))
TONES_HZ = {"Fp1": 10.0, "O1": 6.0, "C3": 17.0}


def _write_edf(path: Path, dimensions: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """Three labelled sine channels (amplitude 50 µV) plus a distractor, with annotations."""
    dimensions = dimensions or {}
    t = np.arange(SOURCE_HZ * DURATION_S) / SOURCE_HZ
    labels = ["EEG Fp1-REF", "O1", "c3", "ECG"]
    uv = {
        "Fp1": 50.0 * np.sin(2 * np.pi * TONES_HZ["Fp1"] * t),
        "O1": 50.0 * np.sin(2 * np.pi * TONES_HZ["O1"] * t),
        "C3": 50.0 * np.sin(2 * np.pi * TONES_HZ["C3"] * t),
        "ECG": 500.0 * np.sin(2 * np.pi * 1.2 * t),
    }
    scale = {"uV": 1.0, "mV": 1e-3, "V": 1e-6}
    headers, signals = [], []
    for label, key in zip(labels, ["Fp1", "O1", "C3", "ECG"], strict=True):
        dim = dimensions.get(key, "uV")
        x = uv[key] * scale[dim]
        peak_uv = 500.0 if key == "ECG" else 50.0
        limit = round(1.2 * peak_uv * scale[dim], 12)  # short enough for the 8-char field
        headers.append(
            highlevel.make_signal_header(
                label,
                dimension=dim,
                sample_frequency=SOURCE_HZ,
                physical_min=-limit,
                physical_max=limit,
            )
        )
        signals.append(x)
    header = highlevel.make_header(patientname="replay test")
    header["annotations"] = [[2.0, 0.0, "prodrome_start"], [15.5, 1.0, "attack_onset"]]
    assert highlevel.write_edf(str(path), signals, headers, header)
    return uv


@pytest.fixture
def edf_path(tmp_path: Path) -> Path:
    path = tmp_path / "small.edf"
    _write_edf(path)
    return path


def test_is_a_signal_source_resampled_and_mapped_by_label(edf_path: Path) -> None:
    src = EdfReplaySource(edf_path, SITES, 250.0)
    assert _conforms(src)  # also checked statically: _conforms takes a SignalSource
    assert src.sites == SITES and src.sampling_rate_hz == 250.0
    assert src.impedance_ohm() is None
    x = src.read(250 * 10, NO_STIMULATION)
    assert x.shape == (3, 2500)
    f, p = signal.welch(x, fs=250.0, nperseg=1000)
    for row, site in enumerate(SITES):
        assert f[np.argmax(p[row])] == pytest.approx(TONES_HZ[site.label], abs=0.25)
    # 50 µV sines survive unit handling and resampling (away from the filter edges).
    np.testing.assert_allclose(np.abs(x[:, 250:-250]).max(axis=1), 50.0, rtol=0.02)
    assert src.n_samples_total == round(DURATION_S * 250.0)


def _conforms(source: SignalSource) -> bool:
    return source.read(0, NO_STIMULATION).shape == (len(source.sites), 0)


def test_explicit_channel_map(edf_path: Path) -> None:
    site = Site("X", 0.0, 0.0)
    src = EdfReplaySource(edf_path, {site: "ECG"}, 256.0)
    x = src.read(SOURCE_HZ * 5, NO_STIMULATION)
    assert src.rate_error_ppm == 0.0
    assert np.abs(x).max() == pytest.approx(500.0, rel=0.01)


def test_resampled_values_match_the_analytic_signal(edf_path: Path) -> None:
    src = EdfReplaySource(edf_path, SITES[:1], 250.0)
    x = src.read(2500, NO_STIMULATION)[0]
    t = np.arange(2500) / 250.0
    expected = 50.0 * np.sin(2 * np.pi * TONES_HZ["Fp1"] * t)
    # EDF stores 16-bit values (55 µV / 32767 per count) and resample_poly is not ideal.
    np.testing.assert_allclose(x[100:-100], expected[100:-100], atol=0.5)


@pytest.mark.parametrize("dimension", ["mV", "V"])
def test_physical_units_are_converted_to_microvolts(tmp_path: Path, dimension: str) -> None:
    path = tmp_path / f"units_{dimension}.edf"
    _write_edf(path, {"Fp1": dimension, "O1": dimension})
    src = EdfReplaySource(path, SITES, 256.0)
    x = src.read(SOURCE_HZ * 4, NO_STIMULATION)
    np.testing.assert_allclose(np.abs(x).max(axis=1), 50.0, rtol=0.01)


def test_unit_factors() -> None:
    assert unit_to_uv_factor("uV") == 1.0
    assert unit_to_uv_factor(" \u00b5V ") == 1.0
    assert unit_to_uv_factor("\u03bcV") == 1.0
    assert unit_to_uv_factor("mV") == 1e3
    assert unit_to_uv_factor("V") == 1e6
    with pytest.raises(ValueError, match="degC"):
        unit_to_uv_factor("degC")


def test_rational_ratio() -> None:
    assert rational_ratio(250.0, 256.0) == (125, 128)
    assert rational_ratio(1000.0, 512.0) == (125, 64)
    up, down = rational_ratio(250.0, 173.1)
    assert down <= 1000 and abs(173.1 * up / down / 250.0 - 1.0) < 1e-5


def test_missing_labels_are_named(edf_path: Path) -> None:
    sites = (*SITES, Site("T7", -80.0, 0.0), Site("P7", -70.0, -45.0))
    with pytest.raises(ValueError, match=r"\['T7', 'P7'\]"):
        EdfReplaySource(edf_path, sites, 250.0)


def test_loops_at_the_end(edf_path: Path) -> None:
    src = EdfReplaySource(edf_path, SITES, 256.0)
    total = src.n_samples_total
    first = src.read(total, NO_STIMULATION)
    wrapped = src.read(total + 100, NO_STIMULATION)
    assert np.array_equal(wrapped[:, :total], first)
    assert np.array_equal(wrapped[:, total:], first[:, :100])


def test_stops_with_a_clear_error(edf_path: Path) -> None:
    src = EdfReplaySource(edf_path, SITES, 256.0, at_end="stop")
    src.read(src.n_samples_total - 10, NO_STIMULATION)
    assert src.remaining_samples == 10
    with pytest.raises(ReplayExhaustedError, match=r"reached its end: 10 of 5120 samples left"):
        src.read(11, NO_STIMULATION)
    assert src.read(10, NO_STIMULATION).shape == (3, 10)


def test_annotations_become_ground_truth_at_playback_time(edf_path: Path) -> None:
    src = EdfReplaySource(edf_path, SITES, 256.0)
    assert src.drain_ground_truth() == []
    src.read(SOURCE_HZ * 3, NO_STIMULATION)
    events = src.drain_ground_truth()
    assert [(e.kind, e.t_s) for e in events] == [("prodrome_start", 2.0)]
    assert src.drain_ground_truth() == []
    src.read(SOURCE_HZ * (DURATION_S - 3) + SOURCE_HZ * 3, NO_STIMULATION)  # into loop 2
    kinds_times = [(e.kind, e.t_s) for e in src.drain_ground_truth()]
    assert kinds_times == [("attack_onset", 15.5), ("prodrome_start", DURATION_S + 2.0)]
