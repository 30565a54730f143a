"""``neurostim trial --preset NAME``: an in-silico copy of a published trial (physiology tier)."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from insilico.premice import (
    TRIAL_PRESETS,
    ArmSummary,
    acceptance,
    patient_months,
    run_preset,
    summarize,
)
from simulator.devices import device_preset

#: Minimum cohort of the acceptance run (patients per arm).
DEFAULT_PATIENTS_PER_ARM = 300


def run_preset_command(
    name: str,
    seed: int,
    json_path: Path | None,
    patients_per_arm: int | None,
    workers: int,
    step_s: float = 300.0,
) -> int:
    preset = TRIAL_PRESETS[name]
    device = device_preset(preset.device)
    n = patients_per_arm or DEFAULT_PATIENTS_PER_ARM
    start = time.perf_counter()
    outcomes = run_preset(preset, n, seed, step_s=step_s, workers=workers)
    wall_s = time.perf_counter() - start
    arms = [a.name for a in preset.arms]
    summaries = summarize(outcomes, arms)
    checks = acceptance(summaries) if preset.calibrated_on else {}
    report = {
        "preset": preset.name,
        "citation": preset.citation,
        "calibrated_on_this_trial": preset.calibrated_on,
        "device": device.name,
        "therapy_calibration": device.calibration_note,
        "tier": "physiology (cycle + therapy response, fixed schedule; no signals, no controller)",
        "design": {
            "run_in_days": preset.run_in_days,
            "treatment_days": preset.treatment_days,
            "outcome_days_of_treatment": [preset.outcome_from_day, preset.outcome_to_day],
            "min_run_in_attacks": preset.min_run_in_attacks,
            "patients_per_arm": n,
            "paired": True,
            "phenotypes": list(preset.phenotypes),
            "step_s": step_s,
        },
        "seed": seed,
        "wall_s": wall_s,
        "patient_months": patient_months(preset, outcomes),
        "published": {
            k: {"responders": v[0], "change_mmd": v[1]} for k, v in preset.published.items()
        },
        "arms": [asdict(s) for s in summaries],
        "acceptance": checks,
        "patients": [
            asdict(o) | {"change_mmd": o.change_mmd, "responder": o.responder} for o in outcomes
        ],
    }
    if json_path is not None:
        text = json.dumps(report, indent=2)
        if str(json_path) == "-":
            sys.stdout.write(text + "\n")
        else:
            json_path.write_text(text + "\n", encoding="utf-8")
    if json_path is None or str(json_path) != "-":
        console = Console() if Console().is_terminal else Console(width=220)
        console.print(preset_table(preset.name, preset.citation, summaries, preset.published))
        console.print(
            f"tier: physiology for every arm; device {device.calibration_note}; "
            f"{report['patient_months']:.0f} patient-months in {wall_s:.1f} s; seed {seed}"
        )
        for check, ok in checks.items():
            console.print(f"acceptance: {check}: {'PASS' if ok else 'FAIL'}")
    return 0 if all(checks.values()) else 1


def preset_table(
    name: str,
    citation: str,
    summaries: list[ArmSummary],
    published: dict[str, tuple[float, float]],
) -> Table:
    table = Table(title=f"neurostim trial --preset {name} — {citation}")
    for header in (
        "phenotype",
        "arm",
        "tier",
        "n",
        "50 % responders (95 % CI)",
        "change MMD (95 % CI)",
        "baseline MMD",
        "published (resp., change)",
        "sessions",
        "stim h",
        "TEED J",
        "dose SE",
    ):
        table.add_column(header)
    for s in summaries:
        pub = published.get(s.arm) if s.phenotype == "all" else None
        table.add_row(
            s.phenotype,
            s.arm,
            s.tier,
            str(s.patients),
            f"{100 * s.responder_rate:.1f} % ({100 * s.responder_ci95[0]:.1f}-"
            f"{100 * s.responder_ci95[1]:.1f})",
            f"{s.change_mmd:+.2f} ({s.change_mmd_ci95[0]:+.2f} to {s.change_mmd_ci95[1]:+.2f})",
            f"{s.baseline_mmd:.2f}",
            "" if pub is None else f"{100 * pub[0]:.1f} %, {pub[1]:+.2f}",
            f"{s.sessions_per_patient:.0f}",
            f"{s.stim_time_h_per_patient:.1f}",
            f"{s.teed_j_per_patient:.0f}",
            f"{s.dose_se_per_patient:.1f}",
        )
    return table
