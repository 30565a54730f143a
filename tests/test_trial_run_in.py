"""`neurostim trial --calibrate-run-in`: every arm continues the patient after the same
run-in; the closed-loop arm runs with the detector calibrated on that run-in, and its
prospective record is the scoring code's answer on the arm's own alarms and attacks.

One tiny patient: a chronic patient with a fast cycle (two attacks in the first day), a
one-day run-in, 0.2 days per arm, a 2 s feature hop - enough to exercise every step, not
to mean anything.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import pytest

from controller.config import ControllerConfig
from controller.detector.calibration import CalibrationSettings
from controller.detector.types import DetectorState
from firmware_bridge.units import SECONDS_PER_DAY
from insilico import scoring
from insilico.backends import InProcess
from insilico.report import SimReport, TrialEntry, TrialReport
from insilico.trial import (
    PreparedArm,
    RunInSpec,
    TrialJob,
    cohort_jobs,
    prepare_arm,
    run_prepared,
    run_trial,
    trial_report,
)

#: Two one-day run-ins with features and three 0.2-day arms: about a minute on an idle
#: machine; minutes when the cores are shared.
pytestmark = pytest.mark.timeout(1200)

#: Two attacks within the first day and one 3.5 h into the arm (6.2, 21.7 and 27.5 h for
#: seed 46, found with the physiology tier at the full simulation's 2 s step).
FAST_CYCLE = {
    "cycle": {
        "attacks_per_month": 25.0,
        "reset_level": 0.8,
        "min_rise_h": 1.0,
        "prodrome_mean_h": 2.0,
        "prodrome_min_h": 1.0,
        "prodrome_cv": 0.0,
        "attack_median_h": 2.0,
        "attack_min_h": 1.0,
        "postdrome_mean_h": 1.0,
        "refractory_mean_h": 1.0,
    }
}
SEED = 46
#: Short exclusions and occurrence periods: the run-in is one day with two attacks.
RUN_IN = RunInSpec(
    CalibrationSettings(
        min_attacks=2,
        baseline_exclusion_before_h=1.0,
        baseline_exclusion_after_h=1.0,
        occurrence_periods_h=(2.0, 4.0),
    ),
    max_days=1.0,
)
ARM_DAYS = 0.2
#: A 2 s feature hop (a quarter of the default's windows) keeps the run-in affordable here.
CONFIG = ControllerConfig.model_validate({"features": {"hop_s": 2.0}})


def _job(policy: str, run_in: RunInSpec = RUN_IN) -> TrialJob:
    return TrialJob(
        0,
        "chronic",
        SEED,
        policy,
        ARM_DAYS,
        "spectral",
        CONFIG,
        run_in=run_in,
        patient_overrides=FAST_CYCLE,
    )


@dataclasses.dataclass
class ClosedLoopArm:
    """The closed-loop arm prepared and run in steps (the calls ``run_job`` makes), so the
    tests can see its sim report."""

    arm: PreparedArm
    entry: TrialEntry
    sim: SimReport


@pytest.fixture(scope="module")
def closed_arm() -> ClosedLoopArm:
    job = _job("closed-loop")
    arm = prepare_arm(job)
    assert arm.not_enrolled is None, arm.not_enrolled
    entry, sim = run_prepared(job, arm, wall_start=time.perf_counter())
    return ClosedLoopArm(arm, entry, sim)


@pytest.fixture(scope="module")
def report() -> TrialReport:
    """Both arms through ``run_trial``: one run-in for the patient, shared by its arms."""
    run = run_trial([_job("off"), _job("closed-loop")], InProcess())
    return trial_report(
        run,
        patients=1,
        days=ARM_DAYS,
        policies=["off", "closed-loop"],
        phenotypes=["chronic"],
        seed=SEED,
        workers=1,
        backend="in process",
        wall_start=time.perf_counter(),
        config=CONFIG,
        run_in=RUN_IN,
        patient_overrides=FAST_CYCLE,
    )


def _without_wall_time(data: dict[str, object]) -> dict[str, object]:
    out = {k: v for k, v in data.items() if k not in ("wall_s", "realtime_factor")}
    if isinstance(out.get("prospective"), dict):
        out["prospective"] = _without_wall_time(out["prospective"])  # type: ignore[arg-type]
    return out


def test_a_shared_run_in_gives_the_arm_its_own_run_in_gives(
    report: TrialReport, closed_arm: ClosedLoopArm
) -> None:
    shared = next(e for e in report.entries if e.policy == "closed-loop")
    assert _without_wall_time(shared.model_dump()) == _without_wall_time(
        closed_arm.entry.model_dump()
    )


def test_every_arm_starts_after_the_same_run_in(report: TrialReport) -> None:
    assert not report.failures
    off, closed = report.entries
    assert off.enrolled and closed.enrolled
    assert off.run_in_days == closed.run_in_days == 1.0
    assert off.run_in_attacks == closed.run_in_attacks == 2
    # Paired: the same patient continues into both arms.
    assert off.days == pytest.approx(ARM_DAYS)
    assert report.run_in_max_days == 1.0


def test_closed_loop_record_is_the_scoring_of_its_own_alarms(report: TrialReport) -> None:
    off, closed = report.entries
    assert off.prospective is None  # only a closed-loop arm calibrates
    record = closed.prospective
    assert record is not None and record.enrolled and record.features
    assert closed.attacks >= 1  # the arm holds an attack to predict
    assert record.test_days == pytest.approx(ARM_DAYS)
    assert record.run_in_attacks == 2 and record.run_in_days == 1.0
    assert record.occurrence_period_h in RUN_IN.settings.occurrence_periods_h
    expected = scoring.score_prediction(
        closed.alarm_times_s,
        closed.attack_periods_s,
        ARM_DAYS * SECONDS_PER_DAY,
        max_lead_h=record.occurrence_period_h,
        min_lead_min=RUN_IN.settings.horizon_min,
    )
    assert record.attacks == expected.attacks
    assert record.predicted == expected.predicted
    assert record.alarms == expected.alarms == len(closed.alarm_times_s)
    assert record.sensitivity == expected.sensitivity
    assert record.time_in_warning == pytest.approx(expected.time_in_warning)
    assert record.false_alarms_per_day == expected.false_alarms_per_day
    assert record.p_value == expected.p_value
    assert record.sensitivity is not None and record.time_in_warning is not None
    assert record.improvement_over_chance == pytest.approx(
        record.sensitivity - record.time_in_warning
    )
    # The report's per-phenotype summary is the median over those records.
    (chronic,) = [s for s in report.detector_prospective if s.phenotype == "chronic"]
    assert chronic.enrolled == 1
    assert chronic.median_time_in_warning == pytest.approx(
        statistics.median([record.time_in_warning or 0.0])
    )
    assert chronic.beat_chance == int(record.beats_chance)


def test_ceilings_are_scored_after_the_run_in(report: TrialReport) -> None:
    names = {a.policy for a in report.ceilings}
    assert names == {"ceiling: open-loop", "ceiling: perfect detector"}
    open_loop = next(a for a in report.ceilings if a.policy == "ceiling: open-loop")
    # One labelled session in the 0.2-day arm at most (the daily 08:00 session of day 1
    # falls at 24 h, the arm's start), never one during the run-in.
    assert open_loop.stim_time_h_per_patient is not None
    assert open_loop.stim_time_h_per_patient <= 0.4


def test_closed_loop_arm_ran_with_the_run_in_calibration(closed_arm: ClosedLoopArm) -> None:
    signature, sim = closed_arm.arm.signature, closed_arm.sim
    assert signature is not None
    # The device powered up after the run-in and the arm was scored from there.
    assert sim.start_s == pytest.approx(SECONDS_PER_DAY)
    assert sim.virtual_s >= ARM_DAYS * SECONDS_PER_DAY
    # The detector ran with the signature's thresholds and its loaded baseline: it never
    # spent the arm calibrating a baseline of its own.
    assert sim.timeline.upper_threshold == signature.upper_threshold
    assert sim.timeline.lower_threshold == signature.lower_threshold
    assert DetectorState.CALIBRATING.value not in sim.timeline.state


def test_too_few_run_in_attacks_enrol_nobody() -> None:
    short = RunInSpec(RUN_IN.settings, max_days=0.5)
    jobs = cohort_jobs(
        1,
        ARM_DAYS,
        ["off"],
        ["chronic"],
        0,
        "spectral",
        CONFIG,
        run_in=short,
        patient_overrides=FAST_CYCLE,
    )
    jobs = [dataclasses.replace(jobs[0], seed=SEED)]
    run = run_trial(jobs, InProcess())
    (entry,) = run.entries
    assert not entry.enrolled
    assert entry.run_in_attacks == 1
    assert "1 attack(s) in the 0.5-day run-in, 2 needed" in entry.not_enrolled_reason
