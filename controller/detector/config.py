"""Configuration of the prodrome detector (the ``[detector]`` TOML table).

Every default cites its source or says it is an engineering choice; the full argument is in
docs/detector.md.  In short:

- Signature features and directions: Martins et al. 2020 (Cephalalgia 40:255: relative
  delta fell, relative beta rose in the 24 h before an attack), Zebhauser et al. 2024
  (J Headache Pain 25:147: theta power higher; premonitory delta/beta higher), Bjørk et al.
  2009 (Clin Neurophysiol 120:464: alpha peak-frequency variability rises before attacks),
  Cao et al. 2016 (J Headache Pain 17: preictal coherence higher, bands delta-beta).
- Durations are scaled to the prodrome, which lasts hours (pre-attack qEEG windows of
  24-48 h, the prodrome literature), not to the sub-second beta bursts of adaptive DBS.
- Blanking after a stimulation change: 15 s, the Summit RC+S example (device manuals); the
  Percept's 2 s is shorter than one 2 s feature window plus a device ramp.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from firmware_bridge.units import SECONDS_PER_DAY

_BAND = r"(?P<band>[a-z][a-z0-9_]*)"
#: Summary features the detector can score, as regular expressions over their names.
#: ``.mean`` = mean over the window's good channels; the connectivity summaries are the
#: FeatureFrame's own (already over good pairs).  See docs/detector.md, "Feature names".
SUMMARY_FEATURE_PATTERNS: dict[str, re.Pattern[str]] = {
    "band_power": re.compile(rf"^{_BAND}_power_uv2\.mean$"),
    "band_log_power": re.compile(rf"^{_BAND}_log_power\.mean$"),
    "band_rel_power": re.compile(rf"^{_BAND}_rel_power\.mean$"),
    "theta_alpha_ratio": re.compile(r"^theta_alpha_ratio\.mean$"),
    "alpha_peak_mean": re.compile(r"^alpha_peak_hz\.mean$"),
    "alpha_peak_variability": re.compile(r"^alpha_peak_hz\.variability$"),
    "line_length": re.compile(r"^line_length_uv\.mean$"),
    "coherence": re.compile(rf"^coherence\.{_BAND}\.mean$"),
    "phase_sync": re.compile(rf"^(?P<measure>wpli|plv)\.{_BAND}\.mean$"),
    "mean_connectivity": re.compile(rf"^mean_connectivity\.{_BAND}$"),
}


def parse_summary_feature(name: str) -> tuple[str, dict[str, str]]:
    """(kind, named groups) of a summary feature name; ValueError listing the forms if unknown."""
    for kind, pattern in SUMMARY_FEATURE_PATTERNS.items():
        match = pattern.match(name)
        if match:
            return kind, match.groupdict()
    forms = ", ".join(p.pattern for p in SUMMARY_FEATURE_PATTERNS.values())
    raise ValueError(f"unknown summary feature {name!r}; expected one of the forms {forms}")


class SignatureFeature(BaseModel):
    """One term of the prodrome signature: a summary feature, its weight and direction.

    ``direction`` "up" scores rises, "down" scores falls, "both" scores departures either way
    (as |z| minus its baseline mean sqrt(2/pi), so it is centred on 0 like the others).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="summary feature name, e.g. 'beta_rel_power.mean'")
    weight: float = Field(default=1.0, gt=0.0, le=100.0, description="weight in the mean")
    direction: Literal["up", "down", "both"] = Field(
        default="up", description="which change of the feature counts towards a prodrome"
    )
    source: str = Field(default="", description="literature source (documentation only)")

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        parse_summary_feature(name)
        return name


def default_signature_features() -> list[SignatureFeature]:
    """The literature-grounded default signature (the prodrome literature); equal weights, see
    docs."""
    cao = "Cao et al. 2016: preictal coherence higher (bands delta-beta)"
    return [
        SignatureFeature(
            name="delta_rel_power.mean",
            direction="down",
            source="Martins et al. 2020: relative delta fell in the 24 h before an attack",
        ),
        SignatureFeature(
            name="beta_rel_power.mean",
            direction="up",
            source="Martins et al. 2020: relative beta rose; Zebhauser et al. 2024: "
            "premonitory beta higher",
        ),
        SignatureFeature(
            name="theta_log_power.mean",
            direction="up",
            source="Zebhauser et al. 2024: theta power higher",
        ),
        SignatureFeature(
            name="alpha_peak_hz.variability",
            direction="up",
            source="Bjørk et al. 2009: alpha peak-frequency variability rises before attacks",
        ),
        # Coherence in Cao's four bands shares one unit of weight: one marker, four bands.
        SignatureFeature(name="coherence.delta.mean", weight=0.25, source=cao),
        SignatureFeature(name="coherence.theta.mean", weight=0.25, source=cao),
        SignatureFeature(name="coherence.alpha.mean", weight=0.25, source=cao),
        SignatureFeature(name="coherence.beta.mean", weight=0.25, source=cao),
    ]


class DetectorConfig(BaseModel):
    """Baseline, signature score, hysteresis state machine, blanking and quality gating."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    calibration_s: float = Field(
        default=1800.0,
        ge=1.0,
        lt=SECONDS_PER_DAY,
        description="unblanked good-signal time that calibrates the baseline (< 1 day)",
    )
    max_calibration_windows: int = Field(
        default=4096,
        ge=64,
        le=1_000_000,
        description="cap on stored calibration windows (older ones are decimated 2:1)",
    )
    baseline_adaptation_tau_s: float = Field(
        default=43_200.0,
        ge=60.0,
        le=30 * SECONDS_PER_DAY,
        description="time constant of the baseline's slow adaptation (NORMAL and score <= "
        "lower_threshold only)",
    )
    features: list[SignatureFeature] = Field(
        default_factory=default_signature_features,
        min_length=1,
        description="summary features of the signature with weights and directions",
    )
    alpha_peak_variability_s: float = Field(
        default=120.0,
        ge=1.0,
        le=3600.0,
        description="time constant of the running SD of each channel's alpha peak frequency",
    )
    z_clip: float = Field(
        default=10.0, ge=1.0, le=1000.0, description="|z| limit per feature before weighting"
    )
    scale_floor_fraction: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="scale >= this fraction of |location| (and > 0) to avoid blow-ups",
    )
    score_smoothing_s: float = Field(
        default=300.0,
        ge=0.0,
        le=SECONDS_PER_DAY,
        description="time constant of the score's exponential moving average (0 = none)",
    )
    upper_threshold: float = Field(
        default=1.0, gt=-100.0, le=100.0, description="smoothed score above which SUSPECT"
    )
    lower_threshold: float = Field(
        default=0.5, ge=-100.0, lt=100.0, description="smoothed score below which it ends"
    )
    onset_s: float = Field(
        default=600.0,
        ge=0.0,
        le=SECONDS_PER_DAY,
        description="time the score must stay above upper_threshold for PRODROME",
    )
    termination_s: float = Field(
        default=1800.0,
        ge=0.0,
        le=SECONDS_PER_DAY,
        description="time the score must stay below lower_threshold to leave PRODROME",
    )
    blanking_after_change_s: float = Field(
        default=15.0,
        ge=0.0,
        le=3600.0,
        description="windows starting within this time after a stimulation change are blanked",
    )
    min_good_channels: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="fewest good channels for a decision (None: half the channels, rounded up)",
    )
    artifact_line_length_z: float = Field(
        default=8.0,
        gt=0.0,
        le=1000.0,
        description="a good channel whose line length is this many robust z above its "
        "running reference blanks the window as an artifact",
    )
    artifact_reference_tau_s: float = Field(
        default=120.0,
        ge=1.0,
        le=SECONDS_PER_DAY,
        description="time constant of the running line-length reference of the artifact gate",
    )
    calibration_file: str | None = Field(
        default=None,
        description="per-patient calibration (neurostim calibrate): its features, weights, "
        "thresholds and baseline replace this table's (path relative to the working directory)",
    )

    @field_validator("features")
    @classmethod
    def _unique_features(cls, features: list[SignatureFeature]) -> list[SignatureFeature]:
        names = [f.name for f in features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"features: duplicate names {duplicates}")
        return features

    @model_validator(mode="after")
    def _check_thresholds(self) -> DetectorConfig:
        if not self.lower_threshold < self.upper_threshold:
            raise ValueError(
                f"lower_threshold={self.lower_threshold} must be < "
                f"upper_threshold={self.upper_threshold} (hysteresis)"
            )
        return self

    @model_validator(mode="after")
    def _check_calibration_file(self) -> DetectorConfig:
        """A named calibration must be readable now, not at the first frame of a run."""
        if self.calibration_file is not None:
            from controller.detector.signature import PatientSignature  # imports this module

            PatientSignature.load(self.calibration_file)
        return self

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the signature features, in configuration order."""
        return tuple(f.name for f in self.features)

    def resolved_min_good_channels(self, n_channels: int) -> int:
        """The effective minimum of good channels for a montage of ``n_channels``."""
        if n_channels < 1:
            raise ValueError(f"n_channels={n_channels} must be >= 1")
        if self.min_good_channels is None:
            return max(1, math.ceil(n_channels / 2))
        if self.min_good_channels > n_channels:
            raise ValueError(
                f"min_good_channels={self.min_good_channels} exceeds the {n_channels} channels"
            )
        return self.min_good_channels

    def check_features(self, band_names: Sequence[str], phase_measure: str) -> None:
        """ValueError naming the feature if one refers to a band or phase measure not computed.

        Call with the features configuration's band names and phase measure (``neurostim config
        check`` can do it before any data flows; the detector does it on its first frame).
        """
        for feature in self.features:
            _kind, groups = parse_summary_feature(feature.name)
            band = groups.get("band")
            if band is not None and band not in band_names:
                raise ValueError(
                    f"detector feature {feature.name!r}: band {band!r} is not among the "
                    f"configured bands {list(band_names)}"
                )
            measure = groups.get("measure")
            if measure is not None and measure != phase_measure:
                raise ValueError(
                    f"detector feature {feature.name!r}: the features compute "
                    f"phase_measure={phase_measure!r}, not {measure!r}"
                )
