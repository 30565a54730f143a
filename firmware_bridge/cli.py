"""Subcommands owned by firmware_bridge: ``bench codec``."""

from __future__ import annotations

import argparse


def register_bench(bench_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = bench_sub.add_parser("codec", help="codec throughput and wire efficiency")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--frames", type=int, default=100_000, help="frames to encode+decode")
    parser.set_defaults(handler=_bench_codec)


def _bench_codec(args: argparse.Namespace) -> int:
    from firmware_bridge.bench import main_bench_codec

    return main_bench_codec(json_out=args.json, n_frames=args.frames)
