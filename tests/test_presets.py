"""In-silico copies of published trials (physiology tier), at small sizes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from insilico.premice import PREMICE, run_preset, summarize
from insilico.scoring import wilson_ci95


def test_wilson_interval_brackets_the_share() -> None:
    low, high = wilson_ci95(38, 100)
    assert low < 0.38 < high
    assert wilson_ci95(0, 10)[0] == pytest.approx(0.0, abs=1e-12)
    assert wilson_ci95(10, 10)[1] == pytest.approx(1.0, abs=1e-12)
    assert wilson_ci95(0, 10)[1] > 0.2  # no events in 10 still allows a quarter


def test_premice_design_is_paired_enrols_on_the_run_in_and_separates_the_arms() -> None:
    outcomes = run_preset(PREMICE, 40, seed=3, step_s=1800.0)
    by_arm = {arm: [o for o in outcomes if o.arm == arm] for arm in ("sham", "open-loop")}
    assert len(by_arm["sham"]) == len(by_arm["open-loop"]) == 40
    # Paired: the same patients, the same run-in.
    for sham, active in zip(by_arm["sham"], by_arm["open-loop"], strict=True):
        assert (sham.patient, sham.seed, sham.baseline_mmd) == (
            active.patient,
            active.seed,
            active.baseline_mmd,
        )
        assert sham.baseline_mmd > 0  # >= 2 attacks in the run-in
    # Sham: 90 sessions of 1 mA x 30 µs x 1 Hz = 1.25e-4 SE each.
    assert all(o.dose_se < 0.02 for o in by_arm["sham"])
    assert all(70 < o.dose_se < 80 for o in by_arm["open-loop"])  # 90 x 0.83 SE
    rows = {s.arm: s for s in summarize(outcomes, ["sham", "open-loop"]) if s.phenotype == "all"}
    assert rows["open-loop"].change_mmd < rows["sham"].change_mmd
    assert rows["open-loop"].responder_rate > rows["sham"].responder_rate


def test_preset_command_prints_json_with_tiers_and_the_calibration_note() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "neurostim_cli.main",
            "trial",
            "--preset",
            "premice",
            "--patients",
            "6",
            "--workers",
            "1",
            "--json",
            "-",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(done.stdout)
    assert report["preset"] == "premice" and report["calibrated_on_this_trial"]
    assert {a["tier"] for a in report["arms"]} == {"physiology"}
    assert "calibrated to PREMICE" in report["therapy_calibration"]
    assert set(report["acceptance"]) and done.returncode in (0, 1)
