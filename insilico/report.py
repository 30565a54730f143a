"""The reports of ``neurostim sim`` and ``neurostim trial`` (JSON via pydantic).

Field names carry units (``_s``, ``_h``, ``_uc``, ``_j``, ``_ma``). Times are
seconds of virtual time since the start of the run (the device's power-up).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class SiteReport(_Model):
    label: str
    x_mm: float
    y_mm: float


class GroundTruthReport(_Model):
    t_s: float
    kind: str
    site: str | None = None
    detail: dict[str, float | str] = Field(default_factory=dict)


class AttackReport(_Model):
    t_s: float  # onset
    aura: bool
    end_s: float | None = None  # end of the attack phase (None: still running at the end)


class DetectionReport(_Model):
    t_s: float  # PRODROME onset (end of the feature window that entered PRODROME)


class PhaseSpan(_Model):
    """One stretch of the simulated patient's migraine cycle (ground truth)."""

    phase: str  # interictal, prodrome, attack, postdrome, refractory
    start_s: float
    end_s: float


class Timeline(_Model):
    """Decimated traces for plots: one point per ``step_s`` of virtual time, the detector's
    last output in that step (``t_s`` is that output's time)."""

    step_s: float
    t_s: list[float] = Field(default_factory=list)
    score: list[float | None] = Field(default_factory=list)  # smoothed detector score
    state: list[str] = Field(default_factory=list)  # detector state
    amplitude_ma: list[float] = Field(default_factory=list)  # device-reported amplitude
    upper_threshold: float = 0.0
    lower_threshold: float = 0.0


class StimulationReport(_Model):
    time_on_s: float  # time the device reported stimulation enabled or ramping above 0 mA
    sessions: int  # off -> on transitions reported by the device
    charge_uc: float  # delivered charge per the device's STIM_STATE (µC)
    teed_j: float  # I² R f PW integrated over time, R = device-reported impedance (Koss 2005)
    charge_per_session_uc: float | None = None  # charge_uc / sessions (None without one)
    dose_se: float = 0.0  # charge_uc in the device's labelled sessions (1 SE = one session)


class SafetyReport(_Model):
    clamps: dict[str, int] = Field(default_factory=dict)  # by envelope rule
    refusals: dict[str, int] = Field(default_factory=dict)  # by envelope rule (spells)
    nacks: int = 0
    command_timeouts: int = 0
    faults: int = 0  # FAULT messages received


class LinkReport(_Model):
    frames_rx: int  # controller side
    frames_tx: int
    lost: int  # frames lost (sequence gaps) seen by either side
    crc_errors: int
    retries: int  # command retransmissions
    sample_gaps: int
    samples: int
    connects: int  # handshakes completed (1 + reconnections)
    link_losses: int  # times the controller declared the device lost


class PredictionScores(_Model):
    """Alarm scoring with an occurrence period and a horizon (Winterhalder 2003)."""

    max_lead_h: float  # occurrence period: earliest an alarm may come before the onset
    min_lead_min: float  # horizon: latest an alarm may come before the onset
    attacks: int  # attacks scored
    predicted: int  # attacks with at least one alarm in their lead window
    sensitivity: float | None  # predicted / attacks (None without attacks)
    alarms: int
    false_alarms: int  # alarms followed by no attack within their lead window
    interictal_days: float  # time outside pre-attack windows and attacks
    false_alarms_per_day: float | None  # per interictal day (None without interictal time)
    median_lead_h: float | None
    time_in_warning: float  # fraction of the run covered by the alarms' occurrence windows
    chance_sensitivity: float  # a random predictor with the same time in warning (Snyder 2008)
    p_value: float | None  # one-sided binomial test of `predicted` against chance
    beats_chance: bool  # p_value < 0.05


class TherapyScores(_Model):
    days: float
    attacks: int
    attacks_per_30d: float
    attack_free_days: int  # whole 24 h days of the run without attack time
    stim_time_s: float
    charge_uc: float
    teed_j: float


class Scores(_Model):
    prediction: PredictionScores
    therapy: TherapyScores


class SimReport(_Model):
    scenario: str
    seed: int
    policy: str
    model: str
    virtual_s: float
    wall_s: float
    realtime_factor: float
    sites: list[SiteReport]
    ground_truth: list[GroundTruthReport]
    attacks: list[AttackReport]
    detections: list[DetectionReport]
    phases: list[PhaseSpan]
    stimulation: StimulationReport
    safety: SafetyReport
    link: LinkReport
    scores: Scores
    detector_final_state: str
    timeline: Timeline
    #: The device's power-up on the patient's clock (> 0 after a run-in). Every time in
    #: the report is the device's (t = 0 at power-up), as the controller saw it.
    start_s: float = 0.0
    device: str = "etns-supraorbital"
    therapy_calibration: str = ""  # the device preset's calibration note


# --- the per-patient detector, judged prospectively (neurostim prospective, trial) ---


class ProspectiveEntry(_Frozen):
    """What one patient gave (None where undefined, e.g. not enrolled)."""

    patient: int
    phenotype: str
    seed: int
    attacks_per_month: float
    enrolled: bool
    reason: str
    run_in_days: float
    run_in_attacks: int
    features: list[str]
    occurrence_period_h: float | None
    upper_threshold: float | None
    run_in_sensitivity: float | None
    run_in_time_in_warning: float | None
    test_days: float
    attacks: int
    predicted: int
    alarms: int
    sensitivity: float | None
    time_in_warning: float | None
    false_alarms_per_day: float | None
    improvement_over_chance: float | None
    p_value: float | None
    beats_chance: bool
    implausible: bool
    wall_s: float


class PhenotypeSummary(_Frozen):
    """Per phenotype: medians over enrolled patients and the share that beat chance."""

    phenotype: str
    patients: int
    enrolled: int
    median_sensitivity: float | None
    median_time_in_warning: float | None
    median_false_alarms_per_day: float | None
    median_improvement: float | None
    beat_chance: int
    implausible: int
    aim_met: bool


class TrialEntry(_Model):
    """One virtual patient under one policy."""

    patient: int
    phenotype: str
    seed: int
    policy: str
    days: float
    attacks: int
    attacks_per_30d: float
    attacks_scored: int  # attacks late enough to be predicted (onset >= the horizon)
    predicted: int  # attacks with an alarm in their lead window
    false_alarms: int
    interictal_days: float
    teed_j: float
    stim_time_s: float
    charge_uc: float
    sensitivity: float | None
    chance_sensitivity: float
    false_alarms_per_day: float | None
    median_lead_h: float | None
    wall_s: float
    realtime_factor: float
    migraine_days: int = 0  # calendar days (patient clock) with any part of an attack
    sessions: int = 0  # off -> on transitions the device reported
    dose_se: float = 0.0  # delivered charge in the device's labelled sessions
    device: str = "etns-supraorbital"
    #: With a run-in: its length and attacks (the arm starts after it); 0 without one.
    run_in_days: float = 0.0
    run_in_attacks: int = 0
    enrolled: bool = True  # False: the run-in (or the calibration) did not enrol the patient
    not_enrolled_reason: str = ""
    #: The arm's detector alarms (PRODROME onsets) and attacks, s from the arm's start.
    alarm_times_s: list[float] = Field(default_factory=list)
    attack_periods_s: list[tuple[float, float | None]] = Field(default_factory=list)
    #: A closed-loop arm with a run-in: its calibrated detector scored prospectively.
    prospective: ProspectiveEntry | None = None


class MeanCI(_Model):
    mean: float
    ci95_low: float
    ci95_high: float
    n: int


class TrialAggregate(_Model):
    """One policy, over all patients or one phenotype."""

    policy: str
    phenotype: str  # "all" or a phenotype name
    patients: int
    attacks_per_30d: MeanCI
    reduction_vs_off: MeanCI | None  # per-patient relative reduction of attacks against `off`
    responder_rate: float | None  # share of patients with >= 50 % reduction against `off`
    teed_vs_open_loop: float | None  # sum of TEED / sum of TEED under open-loop
    sensitivity: float | None  # pooled: predicted attacks / scored attacks
    chance_sensitivity: float | None  # mean over patients
    false_alarms_per_day: float | None  # pooled: false alarms / interictal days
    tier: str = "full closed loop"  # or "physiology" (cycle + therapy only, fixed schedule)
    change_mmd_vs_off: MeanCI | None = None  # migraine days per 30 d minus the paired `off`
    mmd_responder_rate: float | None = None  # >= 50 % fewer migraine days than paired `off`
    mmd_responder_ci95: tuple[float, float] | None = None  # Wilson 95 % interval
    stim_time_h_per_patient: float | None = None
    teed_j_per_patient: float | None = None
    charge_per_session_uc: float | None = None  # pooled: charge / sessions


class TrialFailure(_Model):
    """A job that raised: who, and the error (the other jobs are kept)."""

    patient: int
    phenotype: str
    policy: str
    error: str


class TrialReport(_Model):
    patients: int
    days: float
    policies: list[str]
    phenotypes: list[str]
    seed: int
    workers: int
    wall_s: float
    entries: list[TrialEntry]
    aggregates: list[TrialAggregate]  # over the patients with every policy finished
    backend: str = "local processes"
    from_store: int = 0  # entries taken from --store instead of being run
    failures: list[TrialFailure] = []
    #: Open loop at the labelled dose and a perfect detector, physiology tier, same patients.
    ceilings: list[TrialAggregate] = Field(default_factory=list)
    device: str = "etns-supraorbital"
    therapy_calibration: str = ""
    #: Days of run-in before every arm (``--calibrate-run-in``), None: no run-in.
    run_in_max_days: float | None = None
    #: The closed-loop arm's detector, calibrated per patient on the run-in and scored on
    #: the arm's period, per phenotype (medians; per-patient p-values in the entries'
    #: ``prospective``). Empty when the trial had no run-in.
    detector_prospective: list[PhenotypeSummary] = Field(default_factory=list)
