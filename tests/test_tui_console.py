"""The bench console on the embedded simulated device, headless (``App.run_test`` + Pilot),
in virtual time: the shared ``ScaledClock`` starts paused and the tests jump it forward,
so a minute of the closed loop takes a second and every run sees the same samples."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyedflib
import pytest
from textual.widgets import Input

from controller.audit import verify_audit
from controller.config import ControllerConfig
from controller.policy import POLICY_NAMES
from controller.run import build_node
from firmware_bridge.clock import ScaledClock
from firmware_bridge.errors import DeviceUnreachable
from firmware_bridge.transports.memory import MemoryLink, memory_link_pair
from firmware_bridge.transports.registry import TransportRegistry
from simulator.embedded import GroundTruthFeed
from tui.app import ConsoleApp
from tui.forms import SettingForm
from tui.session import ConsoleSession

SIZE = (160, 50)
URL = "sim://default?seed=3"  # the default patient; the demo has a compressed cycle


def console_config(policy: str = "open-loop") -> ControllerConfig:
    """A short calibration (the default half hour is for patients, not for tests) and
    open-loop stimulation, so that the output is on within seconds."""
    return ControllerConfig.model_validate(
        {
            "detector": {"calibration_s": 20.0},
            "policy": {"name": policy, "open_loop": {"mode": "continuous"}},
        }
    )


def make_console(
    audit_path: Path | None, config: ControllerConfig | None = None, url: str = URL
) -> tuple[ConsoleApp, ConsoleSession, ScaledClock]:
    clock = ScaledClock()
    clock.pause()  # time moves only when a test jumps it
    registry = TransportRegistry()
    registry.register("sim", GroundTruthFeed(clock).open_url)
    node = build_node(
        config or console_config(), audit_path, None, datetime(2026, 1, 1, tzinfo=UTC)
    )
    session = ConsoleSession(url, node, clock, registry, clock)
    return ConsoleApp(session, fast_forward_calibration=False, refresh_hz=None), session, clock


async def advance(app: ConsoleApp, clock: ScaledClock, seconds: float) -> None:
    """Run the loop's thread ``seconds`` of virtual time ahead, then redraw from a view."""
    await app.session.jump_by(seconds)
    await app.redraw()


async def advance_until_calibrated(app: ConsoleApp, clock: ScaledClock, limit_s: float) -> None:
    """Calibration needs its credited seconds and enough finite values of every feature."""
    end = clock.now() + limit_s
    while clock.now() < end:
        await advance(app, clock, 10.0)
        out = app.session.snapshot().detector
        if out is not None and out.state.value != "CALIBRATING":
            return
    raise AssertionError(f"still calibrating after {limit_s} s")


def audit_kinds(path: Path) -> list[str]:
    return [json.loads(line)["kind"] for line in path.read_text().splitlines()]


async def test_shows_channel_labels_and_the_detector_state(tmp_path: Path) -> None:
    app, session, clock = make_console(tmp_path / "audit.jsonl")
    async with app.run_test(size=SIZE):
        await advance_until_calibrated(app, clock, 300.0)
        info = session.snapshot().device
        assert info is not None
        traces = app.traces_panel.plain
        for channel in info.channels:
            assert channel.label in traces
        assert "µV" in traces
        detector = app.detector_panel.plain
        assert session.snapshot().detector is not None
        assert session.snapshot().detector.state.value in detector
        assert "NORMAL" in detector or "SUSPECT" in detector
        assert "calibration ████" in detector and "20/20 s" in detector


async def test_estop_latches_zeroes_the_output_and_is_audited(tmp_path: Path) -> None:
    audit_path = tmp_path / "audit.jsonl"
    app, session, clock = make_console(audit_path)
    async with app.run_test(size=SIZE) as pilot:
        await advance(app, clock, 40.0)
        before = session.snapshot().reported
        assert before is not None and before.enabled and before.amplitude_ma > 0.0
        await pilot.press("e")
        await advance(app, clock, 1.0)
        snap = session.snapshot()
        assert snap.estop_latched
        assert snap.reported is not None and snap.reported.amplitude_ma == 0.0
        assert snap.reported.estop_latched  # the device says so, not only the console
        assert "E-STOP LATCHED" in app.estop_banner.plain
        assert "reported  E-STOP off, 0.00 mA" in app.stim_panel.plain
        # The latch stays on screen: time passing does not clear it...
        await advance(app, clock, 10.0)
        assert "E-STOP LATCHED" in app.estop_banner.plain
        # ...nor does the first step of clearing, nor a key other than the confirmation.
        await pilot.press("R")
        await pilot.press("x")
        await advance(app, clock, 1.0)
        assert session.snapshot().estop_latched
        # Two steps clear the latch; stimulation stays off until the operator resumes.
        await pilot.press("R")
        await pilot.press("y")
        await advance(app, clock, 5.0)
        snap = session.snapshot()
        assert not snap.estop_latched and snap.estop_hold
        assert snap.reported is not None and snap.reported.amplitude_ma == 0.0
        assert "therapy held" in app.estop_banner.plain
    kinds = audit_kinds(audit_path)
    assert "estop" in kinds
    estop = next(
        json.loads(line)
        for line in audit_path.read_text().splitlines()
        if json.loads(line)["kind"] == "estop"
    )
    assert estop["t"] == pytest.approx(40.0)


async def test_a_manual_setting_above_the_envelope_is_refused_with_its_rule(
    tmp_path: Path,
) -> None:
    audit_path = tmp_path / "audit.jsonl"
    app, session, clock = make_console(audit_path, console_config("off"))
    async with app.run_test(size=SIZE) as pilot:
        await advance(app, clock, 10.0)
        limit_ma = session.snapshot().budgets.max_amplitude_ma  # type: ignore[union-attr]
        await pilot.press("a")
        form = app.screen
        assert isinstance(form, SettingForm)
        form.query_one("#amplitude", Input).value = f"{limit_ma * 2:g}"
        form.query_one("#ramp", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        await advance(app, clock, 1.0)
        snap = session.snapshot()
        assert snap.refusals, "the envelope refused nothing"
        assert set(snap.refusals) == {"amplitude_range"}  # the ramp and the rest are fine
        rule = "amplitude_range"
        assert f"REFUSED by {rule}" in app.status_line.plain
        assert rule in app.stim_panel.plain
        assert snap.reported is not None and snap.reported.amplitude_ma == 0.0
    refusals = [
        json.loads(line)
        for line in audit_path.read_text().splitlines()
        if json.loads(line)["kind"] == "refusal"
    ]
    assert [r["rule"] for r in refusals] == ["amplitude_range"]
    assert "command" not in audit_kinds(audit_path)  # nothing was sent


async def test_quit_ramps_down_and_the_device_confirms(tmp_path: Path) -> None:
    audit_path = tmp_path / "audit.jsonl"
    app, session, clock = make_console(audit_path)
    async with app.run_test(size=SIZE) as pilot:
        await advance(app, clock, 40.0)
        assert session.snapshot().reported.amplitude_ma > 0.0  # type: ignore[union-attr]
        await pilot.press("q")
        await session.jump_by(120.0)
        await pilot.pause()
    outcome = session.node.stop_outcome
    assert outcome is not None and outcome.ramped_down, outcome
    assert outcome.reason == "operator"
    assert app.return_code == 0
    kinds = audit_kinds(audit_path)
    assert kinds.index("shutdown") < kinds.index("stop")
    assert "estop" not in kinds  # confirmed by the device: no E-stop needed
    assert verify_audit(audit_path).ok


async def test_stop_therapy_ramps_the_output_off_and_resume_lets_the_policy_back(
    tmp_path: Path,
) -> None:
    app, session, clock = make_console(tmp_path / "audit.jsonl")
    async with app.run_test(size=SIZE) as pilot:
        await advance(app, clock, 40.0)
        assert session.snapshot().reported.amplitude_ma > 0.0  # type: ignore[union-attr]
        await pilot.press("s")
        await advance(app, clock, 60.0)
        snap = session.snapshot()
        assert snap.manual and snap.requested is not None and not snap.requested.enabled
        assert snap.reported is not None and not snap.reported.enabled
        assert not snap.estop_latched  # a ramped stop, not an E-stop
        await pilot.press("u")
        await advance(app, clock, 10.0)
        snap = session.snapshot()
        assert not snap.manual
        assert snap.reported is not None and snap.reported.amplitude_ma > 0.0


async def test_marker_policy_and_pace_go_through_the_node(tmp_path: Path) -> None:
    audit_path = tmp_path / "audit.jsonl"
    app, session, clock = make_console(audit_path)
    async with app.run_test(size=SIZE) as pilot:
        await advance(app, clock, 5.0)
        await pilot.press("m")
        app.screen.query_one("#marker", Input).value = "patient reports aura"
        await pilot.press("enter")
        await pilot.press("p")
        await pilot.press("down", "down", "enter")  # the third policy of the list
        await pilot.pause()
        await advance(app, clock, 1.0)
        assert session.snapshot().policy == POLICY_NAMES[2]
        assert f"policy {POLICY_NAMES[2]}" in app.status_line.plain
        await pilot.press("space")
        assert not clock.paused  # the tests' clock starts paused: space lets it run
        await pilot.press("space")
        assert clock.paused
        rate = clock.rate
        await pilot.press("plus")
        assert clock.rate > rate
        await pilot.press("minus", "minus")
        assert clock.rate < rate
    records = [json.loads(line) for line in audit_path.read_text().splitlines()]
    markers = [r for r in records if r["kind"] == "operator_marker"]
    assert markers and markers[0]["text"] == "patient reports aura"
    switched = [r for r in records if r["kind"] == "policy"]
    assert [(r["previous"], r["policy"]) for r in switched] == [("open-loop", POLICY_NAMES[2])]


async def test_a_device_that_goes_silent_shows_lost_and_comes_back(tmp_path: Path) -> None:
    scenario = tmp_path / "cut.toml"
    scenario.write_text(
        'name = "cut"\nduration_s = "10min"\nmodel = "spectral"\nseed = 0\n'
        '[patient]\nphenotype = "episodic-without-aura"\nseed = 3\n'
        '[[events]]\nkind = "link_fault"\nfault = "disconnect"\nat_s = "20s"\n'
        'duration_s = "10s"\n'
    )
    app, session, clock = make_console(None, url=f"sim://{scenario}")
    async with app.run_test(size=SIZE):
        await advance(app, clock, 19.0)
        assert session.snapshot().link.value == "ready"
        watchdog_s = session.snapshot().device.watchdog_ms / 1000.0  # type: ignore[union-attr]
        await advance(app, clock, 1.0 + watchdog_s + 0.5)
        snap = session.snapshot()
        assert snap.link.value in ("backoff", "connecting"), snap.link
        assert snap.counters.link_losses == 1
        assert snap.link.value.upper() in app.device_panel.plain
        await advance(app, clock, 20.0)
        snap = session.snapshot()
        assert snap.link.value == "ready"
        assert "READY" in app.device_panel.plain and "1 losses" in app.device_panel.plain


async def test_e_types_in_a_text_field_and_ctrl_e_still_stops(tmp_path: Path) -> None:
    app, session, clock = make_console(tmp_path / "audit.jsonl")
    async with app.run_test(size=SIZE) as pilot:
        await advance(app, clock, 5.0)
        await pilot.press("m")
        field = app.screen.query_one("#marker", Input)
        await pilot.press("e", "e", "g")
        assert field.value == "eeg"
        assert not session.snapshot().estop_latched
        await pilot.press("ctrl+e")
        await advance(app, clock, 1.0)
        assert session.snapshot().estop_latched


async def test_r_starts_and_stops_an_edf_recording(tmp_path: Path) -> None:
    audit_path = tmp_path / "audit.jsonl"
    app, session, clock = make_console(audit_path)
    edf_path = tmp_path / "bench.edf"
    async with app.run_test(size=SIZE) as pilot:
        await advance(app, clock, 5.0)
        assert "EDF+ off" in app.status_line.plain
        await pilot.press("r")
        field = app.screen.query_one("#record-path", Input)
        assert field.value.endswith(".edf")  # a suggestion the operator may keep
        field.value = str(edf_path)
        await pilot.press("enter")
        await pilot.pause()
        await advance(app, clock, 12.0)
        snap = session.snapshot()
        assert snap.recording and snap.record_path == str(edf_path)
        assert f"EDF+ {edf_path} ● REC" in app.status_line.plain
        await pilot.press("r")
        await pilot.pause()
        await advance(app, clock, 1.0)
        assert not session.snapshot().recording
        assert f"recording stopped: {edf_path}" in app.status_line.plain
        assert "EDF+ off" in app.status_line.plain
    with pyedflib.EdfReader(str(edf_path)) as edf:
        assert edf.filetype == pyedflib.FILETYPE_EDFPLUS
        info = snap.device
        assert info is not None
        assert edf.getSignalLabels() == [ch.label for ch in info.channels]
        seconds = edf.getNSamples()[0] / edf.getSampleFrequency(0)
        assert 11.0 <= seconds <= 14.0  # about the 12 virtual seconds between the keys
    kinds = audit_kinds(audit_path)
    assert kinds.count("recording_started") == kinds.count("recording_stopped") == 1
    assert verify_audit(audit_path).ok


async def test_the_fast_forward_runs_through_the_calibration_on_the_loop_thread(
    tmp_path: Path,
) -> None:
    app, session, clock = make_console(tmp_path / "audit.jsonl", console_config("off"))
    app.fast_forward_calibration = True
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(600):  # the jump runs on the loop's thread; the UI stays free
            await pilot.pause(0.05)
            snap = session.snapshot()
            if not clock.jumping and snap.detector is not None:
                break
        snap = session.snapshot()
        assert snap.detector is not None and snap.detector.state.value != "CALIBRATING"
        assert snap.calibration_elapsed_s == snap.calibration_s == 20.0
        assert clock.paused  # the test's clock stays paused after the jump
        assert clock.now() >= 20.0
        await app.redraw()
        assert "calibration" in app.detector_panel.plain and "20/20 s" in app.detector_panel.plain


async def test_a_device_that_never_answers_fails_cleanly_and_the_estop_still_works(
    tmp_path: Path,
) -> None:
    """A port with nothing behind it: the handshake runs out on the loop's thread while
    the screen stays live (an E-stop goes out and is audited), then the console ends
    with the unreachable device as its failure."""
    clock = ScaledClock()
    clock.pause()
    silent_ends: list[object] = []

    async def open_silent(url: object) -> MemoryLink:
        ours, theirs = memory_link_pair("silent")
        silent_ends.append(theirs)  # kept open, never read: nobody answers
        return ours

    registry = TransportRegistry()
    registry.register("sim", open_silent)
    audit_path = tmp_path / "audit.jsonl"
    node = build_node(console_config(), audit_path, None, datetime(2026, 1, 1, tzinfo=UTC))
    session = ConsoleSession("sim://nobody", node, clock, registry, clock)
    app = ConsoleApp(session, fast_forward_calibration=False, refresh_hz=None)
    async with app.run_test(size=SIZE) as pilot:
        await advance(app, clock, 0.5)
        assert session.snapshot().link.value == "connecting"
        await pilot.press("e")
        assert session.snapshot().estop_latched
        await advance(app, clock, 120.0)
        for _ in range(100):
            if app.failure is not None:
                break
            await pilot.pause(0.05)
    assert isinstance(app.failure, DeviceUnreachable), app.failure
    assert app.return_code == 1
    assert "estop" in audit_kinds(audit_path)
