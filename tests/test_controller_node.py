"""ControllerNode: the closed loop every shell drives — decisions kept, blanking on the
device's report, operator inputs audited and reviewed, E-stop never gated, stop rules."""

from __future__ import annotations

import json
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from controller.audit import AuditLog, verify_audit
from controller.config import ControllerConfig
from controller.core import NOTHING, ControllerCore, CoreResult
from controller.node import ControllerNode
from controller.observations import (
    CommandIssued,
    DetectorUpdated,
    DeviceMisbehaved,
    DeviceStatus,
    EstopChanged,
    LinkState,
    NodeEvent,
    Refused,
)
from firmware_bridge.clock import VirtualClock
from firmware_bridge.events import (
    Connected,
    HandshakeCompleted,
    SamplesReceived,
    StatusReceived,
)
from firmware_bridge.framing import FrameDecoder
from firmware_bridge.lockstep import LockstepPump
from firmware_bridge.messages import MsgType, Status, StimSetting
from simulator.firmware import FirmwareConfig, VirtualFirmware, default_limits
from simulator.signals import NoiseSource
from tests.protocol_fixtures import INFO as FIXTURE_INFO

#: The fixture device with the default simulated device's limits and electrode (the
#: default envelope fits them: external supraorbital e-TNS).
INFO = replace(FIXTURE_INFO, limits=default_limits(), electrode_area_cm2=28.2)


def _config(**detector: object) -> ControllerConfig:
    return ControllerConfig.model_validate(
        {
            # 3 mA: a jump to it stays within the device's own 5 mA/s slew (a fault, not
            # dangerous) and a stop ramps down in 25 s, as these tests were written for.
            "policy": {
                "name": "open-loop",
                "open_loop": {"mode": "continuous"},
                "stimulation": {"amplitude_ma": 3.0},
            },
            "detector": {"calibration_s": 60.0, **detector},
        }
    )


def _lockstep(
    tmp_path: Path,
    config: ControllerConfig | None = None,
    seed: int = 1,
    stop_timeout_s: float | None = None,
):
    audit_path = tmp_path / "audit.jsonl"
    node = ControllerNode(
        ControllerCore(config or _config()), AuditLog(audit_path), stop_timeout_s=stop_timeout_s
    )
    events: list[NodeEvent] = []
    node.subscribe(events.append)
    fw = VirtualFirmware(NoiseSource(seed=seed), FirmwareConfig(seed=seed))
    clock = VirtualClock()
    pump = LockstepPump(node, fw, clock)
    node.start(0.0)
    return node, fw, pump, clock, events, audit_path


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _connected_core(config: ControllerConfig) -> ControllerCore:
    core = ControllerCore(config)
    core.on_connected(INFO, 0.0)
    impedances = tuple([1000] * INFO.n_electrodes)
    core.on_event(StatusReceived(Status(90, 0, impedances)), 0.0)
    return core


@pytest.mark.parametrize("windows", [1, 2, 5])
def test_a_block_completing_several_windows_keeps_every_decision(windows: int) -> None:
    config = _config()
    core = _connected_core(config)
    rate = INFO.sampling_rate_hz
    hop = int(config.features.hop_s * rate)
    window = int(config.features.window_s * rate)
    warmup = SamplesReceived(0, np.zeros((INFO.n_channels, window - hop), np.int16), 0, 0)
    core.on_event(warmup, 0.0)
    block = np.random.default_rng(0).integers(-50, 50, (INFO.n_channels, hop * windows))
    result = core.on_event(SamplesReceived(window - hop, block.astype(np.int16), 0, 0), 1.0)
    assert len(result.outputs) == windows
    # Whatever the envelope recorded as sent is in the result, and only one at a time.
    sent = core.envelope.last_sent if core.envelope is not None else None
    assert len(result.commands) == core.stats.decisions == 1
    assert result.commands[0].setting == sent
    decision_records = [r for r in result.records if r.kind == "decision"]
    assert len(decision_records) == len(result.commands)


def test_push_samples_is_on_samples_split_into_outputs_and_what_was_decided() -> None:
    """The node's per-frame call: a hop that decides nothing gives its outputs and
    NOTHING; one that decides gives the whole result, those outputs included."""
    config = _config()
    whole, split = _connected_core(config), _connected_core(config)
    rng = np.random.default_rng(4)
    hop = int(config.features.hop_s * INFO.sampling_rate_hz)
    kinds = set()
    for i in range(12):
        counts = rng.integers(-50, 50, (INFO.n_channels, hop)).astype(np.int16)
        event = SamplesReceived(i * hop, counts, 0, 0)
        expected = whole.on_samples(event, i * 0.5)
        outputs, decided = split.push_samples(event, i * 0.5)
        assert outputs == expected.outputs
        if decided is NOTHING:
            kinds.add("quiet" if outputs else "none")
            assert expected == (CoreResult(outputs=outputs) if outputs else NOTHING)
        else:
            kinds.add("decided")
            assert decided == expected
    assert kinds == {"none", "quiet", "decided"}


def test_observers_see_every_window_and_every_status_in_order(tmp_path: Path) -> None:
    node, _, pump, _, events, _ = _lockstep(tmp_path)
    pump.run_until(90.0)
    windows = [e.output for e in events if isinstance(e, DetectorUpdated)]
    assert len(windows) == node.core.stats.windows > 100
    assert windows[-1] is node.core.last_output
    assert all(a.t_s < b.t_s for a, b in pairwise(windows))
    assert any(isinstance(e, CommandIssued) for e in events)  # deciding hops among them
    statuses = [e for e in events if isinstance(e, DeviceStatus)]
    assert 85 <= len(statuses) <= 91
    assert all(a.t_s < b.t_s for a, b in pairwise(statuses))


def test_an_output_reader_sees_the_outputs_where_the_events_would_be(tmp_path: Path) -> None:
    """``subscribe(..., outputs=)``: the subscriber's stream is a plain subscriber's with
    each DetectorUpdated replaced by its output (and none of those events)."""
    node, _, pump, _, events, _ = _lockstep(tmp_path)
    read: list[object] = []
    node.subscribe(read.append, outputs=read.append)
    pump.run_until(90.0)
    expected = [e.output if isinstance(e, DetectorUpdated) else e for e in events]
    assert read == expected[1:]  # subscribed after the handshake began (CONNECTING)
    assert sum(isinstance(e, DetectorUpdated) for e in events) > 100
    assert any(isinstance(e, CommandIssued) for e in read)


def test_blanking_follows_the_device_reported_change_not_the_command(tmp_path: Path) -> None:
    node, fw, pump, clock, _events, _ = _lockstep(tmp_path)
    pump.run_until(120.0)  # calibrated, stimulating, and the change long reported
    detector = node.core.detector
    assert detector is not None and fw.output.enabled
    before = detector.blanked_until_s
    result = node.manual_setting(StimSetting(True, 1.0, 200, 40.0, 0.01), clock.now())
    assert result.sent is not None
    assert detector.blanked_until_s == before  # sent, but the device has not reported it
    pump.run_until(clock.now() + 2.0)
    assert node.core.delivered is not None and node.core.delivered.pulse_width_us == 200
    assert detector.blanked_until_s > before  # the report of the change blanks


def test_operator_setting_beyond_the_envelope_is_refused_with_its_rule(tmp_path: Path) -> None:
    node, fw, pump, clock, events, audit_path = _lockstep(tmp_path)
    pump.run_until(30.0)
    target_before = fw.output.target_ma
    result = node.manual_setting(StimSetting(True, 50.0, 250, 60.0, 0.01), clock.now())
    assert result.sent is None and result.refused_rule == "amplitude_range"
    pump.run_until(35.0)
    assert fw.output.target_ma == pytest.approx(target_before)
    refused = [e for e in events if isinstance(e, Refused)]
    assert refused and refused[-1].origin == "operator" and refused[-1].rule == "amplitude_range"
    node.close(clock.now())
    kinds = [r["kind"] for r in _records(audit_path)]
    assert "operator_setting" in kinds and "refusal" in kinds


def test_operator_setting_within_the_envelope_is_sent_and_holds_the_policy(
    tmp_path: Path,
) -> None:
    node, fw, pump, clock, _events, audit_path = _lockstep(tmp_path)
    pump.run_until(30.0)
    result = node.manual_setting(StimSetting(True, 1.0, 200, 40.0, 0.01), clock.now())
    assert result.refused_rule is None and result.sent is not None
    pump.run_until(60.0)
    assert fw.output.target_ma == pytest.approx(1.0)
    assert fw.output.pulse_width_us == 200 and fw.output.frequency_hz == pytest.approx(40.0)
    assert node.snapshot().manual
    node.close(clock.now())
    commands = [r for r in _records(audit_path) if r["kind"] == "command"]
    assert commands[-1]["origin"] == "operator" and commands[-1]["amplitude_ma"] == 1.0


def test_estop_goes_out_in_every_state_and_is_never_gated() -> None:
    node = ControllerNode(ControllerCore(_config()), AuditLog(None))
    node.estop(0.0)  # before any handshake: no envelope, no device info
    frames = FrameDecoder().feed(node.data_to_send())
    assert [f.msg_type for f in frames] == [int(MsgType.ESTOP)]
    assert node.snapshot().estop_latched
    assert node.audit.last is not None and node.audit.last["kind"] == "estop"


def test_clearing_an_estop_never_resumes_stimulation_by_itself(tmp_path: Path) -> None:
    node, fw, pump, clock, events, audit_path = _lockstep(tmp_path)
    pump.run_until(60.0)
    assert fw.output.enabled
    node.estop(clock.now())
    pump.run_until(65.0)
    assert fw.output.amplitude_ma == 0.0 and fw.output.estop_latched
    node.clear_estop(clock.now())
    pump.run_until(180.0)
    assert not fw.output.estop_latched  # the latch is gone on the device...
    assert not fw.output.enabled and fw.output.amplitude_ma == 0.0  # ...and nothing resumed
    assert node.snapshot().estop_hold
    node.resume(clock.now())
    pump.run_until(240.0)
    assert fw.output.enabled  # only the operator's resume lets the policy stimulate again
    latch = [(e.by, e.latched) for e in events if isinstance(e, EstopChanged)]
    assert [x for x in latch if x[0] == "operator"] == [("operator", True), ("operator", False)]
    # The device reported its latch set, then cleared by the explicit ESTOP_CLEAR.
    assert [x for x in latch if x[0] == "device"] == [("device", True), ("device", False)]
    node.close(clock.now())
    kinds = [r["kind"] for r in _records(audit_path)]
    for kind in ("estop", "estop_clear", "resume"):
        assert kind in kinds
    assert verify_audit(audit_path).ok


def test_markers_and_policy_switches_are_audited_and_sent(tmp_path: Path) -> None:
    node, fw, pump, clock, _events, audit_path = _lockstep(tmp_path)
    pump.run_until(70.0)
    node.marker("patient yawns", clock.now())
    node.set_policy("off", clock.now())
    pump.run_until(120.0)
    assert not fw.output.enabled  # the off policy turned it off
    with pytest.raises(ValueError, match="unknown policy"):
        node.set_policy("nonsense", clock.now())
    node.close(clock.now())
    records = _records(audit_path)
    assert any(r["kind"] == "operator_marker" and r["text"] == "patient yawns" for r in records)
    assert any(r["kind"] == "policy" and r["policy"] == "off" for r in records)


def test_request_stop_ramps_down_and_finishes_on_the_device_report(tmp_path: Path) -> None:
    node, fw, pump, clock, events, _ = _lockstep(tmp_path)
    pump.run_until(60.0)
    assert fw.output.enabled
    node.request_stop(clock.now(), "operator")
    assert node.state is LinkState.STOPPING
    pump.run_until(clock.now() + 200.0, stop=lambda: node.finished)
    assert node.stop_outcome is not None and node.stop_outcome.ramped_down
    assert fw.output.amplitude_ma == 0.0 and not fw.output.enabled
    issued = [e for e in events if isinstance(e, CommandIssued)]
    assert issued[-1].origin == "shutdown"


def test_a_stop_not_confirmed_in_time_ends_in_estop(tmp_path: Path) -> None:
    # A 3 mA output at the default 0.12 mA/s ramp takes 25 s to reach zero: more than 2 s.
    node, fw, pump, clock, _events, audit_path = _lockstep(tmp_path, stop_timeout_s=2.0)
    pump.run_until(60.0)
    assert fw.output.enabled
    node.request_stop(clock.now(), "operator")
    pump.run_until(clock.now() + 10.0, stop=lambda: node.finished)
    outcome = node.stop_outcome
    assert outcome is not None and not outcome.ramped_down
    assert outcome.error is not None and "timeout" in outcome.error
    pump.run_until(clock.now() + 1.0)
    assert fw.output.estop_latched and fw.output.amplitude_ma == 0.0
    node.close(clock.now())
    assert "estop" in [r["kind"] for r in _records(audit_path)]


def test_connected_events_are_never_passed_to_the_core() -> None:
    core = ControllerCore(_config())
    result = core.on_event(Connected(INFO), 0.0)
    assert result.empty


class _JumpingFirmware(VirtualFirmware):
    """A realistic firmware bug: the slew limiter is skipped, the output jumps to the
    commanded amplitude at once."""

    def receive_data(self, data: bytes, now: float) -> None:
        super().receive_data(data, now)
        if self.output.enabled and self.output.target_ma > 0.0:
            self.output.amplitude_ma = self.output.target_ma


def test_a_device_that_jumps_instead_of_ramping_is_caught_and_stopped(tmp_path: Path) -> None:
    audit_path = tmp_path / "audit.jsonl"
    node = ControllerNode(ControllerCore(_config()), AuditLog(audit_path))
    events: list[NodeEvent] = []
    node.subscribe(events.append)
    fw = _JumpingFirmware(NoiseSource(seed=1), FirmwareConfig(seed=1))
    clock = VirtualClock()
    pump = LockstepPump(node, fw, clock)
    node.start(0.0)
    pump.run_until(90.0)
    findings = [e for e in events if isinstance(e, DeviceMisbehaved)]
    assert findings and findings[0].kind == "ramp_too_fast"
    # A first fault: the safe program (off) and the policy held, no ESTOP yet.
    assert fw.output.amplitude_ma == 0.0 and not fw.output.estop_latched
    assert node.core.device_hold and not node.snapshot().estop_latched
    # The operator resumes; the device jumps again: a repeated fault ends in ESTOP.
    node.resume(clock.now())
    pump.run_until(clock.now() + 60.0)
    assert len([e for e in events if isinstance(e, DeviceMisbehaved)]) >= 2
    assert fw.output.estop_latched and fw.output.amplitude_ma == 0.0
    assert node.snapshot().estop_latched
    node.close(clock.now())
    kinds = [r["kind"] for r in _records(audit_path)]
    assert "device_fault" in kinds and "estop" in kinds


def test_a_device_that_follows_its_commands_raises_no_finding(tmp_path: Path) -> None:
    node, _fw, pump, clock, events, _ = _lockstep(tmp_path)
    pump.run_until(600.0)
    node.request_stop(clock.now(), "operator")
    pump.run_until(clock.now() + 120.0, stop=lambda: node.finished)
    assert not [e for e in events if isinstance(e, DeviceMisbehaved)]
    assert node.stop_outcome is not None and node.stop_outcome.ramped_down


def test_a_clean_stop_says_goodbye_so_the_device_logs_no_watchdog_fault(tmp_path: Path) -> None:
    node, fw, pump, clock, _events, _ = _lockstep(tmp_path)
    pump.run_until(60.0)
    node.request_stop(clock.now(), "operator")
    pump.run_until(clock.now() + 120.0, stop=lambda: node.finished)
    pump.run_until(clock.now() + 5.0)  # well past the device's watchdog time
    assert fw.goodbyes == 1
    assert not fw.output.watchdog_tripped


def test_a_reconnect_neither_clears_nor_forgets_the_devices_estop_latch(tmp_path: Path) -> None:
    node, fw, pump, clock, _events, _audit_path = _lockstep(tmp_path)
    pump.run_until(60.0)
    node.estop(clock.now())
    pump.run_until(62.0)
    silence = pump._wires  # both directions go quiet: the device and the node lose each other
    saved = dict(silence)
    for key in silence:
        silence[key] = lambda data, now: []
    pump.run_until(70.0)
    assert node.state is LinkState.BACKOFF
    silence.update(saved)
    pump.run_until(120.0)
    assert node.state is LinkState.READY and node.connects == 2
    assert fw.output.estop_latched  # the handshake did not clear it
    snapshot = node.snapshot()
    assert snapshot.estop_latched and snapshot.estop_hold
    assert not fw.output.enabled


def test_no_command_leaves_before_the_earlier_stimulation_records_are_on_disk(
    tmp_path: Path,
) -> None:
    """With the audit log on a writer thread, a stalled disk holds commands back (the
    record of a stimulation change is durable before the next command is sent)."""
    import threading
    import time

    from controller.writer_thread import WriterThread

    writer = WriterThread("audit-test")
    audit = AuditLog(tmp_path / "audit.jsonl", writer=writer)
    node = ControllerNode(ControllerCore(_config()), audit)
    issued: list[NodeEvent] = []
    node.subscribe(lambda e: issued.append(e) if isinstance(e, CommandIssued) else None)
    fw = VirtualFirmware(NoiseSource(seed=1), FirmwareConfig(seed=1))
    clock = VirtualClock()
    pump = LockstepPump(node, fw, clock)
    disk = threading.Event()
    writer.submit(disk.wait)  # the disk stalls: nothing queued after this is written
    node.start(0.0)
    pump.run_until(30.0)
    assert node.holding and not issued and not audit.durable
    assert not fw.output.enabled
    disk.set()
    deadline = time.monotonic() + 10.0
    while not audit.durable and time.monotonic() < deadline:
        time.sleep(0.01)
    assert audit.durable
    pump.run_until(40.0)  # the next wake sends what was held
    assert issued and not node.holding
    assert fw.output.enabled
    node.close(clock.now())
    assert verify_audit(tmp_path / "audit.jsonl").ok


class _Protocol10Firmware(VirtualFirmware):
    """A protocol-1.0 device: it says minor 0, and any handshake clears its E-stop latch."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.info = replace(self.info, minor=0)
        self.session.info = self.info
        self.handshakes = 0

    def _on_event(self, event: object, now: float) -> None:
        if isinstance(event, HandshakeCompleted):
            self.handshakes += 1
            self.output.estop_latched = False  # what 1.0 said a handshake does
        super()._on_event(event, now)  # type: ignore[arg-type]


def test_a_1_0_device_is_not_reconnected_while_an_estop_stands(tmp_path: Path) -> None:
    node = ControllerNode(ControllerCore(_config()), AuditLog(tmp_path / "a.jsonl"))
    fw = _Protocol10Firmware(NoiseSource(seed=1), FirmwareConfig(seed=1))
    clock = VirtualClock()
    pump = LockstepPump(node, fw, clock)
    node.start(0.0)
    pump.run_until(60.0)
    assert node.core.info is not None and node.core.info.minor == 0
    node.estop(clock.now())
    pump.run_until(62.0)
    assert fw.output.estop_latched
    saved = dict(pump._wires)
    for key in pump._wires:
        pump._wires[key] = lambda data, now: []
    pump.run_until(70.0)  # silence: the node loses the device
    pump._wires.update(saved)
    handshakes = fw.handshakes
    pump.run_until(200.0)
    assert node.state is LinkState.BACKOFF  # no automatic handshake...
    assert fw.handshakes == handshakes and fw.output.estop_latched  # ...so the latch stands
    node.clear_estop(clock.now())  # the operator's clear is the reconnect
    pump.run_until(210.0)
    assert node.state is LinkState.READY and not fw.output.estop_latched
    assert not fw.output.enabled  # and nothing resumed by itself
