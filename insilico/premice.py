"""In-silico copies of published open-loop trials, run in the physiology tier.

``premice`` is the calibration target (Schoenen et al. 2013, Neurology 80:697: Cefaly,
supraorbital e-TNS, 20 min daily; 1-month run-in, 3 months of treatment, outcome in
the third month; 50 % responders 38.1 % vs 12.1 % under sham, change in monthly
migraine days -2.06 vs -0.32). The model's efficacy distributions are fitted to it and
to nothing else.

``premium-ii`` is a trial the model was NOT calibrated on (Najib et al. 2022,
Cephalalgia 42:560: non-invasive vagus nerve stimulation, gammaCore; 4-week run-in,
12 weeks double-blind; modified ITT: change in monthly migraine days -3.12 vs -2.29,
50 % responders 44.87 % vs 26.81 %). The regimen of the PREMIUM programme is two
120-s stimulations three times a day (Diener et al. 2019, Cephalalgia 39:1475); one
labelled nVNS session (1 SE) is one such 2 x 120 s stimulation by ASSUMPTION, and the
patient's efficacy to nVNS is taken equal to their efficacy to e-TNS (ASSUMPTION) - no
number of the model was tuned on this trial.

Design of every preset: patients are drawn in turn from the trial's phenotypes
(seed ``seed + i``), run for the run-in without stimulation, and enrolled with at least
``min_run_in_attacks`` attacks; each enrolled patient is then run under every arm with
the same seed (a paired comparison: the arms differ only by the treatment). A migraine
day is a calendar day with any part of an attack.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from controller.envelope import EnvelopeConfig
from insilico import scoring
from insilico.device_setup import patient_overrides
from insilico.physiology_tier import CourseResult, Schedule, SessionPlan, migraine_days, run_course
from simulator.devices import DevicePreset, device_preset
from simulator.physiology.cycle import SECONDS_PER_DAY
from simulator.physiology.patient import VirtualPatient

DAY_S = SECONDS_PER_DAY


@dataclass(frozen=True)
class ArmSpec:
    """One arm: the policy it stands for and the schedule it runs in the physiology tier."""

    name: str  # policy name: off, sham, open-loop, perfect-detector
    mode: str  # none | daily | prodrome
    sham: bool = False


@dataclass(frozen=True)
class TrialPreset:
    name: str
    citation: str
    device: str
    phenotypes: tuple[str, ...]
    run_in_days: float = 30.0
    treatment_days: float = 90.0
    outcome_from_day: float = 60.0  # of treatment
    outcome_to_day: float = 90.0
    min_run_in_attacks: int = 2
    session_s: float | None = None  # default: the device's labelled session
    times_of_day_s: tuple[float, ...] = (28_800.0,)
    arms: tuple[ArmSpec, ...] = (ArmSpec("sham", "daily", sham=True), ArmSpec("open-loop", "daily"))
    #: Session ramps: the default envelope's (RC+S example rates); a device with short
    #: sessions ramps at its own maximum.
    ramp_up_ma_per_s: float = EnvelopeConfig().ramp_up_ma_per_s
    ramp_down_ma_per_s: float = EnvelopeConfig().ramp_down_ma_per_s
    #: What the trial reported, per arm: (50 % responder share, change in monthly migraine days).
    published: dict[str, tuple[float, float]] = field(default_factory=dict)
    calibrated_on: bool = False


PREMICE = TrialPreset(
    name="premice",
    citation="Schoenen et al. 2013, Neurology 80:697 (PREMICE)",
    device="etns-supraorbital",
    phenotypes=("episodic-without-aura", "episodic-with-aura"),
    published={"sham": (0.121, -0.32), "open-loop": (0.381, -2.06)},
    calibrated_on=True,
)

PREMIUM_II = TrialPreset(
    name="premium-ii",
    citation="Najib et al. 2022, Cephalalgia 42:560 (PREMIUM II, mITT)",
    device="nvns-cervical",
    phenotypes=("episodic-without-aura", "episodic-with-aura"),
    run_in_days=28.0,
    treatment_days=84.0,
    outcome_from_day=56.0,
    outcome_to_day=84.0,
    times_of_day_s=(28_800.0, 50_400.0, 72_000.0),  # three times a day, 6 h apart
    ramp_up_ma_per_s=5.0,
    ramp_down_ma_per_s=5.0,
    published={"sham": (0.2681, -2.29), "open-loop": (0.4487, -3.12)},
)

TRIAL_PRESETS: dict[str, TrialPreset] = {p.name: p for p in (PREMICE, PREMIUM_II)}


@dataclass(frozen=True)
class PatientOutcome:
    patient: int
    seed: int
    phenotype: str
    arm: str
    baseline_mmd: float  # migraine days in the run-in, per 30 days
    outcome_mmd: float  # migraine days in the outcome window, per 30 days
    sessions: int
    stim_time_s: float
    charge_uc: float
    teed_j: float
    dose_se: float

    @property
    def change_mmd(self) -> float:
        return self.outcome_mmd - self.baseline_mmd

    @property
    def responder(self) -> bool:
        return self.baseline_mmd > 0 and self.outcome_mmd <= 0.5 * self.baseline_mmd


@dataclass(frozen=True)
class ArmSummary:
    arm: str
    phenotype: str
    tier: str
    patients: int
    responder_rate: float
    responder_ci95: tuple[float, float]
    change_mmd: float
    change_mmd_ci95: tuple[float, float]
    baseline_mmd: float
    sessions_per_patient: float
    stim_time_h_per_patient: float
    teed_j_per_patient: float
    dose_se_per_patient: float


def arm_schedule(preset: TrialPreset, arm: ArmSpec, device: DevicePreset) -> Schedule:
    """The fixed schedule an arm runs: the device's labelled (or sham) session."""
    setting = device.sham if arm.sham else device.labelled
    plan = SessionPlan(
        setting.amplitude_ma,
        setting.pulse_width_us,
        setting.frequency_hz,
        preset.session_s or setting.session_s,
        ramp_up_ma_per_s=preset.ramp_up_ma_per_s,
        ramp_down_ma_per_s=preset.ramp_down_ma_per_s,
    )
    if arm.mode == "none":
        return Schedule.none()
    return Schedule(
        arm.mode,  # type: ignore[arg-type]
        plan,
        times_of_day_s=preset.times_of_day_s,
        treatment_start_s=preset.run_in_days * DAY_S,
    )


def trial_patient(preset: TrialPreset, index: int, seed: int) -> VirtualPatient:
    phenotype = preset.phenotypes[index % len(preset.phenotypes)]
    overrides = patient_overrides(device_preset(preset.device))
    return VirtualPatient.from_phenotype(phenotype, seed + index, overrides)


@dataclass(frozen=True)
class _Job:
    preset: TrialPreset
    index: int
    seed: int
    step_s: float


def run_candidate(job: _Job) -> list[PatientOutcome]:
    """Screen one candidate (run-in); if enrolled, run every arm. Empty if not enrolled."""
    preset, device = job.preset, device_preset(job.preset.device)
    patient = trial_patient(preset, job.index, job.seed)
    run_seed = job.seed + job.index
    run_in_s = preset.run_in_days * DAY_S
    screen = run_course(patient, run_seed, preset.run_in_days, Schedule.none(), step_s=job.step_s)
    if sum(1 for onset, _ in screen.attacks if onset < run_in_s) < preset.min_run_in_attacks:
        return []
    days = preset.run_in_days + preset.treatment_days
    out = []
    for arm in preset.arms:
        result = run_course(
            patient,
            run_seed,
            days,
            arm_schedule(preset, arm, device),
            step_s=job.step_s,
            device=device,
        )
        out.append(_outcome(preset, job.index, run_seed, patient, arm.name, result, device))
    return out


def _outcome(
    preset: TrialPreset,
    index: int,
    seed: int,
    patient: VirtualPatient,
    arm: str,
    result: CourseResult,
    device: DevicePreset,
) -> PatientOutcome:
    run_in_s = preset.run_in_days * DAY_S
    window = (run_in_s + preset.outcome_from_day * DAY_S, run_in_s + preset.outcome_to_day * DAY_S)
    window_days = preset.outcome_to_day - preset.outcome_from_day
    baseline = migraine_days(result.attacks, 0.0, run_in_s) * 30.0 / preset.run_in_days
    outcome = migraine_days(result.attacks, *window) * 30.0 / window_days
    return PatientOutcome(
        patient=index,
        seed=seed,
        phenotype=patient.phenotype.value,
        arm=arm,
        baseline_mmd=baseline,
        outcome_mmd=outcome,
        sessions=result.sessions,
        stim_time_s=result.stim_time_s,
        charge_uc=result.charge_uc,
        teed_j=result.teed_j,
        dose_se=result.charge_uc / device.session_charge_uc,
    )


def run_preset(
    preset: TrialPreset,
    patients_per_arm: int,
    seed: int = 0,
    *,
    step_s: float = 300.0,
    workers: int = 1,
    on_enrolled: Callable[[int], None] | None = None,
) -> list[PatientOutcome]:
    """Screen candidates in order until ``patients_per_arm`` are enrolled; outcomes in order."""
    outcomes: list[PatientOutcome] = []
    enrolled = 0
    index = 0
    batch = max(2 * workers, 8)
    # spawn: workers start clean (no inherited threads or numba state from the parent).
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context) if workers > 1 else None
    try:
        while enrolled < patients_per_arm:
            jobs = [_Job(preset, i, seed, step_s) for i in range(index, index + batch)]
            index += batch
            results = list(pool.map(run_candidate, jobs)) if pool else map(run_candidate, jobs)
            for rows in results:
                if rows and enrolled < patients_per_arm:
                    outcomes.extend(rows)
                    enrolled += 1
                    if on_enrolled is not None:
                        on_enrolled(enrolled)
    finally:
        if pool is not None:
            pool.shutdown()
    return outcomes


def summarize(
    outcomes: Sequence[PatientOutcome], arms: Sequence[str], tier: str = "physiology"
) -> list[ArmSummary]:
    """Per arm, over all patients and per phenotype."""
    phenotypes = sorted({o.phenotype for o in outcomes})
    groups = ["all", *phenotypes] if len(phenotypes) > 1 else ["all"]
    out = []
    for group in groups:
        for arm in arms:
            rows = [o for o in outcomes if o.arm == arm and group in ("all", o.phenotype)]
            if not rows:
                continue
            n = len(rows)
            responders = sum(o.responder for o in rows)
            change_mean, change_lo, change_hi = scoring.mean_ci95([o.change_mmd for o in rows])
            out.append(
                ArmSummary(
                    arm=arm,
                    phenotype=group,
                    tier=tier,
                    patients=n,
                    responder_rate=responders / n,
                    responder_ci95=scoring.wilson_ci95(responders, n),
                    change_mmd=change_mean,
                    change_mmd_ci95=(change_lo, change_hi),
                    baseline_mmd=float(np.mean([o.baseline_mmd for o in rows])),
                    sessions_per_patient=float(np.mean([o.sessions for o in rows])),
                    stim_time_h_per_patient=float(np.mean([o.stim_time_s for o in rows])) / 3600,
                    teed_j_per_patient=float(np.mean([o.teed_j for o in rows])),
                    dose_se_per_patient=float(np.mean([o.dose_se for o in rows])),
                )
            )
    return out


def acceptance(summaries: Sequence[ArmSummary]) -> dict[str, bool]:
    """The in-silico PREMICE acceptance: open loop 30-46 % responders and an MMD change of
    -1.5 to -2.6; sham 6-18 % responders; the open-loop change at least 1.0 day larger."""
    by_arm = {s.arm: s for s in summaries if s.phenotype == "all"}
    ol, sham = by_arm["open-loop"], by_arm["sham"]
    return {
        "open-loop responders 30-46 %": 0.30 <= ol.responder_rate <= 0.46,
        "sham responders 6-18 %": 0.06 <= sham.responder_rate <= 0.18,
        "open-loop MMD change -1.5 to -2.6": -2.6 <= ol.change_mmd <= -1.5,
        "difference >= 1.0 day": sham.change_mmd - ol.change_mmd >= 1.0,
    }


def timed_run(
    preset: TrialPreset, patients_per_arm: int, seed: int, step_s: float, workers: int
) -> tuple[list[PatientOutcome], float]:
    start = time.perf_counter()
    outcomes = run_preset(preset, patients_per_arm, seed, step_s=step_s, workers=workers)
    return outcomes, time.perf_counter() - start


def patient_months(preset: TrialPreset, outcomes: Sequence[PatientOutcome]) -> float:
    per_run = (preset.run_in_days + preset.treatment_days) / (365.25 / 12)
    return len(outcomes) * per_run if outcomes else 0.0


def finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
