"""``neurostim bench headless`` and ``bench trial`` (numbers, no asserts).

``bench headless``: real-time factor of whole lockstep runs of the default scenario
(8 sites @ 250 Hz, default controller) for each signal model, every sample through the
real codec and sessions, best of ``repeats`` runs after a warm-up; with ``--profile`` two
more runs per model: one with timers around the stages' entry points, its wall time split
into what each stage costs inside the loop (insilico/stage_timers.py), and one under the
profiler, split by module into finer stages and their compiled work (insilico/profile.py).

``bench trial``: throughput of trial jobs on local worker processes and on Dask.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict

from controller.config import ControllerConfig
from firmware_bridge.units import SECONDS_PER_DAY
from insilico.backends import Backend, DaskCluster, LocalProcesses
from insilico.profile import StageTime, profile_stages
from insilico.runner import SimSpec, run_sim
from insilico.stage_timers import REST, TimedRun, time_stages
from insilico.trial import TrialJob, cohort_jobs, run_trial
from simulator.physiology.scenario import load_scenario

MODELS = ("spectral", "jansen-rit")


def bench_headless(virtual_s: float, repeats: int) -> list[dict[str, float | str]]:
    scenario = load_scenario("default")
    rows: list[dict[str, float | str]] = []
    for model in MODELS:
        # Warm-up: load the compiled kernels (numba's cache) outside the timed runs.
        run_sim(SimSpec(scenario, 60.0, ControllerConfig(), model=model))
        best_wall_s = min(
            run_sim(SimSpec(scenario, virtual_s, ControllerConfig(), model=model)).wall_s
            for _ in range(repeats)
        )
        rows.append(
            {
                "model": model,
                "virtual_s": virtual_s,
                "wall_s": best_wall_s,
                "realtime_factor": virtual_s / best_wall_s,
                "wall_s_per_virtual_day": SECONDS_PER_DAY * best_wall_s / virtual_s,
            }
        )
    return rows


def profile_headless(
    virtual_s: float,
) -> tuple[dict[str, TimedRun], dict[str, list[StageTime]]]:
    """Per model, a run with its stages timed and a profiled run (after an untimed warm-up
    that loads the compiled kernels)."""
    scenario = load_scenario("default")
    timed: dict[str, TimedRun] = {}
    profiled: dict[str, list[StageTime]] = {}
    for model in MODELS:

        def run(model: str = model) -> float:
            spec = SimSpec(scenario, virtual_s, ControllerConfig(), model=model)
            return run_sim(spec).virtual_s

        run_sim(SimSpec(scenario, 60.0, ControllerConfig(), model=model))
        timed[model] = time_stages(run)
        profiled[model] = profile_stages(run)
    return timed, profiled


def main_bench_headless(virtual_s: float, repeats: int, json_out: bool, profile: bool) -> int:
    rows = bench_headless(virtual_s, repeats)
    timed, profiles = profile_headless(virtual_s) if profile else ({}, {})
    if json_out:
        document: dict[str, object] = {"runs": rows}
        if profile:
            document["in_loop"] = {m: asdict(t) for m, t in timed.items()}
            document["profile"] = {m: [asdict(s) for s in p] for m, p in profiles.items()}
        print(json.dumps(document if profile else rows, indent=2))
        return 0
    print(f"headless lockstep run, default scenario, {virtual_s:g} virtual s, best of {repeats}")
    print(f"{'model':<12} {'wall s':>8} {'x real time':>12} {'s per virtual day':>18}")
    for row in rows:
        print(
            f"{row['model']:<12} {row['wall_s']:>8.2f} {row['realtime_factor']:>12,.0f} "
            f"{row['wall_s_per_virtual_day']:>18.1f}"
        )
    run_us = {str(row["model"]): 1e6 * float(row["wall_s"]) / virtual_s for row in rows}
    for model, run in timed.items():
        print_in_loop(model, run)
    for model, stages in profiles.items():
        print_profile(model, stages, run_us[model])
    return 0


def print_in_loop(model: str, run: TimedRun) -> None:
    """The stage table of one timed run: what each stage costs inside the loop."""
    total_us = 1e6 * run.wall_s / run.virtual_s
    print(
        f"\n{model}: in the loop, µs per virtual second by stage, timed at its entry points "
        f"(total {total_us:,.0f}, {run.virtual_s / run.wall_s:,.0f}x real time)"
    )
    print(f"  {'stage':<40} {'µs/vs':>7}  {'calls/vs':>8}  {'µs/call':>8}")
    for row in run.rows:
        calls = "" if row.stage == REST else f"{row.calls_per_virtual_s:.2f}"
        per_call = "" if row.stage == REST else f"{row.us_per_call:.2f}"
        print(f"  {row.stage:<40} {row.us_per_virtual_s:>7,.1f}  {calls:>8}  {per_call:>8}")
    cost_us = run.timer_us_per_virtual_s
    print(f"  the timers' own cost, in these rows: {cost_us:,.1f} µs per virtual s")


def print_profile(model: str, stages: list[StageTime], unprofiled_us_per_virtual_s: float) -> None:
    """The stage table of one profiled run, then the ceiling its compiled work sets."""
    total_us = sum(s.us_per_virtual_s for s in stages)
    compiled_us = sum(s.compiled_us_per_virtual_s for s in stages)
    print(f"\n{model}: profiled run, µs per virtual second by stage (total {total_us:,.0f})")
    print(f"  {'stage':<14} {'total':>8}  {'share':>7}  {'compiled':>8}")
    for s in stages:
        print(
            f"  {s.stage:<14} {s.us_per_virtual_s:>8,.0f}  {100 * s.share:>5.1f} %"
            f"  {s.compiled_us_per_virtual_s:>8,.0f}"
        )
    print(
        f"  compiled work (numba kernels, FFT, numpy ufuncs and random draws, COBS, CRC, "
        f"struct): {compiled_us:,.0f} µs per virtual s, at most {1e6 / compiled_us:,.0f}x "
        f"real time if every line of Python around it cost nothing; the unprofiled run: "
        f"{unprofiled_us_per_virtual_s:,.0f} µs per virtual s "
        f"({1e6 / unprofiled_us_per_virtual_s:,.0f}x)"
    )


def _trial_jobs(n_jobs: int, job_days: float) -> list[TrialJob]:
    """``n_jobs`` single-policy jobs of distinct patients (default configuration)."""
    return cohort_jobs(
        n_jobs,
        job_days,
        ["closed-loop"],
        ["episodic-without-aura"],
        0,
        "spectral",
        ControllerConfig(),
    )


def _timed(jobs: list[TrialJob], backend: Backend) -> float:
    start = time.perf_counter()
    run = run_trial(jobs, backend)
    if run.failures:
        raise RuntimeError(f"bench job failed: {run.failures[0].error}")
    return time.perf_counter() - start


def bench_trial(n_jobs: int, job_days: float, dask: bool) -> dict[str, float | str]:
    """Jobs per hour and patient-days per core-hour on 1 and 2 local worker processes, the
    1 -> 2 scaling efficiency and (``dask``) a Dask LocalCluster of 2 workers against 2 local
    processes. Each backend runs the same jobs; process start-up is included."""
    jobs = _trial_jobs(n_jobs, job_days)
    patient_days = n_jobs * job_days
    one_s = _timed(jobs, LocalProcesses(1))
    two_s = _timed(jobs, LocalProcesses(2))
    row: dict[str, float | str] = {
        "jobs": n_jobs,
        "job_days": job_days,
        "wall_s_1_worker": one_s,
        "wall_s_2_workers": two_s,
        "jobs_per_hour_1_worker": 3600.0 * n_jobs / one_s,
        "jobs_per_hour_2_workers": 3600.0 * n_jobs / two_s,
        "patient_days_per_core_hour_1_worker": 3600.0 * patient_days / one_s,
        "patient_days_per_core_hour_2_workers": 3600.0 * patient_days / (2 * two_s),
        "scaling_efficiency_1_to_2": one_s / (2.0 * two_s),
    }
    if dask:
        start = time.perf_counter()
        with DaskCluster(None, 2) as cluster:
            started_s = time.perf_counter() - start
            dask_s = _timed(jobs, cluster)
        row["dask_cluster_start_s"] = started_s
        row["wall_s_dask_2_workers"] = dask_s
        row["dask_overhead_vs_local"] = dask_s / two_s - 1.0
        row["dask_overhead_vs_local_with_start"] = (dask_s + started_s) / two_s - 1.0
    return row


def main_bench_trial(n_jobs: int, job_days: float, dask: bool, json_out: bool) -> int:
    row = bench_trial(n_jobs, job_days, dask)
    if json_out:
        print(json.dumps(row, indent=2))
        return 0
    per_job_s = row["wall_s_1_worker"]
    assert isinstance(per_job_s, float)
    print(
        f"trial throughput: {n_jobs} jobs of {job_days:g} patient-days "
        f"(~{per_job_s / n_jobs:.1f} s each on one worker), default scenario settings"
    )
    for workers in ("1_worker", "2_workers"):
        print(
            f"  {workers.replace('_', ' '):<10} {row[f'wall_s_{workers}']:>7.1f} s  "
            f"{row[f'jobs_per_hour_{workers}']:>8,.0f} jobs/h  "
            f"{row[f'patient_days_per_core_hour_{workers}']:>8,.1f} patient-days per core-hour"
        )
    print(f"  scaling 1 -> 2 workers: {100 * float(row['scaling_efficiency_1_to_2']):.0f} %")
    if dask:
        print(
            f"  Dask LocalCluster, 2 workers: {row['wall_s_dask_2_workers']:.1f} s "
            f"({100 * float(row['dask_overhead_vs_local']):+.0f} % against 2 local processes; "
            f"cluster start {row['dask_cluster_start_s']:.1f} s, "
            f"{100 * float(row['dask_overhead_vs_local_with_start']):+.0f} % with it)"
        )
    return 0
