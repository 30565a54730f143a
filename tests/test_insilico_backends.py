"""Trial backends, seeds and the resumable store: the same jobs give the same results with
1 worker (in this process), 2 local worker processes and a Dask LocalCluster of 2 workers; a
failing job is reported and the others kept; a trial killed mid-way and restarted with the
same arguments runs only the jobs its store is missing."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controller.config import ControllerConfig
from insilico.backends import DaskCluster, InProcess, LocalProcesses
from insilico.seeds import job_seed, patient_seed
from insilico.store import ResultStore, spec_key
from insilico.trial import TrialJob, TrialProgress, TrialRun, cohort_jobs, job_spec, run_trial

NEUROSTIM = [sys.executable, "-m", "neurostim_cli.main"]
WALL_TIME_FIELDS = ("wall_s", "realtime_factor")
FAST = {"detector": {"calibration_s": 120.0}, "policy": {"open_loop": {"mode": "continuous"}}}


def _jobs() -> list[TrialJob]:
    """Two patients x two policies of ~0.5 s each, and one job that cannot run."""
    jobs = cohort_jobs(
        2,
        0.008,
        ["off", "open-loop"],
        ["episodic-with-aura", "chronic"],
        7,
        "spectral",
        ControllerConfig.model_validate(FAST),
    )
    broken = dataclasses.replace(jobs[0], patient=9, phenotype="martian")
    return [*jobs[:2], broken, *jobs[2:]]


def _comparable(run: TrialRun) -> dict[str, object]:
    entries = []
    for entry in run.entries:
        data = entry.model_dump(mode="json")
        for name in WALL_TIME_FIELDS:
            del data[name]
        entries.append(data)
    failures = [f.model_dump(mode="json") for f in run.failures]
    return {"entries": entries, "failures": failures, "from_store": run.from_store}


def test_patient_seeds_are_paired_and_policy_streams_are_not() -> None:
    assert patient_seed(7, 0) == patient_seed(7, 0) != patient_seed(7, 1)
    assert patient_seed(7, 0) != patient_seed(8, 0)
    assert job_seed(7, 0, "off") != job_seed(7, 0, "open-loop")
    assert job_seed(7, 0, "off") != patient_seed(7, 0)
    jobs = cohort_jobs(3, 1.0, ["off", "open-loop"], ["chronic"], 7, "spectral", ControllerConfig())
    for patient in range(3):
        seeds = {j.seed for j in jobs if j.patient == patient}
        assert seeds == {patient_seed(7, patient)}


def test_backends_and_worker_counts_give_the_same_results(
    caplog: pytest.LogCaptureFixture,
) -> None:
    jobs = _jobs()
    progress: list[TrialProgress] = []
    reference = run_trial(jobs, InProcess(), on_progress=progress.append)
    assert len(reference.entries) == 4 and reference.entries[1].teed_j > 0.0
    [failure] = reference.failures
    assert (failure.patient, failure.phenotype) == (9, "martian")
    assert "martian" in failure.error
    assert (progress[-1].done, progress[-1].failed, progress[-1].running) == (4, 1, 0)
    assert [p.done + p.failed for p in progress] == list(range(len(jobs) + 1))
    expected = _comparable(reference)  # one worker: `neurostim trial` runs it in-process
    assert _comparable(run_trial(jobs, LocalProcesses(2))) == expected
    pytest.importorskip("distributed")
    with caplog.at_level(logging.INFO), DaskCluster(None, 2) as cluster:
        assert cluster.slots == 2
        seen: list[TrialProgress] = []
        assert _comparable(run_trial(jobs, cluster, on_progress=seen.append)) == expected
        assert seen[-1].done == 4 and seen[-1].failed == 1
    # The cluster's start and shutdown chatter stays out of the trial's output.
    chatter = [r for r in caplog.records if r.name.startswith("distributed")]
    assert [r.getMessage() for r in chatter if r.levelno < logging.WARNING] == []


def test_the_store_key_covers_the_whole_specification(tmp_path: Path) -> None:
    job = _jobs()[0]
    key = spec_key(job_spec(job))
    assert key == spec_key(job_spec(dataclasses.replace(job)))
    changed = [
        dataclasses.replace(job, patient=5),
        dataclasses.replace(job, seed=job.seed + 1),
        dataclasses.replace(job, policy="open-loop"),
        dataclasses.replace(job, days=job.days * 2),
        dataclasses.replace(job, model="jansen-rit"),
        dataclasses.replace(
            job, config=ControllerConfig.model_validate({"detector": {"calibration_s": 60.0}})
        ),
    ]
    assert len({key, *(spec_key(job_spec(j)) for j in changed)}) == len(changed) + 1
    store = ResultStore(tmp_path / "store")
    assert store.load(job_spec(job)) is None
    store.save(job_spec(job), {"answer": 42})
    assert store.load(job_spec(job)) == {"answer": 42} and len(store) == 1
    assert store.load(job_spec(changed[0])) is None


def test_a_killed_trial_restarts_with_only_the_missing_jobs(tmp_path: Path) -> None:
    store = tmp_path / "store"
    out = tmp_path / "trial.json"
    command = [
        *NEUROSTIM,
        "trial",
        "--patients",
        "2",
        "--days",
        "0.01",
        "--policies",
        "off,open-loop",
        "--phenotypes",
        "chronic",
        "--workers",
        "1",
        "--store",
        str(store),
        "--json",
        str(out),
    ]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120.0
        while not list(store.glob("*.json")) and time.monotonic() < deadline:
            assert first.poll() is None, "the trial ended before it could be killed"
            time.sleep(0.02)
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.wait(timeout=30)
    kept = len(list(store.glob("*.json")))
    assert 1 <= kept < 4, kept
    assert not out.exists()
    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    report = json.loads(out.read_text())
    assert report["from_store"] == kept
    assert f"({kept} from the store)" in second.stderr
    assert [(e["patient"], e["policy"]) for e in report["entries"]] == [
        (0, "off"),
        (0, "open-loop"),
        (1, "off"),
        (1, "open-loop"),
    ]
    assert len(list(store.glob("*.json"))) == 4
