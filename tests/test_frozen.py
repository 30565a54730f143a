"""build_frozen: the hot path's frozen instances are the objects the constructors build."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from controller.config import ControllerConfig
from controller.core import ControllerCore, CoreResult, _Collect
from controller.detector import Detector, DetectorConfig
from controller.detector.state_machine import ProdromeStateMachine, WindowInput
from controller.detector.types import DetectorOutput, DetectorState
from controller.features import FeatureExtractor, FeatureFrame
from controller.features.frame import SignalQuality
from firmware_bridge.events import SamplesReceived
from firmware_bridge.frozen import build_frozen
from simulator.firmware import FirmwareConfig, VirtualFirmware
from simulator.signals import NoiseSource


def _same_as_constructed(instance: object) -> None:
    """Every field set, equal to (and hashing like) the constructor's instance, still frozen."""
    cls = type(instance)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    assert list(vars(instance)) == names
    values = {name: getattr(instance, name) for name in names}
    constructed = cls(**values)
    assert repr(instance) == repr(constructed)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(instance, names[0], None)


def test_build_frozen_equals_the_constructor() -> None:
    built = build_frozen(
        DetectorOutput,
        {
            "t_s": 1.0,
            "state": DetectorState.NORMAL,
            "score": 0.5,
            "changed": False,
            "blanked": False,
            "good_channels": 8,
            "reason": "r",
            "z_scores": {"a": 1.0},
        },
    )
    constructed = DetectorOutput(1.0, DetectorState.NORMAL, 0.5, False, False, 8, "r", {"a": 1.0})
    assert built == constructed and repr(built) == repr(constructed)
    _same_as_constructed(built)


def test_hot_path_objects_have_every_field() -> None:
    rng = np.random.default_rng(1)
    extractor = FeatureExtractor(4, 250.0)
    frames: list[FeatureFrame] = []
    for _ in range(16):
        frames.extend(extractor.push(rng.standard_normal((4, 125)) * 10.0))
    frame = frames[-1]
    _same_as_constructed(frame)
    assert isinstance(frame.quality, SignalQuality)
    _same_as_constructed(frame.quality)
    detector = Detector(DetectorConfig(), extractor.channel_names)
    output = detector.update(frame)
    _same_as_constructed(output)
    machine = ProdromeStateMachine(2.0, 1.0, 5.0, 5.0, calibrated=True)
    _same_as_constructed(machine.step(WindowInput(dt_s=0.5, score=3.0)))
    collect = _Collect()
    collect.outputs.append(output)
    _same_as_constructed(collect.result())


def test_a_hop_that_decides_nothing_returns_a_whole_result() -> None:
    """The core's result of a window with nothing to record (built without ``_Collect``)."""
    firmware = VirtualFirmware(NoiseSource(seed=0), FirmwareConfig())
    core = ControllerCore(ControllerConfig())
    core.on_connected(firmware.info, 0.0)
    rng = np.random.default_rng(2)
    n_channels = firmware.info.n_channels
    results = [
        core.on_samples(
            SamplesReceived(i * 125, rng.integers(-500, 500, (n_channels, 125)), 0, 0), i * 0.5
        )
        for i in range(8)
    ]
    quiet = [r for r in results if r.outputs and not r.records]
    assert quiet
    for result in quiet:
        _same_as_constructed(result)
        assert result == CoreResult(outputs=result.outputs)
