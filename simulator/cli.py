"""Subcommands owned by the simulator: ``device serve`` (and ``bench sim``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from pathlib import Path

from firmware_bridge.clock import MonotonicClock
from firmware_bridge.keys import KeyFileError, load_key
from firmware_bridge.stop_signals import stop_on_signals
from firmware_bridge.transports.base import Link
from firmware_bridge.transports.mqtt import KEEPALIVE_S
from firmware_bridge.transports.pty_link import PtyDeviceLink
from firmware_bridge.transports.serial_link import DEFAULT_BAUD, SerialLink
from firmware_bridge.url import DeviceURLError, parse_broker_url
from simulator.device_factory import DeviceSpecError, build_device
from simulator.embedded import device_link
from simulator.firmware import FirmwareConfig
from simulator.mqtt_serve import build_broker_devices, fleet_ids, serve_broker_devices
from simulator.serve import serve_firmware


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    device = sub.add_parser("device", help="the simulated device")
    device_sub = device.add_subparsers(dest="device_command", required=True, metavar="ACTION")
    serve = device_sub.add_parser(
        "serve",
        help="serve the simulated device on a transport until SIGINT/SIGTERM",
        description=(
            "Serve the simulated device. With --transport serial --pty it opens a new "
            "pseudo-terminal and prints its device URL (serial:///dev/pts/N) as the first "
            "line on stdout. With --transport mqtt it serves --device-id (or --count N "
            "devices ID-1..ID-N) on the broker at --broker and prints each device's URL "
            "(mqtt://HOST:PORT/ID) on stdout; signing is then required (--key-file) unless "
            "--insecure is given."
        ),
    )
    serve.add_argument("--transport", choices=["serial", "mqtt"], default="serial")
    where = serve.add_mutually_exclusive_group()
    where.add_argument("--pty", action="store_true", help="open a new pseudo-terminal")
    where.add_argument("--port", help="serve on an existing serial port (path or pyserial URL)")
    serve.add_argument("--baud", type=int, default=DEFAULT_BAUD)
    serve.add_argument(
        "--scenario",
        default="default",
        help="built-in scenario (default, aura-demo, faults), a scenario TOML file, or noise",
    )
    serve.add_argument("--model", choices=["spectral", "jansen-rit"], help="signal model")
    serve.add_argument(
        "--samples-per-frame",
        type=int,
        help=f"samples per SAMPLES frame (default {FirmwareConfig.samples_per_frame})",
    )
    serve.add_argument(
        "--signal-block-frames",
        type=int,
        default=1,
        help=(
            "generate the signal N frames at a time (default 1: a stimulation change shows "
            "in the signal within one frame; more costs less CPU per device, for fleets)"
        ),
    )
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument(
        "--key-file",
        help=(
            "sign-checking key file (`neurostim keygen`; mode 0600): the device then refuses "
            "unsigned STIM_SET and ESTOP_CLEAR. Its key is the line of the device's id "
            f"({FirmwareConfig().device_id}) or the `*` line"
        ),
    )
    mqtt = serve.add_argument_group("MQTT (--transport mqtt)")
    mqtt.add_argument(
        "--broker",
        help="broker URL mqtt://[user[:pass]@]host[:port][?tls=1&ca=FILE&password_file=FILE]",
    )
    mqtt.add_argument("--device-id", help="device id on the broker (topic neurostim/v1/ID/...)")
    mqtt.add_argument(
        "--count", type=int, help="serve N devices ID-1..ID-N (patient seeds seed..seed+N-1)"
    )
    mqtt.add_argument(
        "--insecure", action="store_true", help="serve without signing (tests and benches only)"
    )
    mqtt.add_argument(
        "--state-dir",
        default=str(default_state_dir()),
        help="where each device keeps its presence session counter (default: %(default)s)",
    )
    mqtt.add_argument(
        "--keepalive", type=int, default=KEEPALIVE_S, help="MQTT keepalive in s (default 5)"
    )
    serve.set_defaults(handler=_serve_command)


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "neurostim" / "mqtt"


def register_bench(bench_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``bench sim`` is registered once the physiology models land."""
    from simulator.physiology import bench as physiology_bench

    parser = bench_sub.add_parser("sim", help="real-time factor of the signal models")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=lambda a: physiology_bench.main_bench_sim(json_out=a.json))
    from simulator import mqtt_bench

    mqtt_bench.register(bench_sub)


def _serve_command(args: argparse.Namespace) -> int:
    for flag, value in (
        ("--signal-block-frames", args.signal_block_frames),
        ("--samples-per-frame", args.samples_per_frame),
    ):
        if value is not None and value < 1:
            print(f"neurostim device serve: {flag} must be >= 1", file=sys.stderr)
            return 2
    if args.transport == "mqtt":
        return asyncio.run(_serve_mqtt(args))
    if not (args.pty or args.port):
        print("neurostim device serve: --transport serial needs --pty or --port", file=sys.stderr)
        return 2
    return asyncio.run(_serve(args))


def device_key(key_file: str | None) -> bytes | None:
    """The simulated device's signing key from ``--key-file`` (None: signing off)."""
    if key_file is None:
        return None
    return load_key(key_file, FirmwareConfig().device_id)


async def _serve(args: argparse.Namespace) -> int:
    clock = MonotonicClock()
    params = {"seed": str(args.seed)}
    if args.model:
        params["model"] = args.model
    try:
        key = device_key(args.key_file)
        device = build_device(
            args.scenario,
            params,
            start_s=clock.now(),
            signing_key=key,
            samples_per_frame=args.samples_per_frame,
            signal_block_frames=args.signal_block_frames,
        )
    except (DeviceSpecError, KeyFileError) as exc:
        print(f"neurostim device serve: {exc}", file=sys.stderr)
        return 2
    firmware = device.firmware
    link: Link
    if args.pty:
        pty = PtyDeviceLink()
        link = pty
        print(pty.url, flush=True)
    else:
        link = await SerialLink.open(args.port, args.baud)
        print(f"serial://{args.port}?baud={args.baud}", flush=True)
    print(
        f"simulated device {firmware.info.device_id}: {firmware.info.n_channels} ch @ "
        f"{firmware.info.sampling_rate_hz} Hz on {link.description}; Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    stop = stop_on_signals()
    try:
        await serve_firmware(firmware, device_link(device, link, clock, args.seed), clock, stop)
    finally:
        with contextlib.suppress(Exception):
            await link.close()
    stats = firmware.session.stats
    print(
        f"stopped: {stats.frames_tx} frames sent, {stats.frames_rx} received, "
        f"{stats.crc_errors} CRC errors, {firmware.commands_applied} commands applied",
        file=sys.stderr,
    )
    return 0


def _mqtt_usage_error(args: argparse.Namespace) -> str | None:
    if args.pty or args.port:
        return "--pty and --port are for --transport serial"
    if not args.broker or not args.device_id:
        return "--transport mqtt needs --broker URL and --device-id ID"
    if args.count is not None and args.count < 1:
        return "--count must be at least 1"
    if args.key_file is None and not args.insecure:
        return (
            "signing is required over MQTT: give --key-file FILE (`neurostim keygen`), "
            "or --insecure to serve unsigned"
        )
    if args.key_file is not None and args.insecure:
        return "--key-file and --insecure exclude each other"
    if not 1 <= args.keepalive <= 65535:
        return "--keepalive must be 1-65535 s"
    return None


async def _serve_mqtt(args: argparse.Namespace) -> int:
    problem = _mqtt_usage_error(args)
    clock = MonotonicClock()
    try:
        if problem is not None:
            raise ValueError(problem)
        broker = parse_broker_url(args.broker)
        ids = fleet_ids(args.device_id, args.count)
        keys = None if args.key_file is None else {i: load_key(args.key_file, i) for i in ids}
        fleet = build_broker_devices(
            broker,
            ids,
            clock,
            args.state_dir,
            args.scenario,
            args.model,
            args.seed,
            keys,
            args.keepalive,
            args.samples_per_frame,
            args.signal_block_frames,
        )
    except (ValueError, DeviceURLError) as exc:  # DeviceSpecError, KeyFileError, counters
        print(f"neurostim device serve: {exc}", file=sys.stderr)
        return 2
    for member in fleet:
        print(f"mqtt://{broker.host}:{broker.port}/{member.device_id}", flush=True)
    print(
        f"{len(fleet)} simulated device(s) on {broker}, "
        f"{'signed' if keys is not None else 'UNSIGNED (--insecure)'}; Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    stop = stop_on_signals()
    await serve_broker_devices(fleet, clock, stop)
    applied = sum(m.device.firmware.commands_applied for m in fleet)
    connects = sum(m.link.stats.connects for m in fleet)
    print(
        f"stopped: {len(fleet)} device(s), {connects} broker connects, {applied} commands applied",
        file=sys.stderr,
    )
    return 0


def bench_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("simulator.physiology.bench") is not None
