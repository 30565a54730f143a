"""Building simulated devices from scenario names, TOML files, EDF recordings and parameters."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pyedflib
import pytest

from simulator.device_factory import DeviceSpecError, build_device
from simulator.signals import NO_STIMULATION


def test_builtin_scenarios_build_with_seed_and_model() -> None:
    device = build_device("aura-demo", {"seed": "3", "model": "jansen-rit"})
    assert device.firmware.info.n_channels == 8
    assert device.scenario == "aura-demo"
    faults = build_device("faults", {})
    assert faults.link_faults is not None
    assert faults.link_faults(16.5 * 60).byte_corruption_rate > 0  # corruption window
    assert faults.link_faults(0.0).byte_corruption_rate == 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"seed": "x"}, "seed must be an integer"),
        ({"model": "hh"}, "model must be one of"),
        ({"color": "red"}, "unknown sim:// parameter"),
    ],
)
def test_bad_parameters_are_named(params: dict[str, str], message: str) -> None:
    with pytest.raises(DeviceSpecError, match=message):
        build_device("default", params)


def test_unknown_scenario_is_a_clear_error() -> None:
    with pytest.raises(DeviceSpecError):
        build_device("no-such-scenario", {})


def test_an_edf_recording_replays_through_the_device(tmp_path: Path) -> None:
    path = tmp_path / "rec.edf"
    fs = 500
    t = np.arange(fs * 4) / fs
    data = [40.0 * np.sin(2 * np.pi * 10 * t), 20.0 * np.sin(2 * np.pi * 6 * t)]
    with pyedflib.EdfWriter(str(path), 2, file_type=pyedflib.FILETYPE_EDFPLUS) as writer:
        writer.setStartdatetime(datetime(2026, 1, 1))
        for i, label in enumerate(["O1", "X9"]):
            writer.setSignalHeader(
                i,
                {
                    "label": label,
                    "dimension": "uV",
                    "sample_frequency": fs,
                    "physical_min": -100.0,
                    "physical_max": 100.0,
                    "digital_min": -32768,
                    "digital_max": 32767,
                },
            )
        writer.writeSamples(data)
    device = build_device(str(path), {})
    info = device.firmware.info
    assert info.labels == ("O1", "X9")
    assert (info.channels[0].x_mm, info.channels[0].y_mm) == (-20.0, -85.0)  # O1 of the montage
    block = device.firmware.source.read(250, NO_STIMULATION)
    assert block.shape == (2, 250)
    assert np.max(np.abs(block[0])) == pytest.approx(40.0, rel=0.05)
