"""What the bench console costs the closed loop (printed, never asserted).

Run from the repository root: ``.venv/bin/python -m benchmarks.bench_console [--seconds S]
[--rss-hours H] [--fast-forward-s S]``.

- Latency: the scripted device of ``controller.bench_async`` (noise in real time, every
  command ACKed) at 8 ch @ 250 Hz and 64 ch @ 1 kHz, the real loop and node on the
  console's loop thread, with the console attached (headless, 160x50, redrawing at its
  normal rate on its own thread) and without it: chunk latency (receive to next receive,
  which includes the console's sample tap), the loop thread's event-loop lag, the time
  to draw a view, and what was dropped (samples the display missed, frames lost, gaps,
  audit-writer waits).
- Fast-forward: the wall time the console takes to fast-forward the detector's default
  calibration on the embedded simulated patient.
- Memory: the console on the embedded simulated patient, fast-forwarded through
  ``--rss-hours`` of virtual time; RSS sampled every 5 virtual minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from textual.pilot import Pilot

from controller.bench_async import BenchDevices, _lag_probe
from controller.bench_device import bench_device
from controller.config import ControllerConfig
from controller.run import build_node
from firmware_bridge.clock import AsyncioClock, ScaledClock
from firmware_bridge.transports.registry import TransportRegistry
from simulator.embedded import GroundTruthFeed
from tui.app import ConsoleApp
from tui.session import ConsoleSession

SIZE = (160, 50)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


async def latency(
    n_channels: int, rate_hz: int, seconds: float, console: bool
) -> dict[str, object]:
    clock = AsyncioClock()
    info = bench_device(n_channels, rate_hz, samples_per_frame=max(1, rate_hz // 100))
    config = ControllerConfig.model_validate(
        {"policy": {"name": "open-loop", "open_loop": {"mode": "continuous"}}}
    )
    tmp = Path(tempfile.mkdtemp())
    node = build_node(
        config, tmp / "audit.jsonl", tmp / "rec.edf", datetime.now(UTC), threaded_writes=True
    )
    bench = BenchDevices(info, clock)
    session = ConsoleSession("sim://bench", node, clock, bench.registry)
    lags: list[float] = []
    stop_probe = asyncio.Event()
    session.thread.start()
    session.thread.submit(_lag_probe(lags, stop_probe))  # the loop thread's lag
    redraw_s: list[float] = []
    try:
        if console:
            app = ConsoleApp(session, fast_forward_calibration=False)
            plain_draw = app.draw

            def timed_draw() -> None:
                t0 = time.perf_counter()
                plain_draw()
                redraw_s.append(time.perf_counter() - t0)

            app.draw = timed_draw  # type: ignore[method-assign]
            async with app.run_test(size=SIZE) as pilot:
                await asyncio.sleep(seconds)
                await pilot.press("q")
                while not node.finished:
                    await asyncio.sleep(0.05)
        else:
            done = session.start()
            await asyncio.sleep(seconds)
            await session.quit()
            await asyncio.wrap_future(done)
    finally:
        if session.thread.running:
            session.thread.call(stop_probe.set).result(5.0)
            session.thread.submit(bench.stop()).result(5.0)
        session.shutdown()  # what is left on the loop thread is cancelled
    chunk_ms = np.array(bench.chunk_s()) * 1e3
    lag_ms = np.array(lags) * 1e3
    counters = node.link_counters()
    shown = 0 if session.tap.buffer is None else session.tap.buffer.samples_seen
    return {
        "config": f"{n_channels} ch @ {rate_hz} Hz",
        "console": "attached" if console else "none",
        "chunks": int(chunk_ms.size),
        "p50_ms": float(np.percentile(chunk_ms, 50)),
        "p99_ms": float(np.percentile(chunk_ms, 99)),
        "lag_p99_ms": float(np.percentile(lag_ms, 99)),
        "redraws": len(redraw_s),
        "redraw_p99_ms": float(np.percentile(np.array(redraw_s) * 1e3, 99)) if redraw_s else 0.0,
        "samples": counters.samples,
        "tap_missed": counters.samples - shown if console else 0,
        "frames_lost": counters.frames_lost,
        "gaps": counters.sample_gaps,
        "audit_waits": node.audit.overflows,
    }


def console_on_demo_patient(config: ControllerConfig) -> tuple[ConsoleApp, ConsoleSession]:
    clock = ScaledClock()
    registry = TransportRegistry()
    registry.register("sim", GroundTruthFeed(clock).open_url)
    tmp = Path(tempfile.mkdtemp())
    node = build_node(config, tmp / "audit.jsonl", None, datetime.now(UTC), threaded_writes=True)
    session = ConsoleSession("sim://console-demo?seed=1", node, clock, registry, clock)
    return ConsoleApp(session, fast_forward_calibration=False), session


async def quit_console(app: ConsoleApp, session: ConsoleSession, pilot: Pilot[int]) -> None:
    await session.pause()
    await pilot.press("q")
    await session.run_on()
    await session.jump_by(120.0)


async def fast_forward(calibration_s: float) -> tuple[float, float]:
    """(virtual s, wall s) of the console's fast-forward through the calibration."""
    config = ControllerConfig.model_validate({"detector": {"calibration_s": calibration_s}})
    app, session = console_on_demo_patient(config)
    async with app.run_test(size=SIZE) as pilot:
        t0 = time.perf_counter()
        await session.fast_forward_calibration()
        wall_s = time.perf_counter() - t0
        virtual_s = session.now()
        await quit_console(app, session, pilot)
    return virtual_s, wall_s


async def memory(hours: float) -> list[tuple[float, float]]:
    app, session = console_on_demo_patient(ControllerConfig())
    samples: list[tuple[float, float]] = []
    async with app.run_test(size=SIZE) as pilot:
        step_s = 300.0
        while session.now() < hours * 3600.0:
            await session.jump_by(step_s)
            await app.redraw()
            samples.append((session.now(), rss_mb()))
            print(
                f"  virtual {session.now() / 60:5.0f} min  RSS {samples[-1][1]:7.1f} MB",
                flush=True,
            )
        await quit_console(app, session, pilot)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="real time per latency case")
    parser.add_argument("--rss-hours", type=float, default=1.0, help="virtual hours (0 skips)")
    parser.add_argument(
        "--fast-forward-s",
        type=float,
        default=ControllerConfig().detector.calibration_s,
        help="calibration seconds to fast-forward (0 skips)",
    )
    args = parser.parse_args()
    # The scripted device speaks protocol 1.0 without ramps or an E-stop latch: the node's
    # device check reports it on every status (and E-stops); the numbers stay valid.
    logging.basicConfig(level=logging.ERROR)
    if args.seconds > 0:
        rows = []
        for n, rate in ((8, 250), (64, 1000)):
            for console in (False, True):
                rows.append(asyncio.run(latency(n, rate, args.seconds, console)))
                print(rows[-1], flush=True)
        keys = list(rows[0])
        print("  ".join(f"{k:>13}" for k in keys))
        for row in rows:
            print(
                "  ".join(
                    f"{v:>13.3f}" if isinstance(v, float) else f"{v!s:>13}" for v in row.values()
                )
            )
    if args.fast_forward_s > 0:
        virtual_s, wall_s = asyncio.run(fast_forward(args.fast_forward_s))
        print(
            f"fast-forward: {virtual_s:.0f} virtual s in {wall_s:.1f} s wall "
            f"({virtual_s / wall_s:.0f}x)"
        )
    if args.rss_hours > 0:
        t0 = time.perf_counter()
        samples = asyncio.run(memory(args.rss_hours))
        base = next((rss for t, rss in samples if t >= 600.0), samples[0][1])
        growth = (samples[-1][1] - base) / base * 100.0
        print(
            f"RSS {base:.1f} MB at 10 min -> {samples[-1][1]:.1f} MB at "
            f"{samples[-1][0] / 60:.0f} min: {growth:+.2f} % "
            f"({time.perf_counter() - t0:.0f} s wall)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
