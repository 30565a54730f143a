"""The reports of ``neurostim sim`` and ``neurostim trial`` (JSON via pydantic).

Field names carry units (``_s``, ``_h``, ``_uc``, ``_j``, ``_ma``). Times are
seconds of virtual time since the start of the run (the device's power-up).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
