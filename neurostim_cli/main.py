"""Entry point of the ``neurostim`` console script."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from controller import cli as controller_cli
from firmware_bridge import cli as bridge_cli
from firmware_bridge.transports.registry import transports
from hil import cli as hil_cli
from insilico import cli as insilico_cli
from simulator import cli as simulator_cli
from simulator.embedded import GroundTruthFeed
from tui import cli as console_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neurostim",
        description="Closed-loop neuromodulation controller and device simulator.",
    )
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument(
        "-v", "--verbose", action="store_true", help="log connects, losses, retries at INFO"
    )
    verbosity.add_argument("-q", "--quiet", action="store_true", help="log errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    bench = sub.add_parser("bench", help="print performance numbers (not asserted)")
    bench_sub = bench.add_subparsers(dest="target", required=True, metavar="TARGET")
    bridge_cli.register_bench(bench_sub)
    bridge_cli.register(sub)
    simulator_cli.register(sub)
    if simulator_cli.bench_available():
        simulator_cli.register_bench(bench_sub)
    insilico_cli.register(sub)
    controller_cli.register(sub)
    hil_cli.register(sub)
    controller_cli.register_bench(bench_sub)
    insilico_cli.register_bench(bench_sub)
    console_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    truth = GroundTruthFeed()
    transports.register("sim", truth.open_url)
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.INFO if args.verbose else logging.ERROR if args.quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    args.annotation_source = truth.drain  # ground truth of sim:// devices into recordings
    args.use_sim_clock = truth.use_clock  # the console paces simulated devices
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
