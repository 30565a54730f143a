"""Subcommands ``sim`` and ``trial`` (headless closed loop against the simulated patient)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import get_args

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from controller.config import ConfigError, ControllerConfig, load_config
from controller.detector.calibration import CalibrationSettings
from controller.envelope import EnvelopeConflict
from controller.policy.config import PolicyName
from firmware_bridge.exit_codes import ExitCode
from firmware_bridge.units import SECONDS_PER_DAY
from insilico import prospective_cli
from insilico.backends import Backend, DaskCluster, DaskUnavailable, InProcess, LocalProcesses
from insilico.device_setup import DEVICE_CHOICES, controller_config_for, resolve_device
from insilico.premice import TRIAL_PRESETS
from insilico.report import SimReport, TrialReport
from insilico.runner import SimSpec, run_sim, with_policy
from insilico.store import ResultStore
from insilico.trial import (
    ALL_PHENOTYPES,
    DEFAULT_POLICIES,
    RunInSpec,
    TrialProgress,
    cohort_jobs,
    run_trial,
    trial_report,
)
from simulator.physiology.scenario import ScenarioError, load_scenario, parse_duration_s

POLICY_NAMES: tuple[str, ...] = ("closed-loop", *get_args(PolicyName))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = sub.add_parser(
        "sim",
        help="headless closed loop against the simulated patient, scored (virtual time)",
        description=(
            "Run the real controller against the simulated device and patient in lockstep "
            "virtual time (every byte through the real codec and sessions), then score the "
            "detector against the ground truth and the therapy by its outcome and energy."
        ),
    )
    sim.add_argument("--scenario", default="default", help="built-in name or TOML file")
    length = sim.add_mutually_exclusive_group()
    length.add_argument(
        "--duration", help="virtual time, e.g. 36h, 90min, 3600 (default: the scenario's)"
    )
    length.add_argument("--days", type=float, help="virtual days")
    sim.add_argument("--seed", type=int, help="run seed (default: the scenario's)")
    sim.add_argument("--model", choices=("spectral", "jansen-rit"), help="signal model")
    sim.add_argument("--policy", choices=POLICY_NAMES, help="policy (default: the config's)")
    _device_option(sim)
    _common_options(sim)
    sim.add_argument("--record", type=Path, help="write an EDF+ recording (with ground truth)")
    sim.add_argument("--audit", type=Path, help="write the hash-chained audit log (JSONL)")
    sim.add_argument("--report", type=Path, help="write the JSON report here")
    sim.add_argument("--realtime", action="store_true", help="pace the run to the wall clock")
    sim.set_defaults(handler=_sim_command)

    trial = sub.add_parser(
        "trial",
        help="virtual cohort: every patient under every policy, in parallel",
        description=(
            "In-silico trial: patients drawn per phenotype, each run under every policy with "
            "the same seed (paired), in worker processes; tables per policy and phenotype."
        ),
    )
    trial.add_argument(
        "--patients",
        type=int,
        help="number of virtual patients (default 6; with --preset: per arm, default 300)",
    )
    trial.add_argument(
        "--preset",
        choices=sorted(TRIAL_PRESETS),
        help="an in-silico copy of a published trial, run in the physiology tier "
        "(premice: the calibration target; premium-ii: not calibrated on)",
    )
    trial.add_argument("--days", type=float, default=30.0, help="virtual days per run")
    trial.add_argument(
        "--policies",
        default=",".join(DEFAULT_POLICIES),
        help="comma-separated policies ('closed-loop' = the configured closed-loop policy)",
    )
    trial.add_argument(
        "--phenotypes",
        default=",".join(ALL_PHENOTYPES),
        help=f"comma-separated phenotypes, assigned in turn ({', '.join(ALL_PHENOTYPES)})",
    )
    trial.add_argument(
        "--seed", type=int, default=0, help="trial seed (patient seeds: SeedSequence(SEED, i))"
    )
    trial.add_argument("--model", choices=("spectral", "jansen-rit"), default="spectral")
    trial.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="local worker processes (with --dask: LocalCluster workers)",
    )
    cluster = trial.add_mutually_exclusive_group()
    cluster.add_argument(
        "--scheduler", metavar="ADDRESS", help="run on this Dask scheduler (tcp://HOST:8786)"
    )
    cluster.add_argument(
        "--dask", action="store_true", help="run on a Dask LocalCluster started here"
    )
    trial.add_argument(
        "--store",
        type=Path,
        metavar="DIR",
        help="keep finished jobs here; a restarted trial runs only the missing ones",
    )
    _device_option(trial)
    run_in = trial.add_argument_group(
        "run-in",
        "a run-in before every arm (no stimulation); the closed-loop arm's detector is "
        "calibrated on it and judged prospectively on the arm's period",
    )
    run_in.add_argument(
        "--calibrate-run-in", action="store_true", help="give every patient a run-in first"
    )
    run_in.add_argument(
        "--run-in-max-days", type=float, default=60.0, help="longest run-in (not enrolled after)"
    )
    run_in.add_argument(
        "--min-attacks", type=int, default=5, help="run-in attack onsets to enrol and calibrate"
    )
    run_in.add_argument(
        "--time-in-warning", type=float, default=0.30, help="run-in warning budget (0-1)"
    )
    _common_options(trial)
    trial.set_defaults(handler=_trial_command)
    prospective_cli.register(sub)


def register_bench(bench_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = bench_sub.add_parser(
        "headless", help="real-time factor of whole lockstep sim runs (both signal models)"
    )
    parser.add_argument("--virtual-s", type=float, default=3600.0, help="virtual s per run")
    parser.add_argument("--repeats", type=int, default=1, help="runs per model (best is kept)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--profile", action="store_true", help="also a profiled run: time per stage"
    )
    parser.set_defaults(handler=_bench_headless)
    trial = bench_sub.add_parser(
        "trial", help="trial jobs per hour, 1 -> 2 worker scaling, Dask against local processes"
    )
    trial.add_argument("--jobs", type=int, default=4, help="jobs per backend")
    trial.add_argument(
        "--job-days", type=float, default=0.25, help="patient-days per job (~10 s each)"
    )
    trial.add_argument("--no-dask", action="store_true", help="skip the Dask LocalCluster run")
    trial.add_argument("--json", action="store_true", help="print JSON instead of a table")
    trial.set_defaults(handler=_bench_trial)


def _bench_trial(args: argparse.Namespace) -> int:
    from insilico.backends import DaskUnavailable
    from insilico.bench import main_bench_trial

    try:
        return main_bench_trial(max(1, args.jobs), args.job_days, not args.no_dask, args.json)
    except DaskUnavailable as exc:
        return _fail(f"{exc} (or pass --no-dask)")


def _bench_headless(args: argparse.Namespace) -> int:
    from insilico.bench import main_bench_headless

    return main_bench_headless(args.virtual_s, max(1, args.repeats), args.json, args.profile)


def _device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device-preset",
        choices=DEVICE_CHOICES,
        default="e-tns",
        help="simulated device: firmware, envelope, therapy and dose from its preset "
        "(e-tns = etns-supraorbital, the default; implant and nvns-cervical: UNCALIBRATED)",
    )


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="controller configuration TOML")
    parser.add_argument("--json", type=Path, help="write the JSON report here ('-': stdout)")
    parser.add_argument("--plot", type=Path, help="write a PNG plot here")


def _fail(message: str, code: int = ExitCode.USAGE) -> int:
    print(f"neurostim: {message}", file=sys.stderr)
    return code


def _config(path: Path | None) -> ControllerConfig:
    return load_config(path) if path is not None else ControllerConfig()


# ---------------------------------------------------------------------------------- sim


def _sim_command(args: argparse.Namespace) -> int:
    try:
        device = resolve_device(args.device_preset)
        config = _config(args.config)
        if args.policy is not None:
            config = with_policy(config, args.policy)
        config = controller_config_for(config, device)
        scenario = load_scenario(args.scenario)
        if args.days is not None:
            duration_s = args.days * SECONDS_PER_DAY
        elif args.duration is not None:
            duration_s = parse_duration_s(args.duration)
        else:
            duration_s = scenario.duration_s
        if not duration_s > 0:
            raise ValueError(f"the duration must be > 0 s, got {duration_s}")
    except (ConfigError, ScenarioError, ValueError) as exc:
        return _fail(str(exc))
    spec = SimSpec(
        scenario,
        duration_s,
        config,
        seed=args.seed,
        model=args.model,
        record_path=args.record,
        audit_path=args.audit,
        device=device.name,
    )
    try:
        with _ProgressDisplay("sim", duration_s) as display:
            wall_start = time.perf_counter()

            def progress(done_s: float, total_s: float) -> None:
                factor = done_s / max(time.perf_counter() - wall_start, 1e-9)
                info = f"{_hours(done_s)} / {_hours(total_s)}  {factor:,.0f}x real time"
                display.update(done_s, info)

            report = run_sim(spec, progress, rate=1.0 if args.realtime else None)
    except EnvelopeConflict as exc:
        return _fail(f"configuration exceeds the device: {exc}", ExitCode.ENVELOPE)
    _write_outputs(report, args.report, args.json, args.plot)
    if args.json is None or str(args.json) != "-":
        _stdout_console().print(sim_table(report))
    return 0


def _write_outputs(
    report: SimReport | TrialReport,
    report_path: Path | None,
    json_path: Path | None,
    plot: Path | None,
) -> None:
    text = report.model_dump_json(indent=2)
    for path in (report_path, json_path):
        if path is None:
            continue
        if str(path) == "-":
            sys.stdout.write(text + "\n")
        else:
            path.write_text(text + "\n", encoding="utf-8")
    if plot is not None:
        from insilico import plots

        if isinstance(report, SimReport):
            plots.plot_sim(report, plot)
        else:
            plots.plot_trial(report, plot)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600.0:.1f} h"


def _fmt(value: float | None, spec: str = ".2f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def _milli(value: float | None) -> float | None:
    return None if value is None else value / 1000.0


def sim_table(report: SimReport) -> Table:
    """The readable summary of one run."""
    p, t = report.scores.prediction, report.scores.therapy
    stim, link, safety = report.stimulation, report.link, report.safety
    table = Table(title=f"neurostim sim — {report.scenario}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    rows = [
        ("run", f"policy {report.policy}, model {report.model}, seed {report.seed}"),
        (
            "time",
            f"{_hours(report.virtual_s)} virtual in {report.wall_s:.1f} s "
            f"({report.realtime_factor:,.0f}x real time)",
        ),
        (
            "patient",
            f"{t.attacks} attack(s) ({sum(a.aura for a in report.attacks)} with aura), "
            f"{t.attacks_per_30d:.1f} per 30 days, {t.attack_free_days} attack-free day(s)",
        ),
        (
            "detector",
            f"{len(report.detections)} PRODROME onset(s); "
            f"final state {report.detector_final_state}",
        ),
        (
            "prediction",
            f"sensitivity {_fmt(p.sensitivity)} ({p.predicted}/{p.attacks}) vs chance "
            f"{p.chance_sensitivity:.2f} (p = {_fmt(p.p_value, '.3f')}); "
            f"{p.false_alarms} false alarm(s), {_fmt(p.false_alarms_per_day)} per interictal day; "
            f"median lead {_fmt(p.median_lead_h, '.1f', ' h')}; "
            f"time in warning {100 * p.time_in_warning:.0f} %",
        ),
        (
            "stimulation",
            f"{stim.sessions} session(s), {stim.time_on_s / 60.0:.1f} min on, "
            f"{stim.charge_uc / 1000.0:.1f} mC "
            f"({_fmt(_milli(stim.charge_per_session_uc), '.1f')} mC per session, "
            f"{stim.dose_se:.2f} SE), TEED {stim.teed_j:.4f} J",
        ),
        ("device", report.therapy_calibration),
        (
            "safety",
            f"clamps {safety.clamps or 0}, refusals {safety.refusals or 0}, "
            f"NACKs {safety.nacks}, timeouts {safety.command_timeouts}, faults {safety.faults}",
        ),
        (
            "link",
            f"{link.frames_rx:,} frames in, {link.frames_tx:,} out, {link.lost} lost, "
            f"{link.crc_errors} CRC errors, {link.retries} retries, {link.sample_gaps} gaps",
        ),
    ]
    for name, text in rows:
        table.add_row(name, text)
    return table


# -------------------------------------------------------------------------------- trial


def _trial_command(args: argparse.Namespace) -> int:
    if args.preset is not None:
        from insilico.preset_cli import run_preset_command

        if args.patients is not None and args.patients < 1:
            return _fail("--patients must be >= 1")
        return run_preset_command(args.preset, args.seed, args.json, args.patients, args.workers)
    if args.patients is None:
        args.patients = 6
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    phenotypes = [p.strip() for p in args.phenotypes.split(",") if p.strip()]
    problems = [f"unknown policy {p!r}" for p in policies if p not in POLICY_NAMES]
    problems += [f"unknown phenotype {p!r}" for p in phenotypes if p not in ALL_PHENOTYPES]
    if args.patients < 1 or args.days <= 0 or args.workers < 1:
        problems.append("--patients and --workers must be >= 1 and --days > 0")
    if not policies or not phenotypes:
        problems.append("give at least one policy and one phenotype")
    if problems:
        return _fail(
            "; ".join(problems)
            + f" (policies: {', '.join(POLICY_NAMES)}; phenotypes: {', '.join(ALL_PHENOTYPES)})"
        )
    try:
        device = resolve_device(args.device_preset)
        config = _config(args.config)
        for policy in policies:
            controller_config_for(with_policy(config, policy), device)
        run_in = (
            RunInSpec(
                CalibrationSettings(
                    target_time_in_warning=args.time_in_warning, min_attacks=args.min_attacks
                ),
                args.run_in_max_days,
            )
            if args.calibrate_run_in
            else None
        )
        if run_in is not None and not run_in.max_days > 0:
            raise ValueError("--run-in-max-days must be > 0")
    except (ConfigError, ValueError) as exc:
        return _fail(str(exc))
    jobs = cohort_jobs(
        args.patients,
        args.days,
        policies,
        phenotypes,
        args.seed,
        args.model,
        config,
        device=device.name,
        run_in=run_in,
    )
    wall_start = time.perf_counter()
    store = ResultStore(args.store) if args.store is not None else None
    try:
        with (
            _trial_backend(args, len(jobs)) as backend,
            _ProgressDisplay("trial", len(jobs)) as display,
        ):

            def on_progress(p: TrialProgress) -> None:
                display.update(p.done + p.failed, progress_line(p))

            run = run_trial(jobs, backend, store, on_progress)
    except DaskUnavailable as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot reach the Dask scheduler {args.scheduler}: {exc}")
    conflicts = [f for f in run.failures if f.error.startswith("EnvelopeConflict")]
    if conflicts:
        return _fail(f"configuration exceeds the device: {conflicts[0].error}", ExitCode.ENVELOPE)
    report = trial_report(
        run,
        patients=args.patients,
        days=args.days,
        policies=policies,
        phenotypes=phenotypes,
        seed=args.seed,
        workers=args.workers,
        backend=backend.name,
        wall_start=wall_start,
        config=config,
        device=device.name,
        run_in=run_in,
    )
    _write_outputs(report, None, args.json, args.plot)
    if args.json is None or str(args.json) != "-":
        console = _stdout_console()
        console.print(trial_table(report))
        console.print(f"device: {report.therapy_calibration}")
        if report.detector_prospective:
            console.print(detector_table(report))
        else:
            console.print(
                "detector prospective scores (per-patient calibration on a run-in, scored "
                "after): not run in this trial (--calibrate-run-in runs them)"
            )
        for entry in report.entries:
            if not entry.enrolled and entry.policy == policies[0]:
                console.print(
                    f"patient {entry.patient} ({entry.phenotype}) not enrolled: "
                    f"{entry.not_enrolled_reason}"
                )
    for failure in report.failures:
        print(
            f"neurostim: patient {failure.patient} ({failure.phenotype}) under "
            f"{failure.policy} failed: {failure.error}",
            file=sys.stderr,
        )
    # The report is written; the failed jobs are named on stderr.
    return ExitCode.FAILED if report.failures else ExitCode.OK


def progress_line(p: TrialProgress) -> str:
    """done / running / failed and the speed, for the trial's progress bar."""
    stored = f" ({p.from_store} from the store)" if p.from_store else ""
    return (
        f"{p.done}/{p.total} done{stored}, {p.running} running, {p.failed} failed, "
        f"{p.patient_days_per_s:.3g} patient-days/s"
    )


@contextmanager
def _trial_backend(args: argparse.Namespace, n_jobs: int) -> Iterator[Backend]:
    """Dask (--scheduler / --dask), else local processes, else (one worker) this process."""
    workers = min(args.workers, n_jobs)
    if args.scheduler is not None or args.dask:
        with DaskCluster(args.scheduler, workers) as cluster:
            yield cluster
    elif workers > 1:
        yield LocalProcesses(workers)
    else:
        yield InProcess()


def trial_table(report: TrialReport) -> Table:
    """One row per policy and phenotype group."""
    table = Table(
        title=(
            f"neurostim trial — {report.patients} patient(s) x {report.days:g} day(s), "
            f"seed {report.seed}, {report.wall_s:.0f} s"
        )
    )
    for header in (
        "phenotype",
        "policy",
        "tier",
        "n",
        "attacks/30 d (95 % CI)",
        "reduction vs off",
        "responders",
        "MMD change vs off",
        "MMD 50 % resp. (95 % CI)",
        "stim h",
        "TEED J",
        "TEED vs open loop",
        "mC/session",
        "sensitivity (chance)",
        "false alarms/day",
    ):
        table.add_column(header)
    for a in [*report.aggregates, *report.ceilings]:
        rate = a.attacks_per_30d
        reduction = a.reduction_vs_off
        change = a.change_mmd_vs_off
        ci = a.mmd_responder_ci95
        table.add_row(
            a.phenotype,
            a.policy,
            a.tier,
            str(a.patients),
            f"{rate.mean:.2f} ({rate.ci95_low:.2f}-{rate.ci95_high:.2f})",
            "n/a" if reduction is None else f"{100 * reduction.mean:.0f} %",
            "n/a" if a.responder_rate is None else f"{100 * a.responder_rate:.0f} %",
            "n/a" if change is None else f"{change.mean:+.2f}",
            "n/a"
            if a.mmd_responder_rate is None or ci is None
            else f"{100 * a.mmd_responder_rate:.0f} % ({100 * ci[0]:.0f}-{100 * ci[1]:.0f})",
            _fmt(a.stim_time_h_per_patient, ".1f"),
            _fmt(a.teed_j_per_patient, ".1f"),
            _fmt(a.teed_vs_open_loop),
            _fmt(
                None if a.charge_per_session_uc is None else a.charge_per_session_uc / 1000, ".1f"
            ),
            f"{_fmt(a.sensitivity)} ({_fmt(a.chance_sensitivity)})",
            _fmt(a.false_alarms_per_day),
        )
    return table


def detector_table(report: TrialReport) -> Table:
    """The closed-loop arm's detector, calibrated on each patient's run-in and scored on the
    arm's period: medians per phenotype, and every patient's own p-value."""
    table = Table(
        title="detector, judged prospectively (closed-loop arm, calibrated on the run-in)"
    )
    for header in (
        "phenotype",
        "patients",
        "median sensitivity",
        "median time in warning",
        "median FA/interictal day",
        "median sens - TiW",
        "p < 0.05",
        "p per patient",
        "implausible",
    ):
        table.add_column(header)
    records = [e.prospective for e in report.entries if e.prospective is not None]
    for s in report.detector_prospective:
        mine = [r for r in records if s.phenotype in ("all", r.phenotype)]
        table.add_row(
            s.phenotype,
            str(s.enrolled),
            _fmt(s.median_sensitivity),
            _fmt(s.median_time_in_warning),
            _fmt(s.median_false_alarms_per_day),
            _fmt(s.median_improvement, "+.2f"),
            f"{s.beat_chance}/{s.enrolled}",
            ", ".join(_fmt(r.p_value, ".3f") for r in mine),
            str(s.implausible),
        )
    return table


def _stdout_console() -> Console:
    """Tables on stdout; not squeezed to 80 columns when piped (CI logs, files)."""
    console = Console()
    return console if console.is_terminal else Console(width=220)


class _ProgressDisplay:
    """Progress on stderr: a live bar on a terminal; otherwise (CI logs, files) one plain
    line each time another tenth is done."""

    def __init__(self, name: str, total: float) -> None:
        self._name, self._total = name, total
        self._console = Console(stderr=True)
        self._bar: Progress | None = None
        self._tenths_shown = 0

    def __enter__(self) -> _ProgressDisplay:
        if self._console.is_terminal:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>5.1f} %"),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                console=self._console,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self._name, total=self._total, info="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def update(self, done: float, info: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, info=info)
            return
        tenths = int(10 * done / self._total) if self._total > 0 else 10
        if tenths > self._tenths_shown:
            self._tenths_shown = tenths
            print(f"{self._name}: {100 * done / self._total:3.0f} %  {info}", file=sys.stderr)
