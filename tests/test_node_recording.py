"""The node's recording started and stopped while the loop runs: one file at a time, each
start and stop audited, the snapshot names the file, and the file is a valid EDF+ that
holds exactly the samples the node received between the two calls."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyedflib

from controller.audit import verify_audit
from controller.config import ControllerConfig
from controller.node import ControllerNode
from controller.run import build_node
from firmware_bridge.clock import VirtualClock
from firmware_bridge.framing import FrameDecoder
from firmware_bridge.lockstep import LockstepPump
from firmware_bridge.messages import MsgType, Samples, parse_payload
from simulator.firmware import FirmwareConfig, VirtualFirmware
from simulator.signals import NoiseSource


@dataclass
class SampleTee:
    """The node as a lockstep peer, keeping a decoded copy of the SAMPLES it receives
    while ``keeping`` is on (what the recording must hold)."""

    node: ControllerNode
    n_channels: int
    keeping: bool = False
    kept: list[np.ndarray] = field(default_factory=list)
    decoder: FrameDecoder = field(default_factory=FrameDecoder)

    def receive_data(self, data: bytes, now: float) -> None:
        for frame in self.decoder.feed(data):
            if self.keeping and frame.msg_type == MsgType.SAMPLES:
                samples = parse_payload(frame.msg_type, frame.payload, self.n_channels)
                assert isinstance(samples, Samples)
                self.kept.append(samples.counts.copy())
        self.node.receive_data(data, now)

    def data_to_send(self) -> bytes:
        return self.node.data_to_send()

    def next_deadline(self) -> float | None:
        return self.node.next_deadline()

    def on_time(self, now: float) -> None:
        self.node.on_time(now)


def _running(tmp_path: Path) -> tuple[ControllerNode, SampleTee, LockstepPump, VirtualClock]:
    config = ControllerConfig.model_validate({"detector": {"calibration_s": 60.0}})
    node = build_node(config, tmp_path / "audit.jsonl", None, datetime(2026, 1, 1, tzinfo=UTC))
    fw = VirtualFirmware(NoiseSource(seed=4), FirmwareConfig(seed=4))
    tee = SampleTee(node, fw.info.n_channels)
    clock = VirtualClock()
    pump = LockstepPump(tee, fw, clock)
    node.start(0.0)
    return node, tee, pump, clock


def test_a_recording_started_and_stopped_holds_the_samples_in_between(tmp_path: Path) -> None:
    node, tee, pump, clock = _running(tmp_path)
    pump.run_until(5.0)
    assert node.snapshot().record_path is None and not node.snapshot().recording
    path = tmp_path / "bench.edf"
    started = node.start_recording(path, clock.now())
    assert started.done and started.path == str(path)
    tee.keeping = True
    snap = node.snapshot()
    assert snap.record_path == str(path) and snap.recording
    pump.run_until(17.3)
    stopped = node.stop_recording(clock.now())
    tee.keeping = False
    assert stopped.done and stopped.path == str(path)
    assert node.snapshot().record_path is None and not node.snapshot().recording
    pump.run_until(20.0)  # samples after the stop are not recorded
    node.close(clock.now())

    expected = np.concatenate(tee.kept, axis=1)
    info = node.core.info
    assert info is not None
    assert expected.shape[1] > 10 * info.sampling_rate_hz
    with pyedflib.EdfReader(str(path)) as edf:
        assert edf.filetype == pyedflib.FILETYPE_EDFPLUS
        assert edf.getSignalLabels() == [ch.label for ch in info.channels]
        assert edf.getSampleFrequency(0) == info.sampling_rate_hz
        n = expected.shape[1]
        padded = edf.getNSamples()[0] - n
        assert 0 <= padded < info.sampling_rate_hz  # the last data record is padded
        for ch in range(info.n_channels):
            counts = edf.readSignal(ch, digital=True)
            assert np.array_equal(counts[:n], expected[ch])
            assert not counts[n:].any()
        _, _, texts = edf.readAnnotations()
        assert any(text.startswith("padding") for text in texts)

    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    kinds = [(r["kind"], r.get("path")) for r in records if r["kind"].startswith("recording_")]
    assert kinds == [("recording_started", str(path)), ("recording_stopped", str(path))]
    assert verify_audit(tmp_path / "audit.jsonl").ok


def test_starting_a_second_recording_is_refused_and_the_first_goes_on(tmp_path: Path) -> None:
    node, _tee, pump, clock = _running(tmp_path)
    before = node.start_recording(tmp_path / "early.edf", 0.0)
    assert not before.done and "no device yet" in before.reason
    pump.run_until(3.0)
    first = tmp_path / "first.edf"
    assert node.start_recording(first, clock.now()).done
    second = node.start_recording(tmp_path / "second.edf", clock.now())
    assert not second.done
    assert "already running" in second.reason and str(first) in second.reason
    assert not (tmp_path / "second.edf").exists()
    assert node.snapshot().record_path == str(first)
    assert node.stop_recording(clock.now()).done
    again = node.stop_recording(clock.now())
    assert not again.done and again.reason == "no recording is running"
    # A new file may start once the first is closed.
    assert node.start_recording(tmp_path / "third.edf", clock.now()).done
    pump.run_until(5.0)
    node.close(clock.now())
    with pyedflib.EdfReader(str(tmp_path / "third.edf")) as edf:
        assert edf.getNSamples()[0] >= node.core.info.sampling_rate_hz  # type: ignore[union-attr]


def test_the_snapshot_reports_calibration_progress_as_numbers(tmp_path: Path) -> None:
    node, _tee, pump, clock = _running(tmp_path)
    pump.run_until(20.0)
    snap = node.snapshot()
    assert snap.calibration_s == 60.0
    assert 0.0 < snap.calibration_elapsed_s < 60.0
    detector = node.core.detector
    assert detector is not None
    assert snap.calibration_elapsed_s == detector.baseline.calibrated_s
    pump.run_until(clock.now() + 120.0)
    snap = node.snapshot()
    assert snap.detector is not None and snap.detector.state.value != "CALIBRATING"
    assert snap.calibration_elapsed_s == 60.0
