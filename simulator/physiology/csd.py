"""Aura as cortical spreading depolarization (CSD) travelling across the 2-D sheet.

A kinematic model, not a reaction-diffusion one (cf. Tuckwell 2008; Dahlem 2013):
the wave starts at one site and reaches site i at

    t_i = t_0 + d(origin, i) / v          (d: Euclidean distance on the sheet, mm)

with v the patient's propagation speed, 2-5 mm/min (the CSD literature; ~3 mm/min in
human ECoG; aura by fMRI 3.5 +- 1.1 mm/min, Hadjikhani et al. 2001, PNAS 98:4687).
At a site, with tau = t - t_i >= 0:

* DC shift: dc(tau) = A * (tau / tau_p) * exp(1 - tau / tau_p), a negative
  excursion peaking at A (a few mV subdurally; tens of mV intracortically, the CSD literature)
  after tau_p. The shape (alpha function, tau_p = 60 s) is an ASSUMPTION.
* Suppression of activity (0..1): ramps to 1 over ``suppression_edge_s``, holds for
  ``suppression_duration_s`` (5-7 min, the CSD literature), then recovers linearly over
  ``recovery_s`` (ASSUMPTION).
* Delta rebound after recovery: delta power gain 1 + R * exp(-(tau - T_end) / tau_r),
  with tau_r = 30 min so that it has faded (< 5 %) by ~1.5 h (raised delta for up to
  1-2 h, the CSD literature). R = 1 (doubling) is an ASSUMPTION.

Sites farther than ``max_extent_mm`` from the origin are not invaded (ASSUMPTION knob;
default: the whole montage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from simulator.signals import GroundTruthEvent, Site


class CsdParams(BaseModel):
    """Per-patient spreading-depolarization parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    speed_mm_per_min: float = Field(
        default=3.5, ge=1.0, le=10.0, description="2-5 mm/min; 3.5 +- 1.1 (Hadjikhani 2001)"
    )
    origin: str = Field(
        default="posterior",
        description="'posterior' (most posterior site: visual aura, occipital), 'random', "
        "or a site label",
    )
    max_extent_mm: float = Field(default=1.0e4, gt=0.0, description="sites beyond are not invaded")
    dc_shift_uv: float = Field(
        default=-3000.0, ge=-50000.0, le=0.0, description="peak DC shift (a few mV subdural)"
    )
    dc_time_to_peak_s: float = Field(default=60.0, gt=0.0, le=1800.0)
    suppression_duration_s: float = Field(default=360.0, ge=0.0, le=3600.0, description="5-7 min")
    suppression_edge_s: float = Field(default=20.0, gt=0.0, le=600.0)
    recovery_s: float = Field(default=120.0, gt=0.0, le=3600.0)
    delta_rebound_gain: float = Field(default=1.0, ge=0.0, le=20.0, description="extra delta power")
    delta_rebound_tau_s: float = Field(default=1800.0, gt=0.0, le=4 * 3600.0)


@dataclass(frozen=True)
class CsdEffect:
    """What active waves do to each site now (arrays of shape (n_sites,))."""

    suppression: np.ndarray
    dc_offset_uv: np.ndarray
    delta_gain: np.ndarray


@dataclass
class CsdWave:
    """One spreading depolarization: where it started, when it reaches each site."""

    t_start_s: float
    origin_index: int
    arrival_s: np.ndarray  # (n_sites,), inf where never reached
    announced: np.ndarray  # (n_sites,) bool: csd_arrival event already emitted


class SpreadingDepolarization:
    """Starts CSD waves and evaluates their per-site effects at any time."""

    def __init__(
        self, params: CsdParams, sites: tuple[Site, ...], rng: np.random.Generator
    ) -> None:
        self.params = params
        self.sites = sites
        self._rng = rng
        self._xy_mm = np.array([[s.x_mm, s.y_mm] for s in sites], dtype=np.float64).reshape(-1, 2)
        labels = [s.label for s in sites]
        if params.origin not in ("posterior", "random") and params.origin not in labels:
            raise ValueError(
                f"csd origin {params.origin!r} is not 'posterior', 'random' or a site {labels}"
            )
        self.waves: list[CsdWave] = []
        p = params
        #: Time after arrival after which a site is back to baseline (rebound < 0.1 %).
        self._effect_span_s = max(
            p.suppression_edge_s
            + p.suppression_duration_s
            + p.recovery_s
            + p.delta_rebound_tau_s * math.log(max(p.delta_rebound_gain, 1e-3) / 1e-3),
            10.0 * p.dc_time_to_peak_s,
        )

    @property
    def active(self) -> bool:
        return bool(self.waves)

    def origin_index(self) -> int:
        """Site index where the next wave starts (per ``params.origin``)."""
        origin = self.params.origin
        if origin == "posterior":
            return int(np.argmin(self._xy_mm[:, 1]))
        if origin == "random":
            return int(self._rng.integers(len(self.sites)))
        return [s.label for s in self.sites].index(origin)

    def arrival_times_s(self, t_start_s: float, origin_index: int) -> np.ndarray:
        """t_i = t_0 + distance / speed; inf beyond ``max_extent_mm``."""
        distance_mm = np.hypot(*(self._xy_mm - self._xy_mm[origin_index]).T)
        speed_mm_per_s = self.params.speed_mm_per_min / 60.0
        arrival = t_start_s + distance_mm / speed_mm_per_s
        return np.where(distance_mm <= self.params.max_extent_mm, arrival, np.inf)

    def start(self, t_start_s: float) -> list[GroundTruthEvent]:
        """Launch a wave at ``t_start_s``; returns the ``aura_onset`` event."""
        origin = self.origin_index()
        arrival = self.arrival_times_s(t_start_s, origin)
        self.waves.append(CsdWave(t_start_s, origin, arrival, np.zeros(len(self.sites), bool)))
        return [
            GroundTruthEvent(
                t_start_s,
                "aura_onset",
                self.sites[origin].label,
                {
                    "speed_mm_per_min": self.params.speed_mm_per_min,
                    "origin": self.sites[origin].label,
                },
            )
        ]

    def arrivals_until(self, t_s: float) -> list[GroundTruthEvent]:
        """``csd_arrival`` events for arrivals at or before ``t_s`` not yet reported."""
        events: list[GroundTruthEvent] = []
        for wave in self.waves:
            due = np.flatnonzero((wave.arrival_s <= t_s) & ~wave.announced)
            for i in due[np.argsort(wave.arrival_s[due], kind="stable")]:
                wave.announced[i] = True
                events.append(
                    GroundTruthEvent(
                        float(wave.arrival_s[i]),
                        "csd_arrival",
                        self.sites[i].label,
                        {
                            "origin": self.sites[wave.origin_index].label,
                            "distance_mm": float(
                                np.hypot(*(self._xy_mm[i] - self._xy_mm[wave.origin_index]))
                            ),
                        },
                    )
                )
        return events

    def effect(self, t_s: float) -> CsdEffect:
        """Per-site suppression, DC offset and delta gain of all waves at ``t_s``."""
        n = len(self.sites)
        suppression = np.zeros(n)
        dc_uv = np.zeros(n)
        delta_gain = np.ones(n)
        for wave in self.waves:
            s, dc, dg = self._wave_effect(wave, t_s)
            suppression = np.maximum(suppression, s)
            dc_uv += dc
            delta_gain *= dg
        return CsdEffect(suppression, dc_uv, delta_gain)

    def retire_finished(self, t_s: float) -> None:
        """Forget waves whose effects are over everywhere (all events must be announced)."""
        self.waves = [
            w
            for w in self.waves
            if not (
                np.all(w.announced | np.isinf(w.arrival_s))
                and np.all((t_s - w.arrival_s > self._effect_span_s) | np.isinf(w.arrival_s))
            )
        ]

    def _wave_effect(self, wave: CsdWave, t_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = self.params
        tau = t_s - wave.arrival_s  # -inf where never reached
        reached = tau >= 0.0
        tau = np.where(reached, tau, 0.0)
        x = tau / p.dc_time_to_peak_s
        dc = np.where(reached, p.dc_shift_uv * x * np.exp(1.0 - x), 0.0)
        t_hold_end = p.suppression_edge_s + p.suppression_duration_s
        rise = np.clip(tau / p.suppression_edge_s, 0.0, 1.0)
        fall = np.clip(1.0 - (tau - t_hold_end) / p.recovery_s, 0.0, 1.0)
        suppression = np.where(reached, np.minimum(rise, fall), 0.0)
        t_end = t_hold_end + p.recovery_s
        after = tau - t_end
        rebound = p.delta_rebound_gain * np.exp(-np.clip(after, 0.0, None) / p.delta_rebound_tau_s)
        # The rebound ramps in during recovery (activity returns with delta raised).
        ramp_in = np.clip((tau - t_hold_end) / p.recovery_s, 0.0, 1.0)
        delta_gain = np.where(reached, 1.0 + rebound * ramp_in, 1.0)
        return suppression, dc, delta_gain
