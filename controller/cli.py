"""Subcommands owned by the controller: ``run``."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from controller.session_summary import SessionSummary, run_session
from firmware_bridge.clock import MonotonicClock
from firmware_bridge.connection import DeviceUnreachable, ProtocolMismatch
from firmware_bridge.transports.base import LinkClosed
from firmware_bridge.url import DeviceURLError

EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_PROTOCOL = 4


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser(
        "run",
        help="run a controller session against a device URL",
        description=(
            "Connect to a device (sim://, serial:///dev/…, a device path), handshake, keep "
            "heartbeats, receive samples for --duration seconds and print a summary."
        ),
    )
    run.add_argument(
        "--device", required=True, help="device URL, e.g. sim:// or serial:///dev/pts/3"
    )
    run.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.set_defaults(handler=_run_command)


def _run_command(args: argparse.Namespace) -> int:
    if args.duration <= 0:
        print("neurostim run: --duration must be > 0 seconds", file=sys.stderr)
        return EXIT_USAGE
    try:
        summary = asyncio.run(_run(args))
    except DeviceURLError as exc:
        print(f"neurostim run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ProtocolMismatch as exc:
        print(f"neurostim run: protocol version mismatch: {exc}", file=sys.stderr)
        return EXIT_PROTOCOL
    except (DeviceUnreachable, LinkClosed) as exc:
        print(f"neurostim run: cannot reach the device: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        print(format_summary(summary))
    return 0


async def _run(args: argparse.Namespace) -> SessionSummary:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await run_session(args.device, args.duration, MonotonicClock(), stop)


def format_summary(s: SessionSummary) -> str:
    d = s.device
    lines = [
        f"device      {d.get('device_id')}  firmware {d.get('firmware_version')}  "
        f"protocol {d.get('protocol')}",
        f"signals     {d.get('channels')} ch @ {d.get('sampling_rate_hz')} Hz  "
        f"labels {', '.join(str(x) for x in d.get('labels', []))}",  # type: ignore[attr-defined]
        f"limits      <= {d.get('max_amplitude_ma')} mA, pulse {d.get('pulse_width_us')} µs, "
        f"rate {d.get('frequency_hz')} Hz, ramp <= {d.get('max_ramp_rate_ma_per_s')} mA/s",
        f"session     {s.duration_s:.1f} s, {s.connects} handshake(s), {s.peer_lost} loss(es)",
        f"frames      {s.frames_rx} received, {s.frames_tx} sent, {s.frames_lost} lost (seq gaps)",
        f"samples     {s.samples} in {s.sample_frames} frames, {s.sample_gaps} gap(s), "
        f"{s.samples_missing} missing, {s.sample_duplicates} duplicate frame(s)",
        f"errors      {s.crc_errors} CRC, {s.cobs_errors} COBS, {s.oversize_frames} oversize, "
        f"{s.unknown_type} unknown type, {s.malformed} malformed",
    ]
    if s.last_battery_pct is not None:
        lines.append(f"battery     {s.last_battery_pct} %")
    if s.faults:
        lines.append(f"faults      {'; '.join(s.faults)}")
    return "\n".join(lines)
