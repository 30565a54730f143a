"""``neurostim trial``: a virtual cohort, every patient under every policy (paired), run
headless on a backend (insilico/backends.py: local processes or Dask), resumable from a
result store (insilico/store.py), aggregated per policy and per phenotype.

With a run-in (``RunInSpec``, ``--calibrate-run-in``) every arm of a patient first streams
the same run-in (no stimulation; the detector-only tier of insilico/prospective.py) and then
continues the same patient, course and random streams into its arm: the device powers up
after the run-in and the arm is scored from there. A closed-loop arm logs the run-in's
features, calibrates the patient's detector on them and runs with that calibration loaded
(``[detector] calibration_file``, as ``neurostim run`` and ``sim`` load one); its alarms
in the arm are then scored prospectively (``detector_prospective``). The run-in ends when
it holds ``min_attacks`` attack onsets (plus the rest of that day and one more) - the
onsets alone decide it, so it ends at the same instant in every arm.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from controller.config import ControllerConfig
from controller.detector.calibration import CalibrationError, CalibrationSettings
from controller.detector.signature import PatientSignature
from controller.policy import build_policy
from firmware_bridge.units import SECONDS_PER_DAY
from insilico import prospective, scoring
from insilico.backends import Backend, Outcome
from insilico.ceilings import START_TIME_OF_DAY_H
from insilico.device_setup import controller_config_for, resolve_device
from insilico.physiology_tier import migraine_days
from insilico.report import (
    MeanCI,
    ProspectiveEntry,
    SimReport,
    TrialAggregate,
    TrialEntry,
    TrialFailure,
    TrialReport,
)
from insilico.runner import SimSpec, device_scenario, run_sim, with_policy
from insilico.seeds import patient_seed
from insilico.store import ResultStore
from simulator.devices import DEFAULT_DEVICE
from simulator.physiology.patient import PatientSimulation, Phenotype
from simulator.physiology.scenario import Scenario, scenario_from_dict

DEFAULT_POLICIES = ("off", "open-loop", "closed-loop")
ALL_PHENOTYPES = tuple(p.value for p in Phenotype)


@dataclass(frozen=True)
class RunInSpec:
    """A run-in before every arm: until ``settings.min_attacks`` onsets (at most
    ``max_days``); a closed-loop arm calibrates the patient's detector on it."""

    settings: CalibrationSettings = field(default_factory=CalibrationSettings)
    max_days: float = 60.0


@dataclass(frozen=True)
class TrialJob:
    """One patient under one policy (picklable: it crosses to a worker process)."""

    patient: int
    phenotype: str
    seed: int
    policy: str
    days: float
    model: str
    config: ControllerConfig
    device: str = DEFAULT_DEVICE
    run_in: RunInSpec | None = None
    #: Overrides of the drawn patient's parameters (simulator.physiology.patient).
    patient_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)


def cohort_jobs(
    patients: int,
    days: float,
    policies: Sequence[str],
    phenotypes: Sequence[str],
    seed: int,
    model: str,
    config: ControllerConfig,
    *,
    device: str = DEFAULT_DEVICE,
    run_in: RunInSpec | None = None,
    patient_overrides: dict[str, dict[str, Any]] | None = None,
) -> list[TrialJob]:
    """Patient ``i`` has phenotype ``phenotypes[i % len]`` and the seed
    ``patient_seed(seed, i)``; every policy sees the same patient and the same seed (a
    paired comparison)."""
    return [
        TrialJob(
            i,
            phenotypes[i % len(phenotypes)],
            patient_seed(seed, i),
            policy,
            days,
            model,
            config,
            resolve_device(device).name,
            run_in,
            dict(patient_overrides or {}),
        )
        for i in range(patients)
        for policy in policies
    ]


def trial_scenario(job: TrialJob) -> Scenario:
    """The job's patient as a scenario (no forced events), its dose in the job's device."""
    patient: dict[str, object] = {"phenotype": job.phenotype, "seed": job.seed}
    if job.patient_overrides:
        patient["overrides"] = job.patient_overrides
    scenario = scenario_from_dict(
        {
            "name": f"trial-{job.phenotype}-{job.patient}",
            "duration_s": job.days * SECONDS_PER_DAY,
            "model": job.model,
            "seed": job.seed,
            "patient": patient,
        },
        source=f"trial patient {job.patient}",
    )
    return device_scenario(scenario, job.device)


def job_config(job: TrialJob) -> ControllerConfig:
    """The job's policy on the job's device (envelope and therapy from its preset)."""
    return controller_config_for(with_policy(job.config, job.policy), resolve_device(job.device))


@dataclass
class PreparedArm:
    """An arm ready to run: its spec (a patient after the run-in, if any), what the run-in
    gave, and the patient's signature if this arm calibrated one."""

    spec: SimSpec
    run_in: dict[str, object]
    signature: PatientSignature | None = None
    not_enrolled: str | None = None  # why the patient is not enrolled (no arm is run)


@dataclass
class RunInResult:
    """A patient at the end of its run-in: the running simulation, what the run-in gave,
    and the signature calibrated on it (None if no closed-loop arm asked for one)."""

    source: PatientSimulation
    record: dict[str, object]
    signature: PatientSignature | None = None
    not_enrolled: str | None = None
    calibration_error: str | None = None


def is_closed_loop(job: TrialJob) -> bool:
    return build_policy(job_config(job).policy).closed_loop


def stream_run_in(job: TrialJob, calibrate: bool) -> RunInResult:
    """The job's run-in (``job.run_in`` must be set); with ``calibrate`` its features are
    logged and the patient's detector is calibrated on them."""
    assert job.run_in is not None
    settings = job.run_in.settings
    config = job_config(job)
    patient = prospective.StreamedPatient(trial_scenario(job).build_source(), config)
    logger = prospective.run_in_logger(patient, config) if calibrate else None
    run_in_s = prospective.run_in(patient, settings.min_attacks, job.run_in.max_days, logger)
    record = prospective.run_in_record(job.patient, job.phenotype, job.seed, patient, run_in_s)
    result = RunInResult(patient.source, record)
    if int(record["run_in_attacks"]) < settings.min_attacks:  # type: ignore[call-overload]
        result.not_enrolled = (
            f"{record['run_in_attacks']} attack(s) in the {record['run_in_days']:.1f}-day "
            f"run-in, {settings.min_attacks} needed"
        )
    elif logger is not None:
        try:
            result.signature = prospective.calibrate_run_in(
                patient, logger, run_in_s, config, settings
            )
        except CalibrationError as exc:
            result.calibration_error = f"calibration failed: {exc}"
    return result


def prepare_arm(job: TrialJob, run_in: RunInResult | None = None) -> PreparedArm:
    """Build the arm's run; with a run-in, after it: ``run_in`` if given (shared by the
    patient's arms: the arm continues a copy of it), else streamed here. A closed-loop arm
    gets the run-in's signature."""
    spec = SimSpec(
        trial_scenario(job),
        job.days * SECONDS_PER_DAY,
        job_config(job),
        timeline_points=10,
        device=job.device,
    )
    if job.run_in is None:
        return PreparedArm(spec, {"run_in_days": 0.0, "run_in_attacks": 0})
    closed_loop = is_closed_loop(job)
    if run_in is None:
        run_in = stream_run_in(job, calibrate=closed_loop)
        source = run_in.source
    else:
        source = copy.deepcopy(run_in.source)
    arm = PreparedArm(dataclasses.replace(spec, source=source), run_in.record)
    arm.not_enrolled = run_in.not_enrolled
    if closed_loop and arm.not_enrolled is None:
        arm.not_enrolled = run_in.calibration_error
        arm.signature = run_in.signature
    return arm


@dataclass(frozen=True)
class PatientArms:
    """The arms of one patient that share one run-in (picklable: it crosses to a worker)."""

    jobs: tuple[TrialJob, ...]


def run_patient_arms(task: PatientArms) -> list[TrialEntry]:
    """One run-in for the patient (with features if an arm is closed-loop), then every arm
    on its own copy of the patient at the run-in's end: the same state, streams and
    signature as separate run-ins would give, streamed once."""
    first = task.jobs[0]
    closed = [job for job in task.jobs if is_closed_loop(job)]
    run_in = stream_run_in(closed[0] if closed else first, calibrate=bool(closed))
    entries = []
    for job in task.jobs:
        wall_start = time.perf_counter()
        arm = prepare_arm(job, run_in)
        if arm.not_enrolled is not None:
            entries.append(_not_enrolled_entry(job, arm))
        else:
            entries.append(run_prepared(job, arm, wall_start)[0])
    return entries


@contextmanager
def calibration_loaded(arm: PreparedArm) -> Iterator[SimSpec]:
    """The arm's spec with its signature saved to a file the detector loads through
    ``[detector] calibration_file`` (the loading path of ``run`` and ``sim``)."""
    if arm.signature is None:
        yield arm.spec
        return
    with tempfile.TemporaryDirectory(prefix="neurostim-calibration-") as folder:
        path = Path(folder) / "calibration.json"
        arm.signature.save(path)
        document = arm.spec.config.model_dump(exclude_unset=True)
        document.setdefault("detector", {})["calibration_file"] = str(path)
        yield dataclasses.replace(arm.spec, config=ControllerConfig.model_validate(document))


def run_job(job: TrialJob) -> TrialEntry:
    wall_start = time.perf_counter()
    arm = prepare_arm(job)
    if arm.not_enrolled is not None:
        return _not_enrolled_entry(job, arm)
    return run_prepared(job, arm, wall_start)[0]


def run_prepared(
    job: TrialJob, arm: PreparedArm, wall_start: float
) -> tuple[TrialEntry, SimReport]:
    """Run a prepared (enrolled) arm through the full loop; its entry and the sim report."""
    with calibration_loaded(arm) as spec:
        report = run_sim(spec)
    # The report is on the device's clock; the record on the patient's (as prospective's).
    start_s = report.start_s
    end_s = start_s + spec.duration_s
    detector: ProspectiveEntry | None = None
    if arm.signature is not None:
        detector = prospective.scored_entry(
            arm.run_in,
            list(spec.source.ground_truth) if spec.source is not None else [],
            arm.signature,
            [start_s + d.t_s for d in report.detections],
            start_s,
            end_s,
            wall_start,
        )
    return _entry(job, report, arm, detector), report


def _entry(
    job: TrialJob, report: SimReport, arm: PreparedArm, detector: ProspectiveEntry | None
) -> TrialEntry:
    prediction, therapy = report.scores.prediction, report.scores.therapy
    end_s = job.days * SECONDS_PER_DAY
    return TrialEntry(
        patient=job.patient,
        phenotype=job.phenotype,
        seed=job.seed,
        policy=job.policy,
        days=therapy.days,
        attacks=therapy.attacks,
        attacks_per_30d=therapy.attacks_per_30d,
        attacks_scored=prediction.attacks,
        predicted=prediction.predicted,
        false_alarms=prediction.false_alarms,
        interictal_days=prediction.interictal_days,
        teed_j=therapy.teed_j,
        stim_time_s=therapy.stim_time_s,
        charge_uc=therapy.charge_uc,
        sensitivity=prediction.sensitivity,
        chance_sensitivity=prediction.chance_sensitivity,
        false_alarms_per_day=prediction.false_alarms_per_day,
        median_lead_h=prediction.median_lead_h,
        wall_s=report.wall_s,
        realtime_factor=report.realtime_factor,
        migraine_days=migraine_days(
            [(a.t_s, a.end_s if a.end_s is not None else end_s) for a in report.attacks],
            0.0,
            end_s,
            start_time_of_day_h=(START_TIME_OF_DAY_H + report.start_s / 3600.0) % 24.0,
        ),
        sessions=report.stimulation.sessions,
        dose_se=report.stimulation.dose_se,
        device=report.device,
        run_in_days=float(arm.run_in["run_in_days"]),  # type: ignore[arg-type]
        run_in_attacks=int(arm.run_in["run_in_attacks"]),  # type: ignore[call-overload]
        alarm_times_s=[d.t_s for d in report.detections],  # the arm's period only
        attack_periods_s=[(a.t_s, a.end_s) for a in report.attacks if a.t_s <= end_s],
        prospective=detector,
    )


def _not_enrolled_entry(job: TrialJob, arm: PreparedArm) -> TrialEntry:
    """A patient the run-in did not enrol: no arm ran (every number is zero)."""
    return TrialEntry(
        patient=job.patient,
        phenotype=job.phenotype,
        seed=job.seed,
        policy=job.policy,
        days=0.0,
        attacks=0,
        attacks_per_30d=0.0,
        attacks_scored=0,
        predicted=0,
        false_alarms=0,
        interictal_days=0.0,
        teed_j=0.0,
        stim_time_s=0.0,
        charge_uc=0.0,
        sensitivity=None,
        chance_sensitivity=0.0,
        false_alarms_per_day=None,
        median_lead_h=None,
        wall_s=0.0,
        realtime_factor=0.0,
        device=job.device,
        run_in_days=float(arm.run_in["run_in_days"]),  # type: ignore[arg-type]
        run_in_attacks=int(arm.run_in["run_in_attacks"]),  # type: ignore[call-overload]
        enrolled=False,
        not_enrolled_reason=arm.not_enrolled or "",
    )


def job_spec(job: TrialJob) -> dict[str, object]:
    """Everything that decides a job's result (the store adds the model version)."""
    return {
        "patient": job.patient,
        "phenotype": job.phenotype,
        "seed": job.seed,
        "policy": job.policy,
        "days": job.days,
        "model": job.model,
        "config": job.config.model_dump(mode="json"),
        "device": job.device,
        "run_in": None
        if job.run_in is None
        else {
            "settings": dataclasses.asdict(job.run_in.settings),
            "max_days": job.run_in.max_days,
        },
        "patient_overrides": job.patient_overrides,
    }


@dataclass(frozen=True)
class TrialProgress:
    """Counts over jobs for the progress bar (the same for every backend)."""

    total: int
    done: int
    running: int
    failed: int
    from_store: int
    patient_days_per_s: float  # of the jobs run now (not those from the store)


@dataclass
class TrialRun:
    """What a trial's jobs gave: entries in job order, failures, how many came stored."""

    entries: list[TrialEntry]
    failures: list[TrialFailure]
    from_store: int


def run_trial(
    jobs: list[TrialJob],
    backend: Backend,
    store: ResultStore | None = None,
    on_progress: Callable[[TrialProgress], None] | None = None,
) -> TrialRun:
    """Run the jobs the store does not hold on ``backend``; keep each result as it comes."""
    wall_start = time.perf_counter()
    results: dict[int, TrialEntry] = {}
    if store is not None:
        for index, job in enumerate(jobs):
            stored = store.load(job_spec(job))
            if stored is not None:
                results[index] = TrialEntry.model_validate(stored)
    from_store = len(results)
    missing = [i for i in range(len(jobs)) if i not in results]
    failures: dict[int, TrialFailure] = {}
    run_days = 0.0

    def report() -> None:
        if on_progress is None:
            return
        finished = len(results) + len(failures)
        elapsed_s = max(time.perf_counter() - wall_start, 1e-9)
        on_progress(
            TrialProgress(
                total=len(jobs),
                done=len(results),
                running=min(backend.slots, len(jobs) - finished),
                failed=len(failures),
                from_store=from_store,
                patient_days_per_s=run_days / elapsed_s,
            )
        )

    report()
    for indices, outcome in _run_missing(backend, jobs, missing):
        for position, index in enumerate(indices):
            job = jobs[index]
            if outcome.result is None:
                failures[index] = TrialFailure(
                    patient=job.patient,
                    phenotype=job.phenotype,
                    policy=job.policy,
                    error=outcome.error or "unknown error",
                )
                continue
            entry = outcome.result[position]
            results[index] = entry
            run_days += job.days
            if store is not None:
                store.save(job_spec(job), entry.model_dump(mode="json"))
        report()
    return TrialRun(
        entries=[results[i] for i in sorted(results)],
        failures=[failures[i] for i in sorted(failures)],
        from_store=from_store,
    )


def _run_job_as_list(job: TrialJob) -> list[TrialEntry]:
    return [run_job(job)]


def _run_missing(
    backend: Backend, jobs: list[TrialJob], missing: list[int]
) -> Iterator[tuple[list[int], Outcome[list[TrialEntry]]]]:
    """The missing jobs on ``backend``: one task per job, or, for jobs with a run-in, one
    task per patient (its arms share one run-in). Yields (job indices, their outcome)."""
    shared: dict[int, list[int]] = {}
    groups: list[list[int]] = []
    for index in missing:
        if jobs[index].run_in is None:
            groups.append([index])
        else:
            shared.setdefault(jobs[index].patient, []).append(index)
    if not shared:
        for outcome in backend.run(_run_job_as_list, [jobs[i] for i in missing]):
            yield [missing[outcome.index]], outcome
        return
    groups.extend(shared.values())
    tasks = [PatientArms(tuple(jobs[i] for i in group)) for group in groups]
    for outcome in backend.run(_run_group, tasks):
        yield groups[outcome.index], outcome


def _run_group(task: PatientArms) -> list[TrialEntry]:
    """A task: one job without a run-in, or a patient's arms after their shared run-in."""
    if len(task.jobs) == 1 and task.jobs[0].run_in is None:
        return [run_job(task.jobs[0])]
    return run_patient_arms(task)


def complete_patients(entries: list[TrialEntry], policies: Sequence[str]) -> list[TrialEntry]:
    """The entries of patients that finished, enrolled, under every policy (a paired
    comparison needs all of them)."""
    wanted = set(policies)
    done: dict[int, set[str]] = {}
    for entry in entries:
        if entry.enrolled:
            done.setdefault(entry.patient, set()).add(entry.policy)
    return [e for e in entries if done.get(e.patient, set()) >= wanted]


def aggregate(entries: list[TrialEntry], policies: Sequence[str]) -> list[TrialAggregate]:
    """Per policy, over all patients and per phenotype."""
    phenotypes = sorted({e.phenotype for e in entries})
    groups = ["all"] + (phenotypes if len(phenotypes) > 1 else [])
    out = []
    for group in groups:
        chosen = [e for e in entries if group in ("all", e.phenotype)]
        by_policy = {
            p: sorted((e for e in chosen if e.policy == p), key=_patient) for p in policies
        }
        for policy in policies:
            out.append(_aggregate_one(policy, group, by_policy))
    return out


def _patient(entry: TrialEntry) -> int:
    return entry.patient


def _aggregate_one(
    policy: str, group: str, by_policy: dict[str, list[TrialEntry]]
) -> TrialAggregate:
    rows = by_policy[policy]
    rates = [e.attacks_per_30d for e in rows]
    reduction: MeanCI | None = None
    responders: float | None = None
    off = by_policy.get("off")
    if off and policy != "off":
        relative = scoring.paired_reduction(
            [e.attacks_per_30d for e in off], [e.attacks_per_30d for e in rows]
        )
        defined = [r for r in relative if r is not None]
        if defined:
            reduction = _mean_ci(defined)
        responders = scoring.responder_rate(relative)
    teed_ratio: float | None = None
    open_loop = by_policy.get("open-loop")
    if open_loop:
        reference = sum(e.teed_j for e in open_loop)
        teed_ratio = sum(e.teed_j for e in rows) / reference if reference > 0 else None
    mmd = mmd_versus_off(rows, off if policy != "off" else None)
    sessions = sum(e.sessions for e in rows)
    mmd["charge_per_session_uc"] = sum(e.charge_uc for e in rows) / sessions if sessions else None
    scored = sum(e.attacks_scored for e in rows)
    interictal = sum(e.interictal_days for e in rows)
    return TrialAggregate(
        policy=policy,
        phenotype=group,
        patients=len(rows),
        attacks_per_30d=_mean_ci(rates),
        reduction_vs_off=reduction,
        responder_rate=responders,
        teed_vs_open_loop=teed_ratio,
        sensitivity=sum(e.predicted for e in rows) / scored if scored else None,
        chance_sensitivity=float(np.mean([e.chance_sensitivity for e in rows])) if rows else None,
        false_alarms_per_day=(
            sum(e.false_alarms for e in rows) / interictal if interictal > 0 else None
        ),
    ).model_copy(update=mmd)


def mmd_versus_off(rows: list[TrialEntry], off: list[TrialEntry] | None) -> dict[str, object]:
    """Migraine-day change and 50 % responders against the paired `off` run, stimulation
    time and TEED per patient (the section the trial report shows next to the ceilings)."""
    out: dict[str, object] = {}
    if rows:
        out["stim_time_h_per_patient"] = float(np.mean([e.stim_time_s for e in rows])) / 3600
        out["teed_j_per_patient"] = float(np.mean([e.teed_j for e in rows]))
    if not off or not rows:
        return out
    per_30 = [
        (e.migraine_days * 30.0 / e.days, o.migraine_days * 30.0 / o.days)
        for e, o in zip(rows, off, strict=True)
    ]
    out["change_mmd_vs_off"] = _mean_ci([a - b for a, b in per_30])
    responders = sum(1 for a, b in per_30 if b > 0 and a <= 0.5 * b)
    out["mmd_responder_rate"] = responders / len(per_30)
    out["mmd_responder_ci95"] = scoring.wilson_ci95(responders, len(per_30))
    return out


def _mean_ci(values: Sequence[float]) -> MeanCI:
    mean, low, high = scoring.mean_ci95(values)
    return MeanCI(mean=mean, ci95_low=low, ci95_high=high, n=len(values))


def trial_report(
    run: TrialRun,
    *,
    patients: int,
    days: float,
    policies: Sequence[str],
    phenotypes: Sequence[str],
    seed: int,
    workers: int,
    backend: str,
    wall_start: float,
    config: ControllerConfig | None = None,
    device: str = DEFAULT_DEVICE,
    run_in: RunInSpec | None = None,
    patient_overrides: dict[str, dict[str, Any]] | None = None,
) -> TrialReport:
    from insilico.ceilings import ceiling_aggregates

    preset = resolve_device(device)
    complete = complete_patients(run.entries, policies)
    ceilings = (
        ceiling_aggregates(
            complete,
            controller_config_for(config, preset),
            device=preset.name,
            patient_overrides=patient_overrides,
        )
        if config is not None and complete
        else []
    )
    return TrialReport(
        ceilings=ceilings,
        device=preset.name,
        therapy_calibration=preset.calibration_note,
        patients=patients,
        days=days,
        policies=list(policies),
        phenotypes=list(phenotypes),
        seed=seed,
        workers=workers,
        wall_s=time.perf_counter() - wall_start,
        entries=run.entries,
        aggregates=aggregate(complete, policies),
        backend=backend,
        from_store=run.from_store,
        failures=run.failures,
        run_in_max_days=None if run_in is None else run_in.max_days,
        detector_prospective=detector_summaries(complete, phenotypes) if run_in else [],
    )


def detector_summaries(
    entries: Sequence[TrialEntry], phenotypes: Sequence[str]
) -> list[prospective.PhenotypeSummary]:
    """Per phenotype, the closed-loop arms' prospective detector records (the patients that
    finished every arm), summarised as ``neurostim prospective`` summarises its own."""
    records = [e.prospective for e in entries if e.prospective is not None]
    present = [p for p in phenotypes if any(r.phenotype == p for r in records)]
    return prospective.summarise(records, present) if records else []
