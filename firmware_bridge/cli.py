"""Subcommands owned by firmware_bridge: ``bench codec``, ``keygen`` and ``devices``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from firmware_bridge.errors import LinkClosed
from firmware_bridge.keys import ANY_DEVICE, KeyFileError, add_key
from firmware_bridge.url import DeviceURLError, MqttBroker, parse_broker_url


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keygen = sub.add_parser(
        "keygen",
        help="add a new random signing key to a key file (created with mode 0600)",
        description=(
            "Append a new random 32-byte signing key for one device to a key file "
            "(`<device id> <hex key>` lines; `*` matches any device). Give the same file "
            "to `neurostim device serve --key-file` and to the controller's --key-file. "
            "Keys are never accepted on the command line or in a configuration file."
        ),
    )
    keygen.add_argument(
        "--device-id", default=ANY_DEVICE, help="device the key is for (default: any device)"
    )
    keygen.add_argument("--out", required=True, help="key file to create or append to")
    keygen.set_defaults(handler=_keygen)
    devices = sub.add_parser(
        "devices",
        help="list the devices on an MQTT broker from their retained presence",
        description=(
            "List the devices with a presence record on the broker (id, online/offline, "
            "firmware, session counter, last seen) and exit; --watch prints every change "
            "until Ctrl-C. A retained 'online' is the device's claim at its last connect."
        ),
    )
    devices.add_argument("--broker", required=True, help="mqtt://[user[:pass]@]host[:port]")
    devices.add_argument("--watch", action="store_true", help="follow changes until Ctrl-C")
    devices.add_argument("--json", action="store_true", help="print JSON instead of a table")
    devices.set_defaults(handler=_devices)


def _keygen(args: argparse.Namespace) -> int:
    try:
        add_key(args.out, args.device_id)
    except KeyFileError as exc:
        print(f"neurostim keygen: {exc}", file=sys.stderr)
        return 2
    print(f"added a key for {args.device_id} to {args.out}", file=sys.stderr)
    return 0


def _devices(args: argparse.Namespace) -> int:
    try:
        broker = parse_broker_url(args.broker)
    except DeviceURLError as exc:
        print(f"neurostim devices: {exc}", file=sys.stderr)
        return 2
    try:
        if args.watch:
            return asyncio.run(_watch_devices(broker, args.json))
        from firmware_bridge.presence_watch import format_table, read_presence, to_json

        records = list(asyncio.run(read_presence(broker)).current.values())
    except LinkClosed as exc:
        print(f"neurostim devices: {exc}", file=sys.stderr)
        return 1
    print(to_json(records) if args.json else format_table(records))
    return 0


async def _watch_devices(broker: MqttBroker, json_out: bool) -> int:
    import json

    from firmware_bridge.presence_watch import describe, watch_presence
    from firmware_bridge.stop_signals import stop_on_signals
    from firmware_bridge.transports.mqtt_presence import Presence

    stop = stop_on_signals()

    def show(record: Presence) -> None:
        row = describe(record)
        if json_out:
            print(json.dumps(row), flush=True)
        else:
            print(
                f"{row['device_id']} {row['state']} session {row['session']} "
                f"firmware {row['firmware']} (record {row['record_utc']})",
                flush=True,
            )

    await watch_presence(broker, show, stop)
    return 0


def register_bench(bench_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = bench_sub.add_parser("codec", help="codec throughput and wire efficiency")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--frames", type=int, default=100_000, help="frames to encode+decode")
    parser.set_defaults(handler=_bench_codec)


def _bench_codec(args: argparse.Namespace) -> int:
    from firmware_bridge.bench import main_bench_codec

    return main_bench_codec(json_out=args.json, n_frames=args.frames)
