"""SVG snapshots of the console (pytest-textual-snapshot): fixed terminal size, fixed seed,
virtual time paused at a fixed instant, no audit file path (tmp paths differ per run).
Update after a deliberate change of the layout with ``pytest --snapshot-update``."""

from __future__ import annotations

from textual.pilot import Pilot

from tests.test_tui_console import SIZE, advance, advance_until_calibrated, make_console


def test_main_screen_stimulating_after_calibration(snap_compare) -> None:  # type: ignore[no-untyped-def]
    app, _, clock = make_console(None)

    async def run_before(pilot: Pilot[int]) -> None:
        await advance_until_calibrated(app, clock, 300.0)
        await advance(app, clock, 5.0)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_main_screen_with_the_estop_latched(snap_compare) -> None:  # type: ignore[no-untyped-def]
    app, _, clock = make_console(None)

    async def run_before(pilot: Pilot[int]) -> None:
        await advance(app, clock, 40.0)
        await pilot.press("e")
        await advance(app, clock, 2.0)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
