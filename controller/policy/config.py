"""Configuration of the stimulation policies (the ``[policy]`` TOML table).

``name`` selects the policy; each policy reads its own section, the others are ignored.
Defaults and their sources:

- therapy setting 16 mA, 60 Hz, 250 µs: Cefaly's labelled prevention setting (device labelling;
  Schoenen et al. 2013), the default device's (external supraorbital e-TNS, 28.2 cm² skin
  electrode): 4 µC/phase, 0.14 µC/cm²/phase, Shannon k -0.25, 0.57 mA/cm².
- sham: the same daily schedule at 1 mA, 30 µs, 1 Hz - the PREMICE sham device's setting
  (Schoenen et al. 2013): the device is on, perceptibly, far below a therapeutic dose.
- open-loop scheduled: one 20 min session a day (Cefaly prevention, device labelling), at
  08:00 (engineering default: a morning session).
- single-threshold: the detector's upper threshold (1.0 robust z, docs/detector.md).
- dual-threshold: thresholds at the detector's hysteresis pair (0.5 / 1.0 robust z); one
  step per 30 s, the Summit RC+S decision interval (device manuals); 2 mA steps between
  0 and the labelled 16 mA (engineering defaults).
- prodrome-session: a 20 min session (Cefaly prevention, device labelling), then an 8 h
  lockout (engineering default: at most three sessions in 24 h, which is the 60 min daily
  on-time budget of the envelope).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from firmware_bridge.messages import StimSetting
from firmware_bridge.units import SECONDS_PER_DAY

PolicyName = Literal[
    "off", "open-loop", "sham", "single-threshold", "dual-threshold", "prodrome-session"
]


class TherapySettingConfig(BaseModel):
    """The stimulation waveform the policies request (the envelope still reviews it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    amplitude_ma: float = Field(
        default=16.0, gt=0.0, le=100.0, description="therapy amplitude (Cefaly labelled)"
    )
    pulse_width_us: int = Field(
        default=250, ge=1, le=10_000, description="therapy pulse width (Cefaly prevention)"
    )
    frequency_hz: float = Field(
        default=60.0, gt=0.0, le=10_000.0, description="therapy pulse rate (Cefaly prevention)"
    )

    def setting(self, amplitude_ma: float | None = None) -> StimSetting:
        """The setting at the therapy amplitude (or ``amplitude_ma``); ramp 0 = envelope's."""
        amplitude = self.amplitude_ma if amplitude_ma is None else amplitude_ma
        return StimSetting(True, amplitude, self.pulse_width_us, self.frequency_hz, 0.0)


class OpenLoopConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["continuous", "scheduled"] = Field(
        default="scheduled", description="stimulate all the time, or in daily sessions"
    )
    session_times_of_day_s: list[float] = Field(
        default_factory=lambda: [28_800.0],
        min_length=1,
        max_length=96,
        description="start of each daily session, seconds after midnight (08:00 = 28800)",
    )
    session_s: float = Field(
        default=1200.0, gt=0.0, le=SECONDS_PER_DAY, description="length of each scheduled session"
    )
    day_start_offset_s: float = Field(
        default=0.0,
        ge=0.0,
        lt=SECONDS_PER_DAY,
        description="time of day (s after midnight) at t_s = 0 of the device clock",
    )

    @model_validator(mode="after")
    def _check_schedule(self) -> OpenLoopConfig:
        times = sorted(self.session_times_of_day_s)
        for t in times:
            if not 0.0 <= t < SECONDS_PER_DAY:
                raise ValueError(f"session_times_of_day_s: {t} is not in [0, 86400)")
        for first, second in zip(times, [*times[1:], times[0] + SECONDS_PER_DAY], strict=True):
            if len(times) > 1 and second - first < self.session_s:
                raise ValueError(
                    f"session_times_of_day_s: sessions at {first} and {second % SECONDS_PER_DAY} s "
                    f"overlap with session_s={self.session_s}"
                )
        return self


class SingleThresholdConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(
        default=1.0,
        ge=-100.0,
        le=100.0,
        description="stimulate while the detector score is above this (robust z)",
    )


class DualThresholdConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lower_threshold: float = Field(
        default=0.5, ge=-100.0, le=100.0, description="score below which amplitude steps down"
    )
    upper_threshold: float = Field(
        default=1.0, ge=-100.0, le=100.0, description="score above which amplitude steps up"
    )
    step_ma: float = Field(default=2.0, gt=0.0, le=10.0, description="amplitude step")
    min_amplitude_ma: float = Field(
        default=0.0, ge=0.0, le=100.0, description="lowest amplitude (0 = off)"
    )
    max_amplitude_ma: float = Field(default=16.0, gt=0.0, le=100.0, description="highest amplitude")
    update_interval_s: float = Field(
        default=30.0, gt=0.0, le=SECONDS_PER_DAY, description="at most one step per interval (RC+S)"
    )

    @model_validator(mode="after")
    def _check(self) -> DualThresholdConfig:
        if not self.lower_threshold < self.upper_threshold:
            raise ValueError(
                f"lower_threshold={self.lower_threshold} must be < "
                f"upper_threshold={self.upper_threshold}"
            )
        if not self.min_amplitude_ma < self.max_amplitude_ma:
            raise ValueError(
                f"min_amplitude_ma={self.min_amplitude_ma} must be < "
                f"max_amplitude_ma={self.max_amplitude_ma}"
            )
        return self


class ProdromeSessionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    session_s: float = Field(
        default=1200.0,
        gt=0.0,
        le=SECONDS_PER_DAY,
        description="therapy session on entering PRODROME",
    )
    lockout_s: float = Field(
        default=28_800.0,
        ge=0.0,
        le=7 * SECONDS_PER_DAY,
        description="after a session ends, PRODROME entries start no new session",
    )


class ShamConfig(BaseModel):
    """The sham arm: the open-loop schedule at a sub-therapeutic setting (PREMICE sham)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stimulation: TherapySettingConfig = Field(
        default_factory=lambda: TherapySettingConfig(
            amplitude_ma=1.0, pulse_width_us=30, frequency_hz=1.0
        ),
        description="sham waveform (PREMICE sham: 1 mA, 30 µs, 1 Hz)",
    )


class PolicyConfig(BaseModel):
    """Which policy runs, the therapy setting, and each policy's own section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: PolicyName = Field(default="prodrome-session", description="the policy that runs")
    stimulation: TherapySettingConfig = Field(
        default_factory=TherapySettingConfig, description="the therapy waveform"
    )
    open_loop: OpenLoopConfig = Field(default_factory=OpenLoopConfig, description="open-loop")
    sham: ShamConfig = Field(
        default_factory=ShamConfig, description="sham (open-loop schedule, sham setting)"
    )
    single_threshold: SingleThresholdConfig = Field(
        default_factory=SingleThresholdConfig, description="single-threshold"
    )
    dual_threshold: DualThresholdConfig = Field(
        default_factory=DualThresholdConfig, description="dual-threshold"
    )
    prodrome_session: ProdromeSessionConfig = Field(
        default_factory=ProdromeSessionConfig, description="prodrome-session"
    )
