"""Subcommands over what a run leaves behind: ``audit verify`` and ``analyze``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

from controller.analyze import AnalysisRow, CsvRowWriter, JsonRowWriter, iter_analysis
from controller.audit import AuditVerification, verify_audit
from controller.config import load_config
from controller.detector import Baseline
from firmware_bridge.exit_codes import ExitCode


def register_records(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``audit verify FILE`` and ``analyze RECORDING.edf`` to a subparsers object."""
    audit = sub.add_parser(
        "audit",
        help="check an audit log",
        description="Commands over the controller's hash-chained JSONL audit log.",
    )
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_sub.add_parser(
        "verify",
        help="check an audit log's hash chain and report the first break",
        description=(
            "Check seq continuity, prev links and hashes of every record (docs/recording.md). "
            "Exit 0 when intact, also when the log was cut short by a crash (the partial last "
            "line is ignored); exit 1 with the first broken line and the reason otherwise."
        ),
    )
    verify.add_argument("file", type=Path, help="audit log (JSONL)")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.set_defaults(handler=audit_verify_command)

    analyze = sub.add_parser(
        "analyze",
        help="run the feature and detector pipeline over a recording",
        description=(
            "Run the online pipeline (features -> detector) over an EDF/EDF+ recording and "
            "print a summary; --json/--csv write one row per window (docs/recording.md)."
        ),
    )
    analyze.add_argument("recording", type=Path, help="EDF or EDF+ file (channels in uV/mV/V)")
    analyze.add_argument("--config", type=Path, help="controller configuration (TOML)")
    analyze.add_argument("--baseline", type=Path, help="saved detector baseline to start from")
    analyze.add_argument(
        "--json", dest="json_path", type=Path, metavar="FILE", help="write the rows as a JSON array"
    )
    analyze.add_argument(
        "--csv", dest="csv_path", type=Path, metavar="FILE", help="write the rows as CSV"
    )
    analyze.set_defaults(handler=analyze_command)


# -- audit verify -------------------------------------------------------------------------


def format_verification(path: Path, result: AuditVerification) -> str:
    """Human-readable result of ``audit verify``."""
    if not result.ok:
        return (
            f"{path}: BROKEN at line {result.first_break}: {result.reason}\n"
            f"{result.records} record(s) before it verify"
        )
    lines = [f"{path}: OK, {result.records} record(s)"]
    if result.first_t is not None and result.last_t is not None:
        lines.append(f"time    {result.first_t:.3f} .. {result.last_t:.3f} s")
    if result.kinds:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(result.kinds.items()))
        lines.append(f"kinds   {kinds}")
    if result.truncated_tail:
        lines.append(
            f"tail    partial last line ({result.tail_bytes} bytes) ignored: "
            "the log was cut short (crash)"
        )
    return "\n".join(lines)


def audit_verify_command(args: argparse.Namespace) -> int:
    """``neurostim audit verify FILE``: 0 intact (or cut short), 1 broken, 2 unreadable."""
    path: Path = args.file
    try:
        result = verify_audit(path)
    except OSError as exc:
        print(f"neurostim audit verify: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    if getattr(args, "json", False):
        print(json.dumps({"file": str(path), **asdict(result)}, indent=2))
    else:
        print(format_verification(path, result))
    return ExitCode.OK if result.ok else ExitCode.FAILED


# -- analyze ------------------------------------------------------------------------------


@dataclass
class AnalysisTally:
    """Running summary of analyze rows (the printed table), without keeping the rows."""

    windows: int = 0
    channels: int = 0
    t_first_s: float | None = None
    t_last_s: float | None = None
    blanked: int = 0
    states: Counter[str] = field(default_factory=Counter)
    scored: int = 0
    score_min: float = math.inf
    score_max: float = -math.inf
    good_channels_min: int | None = None

    def add(self, row: AnalysisRow) -> None:
        self.windows += 1
        self.channels = len(row.channel_names)
        if self.t_first_s is None:
            self.t_first_s = row.t_start_s
        self.t_last_s = row.t_end_s
        self.blanked += row.blanked
        self.states[row.state.value] += 1
        if row.score is not None and math.isfinite(row.score):
            self.scored += 1
            self.score_min = min(self.score_min, row.score)
            self.score_max = max(self.score_max, row.score)
        if self.good_channels_min is None or row.good_channels < self.good_channels_min:
            self.good_channels_min = row.good_channels

    def format(self) -> str:
        if not self.windows:
            return "windows     0 (the recording is shorter than one feature window)"
        lines = [
            f"windows     {self.windows} of {self.channels} ch, "
            f"{self.t_first_s:.1f} .. {self.t_last_s:.1f} s, {self.blanked} blanked",
            "states      " + ", ".join(f"{s} {n}" for s, n in sorted(self.states.items())),
        ]
        if self.scored:
            lines.append(
                f"score       {self.score_min:.3f} .. {self.score_max:.3f} "
                f"({self.scored} scored windows)"
            )
        else:
            lines.append("score       none (calibrating or too few good channels throughout)")
        lines.append(f"good ch     >= {self.good_channels_min} in every window")
        return "\n".join(lines)


def analyze_command(args: argparse.Namespace) -> int:
    """``neurostim analyze RECORDING``: print a summary, write --json/--csv rows."""
    try:
        config = load_config(args.config) if args.config is not None else None
        baseline = Baseline.load(args.baseline) if args.baseline is not None else None
    except (OSError, ValueError, KeyError) as exc:
        print(f"neurostim analyze: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    tally = AnalysisTally()
    try:
        with ExitStack() as stack:
            writers: list[JsonRowWriter | CsvRowWriter] = []
            if args.json_path is not None:
                writers.append(stack.enter_context(JsonRowWriter(args.json_path)))
            if args.csv_path is not None:
                writers.append(stack.enter_context(CsvRowWriter(args.csv_path)))
            for row in iter_analysis(args.recording, config, baseline=baseline):
                tally.add(row)
                for writer in writers:
                    writer.write(row)
    except (OSError, ValueError) as exc:
        print(f"neurostim analyze: {args.recording}: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    print(f"recording   {args.recording}")
    print(tally.format())
    for label, path in (("json", args.json_path), ("csv", args.csv_path)):
        if path is not None:
            print(f"{label:<11} {path}")
    return ExitCode.OK
