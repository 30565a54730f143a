"""The prodromal (and ictal, postdromal) EEG signature: phase -> ModulationState.

Effects are modest, per-patient parameter drifts (the prodrome literature: group-level,
small, sometimes of opposite sign). Direction of each effect comes from a study;
its *size* is a modelling ASSUMPTION (the studies report group statistics, not
per-patient drifts), chosen modest. At full expression (late prodrome):

* absolute delta power +/-15 % (Zebhauser et al. 2024, J Headache Pain 25:147:
  premonitory phase, some evidence of higher delta and beta power)
* theta power +15 %          (Zebhauser et al. 2024: theta power raised in migraine)
* alpha power +10 %          (Cao et al. 2016, J Headache Pain 17: preictal EEG power higher)
* beta power +25 %           (Martins et al. 2020, Cephalalgia 40:255: relative beta rose in
  the 24 h before an attack; Zebhauser 2024 premonitory beta higher)
  Because broadband power rises more than delta, *relative* delta falls, as in
  Martins et al. 2020.
* inter-site coherence +20 % (Cao et al. 2016: preictal coherence higher)
* alpha peak frequency SD +0.3 Hz (Bjørk et al. 2009, Clin Neurophysiol 120:464:
  alpha peak-frequency variability rises before attacks)
* input drive +10 pulses/s to the neural mass (ASSUMPTION: raised cortical excitability,
  cf. lack of habituation d = -0.85 and larger CNV d = +0.58, Russo 2004)

Attack: alpha peak power +30 % (Bjørk et al. 2009: alpha peak power rises during attacks;
size an ASSUMPTION). Postdrome: the attack's alpha elevation fades over the postdrome
and theta is raised +10 % (ASSUMPTION: no quantitative postdrome EEG figure is in the
project's references).

Per patient, each effect is drawn as expressivity * Normal(mean, sd) with
sd = 0.8 |mean| (so ~11 % of patients show the opposite sign) and a patient-wide
expressivity ~ Uniform(0, 2) (so some patients show almost nothing) - see
``draw_signature_params``. Where studies disagree on the sign (absolute/relative delta,
beta; ``DISPUTED_SIGN``) the sign itself is drawn per patient: delta +/- 50/50 with a
magnitude of 15 % (so relative delta falls in some patients and rises in others), beta
positive in 70 %. On top of the signature, ``simulator.physiology.variability`` moves the
patient's baseline with vigilance, sleep, time awake and from day to day.
Expression ramps in over the first ``ramp_fraction`` of the prodrome (smoothstep,
ASSUMPTION) and every component follows its target with a
first-order lag ``transition_tau_s`` so aborted prodromes fade instead of snapping.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from simulator.jit import NUMBA_AVAILABLE, jit
from simulator.physiology.cycle import Phase
from simulator.physiology.state import BAND_NAMES, ModulationState


class SignatureParams(BaseModel):
    """Per-patient signature. Power changes are fractional (0.25 = +25 % power)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prodrome_delta_power_change: float = Field(default=0.15, ge=-0.95, le=20.0)
    prodrome_theta_power_change: float = Field(default=0.15, ge=-0.95, le=20.0)
    prodrome_alpha_power_change: float = Field(default=0.10, ge=-0.95, le=20.0)
    prodrome_beta_power_change: float = Field(default=0.25, ge=-0.95, le=20.0)
    prodrome_gamma_power_change: float = Field(default=0.0, ge=-0.95, le=20.0)
    prodrome_coherence_change: float = Field(default=0.20, ge=-0.95, le=20.0)
    prodrome_alpha_peak_sd_hz: float = Field(default=0.30, ge=-2.0, le=5.0)
    prodrome_input_drive_pps: float = Field(default=10.0, ge=-200.0, le=200.0)
    prodrome_ramp_fraction: float = Field(default=0.5, gt=0.0, le=1.0)
    attack_alpha_power_change: float = Field(default=0.30, ge=-0.95, le=20.0)
    postdrome_theta_power_change: float = Field(default=0.10, ge=-0.95, le=20.0)
    alpha_peak_hz: float = Field(
        default=10.0, ge=6.0, le=14.0, description="individual alpha frequency (~10 Hz adults)"
    )
    alpha_peak_site_sd_hz: float = Field(
        default=0.2, ge=0.0, le=2.0, description="static per-site spread"
    )
    alpha_peak_sd_hz: float = Field(
        default=0.15, ge=0.0, le=3.0, description="interictal jitter SD"
    )
    alpha_peak_tau_s: float = Field(
        default=30.0, gt=0.0, le=3600.0, description="jitter correlation time"
    )
    transition_tau_s: float = Field(default=1200.0, gt=0.0, le=86400.0)
    site_effect_sd: float = Field(default=0.3, ge=0.0, le=2.0, description="per-site effect spread")


#: Population model of the drifts: field -> (mean, source). sd = EFFECT_SD_FRACTION * |mean|.
SIGNATURE_POPULATION: dict[str, tuple[float, str]] = {
    "prodrome_delta_power_change": (0.15, "Zebhauser 2024 up; relative delta falls (Martins 2020)"),
    "prodrome_theta_power_change": (0.15, "Zebhauser 2024"),
    "prodrome_alpha_power_change": (0.10, "Cao 2016"),
    "prodrome_beta_power_change": (0.25, "Martins 2020; Zebhauser 2024"),
    "prodrome_coherence_change": (0.20, "Cao 2016"),
    "prodrome_alpha_peak_sd_hz": (0.30, "Bjørk 2009"),
    "prodrome_input_drive_pps": (10.0, "assumption (excitability; Russo 2004, Coppola 2015)"),
    "attack_alpha_power_change": (0.30, "Bjørk 2009"),
    "postdrome_theta_power_change": (0.10, "assumption"),
}
#: sd / |mean| of each per-patient effect: P(opposite sign) = Phi(-1/0.8) ~ 11 %. ASSUMPTION.
EFFECT_SD_FRACTION = 0.8
#: Effects whose sign the literature disagrees on: field -> P(positive) per patient. Delta:
#: premonitory delta power higher (Zebhauser 2024) but relative delta lower (Martins 2020);
#: beta: higher in both, yet not replicated consistently (Zebhauser 2024: "some evidence").
#: The sign is drawn per patient, the magnitude as for the other effects. ASSUMPTION.
DISPUTED_SIGN: dict[str, float] = {
    "prodrome_delta_power_change": 0.5,
    "prodrome_beta_power_change": 0.7,
}


def draw_signature_params(
    rng: np.random.Generator,
    expressivity_range: tuple[float, float] = (0.0, 2.0),
    alpha_peak_mean_hz: float = 10.0,
    alpha_peak_sd_hz: float = 0.7,
) -> SignatureParams:
    """One patient's signature from the population model (see module docstring)."""
    expressivity = float(rng.uniform(*expressivity_range))
    values: dict[str, float] = {}
    for name, (mean, _source) in SIGNATURE_POPULATION.items():
        value = expressivity * float(rng.normal(mean, EFFECT_SD_FRACTION * abs(mean)))
        if name in DISPUTED_SIGN:
            sign = 1.0 if rng.random() < DISPUTED_SIGN[name] else -1.0
            value = sign * abs(value)
        values[name] = max(value, -0.9) if name.endswith("_change") else value
    alpha_peak_hz = rng.normal(alpha_peak_mean_hz, alpha_peak_sd_hz)
    values["alpha_peak_hz"] = float(np.clip(alpha_peak_hz, 7.0, 13.0))
    return SignatureParams(**values)


def _band_log_gains(**change_by_band: float) -> np.ndarray:
    """log(1 + change) per band in BAND_NAMES order (0 for bands not named)."""
    unknown = set(change_by_band) - set(BAND_NAMES)
    if unknown:
        raise ValueError(f"unknown bands {sorted(unknown)}; expected {BAND_NAMES}")
    return np.log1p(np.array([change_by_band.get(name, 0.0) for name in BAND_NAMES]))


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


def _state_loops(
    expression: tuple[float, float, float],
    component_log_gain: np.ndarray,
    site_weight: np.ndarray,
    alpha_base_hz: np.ndarray,
    jitter_hz: float,
    drive_pps: float,
    log_band_gain: np.ndarray,
    alpha_peak_hz: np.ndarray,
    input_drive: np.ndarray,
) -> None:
    """The array arithmetic of ``ProdromalSignature._state_numpy`` element by element, in one
    call (numba target; the same products and sums in the same order): the log band gains
    per site (before their exponential), the clipped alpha peaks and the input drive.
    ``component_log_gain`` holds the prodrome, attack and postdrome rows."""
    e_p, e_a, e_pd = expression
    n_bands = component_log_gain.shape[1]
    n_sites = site_weight.shape[0]
    for b in range(n_bands):
        log_gain = (
            e_p * component_log_gain[0, b]
            + e_a * component_log_gain[1, b]
            + e_pd * component_log_gain[2, b]
        )
        for i in range(n_sites):
            log_band_gain[b, i] = log_gain * site_weight[i]
    for i in range(n_sites):
        peak = alpha_base_hz[i] + jitter_hz
        if peak < 6.0:  # np.maximum(peak, 6.0), NaN kept
            peak = 6.0
        if peak > 14.0:  # np.minimum(peak, 14.0)
            peak = 14.0
        alpha_peak_hz[i] = peak
        input_drive[i] = drive_pps * site_weight[i]


_state_numba: Callable[..., None] | None = jit(_state_loops) if NUMBA_AVAILABLE else None


class ProdromalSignature:
    """Stateful map from (phase, progress) to a ModulationState for one patient and montage."""

    def __init__(self, params: SignatureParams, n_sites: int, rng: np.random.Generator) -> None:
        self.params = params
        self.n_sites = n_sites
        self._rng = rng
        p = params
        site_spread = p.site_effect_sd * rng.standard_normal(n_sites)
        self._site_weight = np.clip(1.0 + site_spread, 0.0, None)
        self._site_alpha_offset_hz = p.alpha_peak_site_sd_hz * rng.standard_normal(n_sites)
        self._alpha_base_hz = p.alpha_peak_hz + self._site_alpha_offset_hz  # before jitter
        # Log power gains per band (rows BANDS_HZ order) for each component at full expression.
        self._prodrome_log_gain = _band_log_gains(
            delta=p.prodrome_delta_power_change,
            theta=p.prodrome_theta_power_change,
            alpha=p.prodrome_alpha_power_change,
            beta=p.prodrome_beta_power_change,
            gamma=p.prodrome_gamma_power_change,
        )
        self._attack_log_gain = _band_log_gains(alpha=p.attack_alpha_power_change)
        self._postdrome_log_gain = _band_log_gains(theta=p.postdrome_theta_power_change)
        self._component_log_gain = np.stack(
            (self._prodrome_log_gain, self._attack_log_gain, self._postdrome_log_gain)
        )
        self._prodrome_log_coherence = math.log1p(p.prodrome_coherence_change)
        self.prodrome_expression = 0.0
        self.attack_expression = 0.0
        self.postdrome_expression = 0.0
        self._jitter = float(rng.standard_normal())  # unit-variance OU state

    def targets(self, phase: Phase, progress: float) -> tuple[float, float, float]:
        """Target expression of the (prodrome, attack, postdrome) components."""
        if phase is Phase.PRODROME:
            return _smoothstep(progress / self.params.prodrome_ramp_fraction), 0.0, 0.0
        if phase is Phase.ATTACK:
            return 0.0, 1.0, 0.0
        if phase is Phase.POSTDROME:
            fade = 1.0 - min(max(progress, 0.0), 1.0)
            return 0.0, fade, fade
        return 0.0, 0.0, 0.0

    def step(self, phase: Phase, progress: float, dt_s: float) -> ModulationState:
        """Advance the lags and the alpha-peak jitter by ``dt_s``; return this block's state."""
        p = self.params
        target_p, target_a, target_pd = self.targets(phase, progress)
        k = 1.0 - math.exp(-dt_s / p.transition_tau_s)
        self.prodrome_expression += (target_p - self.prodrome_expression) * k
        self.attack_expression += (target_a - self.attack_expression) * k
        self.postdrome_expression += (target_pd - self.postdrome_expression) * k
        decay = math.exp(-dt_s / p.alpha_peak_tau_s)
        self._jitter = self._jitter * decay + math.sqrt(1.0 - decay * decay) * float(
            self._rng.standard_normal()
        )
        return self.state()

    def state(self) -> ModulationState:
        """The ModulationState for the current expressions (no CSD): the array arithmetic
        in one compiled call when numba is there, else ``_state_numpy`` (the same numbers;
        tested against each other)."""
        kernel = _state_numba
        if kernel is None:
            return self._state_numpy()
        p = self.params
        e_p, e_a, e_pd = self.prodrome_expression, self.attack_expression, self.postdrome_expression
        jitter_sd_hz = max(p.alpha_peak_sd_hz + e_p * p.prodrome_alpha_peak_sd_hz, 0.0)
        n = self.n_sites
        band_gain = np.empty((len(BAND_NAMES), n))
        alpha_peak_hz = np.empty(n)
        input_drive = np.empty(n)
        kernel(
            (e_p, e_a, e_pd),
            self._component_log_gain,
            self._site_weight,
            self._alpha_base_hz,
            jitter_sd_hz * self._jitter,
            e_p * p.prodrome_input_drive_pps,
            band_gain,
            alpha_peak_hz,
            input_drive,
        )
        np.exp(band_gain, out=band_gain)
        return ModulationState(
            band_gain=band_gain,
            alpha_peak_hz=alpha_peak_hz,
            coherence_gain=math.exp(e_p * self._prodrome_log_coherence),
            suppression=np.zeros(n),
            dc_offset_uv=np.zeros(n),
            input_drive=input_drive,
        )

    def _state_numpy(self) -> ModulationState:
        """``state`` as array operations: the reference of the compiled ``_state_loops``."""
        p = self.params
        e_p, e_a, e_pd = self.prodrome_expression, self.attack_expression, self.postdrome_expression
        log_gain = (
            e_p * self._prodrome_log_gain
            + e_a * self._attack_log_gain
            + e_pd * self._postdrome_log_gain
        )
        band_gain = np.exp(log_gain[:, None] * self._site_weight[None, :])
        jitter_sd_hz = max(p.alpha_peak_sd_hz + e_p * p.prodrome_alpha_peak_sd_hz, 0.0)
        # Clipped to 6-14 Hz (np.minimum/np.maximum: np.clip's numbers without its overhead).
        alpha_peak_hz = np.minimum(
            np.maximum(
                p.alpha_peak_hz + self._site_alpha_offset_hz + jitter_sd_hz * self._jitter, 6.0
            ),
            14.0,
        )
        return ModulationState(
            band_gain=band_gain,
            alpha_peak_hz=alpha_peak_hz,
            coherence_gain=math.exp(e_p * self._prodrome_log_coherence),
            suppression=np.zeros(self.n_sites),
            dc_offset_uv=np.zeros(self.n_sites),
            input_drive=e_p * p.prodrome_input_drive_pps * self._site_weight,
        )
