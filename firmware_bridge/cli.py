"""Subcommands owned by firmware_bridge: ``bench codec`` and ``keygen``."""

from __future__ import annotations

import argparse
import sys

from firmware_bridge.keys import ANY_DEVICE, KeyFileError, add_key


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


def _keygen(args: argparse.Namespace) -> int:
    try:
        add_key(args.out, args.device_id)
    except KeyFileError as exc:
        print(f"neurostim keygen: {exc}", file=sys.stderr)
        return 2
    print(f"added a key for {args.device_id} to {args.out}", file=sys.stderr)
    return 0


def register_bench(bench_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = bench_sub.add_parser("codec", help="codec throughput and wire efficiency")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--frames", type=int, default=100_000, help="frames to encode+decode")
    parser.set_defaults(handler=_bench_codec)


def _bench_codec(args: argparse.Namespace) -> int:
    from firmware_bridge.bench import main_bench_codec

    return main_bench_codec(json_out=args.json, n_frames=args.frames)
