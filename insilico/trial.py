"""``neurostim trial``: a virtual cohort, every patient under every policy (paired), run
headless on a backend (insilico/backends.py: local processes or Dask), resumable from a
result store (insilico/store.py), aggregated per policy and per phenotype."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from controller.config import ControllerConfig
from firmware_bridge.units import SECONDS_PER_DAY
from insilico import scoring
from insilico.backends import Backend
from insilico.physiology_tier import migraine_days
from insilico.report import MeanCI, TrialAggregate, TrialEntry, TrialFailure, TrialReport
from insilico.runner import SimSpec, run_sim, with_policy
from insilico.seeds import patient_seed
from insilico.store import ResultStore
from simulator.physiology.patient import Phenotype
from simulator.physiology.scenario import scenario_from_dict

DEFAULT_POLICIES = ("off", "open-loop", "closed-loop")
ALL_PHENOTYPES = tuple(p.value for p in Phenotype)


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


def cohort_jobs(
    patients: int,
    days: float,
    policies: Sequence[str],
    phenotypes: Sequence[str],
    seed: int,
    model: str,
    config: ControllerConfig,
) -> list[TrialJob]:
    """Patient ``i`` has phenotype ``phenotypes[i % len]`` and the seed
    ``patient_seed(seed, i)``; every policy sees the same patient and the same seed (a
    paired comparison)."""
    return [
        TrialJob(
            i, phenotypes[i % len(phenotypes)], patient_seed(seed, i), policy, days, model, config
        )
        for i in range(patients)
        for policy in policies
    ]


def run_job(job: TrialJob) -> TrialEntry:
    scenario = scenario_from_dict(
        {
            "name": f"trial-{job.phenotype}-{job.patient}",
            "duration_s": job.days * SECONDS_PER_DAY,
            "model": job.model,
            "seed": job.seed,
            "patient": {"phenotype": job.phenotype, "seed": job.seed},
        },
        source=f"trial patient {job.patient}",
    )
    config = with_policy(job.config, job.policy)
    report = run_sim(SimSpec(scenario, scenario.duration_s, config, timeline_points=10))
    prediction, therapy = report.scores.prediction, report.scores.therapy
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
            [(a.t_s, a.end_s if a.end_s is not None else report.virtual_s) for a in report.attacks],
            0.0,
            job.days * SECONDS_PER_DAY,
        ),
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
    for outcome in backend.run(run_job, [jobs[i] for i in missing]):
        index = missing[outcome.index]
        job = jobs[index]
        if outcome.result is None:
            failures[index] = TrialFailure(
                patient=job.patient,
                phenotype=job.phenotype,
                policy=job.policy,
                error=outcome.error or "unknown error",
            )
        else:
            results[index] = outcome.result
            run_days += job.days
            if store is not None:
                store.save(job_spec(job), outcome.result.model_dump(mode="json"))
        report()
    return TrialRun(
        entries=[results[i] for i in sorted(results)],
        failures=[failures[i] for i in sorted(failures)],
        from_store=from_store,
    )


def complete_patients(entries: list[TrialEntry], policies: Sequence[str]) -> list[TrialEntry]:
    """The entries of patients that finished under every policy (a paired comparison needs
    all of them)."""
    wanted = set(policies)
    done: dict[int, set[str]] = {}
    for entry in entries:
        done.setdefault(entry.patient, set()).add(entry.policy)
    return [e for e in entries if done[e.patient] >= wanted]


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
) -> TrialReport:
    from insilico.ceilings import ceiling_aggregates
    from simulator.devices import DEFAULT_DEVICE, device_preset

    complete = complete_patients(run.entries, policies)
    ceilings = ceiling_aggregates(complete, config) if config is not None and complete else []
    return TrialReport(
        ceilings=ceilings,
        device=DEFAULT_DEVICE,
        therapy_calibration=device_preset(DEFAULT_DEVICE).calibration_note,
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
    )
