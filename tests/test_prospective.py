"""Pseudo-prospective study: the cohort's screening, the per-phenotype verdict, the flag."""

from __future__ import annotations

import numpy as np
import pytest

from controller.config import ControllerConfig
from controller.detector.calibration import CalibrationSettings
from insilico.prospective import ProspectiveEntry, cohort_jobs, is_implausible, summarise
from neurostim_cli.main import main
from simulator.physiology.patient import VirtualPatient


def entry(
    phenotype: str, sensitivity: float | None, tiw: float | None, p: float | None
) -> ProspectiveEntry:
    enrolled = sensitivity is not None
    return ProspectiveEntry(
        patient=0,
        phenotype=phenotype,
        seed=0,
        attacks_per_month=5.0,
        enrolled=enrolled,
        reason="" if enrolled else "too few attacks",
        run_in_days=30.0,
        run_in_attacks=5,
        features=[],
        occurrence_period_h=24.0,
        upper_threshold=1.0,
        run_in_sensitivity=None,
        run_in_time_in_warning=None,
        test_days=20.0,
        attacks=5,
        predicted=0,
        alarms=0,
        sensitivity=sensitivity,
        time_in_warning=tiw,
        false_alarms_per_day=0.1,
        improvement_over_chance=None if sensitivity is None or tiw is None else sensitivity - tiw,
        p_value=p,
        beats_chance=p is not None and p < 0.05,
        implausible=is_implausible(sensitivity, tiw),
        wall_s=1.0,
    )


def test_implausible_only_above_0_9_at_under_10_percent() -> None:
    assert is_implausible(0.95, 0.05)
    assert not is_implausible(0.9, 0.05)  # "above 0.9"
    assert not is_implausible(0.95, 0.10)  # "below 10 %"
    assert not is_implausible(0.69, 0.27)  # Kiral-Kornek 2018's best
    assert not is_implausible(None, 0.05)


def test_summary_medians_and_the_aim_per_phenotype() -> None:
    entries = [
        entry("chronic", 0.5, 0.25, 0.01),
        entry("chronic", 0.4, 0.30, 0.20),
        entry("chronic", None, None, None),  # not enrolled: not in the medians
        entry("pediatric", 0.6, 0.35, 0.01),  # too much time in warning
        entry("pediatric", 0.95, 0.05, 0.001),
    ]
    summaries = {s.phenotype: s for s in summarise(entries, ["chronic", "pediatric"])}
    chronic = summaries["chronic"]
    assert (chronic.patients, chronic.enrolled, chronic.beat_chance) == (3, 2, 1)
    assert chronic.median_sensitivity == pytest.approx(0.45)
    assert chronic.median_time_in_warning == pytest.approx(0.275)
    assert chronic.aim_met  # 0.45 >= 0.4 at 0.275 <= 0.3, 1 of 2 beat chance
    pediatric = summaries["pediatric"]
    assert pediatric.implausible == 1
    assert pediatric.median_time_in_warning == pytest.approx(0.2)
    assert pediatric.aim_met
    assert summaries["all"].enrolled == 4
    assert not {s.phenotype: s for s in summarise([entry("chronic", 0.3, 0.2, 0.01)], ["chronic"])}[
        "chronic"
    ].aim_met


def test_cohort_screening_by_attack_frequency() -> None:
    jobs = cohort_jobs(
        2,
        ["episodic-without-aura", "chronic"],
        0,
        run_in_max_days=40.0,
        test_days=10.0,
        model="spectral",
        config=ControllerConfig(),
        settings=CalibrationSettings(),
        min_attacks_per_month=4.5,
    )
    assert [j.phenotype for j in jobs] == ["episodic-without-aura"] * 2 + ["chronic"] * 2
    assert len({j.seed for j in jobs}) == 4
    for job in jobs:
        drawn = VirtualPatient.from_phenotype(job.phenotype, job.seed)
        assert drawn.cycle.attacks_per_month >= 4.5
    # the skipped seeds were the ones below the screening frequency
    first, second = jobs[0].seed, jobs[1].seed
    for seed in range(first + 1, second):
        drawn = VirtualPatient.from_phenotype("episodic-without-aura", seed)
        assert drawn.cycle.attacks_per_month < 4.5


def test_prospective_command_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prospective", "--phenotypes", "elderly"]) == 2
    assert "unknown phenotype(s) ['elderly']" in capsys.readouterr().err
    assert main(["prospective", "--test-days", "0"]) == 2
    assert "--test-days must be > 0" in capsys.readouterr().err
    assert main(["prospective", "--sampling-rate-hz", "125"]) == 2
    assert "whole number of samples" in capsys.readouterr().err
    assert main(["prospective", "--time-in-warning", "0"]) == 2
    assert "target_time_in_warning" in capsys.readouterr().err


def test_feature_logger_blocks_samples_and_gating() -> None:
    """Block means of usable windows only; too few good channels and blanking are left out."""
    from controller.detector.feature_log import FeatureLogger
    from tests.test_detector_detector import config, make_frame

    logger = FeatureLogger(
        ["beta_rel_power.mean", "coherence.alpha.mean"],
        ["c0", "c1", "c2", "c3"],
        config(),
        block_s=10.0,
        sample_every_s=2.0,
    )
    for i in range(20):  # windows ending 2.0 .. 11.5 s: block 0 holds t_end < 10 s
        logger.push(make_frame(i, rel_beta=0.1 if i < 16 else 0.5))
    for i in range(20, 40):  # one good channel of four: below the minimum (2), not used
        logger.push(make_frame(i, rel_beta=9.0, good=[True, False, False, False]))
    logger.blank_after_change(20.0)  # windows starting before 35 s are blanked
    for i in range(40, 80):
        logger.push(make_frame(i, rel_beta=0.3))
    log = logger.log()
    assert log.block_end_s.tolist() == [10.0, 20.0, 30.0, 40.0, 50.0]  # last t_end 41.5 s
    beta = log.column("beta_rel_power.mean")
    assert log.block_mean[0, beta] == pytest.approx(0.1)
    assert log.block_mean[1, beta] == pytest.approx((4 * 0.5) / 4)  # 10.0-11.5 s, then unusable
    assert np.isnan(log.block_mean[2, beta])
    assert log.block_mean[3, beta] == pytest.approx(0.3)  # t_start >= 35 s only
    assert log.block_usable_s[3] == pytest.approx(3.0)  # 6 windows of 0.5 s
    assert log.block_usable_s[0] == pytest.approx(7.5)  # 16 windows, the first credited 0 s
    assert not (log.sample_values[:, beta] == 9.0).any()
    assert np.diff(log.sample_t_s).min() >= 2.0


def test_site_selection_by_label() -> None:
    from insilico.prospective import select_sites

    assert [s.label for s in select_sites(["O1", "Fp1"])] == ["O1", "Fp1"]
    assert len(select_sites([])) == 8
    with pytest.raises(ValueError, match=r"unknown site\(s\) \['Cz'\]"):
        select_sites(["Cz"])


def test_cohort_jobs_carry_the_chosen_sites_to_the_patient() -> None:
    from insilico.prospective import StreamedPatient

    jobs = cohort_jobs(
        1,
        ["chronic"],
        0,
        run_in_max_days=1.0,
        test_days=1.0,
        model="spectral",
        config=ControllerConfig(),
        settings=CalibrationSettings(),
        sites=["Fp1", "C3"],
    )
    assert jobs[0].sites == ("Fp1", "C3")
    assert StreamedPatient.for_job(jobs[0]).names == ["Fp1", "C3"]
