"""Subcommands owned by the simulator: ``device serve`` (and ``bench sim``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from firmware_bridge.clock import MonotonicClock
from firmware_bridge.keys import KeyFileError, load_key
from firmware_bridge.transports.base import Link
from firmware_bridge.transports.pty_link import PtyDeviceLink
from firmware_bridge.transports.serial_link import DEFAULT_BAUD, SerialLink
from simulator.device_factory import DeviceSpecError, build_device
from simulator.embedded import device_link
from simulator.firmware import FirmwareConfig
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
            "line on stdout."
        ),
    )
    serve.add_argument("--transport", choices=["serial"], default="serial")
    where = serve.add_mutually_exclusive_group(required=True)
    where.add_argument("--pty", action="store_true", help="open a new pseudo-terminal")
    where.add_argument("--port", help="serve on an existing serial port (path or pyserial URL)")
    serve.add_argument("--baud", type=int, default=DEFAULT_BAUD)
    serve.add_argument(
        "--scenario",
        default="default",
        help="built-in scenario (default, aura-demo, faults), a scenario TOML file, or noise",
    )
    serve.add_argument("--model", choices=["spectral", "jansen-rit"], help="signal model")
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument(
        "--key-file",
        help=(
            "sign-checking key file (`neurostim keygen`; mode 0600): the device then refuses "
            "unsigned STIM_SET and ESTOP_CLEAR. Its key is the line of the device's id "
            f"({FirmwareConfig().device_id}) or the `*` line"
        ),
    )
    serve.set_defaults(handler=_serve_command)


def register_bench(bench_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``bench sim`` is registered once the physiology models land."""
    from simulator.physiology import bench as physiology_bench

    parser = bench_sub.add_parser("sim", help="real-time factor of the signal models")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=lambda a: physiology_bench.main_bench_sim(json_out=a.json))


def _serve_command(args: argparse.Namespace) -> int:
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
        device = build_device(args.scenario, params, start_s=clock.now(), signing_key=key)
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
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
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


def bench_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("simulator.physiology.bench") is not None
