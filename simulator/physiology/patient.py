"""Virtual patients (phenotype + seed -> parameters) and their simulation as a SignalSource.

``PatientSimulation`` at the end of this module composes cycle, response, signature,
CSD, signal model, stimulation artifact and sensor faults (docs/simulator.md, section 7).

Presets hold *distributions* (uniform ranges unless stated); ``VirtualPatient.from_phenotype``
draws one patient from them, then applies validated overrides. Sources:

* Attack frequency: ICHD-3 (Cephalalgia 2018;38:1-211) - chronic migraine is headache on
  >= 15 days/month (1.3), episodic below that. Ranges inside each class are ASSUMPTIONS.
* Attack duration: ICHD-3 1.1 criterion B, 4-72 h untreated; in children and adolescents
  2-72 h (ICHD-3 note to 1.1). Medians within that range are ASSUMPTIONS.
* Aura: ICHD-3 1.1 (without aura: 0) and 1.2 (with aura); the share of aura attacks in
  patients with aura, and in the other phenotypes, is an ASSUMPTION.
* Prodrome: hours to ~2 days; pre-attack EEG windows 24-48 h (the prodrome literature).
* Postdrome and refractory durations: ASSUMPTIONS (no figure in the project's references).
* CSD speed: Normal(3.5, 1.1) mm/min clipped to 2-5 mm/min (Hadjikhani et al. 2001;
  the CSD literature). DC shift: a few mV subdurally; suppression 5-7 min (idem).
* Therapy response: continuous per-patient efficacies (no responder flag), drawn from
  Beta distributions whose means are calibrated to PREMICE (Schoenen et al. 2013,
  Neurology 80:697: 38.1 % vs 12.1 % 50 %-responders, -2.06 vs -0.32 monthly migraine
  days) by ``neurostim trial --preset premice``; see ``simulator.physiology.response``.
  PREMICE enrolled episodic patients; for the chronic and post-traumatic phenotypes the
  same distributions are an uncalibrated ASSUMPTION.
* Slow EEG variability (sleep onset and duration per patient): see
  ``simulator.physiology.variability``; sleep onset 22:00-00:30 and 6.5-8.5 h of sleep
  are ASSUMPTIONS (typical adult sleep; children sleep longer: 8.5-10.5 h).
* Post-traumatic headache: ICHD-3 5.2 (persistent headache attributed to traumatic injury
  to the head), modelled with a frequent migraine-like phenotype (ASSUMPTION).
* Pediatric individual alpha frequency lower than adults' (~10 Hz): 9 Hz (ASSUMPTION,
  alpha frequency rises through childhood, Klimesch 1999, Brain Res Rev 29:169).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy.special import betainc
from scipy.special._ufuncs import _beta_ppf  # what scipy.stats.beta.ppf calls

from simulator.physiology.artifact import ArtifactParams, StimulationArtifact
from simulator.physiology.course import PatientCourse, patient_streams
from simulator.physiology.csd import CsdParams, SpreadingDepolarization
from simulator.physiology.cycle import DAYS_PER_MONTH, CycleParams, MigraineCycle, Phase
from simulator.physiology.jansen_rit import JansenRitNetwork, JansenRitParams
from simulator.physiology.response import ResponseParams, StimulationResponse
from simulator.physiology.sensor_faults import ActiveSensorFault, SensorFaultInjector, SensorParams
from simulator.physiology.signature import (
    ProdromalSignature,
    SignatureParams,
    draw_signature_params,
)
from simulator.physiology.spectral import SpectralModel, SpectralParams
from simulator.physiology.state import ModulationState
from simulator.physiology.variability import SlowVariability, VariabilityParams
from simulator.signals import DEFAULT_SITES, GroundTruthEvent, Site, StimulationInput


class Phenotype(StrEnum):
    EPISODIC_WITHOUT_AURA = "episodic-without-aura"
    EPISODIC_WITH_AURA = "episodic-with-aura"
    CHRONIC = "chronic"
    PEDIATRIC = "pediatric"
    POST_TRAUMATIC = "post-traumatic"


Range = tuple[float, float]


@dataclass(frozen=True)
class PhenotypePreset:
    """Distributions of the per-patient parameters of one phenotype (uniform ranges)."""

    attacks_per_month: Range
    aura_probability: Range
    prodrome_mean_h: Range
    attack_median_h: Range
    attack_min_h: float
    postdrome_mean_h: Range
    #: Refractory period as a share of the time the cycle leaves after the episode
    #: (so that the target attack frequency stays reachable). ASSUMPTION.
    refractory_share: Range
    trigger_rate_per_day: Range
    circadian_peak_h: Range
    signature_expressivity: Range
    alpha_peak_mean_hz: float
    #: Beta(a, b) of the prophylactic efficacy (fraction the load's rise slows at the
    #: labelled daily dose, fully built up) and of the placebo efficacy.
    prophylactic_efficacy_beta: Range
    placebo_efficacy_beta: Range
    sleep_onset_h: Range = (22.0, 24.5)
    sleep_duration_h: Range = (6.5, 8.5)
    csd_speed_mean_mm_per_min: float = 3.5
    csd_speed_sd_mm_per_min: float = 1.1
    csd_speed_range_mm_per_min: Range = (2.0, 5.0)
    csd_dc_shift_uv: Range = (-5000.0, -1000.0)
    csd_suppression_s: Range = (300.0, 420.0)


#: Calibrated to PREMICE (Schoenen et al. 2013) with ``neurostim trial --preset premice``
#: (docs/insilico.md); never to the detector.
PROPHYLACTIC_EFFICACY_BETA: Range = (1.0, 1.3)
PLACEBO_EFFICACY_BETA: Range = (0.1, 0.9)


def _adult_episodic(aura_probability: Range) -> PhenotypePreset:
    return PhenotypePreset(
        attacks_per_month=(1.0, 6.0),
        aura_probability=aura_probability,
        prodrome_mean_h=(12.0, 36.0),
        attack_median_h=(8.0, 24.0),
        attack_min_h=4.0,
        postdrome_mean_h=(6.0, 24.0),
        refractory_share=(0.2, 0.5),
        trigger_rate_per_day=(0.1, 0.5),
        circadian_peak_h=(4.0, 9.0),
        signature_expressivity=(0.0, 2.0),
        alpha_peak_mean_hz=10.0,
        prophylactic_efficacy_beta=PROPHYLACTIC_EFFICACY_BETA,
        placebo_efficacy_beta=PLACEBO_EFFICACY_BETA,
    )


PRESETS: dict[Phenotype, PhenotypePreset] = {
    Phenotype.EPISODIC_WITHOUT_AURA: _adult_episodic(aura_probability=(0.0, 0.0)),
    Phenotype.EPISODIC_WITH_AURA: _adult_episodic(aura_probability=(0.5, 1.0)),
    Phenotype.CHRONIC: PhenotypePreset(
        attacks_per_month=(12.0, 15.0),
        aura_probability=(0.0, 0.3),
        prodrome_mean_h=(3.0, 8.0),
        attack_median_h=(10.0, 20.0),
        attack_min_h=4.0,
        postdrome_mean_h=(3.0, 8.0),
        refractory_share=(0.1, 0.3),
        trigger_rate_per_day=(0.3, 1.0),
        circadian_peak_h=(4.0, 9.0),
        signature_expressivity=(0.0, 1.5),
        alpha_peak_mean_hz=10.0,
        prophylactic_efficacy_beta=PROPHYLACTIC_EFFICACY_BETA,
        placebo_efficacy_beta=PLACEBO_EFFICACY_BETA,
    ),
    Phenotype.PEDIATRIC: PhenotypePreset(
        attacks_per_month=(1.0, 6.0),
        aura_probability=(0.0, 0.3),
        prodrome_mean_h=(6.0, 24.0),
        attack_median_h=(3.0, 10.0),
        attack_min_h=2.0,
        postdrome_mean_h=(3.0, 12.0),
        refractory_share=(0.2, 0.5),
        trigger_rate_per_day=(0.1, 0.5),
        circadian_peak_h=(6.0, 12.0),
        signature_expressivity=(0.0, 2.0),
        alpha_peak_mean_hz=9.0,
        prophylactic_efficacy_beta=PROPHYLACTIC_EFFICACY_BETA,
        placebo_efficacy_beta=PLACEBO_EFFICACY_BETA,
        sleep_onset_h=(20.5, 22.5),
        sleep_duration_h=(8.5, 10.5),
    ),
    Phenotype.POST_TRAUMATIC: PhenotypePreset(
        attacks_per_month=(4.0, 12.0),
        aura_probability=(0.0, 0.1),
        prodrome_mean_h=(6.0, 18.0),
        attack_median_h=(6.0, 16.0),
        attack_min_h=4.0,
        postdrome_mean_h=(4.0, 12.0),
        refractory_share=(0.1, 0.4),
        trigger_rate_per_day=(0.3, 1.0),
        circadian_peak_h=(4.0, 12.0),
        signature_expressivity=(0.0, 1.5),
        alpha_peak_mean_hz=10.0,
        prophylactic_efficacy_beta=PROPHYLACTIC_EFFICACY_BETA,
        placebo_efficacy_beta=PLACEBO_EFFICACY_BETA,
    ),
}


class VirtualPatient(BaseModel):
    """Everything that makes one simulated patient (drawn once, then fixed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    phenotype: Phenotype
    seed: int
    cycle: CycleParams
    signature: SignatureParams
    csd: CsdParams
    response: ResponseParams
    variability: VariabilityParams = VariabilityParams()

    @classmethod
    def from_phenotype(
        cls,
        phenotype: Phenotype | str,
        seed: int,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> VirtualPatient:
        """Draw a patient of ``phenotype`` from ``seed``; ``overrides`` replace drawn values.

        ``overrides`` is keyed by section (``cycle``, ``signature``, ``csd``, ``response``,
        ``variability``)
        then by field name; the result is validated (pydantic ValidationError names the
        field, e.g. ``cycle.attacks_per_month``).
        """
        phenotype = Phenotype(phenotype)
        drawn = draw_patient_values(PRESETS[phenotype], np.random.default_rng(seed))
        merged: dict[str, Any] = {"phenotype": phenotype, "seed": seed, **drawn}
        for section, values in (overrides or {}).items():
            if section in ("phenotype", "seed") or not isinstance(values, Mapping):
                merged[section] = values  # let validation reject it with the field name
                continue
            merged[section] = {**merged.get(section, {}), **dict(values)}
        return cls.model_validate(merged)


def draw_patient_values(preset: PhenotypePreset, rng: np.random.Generator) -> dict[str, Any]:
    """Per-patient parameter values (plain dicts per section) drawn from ``preset``."""

    def uniform(r: Range) -> float:
        return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])

    attacks_per_month = uniform(preset.attacks_per_month)
    prodrome_mean_h = uniform(preset.prodrome_mean_h)
    attack_median_h = uniform(preset.attack_median_h)
    postdrome_mean_h = uniform(preset.postdrome_mean_h)
    cycle_defaults = CycleParams()
    attack_mean_h = attack_median_h * float(np.exp(cycle_defaults.attack_sigma**2 / 2.0))
    cycle_h = DAYS_PER_MONTH * 24.0 / attacks_per_month
    free_h = max(cycle_h - prodrome_mean_h - attack_mean_h - postdrome_mean_h, 0.0)
    cycle = {
        "attacks_per_month": attacks_per_month,
        "aura_probability": uniform(preset.aura_probability),
        "prodrome_mean_h": prodrome_mean_h,
        "attack_median_h": attack_median_h,
        "attack_min_h": preset.attack_min_h,
        "postdrome_mean_h": postdrome_mean_h,
        "refractory_mean_h": uniform(preset.refractory_share) * free_h,
        "trigger_rate_per_day": uniform(preset.trigger_rate_per_day),
        "circadian_peak_h": uniform(preset.circadian_peak_h),
    }
    signature = draw_signature_params(
        rng, preset.signature_expressivity, alpha_peak_mean_hz=preset.alpha_peak_mean_hz
    ).model_dump()
    lo, hi = preset.csd_speed_range_mm_per_min
    csd = {
        "speed_mm_per_min": float(
            np.clip(
                rng.normal(preset.csd_speed_mean_mm_per_min, preset.csd_speed_sd_mm_per_min), lo, hi
            )
        ),
        "dc_shift_uv": uniform(preset.csd_dc_shift_uv),
        "suppression_duration_s": uniform(preset.csd_suppression_s),
    }
    # Each efficacy is a quantile (uniform) of the patient's responsiveness mapped through
    # the calibrated Beta. The quantiles are drawn through fixed Beta(2, 3) and Beta(1, 9)
    # variates (their own CDF makes them uniform), so the random stream - and with it every
    # later draw, e.g. the sleep times - does not depend on the calibrated values.
    # Beta CDF and quantile function: the scipy.special functions scipy.stats.beta calls
    # (the same numbers without scipy.stats' ~0.5 s import; betaincinv is not: it gives
    # NaN for tiny quantiles where the quantile function converges).
    efficacy_quantile = float(betainc(2.0, 3.0, rng.beta(2.0, 3.0)))
    placebo_quantile = float(betainc(1.0, 9.0, rng.beta(1.0, 9.0)))
    efficacy = float(_beta_ppf(efficacy_quantile, *preset.prophylactic_efficacy_beta))
    placebo = float(_beta_ppf(placebo_quantile, *preset.placebo_efficacy_beta))
    response = {
        "prophylactic_efficacy": efficacy,
        "acute_efficacy": efficacy,  # one responsiveness to the stimulation per patient
        "placebo_efficacy": placebo,
    }
    variability = {
        "sleep_onset_h": uniform(preset.sleep_onset_h) % 24.0,
        "sleep_duration_h": uniform(preset.sleep_duration_h),
    }
    return {
        "cycle": cycle,
        "signature": signature,
        "csd": csd,
        "response": response,
        "variability": variability,
    }


# --------------------------------------------------------------------------- composition

MODEL_NAMES: tuple[str, ...] = ("spectral", "jansen-rit")


@dataclass(frozen=True)
class _FaultBoundary:
    sample: int
    start: bool
    key: int
    fault: ActiveSensorFault


class PatientSimulation:
    """The virtual patient as a ``SignalSource``: physiology, signal model, artifact, sensors.

    Per ``read(n, stim)``: the block is cut at modulation-cell borders (every
    ``modulation_step_s``, on a fixed sample grid); for each piece the ModulationState
    (prodromal signature x CSD) is taken at the cell start, the signal model generates
    the samples, and the physiology (stimulation response + migraine cycle, stepped every
    ``cycle_step_s`` on its own fixed grid) advances over the piece with the delivered
    charge integrated exactly. Then the stimulation artifact is added and the sensor
    fault injector applied (split at fault onsets/offsets). Everything is seeded from
    (``seed``, ``patient.seed``): the same patient, seed and read sizes give
    bit-identical samples.
    """

    def __init__(
        self,
        patient: VirtualPatient,
        model_name: str = "spectral",
        sites: tuple[Site, ...] = DEFAULT_SITES,
        sampling_rate_hz: float = 250.0,
        seed: int = 0,
        *,
        start_time_of_day_h: float = 8.0,
        cycle_step_s: float = 2.0,
        modulation_step_s: float = 4.0,
        spectral_params: SpectralParams | None = None,
        jansen_rit_params: JansenRitParams | None = None,
        artifact_params: ArtifactParams | None = None,
        sensor_params: SensorParams | None = None,
    ) -> None:
        if model_name not in MODEL_NAMES:
            raise ValueError(f"model_name must be one of {MODEL_NAMES}, got {model_name!r}")
        if sampling_rate_hz <= 0:
            raise ValueError("sampling_rate_hz must be > 0")
        self.patient = patient
        self.model_name = model_name
        self._sites = tuple(sites)
        self._fs = float(sampling_rate_hz)
        n_sites = len(self._sites)
        self._cycle_step_samples = max(1, round(cycle_step_s * self._fs))
        self._cycle_dt_s = self._cycle_step_samples / self._fs
        self._cell_samples = max(1, round(modulation_step_s * self._fs))
        self._cell_dt_s = self._cell_samples / self._fs

        streams = patient_streams(seed, patient.seed)
        signature_ss, csd_ss = streams["signature"], streams["csd"]
        model_ss, sensor_ss = streams["model"], streams["sensor"]
        self.cycle = MigraineCycle(
            patient.cycle, np.random.default_rng(streams["cycle"]), start_time_of_day_h
        )
        self.response = StimulationResponse(patient.response)
        self.course = PatientCourse(self.cycle, self.response)
        self.variability = SlowVariability(
            patient.variability,
            np.random.default_rng(streams["variability"]),
            start_time_of_day_h,
        )
        self.signature = ProdromalSignature(
            patient.signature, n_sites, np.random.default_rng(signature_ss)
        )
        self.csd = SpreadingDepolarization(patient.csd, self._sites, np.random.default_rng(csd_ss))
        model_seed = int(model_ss.generate_state(1)[0])
        self._jansen_rit: JansenRitNetwork | None = None
        self._spectral: SpectralModel | None = None
        if model_name == "jansen-rit":
            self._jansen_rit = JansenRitNetwork(
                self._sites, self._fs, model_seed, jansen_rit_params
            )
        else:
            self._spectral = SpectralModel(self._sites, self._fs, model_seed, spectral_params)
        self._artifact = StimulationArtifact(n_sites, self._fs, artifact_params)
        self._sensors = SensorFaultInjector(
            n_sites, self._fs, int(sensor_ss.generate_state(1)[0]), sensor_params
        )

        self._n_read = 0  # samples delivered
        self._physio_sample = 0  # samples the physiology has accounted for
        self._cell = -1
        self._state = ModulationState.baseline(n_sites, patient.signature.alpha_peak_hz)
        self._cell_buffer = np.zeros((n_sites, 0))
        self._charge_rate_uc_per_s = 0.0
        self._step_charge_uc = 0.0
        self._step_on_s = 0.0
        self._boundaries: list[_FaultBoundary] = []
        self._fault_keys = itertools.count()
        self._fault_handles: dict[int, int] = {}
        self.ground_truth: list[GroundTruthEvent] = []
        self._drained = 0

    # ------------------------------------------------------------- SignalSource
    @property
    def sites(self) -> tuple[Site, ...]:
        return self._sites

    @property
    def sampling_rate_hz(self) -> float:
        return self._fs

    def impedance_ohm(self) -> np.ndarray | None:
        return self._sensors.impedance_ohm()

    def drain_ground_truth(self) -> list[GroundTruthEvent]:
        events = self.ground_truth[self._drained :]
        self._drained = len(self.ground_truth)
        return sorted(events, key=lambda e: e.t_s)

    def read(self, n_samples: int, stim: StimulationInput) -> np.ndarray:
        """Next ``n_samples`` as recorded (µV, (n_sites, n_samples)); advances the patient."""
        if n_samples < 0:
            raise ValueError("n_samples must be >= 0")
        stim_on = stim.active
        self._charge_rate_uc_per_s = (
            stim.charge_per_phase_uc * stim.frequency_hz if stim_on else 0.0
        )
        start = self._n_read
        cell_samples = self._cell_samples
        if self._spectral is not None and n_samples and start // cell_samples != self._cell:
            cell = start // cell_samples
            if start + n_samples <= (cell + 1) * cell_samples:
                self._enter_cell(cell)  # as _generate_pieces would, then the slice below
        cell_start = self._cell * cell_samples
        if (
            self._spectral is not None
            and cell_start <= start
            and start + n_samples <= cell_start + cell_samples
        ):
            # Fast path (device blocks within a cell): a slice of the cell's buffer.
            offset = start - cell_start
            out = self._cell_buffer[:, offset : offset + n_samples]
            if stim_on:
                out = out.copy()  # the artifact is added in place below
            self._n_read = start + n_samples
            self._advance_physiology(self._n_read, stim_on)
        else:
            out = self._generate_pieces(n_samples, stim)
        if stim_on:
            out += self._artifact.render(n_samples, stim)
        return self._apply_sensors(out)

    def _generate_pieces(self, n_samples: int, stim: StimulationInput) -> np.ndarray:
        """Generate a block cut at modulation-cell borders, advancing the physiology."""
        out = np.empty((len(self._sites), n_samples))
        done = 0
        while done < n_samples:
            cell = self._n_read // self._cell_samples
            if cell != self._cell:
                self._enter_cell(cell)
            offset = self._n_read - cell * self._cell_samples
            take = min(n_samples - done, self._cell_samples - offset)
            if self._jansen_rit is not None:
                # Stimulation enters the neural mass: generate with this block's input.
                out[:, done : done + take] = self._jansen_rit.generate(take, self._state, stim)
            else:
                # The spectral model ignores stimulation: the cell was generated at entry.
                out[:, done : done + take] = self._cell_buffer[:, offset : offset + take]
            self._n_read += take
            done += take
            self._advance_physiology(self._n_read, stim.active)
        return out

    # ---------------------------------------------------------------- inspection
    @property
    def t_s(self) -> float:
        """Virtual time of the next sample (s since the start of the simulation)."""
        return self._n_read / self._fs

    @property
    def phase(self) -> Phase:
        return self.cycle.phase

    @property
    def susceptibility(self) -> float:
        return self.cycle.susceptibility

    @property
    def modulation(self) -> ModulationState:
        """The ModulationState used for the current modulation cell."""
        return self._state

    # ------------------------------------------------------------------ forcing
    def force_prodrome(self, t_s: float) -> None:
        self.cycle.force_prodrome(t_s)

    def force_attack(self, t_s: float, aura: bool) -> None:
        self.cycle.force_attack(t_s, aura)

    def schedule_sensor_fault(
        self, fault: ActiveSensorFault, start_s: float, duration_s: float
    ) -> None:
        """Switch ``fault`` on at ``start_s`` and off ``duration_s`` later (sample-exact)."""
        if max(fault.channels) >= len(self._sites):
            raise ValueError(f"fault channels {fault.channels} outside 0..{len(self._sites) - 1}")
        if duration_s <= 0:
            raise ValueError("duration_s must be > 0")
        key = next(self._fault_keys)
        start = max(round(start_s * self._fs), self._n_read)
        end = max(round((start_s + duration_s) * self._fs), start + 1)
        self._boundaries.append(_FaultBoundary(start, True, key, fault))
        self._boundaries.append(_FaultBoundary(end, False, key, fault))
        self._boundaries.sort(key=lambda b: (b.sample, b.start))

    # ---------------------------------------------------------------- internals
    def _enter_cell(self, cell: int) -> None:
        """Compute the ModulationState for the cell starting at sample cell * cell_samples."""
        self._cell = cell
        t_s = cell * self._cell_dt_s
        state = self.signature.step(self.cycle.phase, self.cycle.phase_progress, self._cell_dt_s)
        if self.patient.variability.enabled:
            slow = np.exp(self.variability.step(self._cell_dt_s))
            state.band_gain *= slow[:, None]
        if self.csd.active:
            effect = self.csd.effect(t_s)
            state.band_gain[0] *= effect.delta_gain
            state.suppression = effect.suppression
            state.dc_offset_uv = effect.dc_offset_uv
            self.csd.retire_finished(t_s)
        self._state = state
        if self._spectral is not None:
            self._cell_buffer = self._spectral.generate(self._cell_samples, state)

    def _advance_physiology(self, to_sample: int, stim_on: bool) -> None:
        """Account stimulation up to ``to_sample`` and complete every cycle step before it."""
        step = self._cycle_step_samples
        if not stim_on and to_sample < (self._physio_sample // step + 1) * step:
            self._physio_sample = to_sample  # nothing delivered, no step completed
            return
        while self._physio_sample < to_sample:
            step_end = (self._physio_sample // step + 1) * step
            upto = min(step_end, to_sample)
            span_s = (upto - self._physio_sample) / self._fs
            if stim_on:
                self._step_charge_uc += self._charge_rate_uc_per_s * span_s
                self._step_on_s += span_s
            self._physio_sample = upto
            if upto == step_end:
                self._complete_cycle_step()

    def _complete_cycle_step(self) -> None:
        changes, other = self.course.step(self._step_charge_uc, self._step_on_s, self._cycle_dt_s)
        self._step_charge_uc = 0.0
        self._step_on_s = 0.0
        for change in changes:
            self.ground_truth.extend(change.ground_truth())
            if change.to_phase is Phase.ATTACK and change.aura:
                self.ground_truth.extend(self.csd.start(change.t_s))
        self.ground_truth.extend(other)
        if self.csd.active:
            self.ground_truth.extend(self.csd.arrivals_until(self.cycle.t_s))

    def _apply_sensors(self, block_uv: np.ndarray) -> np.ndarray:
        """Run the sensor injector over the block, switching faults at their exact samples.

        ``block_uv`` may be a view of the cell buffer: the injector never writes into it.
        """
        first = self._n_read - block_uv.shape[1]
        if not self._boundaries or self._boundaries[0].sample >= self._n_read:
            return self._sensors.apply(block_uv)
        pieces = []
        pos = first
        while self._boundaries and self._boundaries[0].sample < self._n_read:
            boundary = self._boundaries.pop(0)
            cut = max(boundary.sample, pos)
            if cut > pos:
                pieces.append(self._sensors.apply(block_uv[:, pos - first : cut - first]))
                pos = cut
            self._switch_fault(boundary, cut)
        pieces.append(self._sensors.apply(block_uv[:, pos - first :]))
        return np.concatenate(pieces, axis=1)

    def _switch_fault(self, boundary: _FaultBoundary, sample: int) -> None:
        fault = boundary.fault
        if boundary.start:
            self._fault_handles[boundary.key] = self._sensors.activate(fault)
        else:
            self._sensors.deactivate(self._fault_handles.pop(boundary.key))
        self.ground_truth.append(
            GroundTruthEvent(
                sample / self._fs,
                "sensor_fault_start" if boundary.start else "sensor_fault_end",
                self._sites[fault.channels[0]].label,
                {"fault": fault.kind.value},
            )
        )
