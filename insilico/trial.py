"""``neurostim trial``: a virtual cohort, every patient under every policy (paired), run
headless in parallel worker processes, aggregated per policy and per phenotype."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np

from controller.config import ControllerConfig
from insilico import scoring
from insilico.physiology_tier import migraine_days
from insilico.report import MeanCI, TrialAggregate, TrialEntry, TrialReport
from insilico.runner import SimSpec, run_sim, with_policy
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
    """Patient ``i`` has phenotype ``phenotypes[i % len]`` and seed ``seed + i``; every
    policy sees the same patient and the same seed (a paired comparison)."""
    return [
        TrialJob(i, phenotypes[i % len(phenotypes)], seed + i, policy, days, model, config)
        for i in range(patients)
        for policy in policies
    ]


def run_job(job: TrialJob) -> TrialEntry:
    scenario = scenario_from_dict(
        {
            "name": f"trial-{job.phenotype}-{job.patient}",
            "duration_s": job.days * 86400.0,
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
            job.days * 86400.0,
        ),
    )


def run_trial(
    jobs: list[TrialJob],
    workers: int,
    on_done: Callable[[TrialEntry], None] | None = None,
) -> list[TrialEntry]:
    """Run ``jobs`` in ``workers`` processes (1: in this process); entries in job order."""
    if workers <= 1:
        entries = []
        for job in jobs:
            entries.append(run_job(job))
            if on_done is not None:
                on_done(entries[-1])
        return entries
    results: dict[int, TrialEntry] = {}
    # spawn: workers start clean (no inherited threads or numba state from the parent).
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(run_job, job): index for index, job in enumerate(jobs)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            if on_done is not None:
                on_done(results[futures[future]])
    return [results[i] for i in range(len(jobs))]


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
    entries: list[TrialEntry],
    *,
    patients: int,
    days: float,
    policies: Sequence[str],
    phenotypes: Sequence[str],
    seed: int,
    workers: int,
    wall_start: float,
    config: ControllerConfig | None = None,
) -> TrialReport:
    from insilico.ceilings import ceiling_aggregates
    from simulator.devices import DEFAULT_DEVICE, device_preset

    ceilings = ceiling_aggregates(entries, config) if config is not None else []
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
        entries=entries,
        aggregates=aggregate(entries, policies),
    )
