"""``neurostim prospective``: calibrate each patient on a run-in, judge it on what follows."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from controller.config import ConfigError, ControllerConfig, load_config
from controller.detector.calibration import CalibrationSettings
from firmware_bridge.exit_codes import ExitCode
from insilico.prospective import (
    ProspectiveEntry,
    ProspectiveJob,
    ProspectiveReport,
    cohort_jobs,
    run_cohort,
    select_sites,
    summarise,
)
from insilico.trial import ALL_PHENOTYPES


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "prospective",
        help="per-patient detector: calibrate on a run-in, score the later period",
        description=(
            "Pseudo-prospective judgement of the per-patient detector: each simulated "
            "patient's run-in (until --min-attacks attacks) calibrates the signature, "
            "thresholds and baseline; the following --test-days are scored against a "
            "chance predictor at the same time in warning. Detector-only tier: no device, "
            "no policy, no stimulation."
        ),
    )
    parser.add_argument("--patients", type=int, default=2, help="patients per phenotype")
    parser.add_argument(
        "--phenotypes",
        default=",".join(ALL_PHENOTYPES),
        help=f"comma-separated phenotypes ({', '.join(ALL_PHENOTYPES)})",
    )
    parser.add_argument("--seed", type=int, default=0, help="patient i has seed SEED + i")
    parser.add_argument("--model", choices=("spectral", "jansen-rit"), default="spectral")
    parser.add_argument("--run-in-max-days", type=float, default=60.0, help="longest run-in")
    parser.add_argument("--test-days", type=float, default=30.0, help="days scored after it")
    parser.add_argument("--min-attacks", type=int, default=5, help="run-in attacks to enrol")
    parser.add_argument(
        "--time-in-warning", type=float, default=0.30, help="run-in warning budget (0-1)"
    )
    parser.add_argument(
        "--sampling-rate-hz", type=float, default=250.0, help="simulated EEG sampling rate"
    )
    parser.add_argument(
        "--sites", default="", help="comma-separated recording sites (default: all eight)"
    )
    parser.add_argument(
        "--min-attacks-per-month",
        type=float,
        default=0.0,
        help="screen out patients drawn with fewer attacks per month (reported)",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes")
    parser.add_argument("--config", type=Path, help="controller configuration TOML")
    parser.add_argument("--json", type=Path, help="write the JSON report here ('-': stdout)")
    parser.add_argument(
        "--progress", type=Path, help="append each finished patient here as a JSON line"
    )
    parser.set_defaults(handler=_command)


def _fail(message: str) -> int:
    print(f"neurostim: {message}", file=sys.stderr)
    return ExitCode.USAGE


def _command(args: argparse.Namespace) -> int:
    phenotypes = [p.strip() for p in args.phenotypes.split(",") if p.strip()]
    unknown = [p for p in phenotypes if p not in ALL_PHENOTYPES]
    if unknown or not phenotypes:
        return _fail(f"unknown phenotype(s) {unknown}; choose from {', '.join(ALL_PHENOTYPES)}")
    if args.patients < 1 or args.workers < 1:
        return _fail("--patients and --workers must be >= 1")
    if not (args.run_in_max_days > 0 and args.test_days > 0):
        return _fail("--run-in-max-days and --test-days must be > 0")
    try:
        config = load_config(args.config) if args.config is not None else ControllerConfig()
        settings = CalibrationSettings(
            target_time_in_warning=args.time_in_warning, min_attacks=args.min_attacks
        )
        config.features.layout(args.sampling_rate_hz)  # the rate must suit the features
        jobs = _jobs(args, phenotypes, config, settings)
    except (ConfigError, ValueError) as exc:
        return _fail(str(exc))
    return _run(args, phenotypes, config, jobs)


def _jobs(
    args: argparse.Namespace,
    phenotypes: list[str],
    config: ControllerConfig,
    settings: CalibrationSettings,
) -> list[ProspectiveJob]:
    return cohort_jobs(
        args.patients,
        phenotypes,
        args.seed,
        run_in_max_days=args.run_in_max_days,
        test_days=args.test_days,
        model=args.model,
        config=config,
        settings=settings,
        sampling_rate_hz=args.sampling_rate_hz,
        min_attacks_per_month=args.min_attacks_per_month,
        sites=_sites(args.sites),
    )


def _sites(text: str) -> list[str]:
    return [label.strip() for label in text.split(",") if label.strip()]


def _run(
    args: argparse.Namespace,
    phenotypes: list[str],
    config: ControllerConfig,
    jobs: list[ProspectiveJob],
) -> int:
    wall_start = time.perf_counter()
    err = Console(stderr=True)

    def done(entry: ProspectiveEntry) -> None:
        err.print(f"patient {entry.patient} ({entry.phenotype}) done in {entry.wall_s:.0f} s")
        if args.progress is not None:
            with args.progress.open("a", encoding="utf-8") as out:
                out.write(entry.model_dump_json() + "\n")

    entries = run_cohort(jobs, min(args.workers, len(jobs)), on_done=done)
    report = ProspectiveReport(
        patients_per_phenotype=args.patients,
        phenotypes=phenotypes,
        seed=args.seed,
        model=args.model,
        run_in_max_days=args.run_in_max_days,
        test_days=args.test_days,
        target_time_in_warning=args.time_in_warning,
        hop_s=config.features.hop_s,
        sampling_rate_hz=args.sampling_rate_hz,
        sites=[s.label for s in select_sites(_sites(args.sites))],
        min_attacks_per_month=args.min_attacks_per_month,
        wall_s=time.perf_counter() - wall_start,
        entries=entries,
        summaries=summarise(entries, phenotypes),
    )
    if args.json is not None:
        text = report.model_dump_json(indent=2)
        if str(args.json) == "-":
            print(text)
        else:
            args.json.write_text(text + "\n", encoding="utf-8")
    if args.json is None or str(args.json) != "-":
        print_report(report, Console())
    return ExitCode.OK


def _fmt(x: float | None, pattern: str = "{:.2f}") -> str:
    return "—" if x is None else pattern.format(x)


def print_report(report: ProspectiveReport, console: Console) -> None:
    """Per-patient rows, then one row per phenotype with the aim's verdict."""
    patients = Table(title="per patient (test period only)")
    for column in (
        "patient",
        "phenotype",
        "run-in d / attacks",
        "M h",
        "features",
        "test attacks",
        "sens",
        "TiW",
        "FA / day",
        "sens - TiW",
        "p",
        "flag",
    ):
        patients.add_column(column)
    for e in report.entries:
        if not e.enrolled:
            patients.add_row(
                str(e.patient),
                e.phenotype,
                f"{e.run_in_days:.0f} / {e.run_in_attacks}",
                "—",
                "not enrolled: " + e.reason[:60],
                "—",
                "—",
                "—",
                "—",
                "—",
                "—",
                "",
            )
            continue
        patients.add_row(
            str(e.patient),
            e.phenotype,
            f"{e.attacks_per_month:.1f}",
            f"{e.run_in_days:.0f} / {e.run_in_attacks}",
            _fmt(e.occurrence_period_h, "{:g}"),
            str(len(e.features)),
            str(e.attacks),
            _fmt(e.sensitivity),
            _fmt(e.time_in_warning),
            _fmt(e.false_alarms_per_day),
            _fmt(e.improvement_over_chance, "{:+.2f}"),
            _fmt(e.p_value, "{:.3f}"),
            "IMPLAUSIBLE" if e.implausible else "",
        )
    console.print(patients)
    summary = Table(title="per phenotype (medians over enrolled patients)")
    for column in (
        "phenotype",
        "enrolled",
        "median sens",
        "median TiW",
        "median FA / day",
        "median sens - TiW",
        "p < 0.05",
        "implausible",
        "aim met",
    ):
        summary.add_column(column)
    for s in report.summaries:
        summary.add_row(
            s.phenotype,
            f"{s.enrolled}/{s.patients}",
            _fmt(s.median_sensitivity),
            _fmt(s.median_time_in_warning),
            _fmt(s.median_false_alarms_per_day),
            _fmt(s.median_improvement, "{:+.2f}"),
            f"{s.beat_chance}/{s.enrolled}",
            str(s.implausible),
            "yes" if s.aim_met else "no",
        )
    console.print(summary)
    console.print(
        f"aim: median sensitivity >= 0.40 at median time in warning <= 0.30 and p < 0.05 in "
        f"at least half the enrolled patients of each phenotype; run-in budget "
        f"{report.target_time_in_warning:.2f}; hop {report.hop_s:g} s; "
        f"{report.sampling_rate_hz:g} Hz; sites {','.join(report.sites)}; "
        f"patients with >= {report.min_attacks_per_month:g} "
        f"attacks/month; {report.wall_s:.0f} s wall"
    )
