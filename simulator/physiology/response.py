"""Stimulation response: how delivered charge lowers migraine susceptibility.

Every part of this is a model ASSUMPTION (no human dose-response data exist in
the project's references); each is a documented, configurable parameter:

* Only charge delivered while the patient is in PRODROME counts (ASSUMPTION:
  the intervention targets the pre-attack window). Charge is counted as charge
  per phase times pulses, Q = I * PW * f * t (µC; mA * ms = µC).
* Saturating dose-response (Emax / Hill) of the charge accumulated in the
  current prodrome: E(Q) = emax * Q^n / (q50^n + Q^n). Each step delivers the
  increment E(Q + dQ) - E(Q), so one prodrome can lower susceptibility by at
  most ``emax`` (susceptibility units; threshold is 1 by default).
* Habituation: a leaky integrator H of stimulation-on time (time constant
  ``habituation_tau_s``) scales every increment by 1 / (1 + H / habituation_half_s);
  sustained or continuous stimulation fades, spaced sessions keep working.
* Non-responders: a share of patients (drawn per patient, see patient.py) for
  whom the effect is multiplied by ``nonresponder_efficacy`` (0 by default).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from simulator.signals import StimulationInput


class ResponseParams(BaseModel):
    """Per-patient stimulation-response parameters (all ASSUMPTIONS, see module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    responder: bool = Field(default=True, description="drawn per patient from the phenotype share")
    emax: float = Field(
        default=0.4, ge=0.0, le=5.0, description="max susceptibility reduction per prodrome"
    )
    q50_uc: float = Field(
        default=1.5e5,
        gt=0.0,
        le=1e9,
        description="charge for half effect; ~half a 20 min Cefaly-like session "
        "(16 mA, 250 µs, 60 Hz -> 2.9e5 µC)",
    )
    hill_n: float = Field(default=1.5, gt=0.0, le=10.0, description="Hill exponent")
    habituation_tau_s: float = Field(
        default=12 * 3600.0, gt=0.0, le=30 * 86400.0, description="memory of recent exposure"
    )
    habituation_half_s: float = Field(
        default=2 * 3600.0,
        gt=0.0,
        le=30 * 86400.0,
        description="recent exposure that halves the effect",
    )
    nonresponder_efficacy: float = Field(default=0.0, ge=0.0, le=1.0)


class StimulationResponse:
    """Integrates delivered stimulation into a susceptibility reduction per step."""

    def __init__(self, params: ResponseParams) -> None:
        self.params = params
        self._prodrome_charge_uc = 0.0
        self._exposure_s = 0.0
        self._in_prodrome = False
        self._total_reduction = 0.0

    @property
    def prodrome_charge_uc(self) -> float:
        """Charge delivered in the current (or last) prodrome."""
        return self._prodrome_charge_uc

    @property
    def exposure_s(self) -> float:
        """Habituation state H: leaky-integrated stimulation-on time in seconds."""
        return self._exposure_s

    @property
    def efficacy(self) -> float:
        """Current multiplier on the dose-response (responder status x habituation)."""
        p = self.params
        responder_factor = 1.0 if p.responder else p.nonresponder_efficacy
        return responder_factor / (1.0 + self._exposure_s / p.habituation_half_s)

    @property
    def total_reduction(self) -> float:
        """Sum of all reductions returned so far (for reporting)."""
        return self._total_reduction

    def dose_response(self, charge_uc: float) -> float:
        """E(Q) without habituation or responder status (susceptibility units)."""
        if charge_uc <= 0.0:
            return 0.0
        p = self.params
        ratio = (charge_uc / p.q50_uc) ** p.hill_n
        return p.emax * ratio / (1.0 + ratio)

    def step(self, stim: StimulationInput, dt_s: float, in_prodrome: bool) -> float:
        """Deliver ``stim`` for ``dt_s``; return the susceptibility reduction of this step."""
        charge_uc = stim.charge_per_phase_uc * stim.frequency_hz * dt_s if stim.active else 0.0
        on_s = dt_s if stim.active else 0.0
        return self.step_dose(charge_uc, on_s, dt_s, in_prodrome)

    def step_dose(self, charge_uc: float, on_s: float, dt_s: float, in_prodrome: bool) -> float:
        """Like ``step`` for a step in which ``charge_uc`` was delivered during ``on_s`` seconds.

        Used when stimulation changed within the step (the composition integrates
        the delivered charge exactly across device blocks).
        """
        if dt_s <= 0.0:
            raise ValueError(f"dt_s must be > 0, got {dt_s}")
        p = self.params
        if in_prodrome and not self._in_prodrome:
            self._prodrome_charge_uc = 0.0
        self._in_prodrome = in_prodrome
        # Habituation first (exact update of dH/dt = on_fraction - H/tau over the step).
        decay = math.exp(-dt_s / p.habituation_tau_s)
        on_fraction = min(max(on_s / dt_s, 0.0), 1.0)
        self._exposure_s = self._exposure_s * decay + on_fraction * p.habituation_tau_s * (
            1.0 - decay
        )
        if not in_prodrome or charge_uc <= 0.0:
            return 0.0
        before = self.dose_response(self._prodrome_charge_uc)
        self._prodrome_charge_uc += charge_uc
        after = self.dose_response(self._prodrome_charge_uc)
        reduction = (after - before) * self.efficacy
        self._total_reduction += reduction
        return reduction
