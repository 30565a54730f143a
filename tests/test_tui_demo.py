"""The default demo (``neurostim console`` without arguments), in virtual time: the demo
patient's own calibration starts the detector calibrated, the fast-forward runs through
the prodrome's build-up, and within minutes after it the real detector reports PRODROME
and the real policy starts a stimulation session the device delivers."""

from __future__ import annotations

from datetime import UTC, datetime

from controller.run import build_node
from firmware_bridge.clock import ScaledClock
from firmware_bridge.transports.registry import TransportRegistry
from simulator.embedded import GroundTruthFeed
from tests.test_tui_console import SIZE
from tui.app import ConsoleApp
from tui.cli import DEFAULT_DEVICE, DEMO_FAST_FORWARD_S, demo_config
from tui.session import ConsoleSession

#: Minutes of real time after the fast-forward within which the demo must show both.
WITHIN_MIN = 6.0


async def test_the_demo_detects_and_stimulates_within_minutes_of_the_fast_forward() -> None:
    clock = ScaledClock()
    clock.pause()  # virtual time only: the test moves it
    registry = TransportRegistry()
    registry.register("sim", GroundTruthFeed(clock).open_url)
    config = demo_config()
    assert config.detector.calibration_file is not None
    node = build_node(config, None, None, datetime(2026, 1, 1, tzinfo=UTC))
    session = ConsoleSession(DEFAULT_DEVICE, node, clock, registry, clock)
    app = ConsoleApp(session, refresh_hz=None, fast_forward_after_s=DEMO_FAST_FORWARD_S)
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(6000):
            await pilot.pause(0.05)
            if session.now() >= DEMO_FAST_FORWARD_S and not clock.jumping:
                break
        after_ff_s = session.now()
        snap = session.snapshot()
        assert after_ff_s >= DEMO_FAST_FORWARD_S
        assert snap.calibration_elapsed_s == snap.calibration_s  # calibrated from the file
        assert snap.detector is not None and snap.detector.state.value != "PRODROME"
        prodrome_at = session_at = None
        while session.now() < after_ff_s + WITHIN_MIN * 60.0:
            await session.jump_by(10.0)
            snap = session.snapshot()
            state = snap.detector.state.value if snap.detector is not None else ""
            if prodrome_at is None and state == "PRODROME":
                prodrome_at = session.now()
            reported = snap.reported
            if session_at is None and reported is not None and reported.amplitude_ma > 0.0:
                session_at = session.now()
            if prodrome_at is not None and session_at is not None:
                break
        await app.redraw()
        assert prodrome_at is not None, "no PRODROME within the demo's first minutes"
        assert session_at is not None and session_at >= prodrome_at
        assert snap.policy == "prodrome-session"
        assert "PRODROME" in app.detector_panel.plain
        print(  # for the record: when, after the fast-forward
            f"PRODROME {(prodrome_at - after_ff_s) / 60:.1f} min and stimulation "
            f"{(session_at - after_ff_s) / 60:.1f} min after the fast-forward"
        )
