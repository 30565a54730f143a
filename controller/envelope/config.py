"""Clinical limits of the safety envelope (the ``[envelope]`` TOML table).

Defaults and their sources (brackets name the kind of source: [5] clinical closed-loop
devices, [6] migraine neuromodulation devices, [7] stimulation safety):

- amplitude 0-16 mA, pulse width 30-250 µs, rate 1-120 Hz: the default device, an external
  supraorbital e-TNS stimulator with Cefaly's waveform (<= 16 mA, 250 µs, 60 Hz prevention,
  100 Hz acute [6]) and trial sham settings (1 Hz, 30 µs). They equal the simulated
  stimulator's hard limits (simulator/devices.py), so the default configuration is
  accepted by the simulated device and refused by a smaller one. The implant preset
  (DBS-like, 12.7 mA) needs its own configuration: docs/configuration.md.
- max charge density 25 µC/cm²/phase: NeuroPace RNS cannot program more; DBS systems warn
  above 30 [7]. A margin below the 30 µC/cm² device limit.
- Shannon k max 1.5, never above 1.85: Shannon 1992, tissue damage at k >= 1.85, designs
  keep k <= 1.5-1.75 [7].
- max charge per phase 4 µC: 16 mA x 250 µs, Cefaly's labelled maximum [6]. On the
  28.2 cm² skin electrode that is 0.14 µC/cm² (Shannon k -0.25); on small implanted
  contacts the density and Shannon rules bind first (0.06 cm²: density 25 -> 1.5 µC).
- ramp up 0.03 mA/s, ramp down 0.12 mA/s: Summit RC+S example settings [5]. The rate sent
  to the device is min(configured, device maximum).
- min change interval 2 s: Percept BrainSense dual-threshold blanking after a change,
  2000 ms [5].
- max session 3600 s: Cefaly acute session, 60 min, the longest single session among the
  migraine devices [6].
- max 30 sessions per 24 h: gammaCore's device-enforced limit [6].
- daily on-time budget 3600 s: Cefaly acute 60 min, the largest daily dose in [6].
- daily charge budget 1 440 000 µC: Cefaly's 60 min acute session at 16 mA, 250 µs,
  100 Hz [6], the largest daily dose of the device (5 labelled prevention sessions).
- impedance window 500-10 000 Ω: a skin electrode starts at a few kΩ and rises as its gel
  dries (simulator/devices.py: 2 -> 8 kΩ); below 500 Ω suggests a short, above 10 kΩ a
  dried or detached electrode (engineering choice).
- fallback program: off.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Shannon 1992: tissue damage seen at k >= 1.85.
SHANNON_K_DAMAGE = 1.85


class FallbackProgramConfig(BaseModel):
    """The safe program held on link loss and on an UNKNOWN detector state.

    Off by default. When enabled it is reviewed like any request (it must fit the
    envelope, budgets and session limits apply); hard stops (impedance out of window,
    exhausted budgets, session limits) always turn stimulation off, whatever this says.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=False, description="stimulate in the fallback program")
    amplitude_ma: float = Field(
        default=0.0, ge=0.0, le=100.0, description="fallback amplitude when enabled"
    )
    pulse_width_us: int = Field(
        default=250, ge=1, le=10_000, description="fallback pulse width when enabled"
    )
    frequency_hz: float = Field(
        default=60.0, gt=0.0, le=10_000.0, description="fallback pulse rate when enabled"
    )


class EnvelopeConfig(BaseModel):
    """Configured clinical limits; the device's hard limits are intersected at connect."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_amplitude_ma: float = Field(
        default=0.0, ge=0.0, le=100.0, description="lowest amplitude of an enabled setting"
    )
    max_amplitude_ma: float = Field(
        default=16.0, ge=0.0, le=100.0, description="highest amplitude (Cefaly maximum)"
    )
    min_pulse_width_us: int = Field(
        default=30, ge=1, le=10_000, description="shortest pulse width (phase)"
    )
    max_pulse_width_us: int = Field(
        default=250, ge=1, le=10_000, description="longest pulse width (phase)"
    )
    min_frequency_hz: float = Field(
        default=1.0, gt=0.0, le=10_000.0, description="lowest pulse rate"
    )
    max_frequency_hz: float = Field(
        default=120.0, gt=0.0, le=10_000.0, description="highest pulse rate"
    )
    max_charge_per_phase_uc: float = Field(
        default=4.0, gt=0.0, le=1_000.0, description="amplitude x pulse width per phase"
    )
    max_charge_density_uc_per_cm2: float = Field(
        default=25.0, gt=0.0, le=1_000.0, description="charge per phase / electrode area"
    )
    shannon_k_max: float = Field(
        default=1.5,
        ge=0.0,
        le=SHANNON_K_DAMAGE,
        description="Shannon k = log10(D) + log10(Q); tissue damage at 1.85 (Shannon 1992)",
    )
    ramp_up_ma_per_s: float = Field(
        default=0.03, gt=0.0, le=100.0, description="amplitude slew when increasing (RC+S)"
    )
    ramp_down_ma_per_s: float = Field(
        default=0.12, gt=0.0, le=100.0, description="amplitude slew when decreasing (RC+S)"
    )
    min_change_interval_s: float = Field(
        default=2.0, ge=0.0, le=86_400.0, description="minimum time between sent changes"
    )
    max_session_s: float = Field(
        default=3600.0, gt=0.0, le=86_400.0, description="longest continuous stimulation"
    )
    max_sessions_per_24h: int = Field(
        default=30, ge=1, le=10_000, description="stimulation sessions started per rolling 24 h"
    )
    daily_on_time_budget_s: float = Field(
        default=3600.0, gt=0.0, le=86_400.0, description="stimulation time per rolling 24 h"
    )
    daily_charge_budget_uc: float = Field(
        default=1_440_000.0, gt=0.0, le=1.0e12, description="delivered charge per rolling 24 h"
    )
    impedance_min_ohm: float = Field(
        default=500.0, ge=0.0, le=1.0e6, description="lowest acceptable electrode impedance"
    )
    impedance_max_ohm: float = Field(
        default=10_000.0, gt=0.0, le=1.0e6, description="highest acceptable electrode impedance"
    )
    fallback: FallbackProgramConfig = Field(
        default_factory=FallbackProgramConfig, description="safe program on faults"
    )

    @model_validator(mode="after")
    def _check_ranges(self) -> EnvelopeConfig:
        pairs = (
            ("min_amplitude_ma", "max_amplitude_ma"),
            ("min_pulse_width_us", "max_pulse_width_us"),
            ("min_frequency_hz", "max_frequency_hz"),
            ("impedance_min_ohm", "impedance_max_ohm"),
        )
        for low_name, high_name in pairs:
            low, high = getattr(self, low_name), getattr(self, high_name)
            if low > high:
                raise ValueError(f"{low_name}={low} must be <= {high_name}={high}")
        return self
