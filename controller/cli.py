"""Subcommands owned by the controller: ``run``, ``config``, ``analyze``, ``audit``,
``bench controller``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from controller.calibrate_cli import register_calibrate
from controller.config import ConfigError, ControllerConfig, load_config
from controller.config_cli import register_config
from controller.envelope import EnvelopeConflict
from controller.records_cli import register_records
from controller.run import RunResult, run_controller
from firmware_bridge.clock import AsyncioClock
from firmware_bridge.errors import DeviceUnreachable, ProtocolMismatch
from firmware_bridge.exit_codes import ExitCode
from firmware_bridge.keys import KeyFileError, load_key
from firmware_bridge.stop_signals import stop_on_signals
from firmware_bridge.transports.base import LinkClosed
from firmware_bridge.url import DeviceURLError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser(
        "run",
        help="run the closed-loop controller against a device URL",
        description=(
            "Connect to a device (sim://, serial:///dev/…, a device path), run the closed loop "
            "(features, detector, policy, safety envelope) with reconnection, and on SIGINT/"
            "SIGTERM or after --duration ramp stimulation down and exit 0."
        ),
    )
    run.add_argument("--device", required=True, help="device URL, e.g. sim:// or /dev/ttyUSB0")
    run.add_argument("--config", type=Path, help="controller configuration TOML")
    run.add_argument("--duration", type=float, help="seconds to run (default: until SIGINT)")
    run.add_argument("--record", type=Path, help="write an EDF+ recording here")
    run.add_argument("--audit", type=Path, help="append the hash-chained audit log (JSONL) here")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.add_argument(
        "--key-file",
        help=(
            "sign STIM_SET, ESTOP_CLEAR and HELLO with the key from this key file "
            "(`neurostim keygen`; mode 0600); keys are never taken from the command line "
            "or the configuration"
        ),
    )
    run.add_argument(
        "--device-id",
        help="which key of the key file to use (default: the file's only key)",
    )
    run.set_defaults(handler=_run_command)
    register_config(sub)
    register_records(sub)
    register_calibrate(sub)


def register_bench(bench_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = bench_sub.add_parser("controller", help="feature pipeline speed and loop latency")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--async-seconds",
        type=float,
        default=20.0,
        help="real-time seconds per async-shell latency case (0 skips them)",
    )
    parser.set_defaults(handler=_bench_controller)


def _bench_controller(args: argparse.Namespace) -> int:
    from controller.bench import main_bench_controller

    return main_bench_controller(json_out=args.json, async_seconds=args.async_seconds)


def _run_command(args: argparse.Namespace) -> int:
    if args.duration is not None and args.duration <= 0:
        print("neurostim run: --duration must be > 0 seconds", file=sys.stderr)
        return ExitCode.USAGE
    try:
        config = load_config(args.config) if args.config else ControllerConfig()
        key = load_key(args.key_file, args.device_id) if args.key_file else None
    except (ConfigError, KeyFileError) as exc:
        print(f"neurostim run: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        result = asyncio.run(_run(args, config, key))
    except DeviceURLError as exc:
        print(f"neurostim run: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except ProtocolMismatch as exc:
        print(f"neurostim run: protocol version mismatch: {exc}", file=sys.stderr)
        return ExitCode.PROTOCOL
    except EnvelopeConflict as exc:
        print(f"neurostim run: configuration exceeds the device: {exc}", file=sys.stderr)
        return ExitCode.ENVELOPE
    except (DeviceUnreachable, LinkClosed) as exc:
        print(f"neurostim run: cannot reach the device: {exc}", file=sys.stderr)
        return ExitCode.UNREACHABLE
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, default=str))
    else:
        print(format_result(result))
    return 0


async def _run(
    args: argparse.Namespace, config: ControllerConfig, key: bytes | None = None
) -> RunResult:
    stop = stop_on_signals()
    return await run_controller(
        args.device,
        config,
        AsyncioClock(),
        start=datetime.now(UTC),
        duration_s=args.duration,
        audit_path=args.audit or _optional_path(config.recording.audit_path),
        record_path=args.record or _optional_path(config.recording.edf_path),
        stop=stop,
        annotation_source=getattr(args, "annotation_source", None),
        key=key,
    )


def _optional_path(value: str | None) -> Path | None:
    return Path(value) if value else None


def format_result(r: RunResult) -> str:
    d = r.loop.device
    link = r.loop.link
    core = r.core
    lines = [
        f"device      {d.get('device_id')}  firmware {d.get('firmware_version')}  "
        f"protocol {d.get('protocol')}  {d.get('channels')} ch @ {d.get('sampling_rate_hz')} Hz",
        f"session     {r.loop.connects} connect(s), {r.loop.link_losses} link loss(es), "
        f"stopped by {r.loop.stopped_by or 'link'}, ramped down: {r.loop.ramped_down}",
        f"frames      {link.get('frames_rx', 0)} received, {link.get('frames_tx', 0)} sent, "
        f"{link.get('frames_lost', 0)} lost, {link.get('crc_errors', 0)} CRC errors, "
        f"{link.get('retransmits', 0)} retransmits",
        f"samples     {link.get('samples', 0)}, {link.get('sample_gaps', 0)} gap(s), "
        f"{link.get('samples_missing', 0)} missing",
        f"pipeline    {core.windows} windows, {core.decisions} decisions, {core.state_changes} "
        f"detector state changes, final state {r.final_state}",
        f"commands    {core.commands} sent, {core.acks} acked, {core.nacks} nacked, "
        f"{core.timeouts} timed out; clamps {core.clamps or 0}; refusals {core.refusals or 0}",
    ]
    if r.audit_path:
        lines.append(f"audit       {r.audit_path}")
    if r.record_path:
        lines.append(f"recording   {r.record_path}")
    if r.loop.errors:
        lines.append(f"errors      {'; '.join(r.loop.errors)}")
    return "\n".join(lines)
