"""`neurostim trial`: cohort construction, aggregation on known numbers, and a tiny trial in
two worker processes that agrees with the same runs in this process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from controller.config import ControllerConfig
from insilico.report import TrialEntry
from insilico.seeds import patient_seed
from insilico.trial import aggregate, cohort_jobs, run_job

NEUROSTIM = [sys.executable, "-m", "neurostim_cli.main"]


def _entry(patient: int, policy: str, rate: float, teed: float, **extra: float) -> TrialEntry:
    fields: dict[str, object] = {
        "patient": patient,
        "phenotype": "chronic" if patient % 2 else "episodic-without-aura",
        "seed": patient,
        "policy": policy,
        "days": 30.0,
        "attacks": int(rate),
        "attacks_scored": int(rate),
        "attacks_per_30d": rate,
        "predicted": 0,
        "false_alarms": 0,
        "interictal_days": 10.0,
        "teed_j": teed,
        "stim_time_s": 0.0,
        "charge_uc": 0.0,
        "sensitivity": None,
        "chance_sensitivity": 0.1,
        "false_alarms_per_day": None,
        "median_lead_h": None,
        "wall_s": 1.0,
        "realtime_factor": 1.0,
    }
    fields.update(extra)
    return TrialEntry.model_validate(fields)


def test_cohort_is_paired_and_cycles_phenotypes() -> None:
    jobs = cohort_jobs(
        3, 2.0, ["off", "closed-loop"], ["chronic", "pediatric"], 10, "spectral", ControllerConfig()
    )
    s0, s1, s2 = (patient_seed(10, i) for i in range(3))
    assert [(j.patient, j.policy, j.seed, j.phenotype) for j in jobs] == [
        (0, "off", s0, "chronic"),
        (0, "closed-loop", s0, "chronic"),
        (1, "off", s1, "pediatric"),
        (1, "closed-loop", s1, "pediatric"),
        (2, "off", s2, "chronic"),
        (2, "closed-loop", s2, "chronic"),
    ]


def test_aggregates_on_known_numbers() -> None:
    entries = [
        _entry(0, "off", 4.0, 0.0, attacks_scored=4, predicted=2, false_alarms=1),
        _entry(0, "open-loop", 3.0, 10.0),
        _entry(0, "closed-loop", 1.0, 2.0, attacks_scored=1, predicted=1, false_alarms=3),
        _entry(1, "off", 8.0, 0.0, attacks_scored=8, predicted=2, false_alarms=1),
        _entry(1, "open-loop", 8.0, 10.0),
        _entry(1, "closed-loop", 6.0, 3.0, attacks_scored=6, predicted=3, false_alarms=1),
    ]
    rows = {
        (a.phenotype, a.policy): a for a in aggregate(entries, ["off", "open-loop", "closed-loop"])
    }
    closed = rows[("all", "closed-loop")]
    assert closed.patients == 2
    assert closed.attacks_per_30d.mean == pytest.approx(3.5)
    # t(0.975, 1) = 12.706; sd of (1, 6) = 3.536 -> half width 12.706 * 3.536 / sqrt(2) = 31.77
    assert closed.attacks_per_30d.ci95_high == pytest.approx(3.5 + 31.765, abs=0.01)
    # reductions: 1 - 1/4 = 0.75 and 1 - 6/8 = 0.25; one responder of two
    assert closed.reduction_vs_off is not None
    assert closed.reduction_vs_off.mean == pytest.approx(0.5)
    assert closed.responder_rate == pytest.approx(0.5)
    assert closed.teed_vs_open_loop == pytest.approx(5.0 / 20.0)
    assert closed.sensitivity == pytest.approx(4 / 7)  # pooled: predicted / attacks
    assert closed.false_alarms_per_day == pytest.approx(4 / 20.0)  # pooled per interictal day
    off = rows[("all", "off")]
    assert off.reduction_vs_off is None and off.responder_rate is None
    assert off.teed_vs_open_loop == 0.0
    # one row per phenotype too, with that phenotype's patients only
    assert rows[("chronic", "closed-loop")].patients == 1
    assert rows[("chronic", "closed-loop")].attacks_per_30d.mean == 6.0


def test_tiny_trial_in_two_workers_matches_the_same_runs_in_process(tmp_path: Path) -> None:
    config_path = tmp_path / "fast.toml"
    config_path.write_text("[detector]\ncalibration_s = 120.0\n", encoding="utf-8")
    out, plot = tmp_path / "trial.json", tmp_path / "trial.png"
    done = subprocess.run(
        [
            *NEUROSTIM,
            "trial",
            "--patients",
            "2",
            "--days",
            "0.02",
            "--policies",
            "off,closed-loop",
            "--phenotypes",
            "episodic-without-aura,chronic",
            "--seed",
            "5",
            "--workers",
            "2",
            "--config",
            str(config_path),
            "--json",
            str(out),
            "--plot",
            str(plot),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "neurostim trial" in done.stdout and "closed-loop" in done.stdout
    report = json.loads(out.read_text())
    assert report["workers"] == 2 and report["patients"] == 2
    entries = report["entries"]
    assert [(e["patient"], e["policy"]) for e in entries] == [
        (0, "off"),
        (0, "closed-loop"),
        (1, "off"),
        (1, "closed-loop"),
    ]
    for key in (
        "phenotype",
        "seed",
        "attacks",
        "attacks_per_30d",
        "teed_j",
        "stim_time_s",
        "sensitivity",
        "chance_sensitivity",
        "false_alarms_per_day",
        "median_lead_h",
    ):
        assert key in entries[0]
    assert entries[0]["seed"] == entries[1]["seed"] == patient_seed(5, 0)  # paired
    assert {(a["phenotype"], a["policy"]) for a in report["aggregates"]} >= {
        ("all", "off"),
        ("all", "closed-loop"),
        ("chronic", "closed-loop"),
    }
    assert plot.read_bytes()[:4] == b"\x89PNG"
    # The worker's run equals the same job run here (same seed, same numbers).
    job = cohort_jobs(
        2,
        0.02,
        ["off", "closed-loop"],
        ["episodic-without-aura", "chronic"],
        5,
        "spectral",
        ControllerConfig.model_validate({"detector": {"calibration_s": 120.0}}),
    )[3]
    here = run_job(job).model_dump(mode="json")
    there = dict(entries[3])
    for volatile in ("wall_s", "realtime_factor"):
        here.pop(volatile)
        there.pop(volatile)
    assert here == there


def test_trial_command_names_bad_policies_and_phenotypes() -> None:
    done = subprocess.run(
        [*NEUROSTIM, "trial", "--policies", "off,sometimes", "--phenotypes", "martian"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "unknown policy 'sometimes'" in done.stderr
    assert "unknown phenotype 'martian'" in done.stderr


def test_migraine_day_change_and_responders_against_the_paired_off_run() -> None:
    entries = [
        _entry(0, "off", 4.0, 0.0, migraine_days=6, stim_time_s=0.0),
        _entry(0, "open-loop", 3.0, 10.0, migraine_days=2, stim_time_s=3600.0),
        _entry(1, "off", 8.0, 0.0, migraine_days=10, stim_time_s=0.0),
        _entry(1, "open-loop", 8.0, 30.0, migraine_days=9, stim_time_s=7200.0),
    ]
    rows = {(a.phenotype, a.policy): a for a in aggregate(entries, ["off", "open-loop"])}
    ol = rows[("all", "open-loop")]
    assert ol.change_mmd_vs_off is not None
    assert ol.change_mmd_vs_off.mean == pytest.approx(((2 - 6) + (9 - 10)) / 2)
    assert ol.mmd_responder_rate == pytest.approx(0.5)  # 6 -> 2 halves, 10 -> 9 does not
    assert ol.mmd_responder_ci95 is not None and ol.mmd_responder_ci95[0] < 0.5
    assert ol.stim_time_h_per_patient == pytest.approx(1.5)
    assert ol.teed_j_per_patient == pytest.approx(20.0)
    assert ol.tier == "full closed loop"
    assert rows[("all", "off")].change_mmd_vs_off is None


def test_ceilings_run_the_same_patients_in_the_physiology_tier() -> None:
    from insilico.ceilings import ceiling_aggregates

    entries = [_entry(p, policy, 4.0, 0.0) for p in range(2) for policy in ("off", "closed-loop")]
    # A coarse step keeps the test quick (30 days x 2 patients); the trial uses 2 s.
    ceilings = ceiling_aggregates(entries, ControllerConfig(), step_s=60.0)
    rows = {(a.phenotype, a.policy): a for a in ceilings}
    open_loop = rows[("all", "ceiling: open-loop")]
    perfect = rows[("all", "ceiling: perfect detector")]
    assert open_loop.tier == perfect.tier == "physiology"
    assert open_loop.patients == perfect.patients == 2
    # One 20-min session a day (plus its ramp-down) for 30 days.
    assert open_loop.stim_time_h_per_patient == pytest.approx(30 * (1200 + 133.3) / 3600, rel=0.01)
    assert perfect.stim_time_h_per_patient is not None and perfect.stim_time_h_per_patient > 0
    assert open_loop.change_mmd_vs_off is not None and open_loop.mmd_responder_rate is not None
