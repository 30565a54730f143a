"""``neurostim hil``: run the rig against a device URL; table on stdout, progress on stderr.

Exit codes (firmware_bridge.exit_codes): 0 every case passed (or was marginal/skipped),
1 a case failed or could not finish, 2 bad arguments, 3 device unreachable, 4 the device
speaks another major protocol version.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from firmware_bridge.errors import DeviceURLError, LinkClosed, ProtocolMismatch
from firmware_bridge.exit_codes import ExitCode
from firmware_bridge.framing import PROTOCOL_MAJOR
from firmware_bridge.keys import KeyFileError, load_key, load_keys
from firmware_bridge.url import parse_device_url
from hil.catalog import SUITES, Case, select
from hil.context import RigOptions
from hil.measurement import Verdict
from hil.report import Reports, table
from hil.runner import CaseResult, Rig, RunInfo, run_all


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "hil",
        help="hardware-in-the-loop rig: conformance, latency and fault suites for a device",
        description=(
            "Judge a device by docs/protocol.md: every MUST as a case with limits, "
            "latency percentiles and fault handling. Cases run one at a time; each ends "
            "with the device's stimulation off."
        ),
    )
    p.add_argument("--device", required=True, help="device URL (serial://..., mqtt://..., sim://)")
    p.add_argument(
        "--suite", default=",".join(SUITES), help=f"comma-separated suites ({', '.join(SUITES)})"
    )
    p.add_argument("--case", action="append", default=[], metavar="ID", help="run only this case")
    p.add_argument("--junit", metavar="FILE.xml", help="write JUnit XML (after every case)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON (after every case)")
    p.add_argument("--key-file", help="signing key file (mode 0600): enables the signing cases")
    p.add_argument(
        "--iterations", type=int, default=10_000, help="scheduled stimuli of the latency suite"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the garbage and fault patterns")
    p.add_argument("--histograms", metavar="DIR", help="write latency histograms (.hgrm) here")
    p.add_argument("--abort-early", action="store_true", help="stop at the first failed case")
    p.set_defaults(handler=_command)


def _usage(text: str) -> int:
    print(f"neurostim hil: {text}", file=sys.stderr)
    return int(ExitCode.USAGE)


def _command(args: argparse.Namespace) -> int:
    suites = [s.strip() for s in args.suite.split(",") if s.strip()]
    bad = [s for s in suites if s not in SUITES]
    if bad:
        return _usage(f"unknown suite(s) {bad}; known: {', '.join(SUITES)}")
    if args.iterations < 1:
        return _usage("--iterations must be >= 1")
    try:
        cases = select(suites, args.case)
        parse_device_url(args.device)
    except KeyError as exc:
        return _usage(str(exc.args[0]))
    except DeviceURLError as exc:
        return _usage(str(exc))
    if args.key_file:
        try:
            load_keys(args.key_file)  # readable, private and well-formed, before any I/O
        except KeyFileError as exc:
            return _usage(str(exc))
    options = RigOptions(args.device, args.iterations, args.seed, None, args.histograms)
    return asyncio.run(_run(options, cases, args, args.key_file))


async def _run(
    options: RigOptions, cases: list[Case], args: argparse.Namespace, key_file: str | None
) -> int:
    rig = Rig(options)
    run = RunInfo(options.url, options.seed)
    reports = Reports(run, args.junit, args.json)
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, main.cancel)
    try:
        try:
            run.info = await asyncio.wait_for(rig.open(), 10.0)
        except ProtocolMismatch as exc:
            print(f"neurostim hil: {options.url}: {exc}", file=sys.stderr)
            return int(ExitCode.PROTOCOL)
        except asyncio.CancelledError:
            return int(ExitCode.FAILED)  # interrupted before any case ran
        except (LinkClosed, OSError, TimeoutError) as exc:
            print(f"neurostim hil: {options.url} unreachable: {exc}", file=sys.stderr)
            return int(ExitCode.UNREACHABLE)
        if key_file is not None:
            try:
                key = load_key(key_file, run.info.device_id)
            except KeyFileError as exc:
                print(f"neurostim hil: {exc}", file=sys.stderr)
                return int(ExitCode.USAGE)
            rig.options.key = key
            assert rig.probe is not None
            rig.probe.key = key
        if run.info.major != PROTOCOL_MAJOR:
            print(f"neurostim hil: device speaks {run.info.major}.x", file=sys.stderr)
            return int(ExitCode.PROTOCOL)
        info = run.info
        print(
            f"hil: {info.device_id} firmware {info.firmware_version} protocol "
            f"{info.major}.{info.minor} on {options.url}: {len(cases)} case(s)",
            file=sys.stderr,
            flush=True,
        )
        reports.write()

        def started(i: int, case: Case) -> None:
            print(f"[{i + 1}/{len(cases)}] {case.title} ...", file=sys.stderr, flush=True)

        def finished(result: CaseResult) -> None:
            reports.add(result)
            print(
                f"    {result.verdict.value} {result.duration_s:.2f} s {result.message}".rstrip(),
                file=sys.stderr,
                flush=True,
            )

        results, interrupted = await run_all(
            rig, cases, finished, started, abort_early=args.abort_early
        )
        reports.write(interrupted)
        print(table(results), end="")
        counts = {v: sum(r.verdict is v for r in results) for v in Verdict}
        print(
            "hil: "
            + ", ".join(f"{n} {v.value}" for v, n in counts.items() if n)
            + (" (interrupted)" if interrupted else ""),
            file=sys.stderr,
        )
        ok = not interrupted and all(r.verdict.ok for r in results)
        return int(ExitCode.OK if ok else ExitCode.FAILED)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await rig.close()
