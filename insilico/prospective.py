"""Pseudo-prospective judgement of the per-patient detector (``neurostim prospective``).

Per simulated patient, as a forecasting study would (Snyder 2008; Kiral-Kornek 2018):

1. **Run-in**: the patient's EEG (no stimulation) goes through the controller's feature
   extractor into a :class:`FeatureLogger` until ``min_attacks`` attack onsets have been
   seen (and a day more, so the last attack is in the run-in), at most
   ``run_in_max_days``; a patient with fewer attacks is not enrolled, as trials require
   baseline attacks.  The onsets are the ground truth (the patient's diary).
2. **Calibration** on the run-in only (``controller.detector.calibration``).
3. **Test**: the same patient continues for ``test_days``; the calibrated detector, never
   refitted, scores every window; its PRODROME onsets are the alarms.
4. **Scores** of the test period only (``insilico.scoring.score_prediction``, with the
   occurrence period and horizon the calibration chose): sensitivity, time in warning,
   false alarms per interictal day, the chance predictor at the same time in warning and
   the one-sided binomial p-value; sensitivity above 0.9 at under 10 % time in warning is
   flagged as implausible (the best implanted-EEG forecaster reached 69 % at 27 %,
   Kiral-Kornek 2018).

This is a detector-only tier: signals, features and detector are the closed loop's own,
but no device, codec or policy runs (nothing is stimulated), which makes months of signal
affordable.  Patients are processed in worker processes.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from controller.config import ControllerConfig
from controller.detector import Baseline, Detector, DetectorState
from controller.detector.calibration import CalibrationError, CalibrationSettings, calibrate
from controller.detector.feature_log import (
    FeatureLogger,
    calibration_block_s,
    candidate_feature_names,
)
from controller.detector.signature import PatientSignature
from controller.features import FeatureExtractor, FeatureFrame
from firmware_bridge.units import SECONDS_PER_DAY
from insilico import scoring
from insilico.report import PhenotypeSummary, PredictionScores, ProspectiveEntry
from insilico.runner import attacks_from, phase_spans
from simulator.physiology.patient import PatientSimulation, VirtualPatient
from simulator.signals import DEFAULT_SITES, NO_STIMULATION, GroundTruthEvent, Site

#: Implausibility flag: sensitivity above this at a time in warning below the next.
IMPLAUSIBLE_SENSITIVITY = 0.9
IMPLAUSIBLE_TIME_IN_WARNING = 0.10
#: Signal is read in blocks of this length (the physiology steps inside the simulation).
READ_BLOCK_S = 60.0


@dataclass(frozen=True)
class ProspectiveJob:
    """One patient of the study (picklable: it crosses to a worker process)."""

    patient: int
    phenotype: str
    seed: int
    run_in_max_days: float
    test_days: float
    model: str
    config: ControllerConfig
    settings: CalibrationSettings
    sampling_rate_hz: float = 250.0
    sites: tuple[str, ...] = ()  # recording sites by label; empty: all default sites


class ProspectiveReport(BaseModel):
    """The whole study: settings, one entry per patient, one summary per phenotype."""

    model_config = ConfigDict(frozen=True)

    patients_per_phenotype: int
    phenotypes: list[str]
    seed: int
    model: str
    run_in_max_days: float
    test_days: float
    target_time_in_warning: float
    hop_s: float
    sampling_rate_hz: float
    sites: list[str]
    min_attacks_per_month: float
    wall_s: float
    entries: list[ProspectiveEntry]
    summaries: list[PhenotypeSummary]


class StreamedPatient:
    """A simulated patient's EEG streamed through the controller's feature extractor, with
    the ground truth kept (the attack onsets are the patient's diary)."""

    def __init__(self, source: PatientSimulation, config: ControllerConfig) -> None:
        self.source = source
        self.names = [site.label for site in source.sites]
        fs = source.sampling_rate_hz
        self.extractor = FeatureExtractor(
            len(self.names), fs, config.features, channel_names=self.names
        )
        self.block_samples = round(READ_BLOCK_S * fs)
        self.truth: list[GroundTruthEvent] = []

    @classmethod
    def for_job(cls, job: ProspectiveJob) -> StreamedPatient:
        patient = VirtualPatient.from_phenotype(job.phenotype, job.seed)
        source = PatientSimulation(
            patient,
            job.model,
            sites=select_sites(job.sites),
            sampling_rate_hz=job.sampling_rate_hz,
            seed=job.seed,
        )
        return cls(source, job.config)

    @property
    def attacks_per_month(self) -> float:
        return self.source.patient.cycle.attacks_per_month

    @property
    def t_s(self) -> float:
        return self.source.t_s

    def onsets_s(self) -> list[float]:
        return [e.t_s for e in self.truth if e.kind == "attack_onset"]

    def read(self) -> list[FeatureFrame]:
        frames = self.extractor.push(self.source.read(self.block_samples, NO_STIMULATION))
        self.truth.extend(self.source.drain_ground_truth())
        return frames

    def skip(self) -> None:
        """Read one block of signal without features (the run-in of an arm that does not
        calibrate: the same patient, the same random streams, a fraction of the cost)."""
        self.source.read(self.block_samples, NO_STIMULATION)
        self.truth.extend(self.source.drain_ground_truth())


def select_sites(labels: Sequence[str]) -> tuple[Site, ...]:
    """The default recording sites with these labels, in the given order (all if empty)."""
    if not labels:
        return DEFAULT_SITES
    by_label = {site.label: site for site in DEFAULT_SITES}
    unknown = [label for label in labels if label not in by_label]
    if unknown:
        raise ValueError(f"unknown site(s) {unknown}; the sites are {list(by_label)}")
    return tuple(by_label[label] for label in labels)


def run_patient(job: ProspectiveJob) -> ProspectiveEntry:
    """Run-in, calibration, test and scores of one patient (module docstring)."""
    wall_start = time.perf_counter()
    patient = StreamedPatient.for_job(job)
    config = job.config
    logger = run_in_logger(patient, config)
    run_in_s = run_in(patient, job.settings.min_attacks, job.run_in_max_days, logger)
    base = run_in_record(job.patient, job.phenotype, job.seed, patient, run_in_s)
    try:
        signature = calibrate_run_in(patient, logger, run_in_s, config, job.settings)
    except CalibrationError as exc:
        return not_enrolled(base, str(exc), time.perf_counter() - wall_start)
    alarms = _test_alarms(patient, signature, config, job.test_days)
    return scored_entry(base, patient.truth, signature, alarms, run_in_s, patient.t_s, wall_start)


def run_in_logger(patient: StreamedPatient, config: ControllerConfig) -> FeatureLogger:
    """The run-in's feature log: every candidate feature of the calibration."""
    candidates = candidate_feature_names(
        tuple(config.features.bands_hz), config.features.phase_measure
    )
    return FeatureLogger(
        candidates,
        patient.names,
        config.detector,
        block_s=calibration_block_s(config.detector, config.features.hop_s),
    )


def run_in(
    patient: StreamedPatient,
    min_attacks: int,
    max_days: float,
    logger: FeatureLogger | None = None,
) -> float:
    """Stream the run-in until ``min_attacks`` onsets have been seen, plus the rest of that
    day and one more (at most ``max_days``); features go to ``logger`` (None: signal only).
    Returns the run-in's end (s). The end depends on the onsets only, so a run-in with and
    one without features end at the same instant for the same patient and seed."""
    max_s = max_days * SECONDS_PER_DAY
    end_s: float | None = None
    while patient.t_s < max_s and (end_s is None or patient.t_s < end_s):
        if logger is None:
            patient.skip()
        else:
            for frame in patient.read():
                logger.push(frame)
        onsets = patient.onsets_s()
        if end_s is None and len(onsets) >= min_attacks:
            end_s = (onsets[min_attacks - 1] // SECONDS_PER_DAY + 2) * SECONDS_PER_DAY
    return patient.t_s


def run_in_onsets(patient: StreamedPatient, run_in_s: float) -> list[float]:
    return [o for o in patient.onsets_s() if o < run_in_s]


def run_in_record(
    index: int, phenotype: str, seed: int, patient: StreamedPatient, run_in_s: float
) -> dict[str, object]:
    """The fields of an entry the run-in decides."""
    return {
        "patient": index,
        "phenotype": phenotype,
        "seed": seed,
        "attacks_per_month": patient.attacks_per_month,
        "run_in_days": run_in_s / SECONDS_PER_DAY,
        "run_in_attacks": len(run_in_onsets(patient, run_in_s)),
    }


def calibrate_run_in(
    patient: StreamedPatient,
    logger: FeatureLogger,
    run_in_s: float,
    config: ControllerConfig,
    settings: CalibrationSettings,
) -> PatientSignature:
    """The patient's signature from the run-in only (CalibrationError if it cannot)."""
    return calibrate(logger.log(), run_in_onsets(patient, run_in_s), config.detector, settings)


def _test_alarms(
    patient: StreamedPatient,
    signature: PatientSignature,
    config: ControllerConfig,
    test_days: float,
) -> list[float]:
    detector = Detector(
        signature.apply(config.detector),
        patient.names,
        baseline=Baseline.from_dict(signature.baseline.to_dict()),
    )
    end_s = patient.t_s + test_days * SECONDS_PER_DAY
    alarms = []
    while patient.t_s < end_s - 1e-6:
        for frame in patient.read():
            out = detector.update(frame)
            if out.changed and out.state is DetectorState.PRODROME:
                alarms.append(out.t_s)
    return alarms


def scored_entry(
    base: dict[str, object],
    truth: list[GroundTruthEvent],
    signature: PatientSignature,
    alarms: list[float],
    start_s: float,
    end_s: float,
    wall_start: float,
) -> ProspectiveEntry:
    """The entry of an enrolled patient: the alarms in [start_s, end_s] scored against the
    attacks there, with the occurrence period and horizon the calibration chose."""
    prediction = prospective_scores(truth, signature, alarms, start_s, end_s)
    sensitivity, tiw = prediction.sensitivity, prediction.time_in_warning
    fit = signature.run_in
    return ProspectiveEntry(
        **base,  # type: ignore[arg-type]
        enrolled=True,
        reason="",
        features=[f"{f.name} {f.direction} {f.weight:.2f}" for f in signature.features],
        occurrence_period_h=signature.occurrence_period_h,
        upper_threshold=signature.upper_threshold,
        run_in_sensitivity=fit.sensitivity,
        run_in_time_in_warning=fit.time_in_warning,
        test_days=(end_s - start_s) / SECONDS_PER_DAY,
        attacks=prediction.attacks,
        predicted=prediction.predicted,
        alarms=prediction.alarms,
        sensitivity=sensitivity,
        time_in_warning=tiw,
        false_alarms_per_day=prediction.false_alarms_per_day,
        improvement_over_chance=None if sensitivity is None else sensitivity - tiw,
        p_value=prediction.p_value,
        beats_chance=prediction.beats_chance,
        implausible=is_implausible(sensitivity, tiw),
        wall_s=time.perf_counter() - wall_start,
    )


def prospective_scores(
    truth: list[GroundTruthEvent],
    signature: PatientSignature,
    alarms: list[float],
    start_s: float,
    end_s: float,
) -> PredictionScores:
    """docs/scoring.md's scores of the period [start_s, end_s] (times relative to its start)."""
    ordered = sorted(truth, key=lambda e: e.t_s)
    spans = phase_spans(ordered, end_s)
    attacks = [
        (a.t_s - start_s, None if a.end_s is None else a.end_s - start_s)
        for a in attacks_from(ordered, spans)
        if start_s <= a.t_s <= end_s
    ]
    return scoring.score_prediction(
        [a - start_s for a in alarms if start_s <= a <= end_s],
        attacks,
        end_s - start_s,
        max_lead_h=signature.occurrence_period_h,
        min_lead_min=signature.horizon_min,
    )


def not_enrolled(base: dict[str, object], reason: str, wall_s: float) -> ProspectiveEntry:
    return ProspectiveEntry(
        **base,  # type: ignore[arg-type]
        enrolled=False,
        reason=reason,
        features=[],
        occurrence_period_h=None,
        upper_threshold=None,
        run_in_sensitivity=None,
        run_in_time_in_warning=None,
        test_days=0.0,
        attacks=0,
        predicted=0,
        alarms=0,
        sensitivity=None,
        time_in_warning=None,
        false_alarms_per_day=None,
        improvement_over_chance=None,
        p_value=None,
        beats_chance=False,
        implausible=False,
        wall_s=wall_s,
    )


def is_implausible(sensitivity: float | None, time_in_warning: float | None) -> bool:
    """Sensitivity > 0.9 at time in warning < 10 %: better than any published forecaster."""
    if sensitivity is None or time_in_warning is None:
        return False
    return sensitivity > IMPLAUSIBLE_SENSITIVITY and time_in_warning < IMPLAUSIBLE_TIME_IN_WARNING


# --- the cohort -------------------------------------------------------------------------


def cohort_jobs(
    patients_per_phenotype: int,
    phenotypes: Sequence[str],
    seed: int,
    *,
    run_in_max_days: float,
    test_days: float,
    model: str,
    config: ControllerConfig,
    settings: CalibrationSettings,
    sampling_rate_hz: float = 250.0,
    min_attacks_per_month: float = 0.0,
    sites: Sequence[str] = (),
) -> list[ProspectiveJob]:
    """``patients_per_phenotype`` patients of each phenotype; patient seeds are tried from
    ``seed`` upwards (one counter for the whole cohort) and a patient is screened out when
    its drawn attack frequency is below ``min_attacks_per_month`` (enrolment by diary: a
    run-in of affordable length must be able to hold ``min_attacks`` attacks)."""
    select_sites(sites)  # unknown labels fail before anything runs
    jobs: list[ProspectiveJob] = []
    candidate = seed
    for phenotype in phenotypes:
        found = 0
        while found < patients_per_phenotype:
            drawn = VirtualPatient.from_phenotype(phenotype, candidate)
            if drawn.cycle.attacks_per_month >= min_attacks_per_month:
                jobs.append(
                    ProspectiveJob(
                        len(jobs),
                        phenotype,
                        candidate,
                        run_in_max_days,
                        test_days,
                        model,
                        config,
                        settings,
                        sampling_rate_hz,
                        tuple(sites),
                    )
                )
                found += 1
            candidate += 1
            if candidate - seed > 10_000:
                raise ValueError(
                    f"no {phenotype} patient has >= {min_attacks_per_month} attacks per month"
                )
    return jobs


def run_cohort(
    jobs: list[ProspectiveJob],
    workers: int,
    on_done: Callable[[ProspectiveEntry], None] | None = None,
) -> list[ProspectiveEntry]:
    """Run ``jobs`` in ``workers`` spawned processes (1: in this process), in job order."""
    if workers <= 1:
        entries = []
        for job in jobs:
            entries.append(run_patient(job))
            if on_done is not None:
                on_done(entries[-1])
        return entries
    results: dict[int, ProspectiveEntry] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(run_patient, job): i for i, job in enumerate(jobs)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            if on_done is not None:
                on_done(results[futures[future]])
    return [results[i] for i in range(len(jobs))]


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarise(
    entries: Sequence[ProspectiveEntry], phenotypes: Sequence[str]
) -> list[PhenotypeSummary]:
    """Per phenotype (and "all"): medians over enrolled patients, aim per the issue text:
    median sensitivity >= 0.4 at median time in warning <= 0.3 and at least half of the
    enrolled patients better than chance at p < 0.05."""
    out = []
    for group in [*phenotypes, "all"]:
        rows = [e for e in entries if group in ("all", e.phenotype)]
        enrolled = [e for e in rows if e.enrolled and e.sensitivity is not None]
        sens = _median([e.sensitivity for e in enrolled if e.sensitivity is not None])
        tiw = _median([e.time_in_warning for e in enrolled if e.time_in_warning is not None])
        beat = sum(e.beats_chance for e in enrolled)
        out.append(
            PhenotypeSummary(
                phenotype=group,
                patients=len(rows),
                enrolled=len(enrolled),
                median_sensitivity=sens,
                median_time_in_warning=tiw,
                median_false_alarms_per_day=_median(
                    [e.false_alarms_per_day for e in enrolled if e.false_alarms_per_day is not None]
                ),
                median_improvement=_median(
                    [
                        e.improvement_over_chance
                        for e in enrolled
                        if e.improvement_over_chance is not None
                    ]
                ),
                beat_chance=beat,
                implausible=sum(e.implausible for e in enrolled),
                aim_met=bool(
                    enrolled
                    and sens is not None
                    and tiw is not None
                    and sens >= 0.4
                    and tiw <= 0.3
                    and 2 * beat >= len(enrolled)
                ),
            )
        )
    return out
