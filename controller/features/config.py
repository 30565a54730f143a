"""Configuration of the streaming feature pipeline (the ``[features]`` TOML table).

Defaults and their sources:

- window_s 2.0, hop_s 0.5, segment_s 1.0 with 50 % overlap, Hann window: a 2 s window
  resolves 0.5 Hz, enough to follow the alpha peak; Welch segments of 1 s, 50 % overlap,
  as scipy.signal.welch / scipy.signal.coherence define them.  A 0.5 s update matches the
  Summit RC+S "FFT 1024 pt every 500 ms" (Medtronic RC+S programming notes).
- bands delta 1-4, theta 4-8, alpha 8-13, beta 13-30, gamma 30-45 Hz: the clinical EEG
  bands, close to those of Cao et al. 2016 (J Headache Pain 17).
- alpha peak search range 8-13 Hz: the alpha band above; alpha peak frequency as a
  migraine marker after Bjørk et al. 2009 (Clin Neurophysiol 120:464).
- line_noise_hz 50: mains frequency in Europe (set 60 for the Americas).
- quality thresholds (flatline, clipping, line-noise ratio, max_abs_uv): engineering
  defaults of this project, not taken from the literature; tune them per rig.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from controller.features.layout import FeatureLayout, build_layout

_BAND_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

DEFAULT_BANDS_HZ: dict[str, tuple[float, float]] = {
    # the clinical EEG bands (cf. Cao et al. 2016, J Headache Pain 17)
    "delta": (1.0, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 13.0),
    "beta": (13.0, 30.0),
    "gamma": (30.0, 45.0),
}

BandEdgesHz = tuple[
    Annotated[float, Field(gt=0.0, le=10_000.0)],
    Annotated[float, Field(gt=0.0, le=10_000.0)],
]


class FeaturesConfig(BaseModel):
    """Window geometry, bands and quality thresholds of the streaming features.

    The model checks what it can without a sampling rate; :meth:`layout` finishes the
    checks for a given rate (whole numbers of samples, bands below Nyquist) and returns
    the sample counts and frequency-bin indices the extractor uses.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_s: float = Field(default=2.0, gt=0.0, le=600.0, description="sliding window length")
    hop_s: float = Field(default=0.5, gt=0.0, le=600.0, description="time between frames")
    segment_s: float = Field(default=1.0, gt=0.0, le=600.0, description="Welch segment length")
    overlap: float = Field(
        default=0.5, ge=0.0, le=0.9, description="Welch segment overlap as a fraction of segment_s"
    )
    bands_hz: dict[str, BandEdgesHz] = Field(
        default_factory=lambda: dict(DEFAULT_BANDS_HZ),
        description="band name -> [lo_hz, hi_hz); must include theta and alpha",
    )
    alpha_peak_range_hz: BandEdgesHz = Field(
        default=(8.0, 13.0), description="search range [lo_hz, hi_hz] of the alpha peak frequency"
    )
    line_noise_hz: float | None = Field(
        default=50.0, gt=0.0, le=10_000.0, description="mains frequency; None disables the check"
    )
    line_noise_halfwidth_hz: float = Field(
        default=1.0, gt=0.0, le=10.0, description="line-noise band is line_noise_hz +- this"
    )
    line_noise_ratio_max: float = Field(
        default=0.3, gt=0.0, le=1.0, description="line-band power / total power above which bad"
    )
    flatline_std_uv: float = Field(
        default=0.5, ge=0.0, le=1_000.0, description="window std below which a channel is flat"
    )
    clipped_fraction_max: float = Field(
        default=0.01, ge=0.0, le=1.0, description="fraction of samples at the rail above which bad"
    )
    max_abs_uv: float = Field(
        default=1.0e6, gt=0.0, le=1.0e9, description="|sample| above this is treated as invalid"
    )
    phase_measure: Literal["wpli", "plv"] = Field(
        default="wpli", description="phase-based connectivity measure (mne-connectivity formulas)"
    )
    summary_measure: Literal["coherence", "phase"] = Field(
        default="coherence", description="measure behind mean_connectivity and node_strength"
    )

    @field_validator("bands_hz")
    @classmethod
    def _check_bands(cls, bands: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        if not bands:
            raise ValueError("at least one band is required")
        for name, (lo_hz, hi_hz) in bands.items():
            if not _BAND_NAME.match(name):
                raise ValueError(
                    f"band name {name!r} must match [a-z][a-z0-9_]* (it becomes a feature name)"
                )
            if not lo_hz < hi_hz:
                raise ValueError(f"band {name!r}: lo_hz={lo_hz} must be < hi_hz={hi_hz}")
        for required in ("theta", "alpha"):
            if required not in bands:
                raise ValueError(
                    f"band {required!r} is required (theta/alpha ratio); got {sorted(bands)}"
                )
        return bands

    @field_validator("alpha_peak_range_hz")
    @classmethod
    def _check_alpha_range(cls, edges: tuple[float, float]) -> tuple[float, float]:
        if not edges[0] < edges[1]:
            raise ValueError(f"alpha_peak_range_hz: lo={edges[0]} must be < hi={edges[1]}")
        return edges

    @model_validator(mode="after")
    def _check_geometry(self) -> FeaturesConfig:
        if self.window_s < self.segment_s:
            raise ValueError(f"window_s={self.window_s} must be >= segment_s={self.segment_s}")
        if self.hop_s > self.window_s:
            raise ValueError(f"hop_s={self.hop_s} must be <= window_s={self.window_s}")
        return self

    def layout(self, sampling_rate_hz: float) -> FeatureLayout:
        """Sample counts and bin indices for ``sampling_rate_hz``; ValueError if impossible."""
        return build_layout(
            sampling_rate_hz=sampling_rate_hz,
            window_s=self.window_s,
            hop_s=self.hop_s,
            segment_s=self.segment_s,
            overlap=self.overlap,
            bands_hz=self.bands_hz,
            alpha_peak_range_hz=self.alpha_peak_range_hz,
            line_noise_hz=self.line_noise_hz,
            line_noise_halfwidth_hz=self.line_noise_halfwidth_hz,
        )
