"""PNG figures of sim and trial reports, built from synthetic reports (no simulator run)."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from insilico.plots import plot_sim, plot_trial
from insilico.report import (
    AttackReport,
    DetectionReport,
    GroundTruthReport,
    LinkReport,
    MeanCI,
    PhaseSpan,
    PredictionScores,
    SafetyReport,
    Scores,
    SimReport,
    SiteReport,
    StimulationReport,
    TherapyScores,
    Timeline,
    TrialAggregate,
    TrialEntry,
    TrialReport,
)

# Any matplotlib warning (e.g. a collapsed constrained layout) fails the test.
pytestmark = pytest.mark.filterwarnings("error")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
H = 3600.0


def assert_png(path: Path, min_width: int = 400, min_height: int = 300) -> None:
    """A real PNG file that reads back as an RGB(A) image of a sensible size."""
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    height, width = image.shape[:2]
    assert width >= min_width and height >= min_height
    assert width > height  # both figures are landscape
    assert image[..., :3].std() > 0.0  # something was drawn


# ------------------------------------------------------------------------- sim reports


def make_timeline(hours: float = 24.0, step_s: float = 600.0, **overrides: object) -> Timeline:
    n = int(hours * H / step_s)
    t = [step_s * (i + 1) for i in range(n)]
    states = (
        ["CALIBRATING"] * 6
        + ["NORMAL"] * (n // 2 - 6)
        + ["SUSPECT"] * 5
        + ["PRODROME"] * 10
        + ["UNKNOWN"] * 3
    )
    states += ["NORMAL"] * (n - len(states))
    score: list[float | None] = [None if s in ("CALIBRATING", "UNKNOWN") else 0.5 for s in states]
    for i, s in enumerate(states):
        if s in ("SUSPECT", "PRODROME"):
            score[i] = 3.0
    amp = [2.0 if s == "PRODROME" else 0.0 for s in states]
    fields: dict[str, object] = {
        "step_s": step_s,
        "t_s": t,
        "score": score,
        "state": states,
        "amplitude_ma": amp,
        "upper_threshold": 2.5,
        "lower_threshold": 1.5,
    }
    fields.update(overrides)
    return Timeline.model_validate(fields)


def make_scores(
    attacks: int = 2,
    sensitivity: float | None = 0.5,
    fa_per_day: float | None = 0.25,
    teed_j: float = 1.5,
) -> Scores:
    return Scores(
        prediction=PredictionScores(
            max_lead_h=12.0,
            min_lead_min=15.0,
            attacks=attacks,
            predicted=1 if attacks else 0,
            sensitivity=sensitivity,
            alarms=2,
            false_alarms=1,
            interictal_days=0.8,
            false_alarms_per_day=fa_per_day,
            median_lead_h=None,
            time_in_warning=0.2,
            chance_sensitivity=0.2,
            p_value=None,
            beats_chance=False,
        ),
        therapy=TherapyScores(
            days=1.0,
            attacks=attacks,
            attacks_per_30d=30.0 * attacks,
            attack_free_days=0,
            stim_time_s=3000.0,
            charge_uc=12.0,
            teed_j=teed_j,
        ),
    )


def make_sim(**overrides: object) -> SimReport:
    """A one-day run: prodrome, an aura attack with its CSD onset, a plain attack."""
    fields: dict[str, object] = {
        "scenario": "episodic",
        "seed": 7,
        "policy": "closed_loop",
        "model": "spectral",
        "virtual_s": 24 * H,
        "wall_s": 3.0,
        "realtime_factor": 28800.0,
        "sites": [SiteReport(label="O1", x_mm=-30.0, y_mm=-90.0)],
        "ground_truth": [
            GroundTruthReport(t_s=10 * H, kind="prodrome_onset"),
            GroundTruthReport(
                t_s=13.9 * H,
                kind="aura_onset",
                site="O1",
                detail={"speed_mm_per_min": 3.0, "origin": "O1"},
            ),
        ],
        "attacks": [
            AttackReport(t_s=14 * H, aura=True, end_s=18 * H),
            AttackReport(t_s=22 * H, aura=False, end_s=None),
        ],
        "detections": [DetectionReport(t_s=12 * H)],
        "phases": [
            PhaseSpan(phase="interictal", start_s=0.0, end_s=10 * H),
            PhaseSpan(phase="prodrome", start_s=10 * H, end_s=14 * H),
            PhaseSpan(phase="attack", start_s=14 * H, end_s=18 * H),
            PhaseSpan(phase="postdrome", start_s=18 * H, end_s=20 * H),
            PhaseSpan(phase="refractory", start_s=20 * H, end_s=21 * H),
            PhaseSpan(phase="attack", start_s=22 * H, end_s=24 * H),
        ],
        "stimulation": StimulationReport(time_on_s=3000.0, sessions=1, charge_uc=12.0, teed_j=1.5),
        "safety": SafetyReport(),
        "link": LinkReport(
            frames_rx=10,
            frames_tx=10,
            lost=0,
            crc_errors=0,
            retries=0,
            sample_gaps=0,
            samples=1,
            connects=1,
            link_losses=0,
        ),
        "scores": make_scores(),
        "detector_final_state": "NORMAL",
        "timeline": make_timeline(),
    }
    fields.update(overrides)
    return SimReport.model_validate(fields)


def test_plot_sim_writes_png(tmp_path: Path) -> None:
    out = tmp_path / "sim.png"
    plot_sim(make_sim(), out)
    assert_png(out, min_width=1000, min_height=600)


def test_plot_sim_str_path_and_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    plot_sim(make_sim(), str(a))
    plot_sim(make_sim(), b)
    assert_png(a)
    assert (mpimg.imread(a) == mpimg.imread(b)).all()


def test_plot_sim_no_attacks_no_detections(tmp_path: Path) -> None:
    report = make_sim(
        attacks=[],
        detections=[],
        ground_truth=[],
        phases=[PhaseSpan(phase="interictal", start_s=0.0, end_s=24 * H)],
        scores=make_scores(attacks=0, sensitivity=None, fa_per_day=0.0, teed_j=0.0),
    )
    out = tmp_path / "quiet.png"
    plot_sim(report, out)
    assert_png(out)


def test_plot_sim_all_scores_none_and_na_values(tmp_path: Path) -> None:
    timeline = make_timeline()
    report = make_sim(
        timeline=timeline.model_copy(update={"score": [None] * len(timeline.t_s)}),
        scores=make_scores(sensitivity=None, fa_per_day=None),
    )
    out = tmp_path / "no_scores.png"
    plot_sim(report, out)
    assert_png(out)


def test_plot_sim_empty_everything(tmp_path: Path) -> None:
    report = make_sim(
        virtual_s=0.0,
        sites=[],
        ground_truth=[],
        attacks=[],
        detections=[],
        phases=[],
        timeline=Timeline(step_s=60.0),
        scores=make_scores(attacks=0, sensitivity=None, fa_per_day=None, teed_j=0.0),
    )
    out = tmp_path / "empty.png"
    plot_sim(report, out)
    assert_png(out)


def test_plot_sim_unknown_state_and_phase_names(tmp_path: Path) -> None:
    """Names the plot has no colour for fall back instead of raising."""
    timeline = make_timeline(hours=2.0)
    report = make_sim(
        virtual_s=2 * H,
        phases=[PhaseSpan(phase="aura", start_s=0.0, end_s=2 * H)],
        timeline=timeline.model_copy(update={"state": ["BLANKED"] * len(timeline.t_s)}),
    )
    out = tmp_path / "odd.png"
    plot_sim(report, out)
    assert_png(out)


def test_plot_sim_does_not_touch_pyplot(tmp_path: Path) -> None:
    """The object API keeps the global backend state alone (no pyplot import)."""
    already = "matplotlib.pyplot" in sys.modules
    plot_sim(make_sim(), tmp_path / "a.png")
    if not already:
        assert "matplotlib.pyplot" not in sys.modules


# ----------------------------------------------------------------------- trial reports


def make_entry(patient: int, phenotype: str, policy: str, apm: float, teed: float) -> TrialEntry:
    return TrialEntry(
        patient=patient,
        phenotype=phenotype,
        seed=100 + patient,
        policy=policy,
        days=30.0,
        attacks=round(apm),
        attacks_scored=round(apm),
        attacks_per_30d=apm,
        predicted=0,
        false_alarms=0,
        interictal_days=25.0,
        teed_j=teed,
        stim_time_s=0.0,
        charge_uc=0.0,
        sensitivity=None,
        chance_sensitivity=0.0,
        false_alarms_per_day=None,
        median_lead_h=None,
        wall_s=1.0,
        realtime_factor=1000.0,
    )


def make_aggregate(policy: str, phenotype: str, values: list[float]) -> TrialAggregate:
    mean = sum(values) / len(values)
    return TrialAggregate(
        policy=policy,
        phenotype=phenotype,
        patients=len(values),
        attacks_per_30d=MeanCI(mean=mean, ci95_low=mean - 1.0, ci95_high=mean + 1.0, n=len(values)),
        reduction_vs_off=None,
        responder_rate=None,
        teed_vs_open_loop=0.1 if policy == "closed_loop" else None,
        sensitivity=None,
        chance_sensitivity=None,
        false_alarms_per_day=None,
    )


POLICIES = ["off", "open_loop", "closed_loop"]
TEED = {"off": 0.0, "open_loop": 500.0, "closed_loop": 2.0}  # spans decades, with zeros
APM = {"off": 4.0, "open_loop": 2.5, "closed_loop": 3.0}


def make_trial(
    patients: int = 6,
    policies: list[str] | None = None,
    phenotypes: list[str] | None = None,
    teed: dict[str, float] | None = None,
) -> TrialReport:
    policies = POLICIES if policies is None else policies
    phenotypes = ["episodic", "chronic"] if phenotypes is None else phenotypes
    teed = TEED if teed is None else teed
    entries = [
        make_entry(
            p,
            phenotypes[p % len(phenotypes)],
            pol,
            APM.get(pol, 1.0) + 0.3 * p,
            teed.get(pol, 1.0) * (1 + p),
        )
        for p in range(patients)
        for pol in policies
    ]
    aggregates = []
    for pol in policies:
        for ph in ["all", *phenotypes]:
            values = [
                e.attacks_per_30d
                for e in entries
                if e.policy == pol and (ph == "all" or e.phenotype == ph)
            ]
            if values:
                aggregates.append(make_aggregate(pol, ph, values))
    return TrialReport(
        patients=patients,
        days=30.0,
        policies=policies,
        phenotypes=phenotypes,
        seed=1,
        workers=1,
        wall_s=5.0,
        entries=entries,
        aggregates=aggregates,
    )


def test_plot_trial_writes_png(tmp_path: Path) -> None:
    out = tmp_path / "trial.png"
    plot_trial(make_trial(), out)
    assert_png(out, min_width=900, min_height=400)


def test_plot_trial_single_phenotype(tmp_path: Path) -> None:
    out = tmp_path / "one_phenotype.png"
    plot_trial(make_trial(phenotypes=["episodic"]), out)
    assert_png(out)


def test_plot_trial_one_patient_one_policy(tmp_path: Path) -> None:
    out = tmp_path / "tiny.png"
    plot_trial(make_trial(patients=1, policies=["closed_loop"], phenotypes=["episodic"]), out)
    assert_png(out)


@pytest.mark.parametrize("teed_value", [0.0, 3.0])
def test_plot_trial_constant_teed(tmp_path: Path, teed_value: float) -> None:
    """All-zero (and all-equal) energy: no log axis error, no singular limits."""
    teed = {p: teed_value for p in POLICIES}
    report = make_trial(teed=teed)
    for entry in report.entries:
        entry.teed_j = teed_value
    out = tmp_path / f"teed_{teed_value:g}.png"
    plot_trial(report, out)
    assert_png(out)


def test_plot_trial_empty(tmp_path: Path) -> None:
    report = TrialReport(
        patients=0,
        days=0.0,
        policies=[],
        phenotypes=[],
        seed=0,
        workers=1,
        wall_s=0.0,
        entries=[],
        aggregates=[],
    )
    out = tmp_path / "empty_trial.png"
    plot_trial(report, out)
    assert_png(out)


def test_plot_trial_policies_without_entries_and_nan_ci(tmp_path: Path) -> None:
    """A listed policy with no entries, and a CI that is NaN (n = 1), still plot."""
    report = make_trial(patients=1, policies=["off", "closed_loop"], phenotypes=["episodic"])
    report.policies.append("open_loop")
    nan = float("nan")
    report.aggregates[0].attacks_per_30d = MeanCI(mean=4.0, ci95_low=nan, ci95_high=nan, n=1)
    out = tmp_path / "partial.png"
    plot_trial(report, out)
    assert_png(out)
