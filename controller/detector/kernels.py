"""Compiled per-window kernels of the detector (numba), for its small-array arithmetic.

Why: the detector works on a handful of values per window (8 channels, 8 features by
default), so its numpy formulation costs ~150 small numpy calls, i.e. ~0.15 ms per window,
almost all of it call overhead.  Each kernel below replaces one such sequence with one
compiled call.  Without numba the numpy code in baseline.py / score.py / detector.py runs.

Two kinds of kernels:

- element-wise updates (:func:`median_mad_step`, :func:`alpha_variability_step`,
  :func:`line_length_z`) repeat the numpy expressions operation by operation, so their
  results are bit-identical to the numpy code (tests/test_detector_kernels.py checks it);
- reductions (:func:`summary_values`, :func:`signature_score`) sum in a different order
  than numpy's pairwise sums and BLAS dot, so they agree with the numpy path to rounding.
"""

from __future__ import annotations

import math

import numpy as np

from controller.jit import NUMBA_AVAILABLE as NUMBA_AVAILABLE
from controller.jit import StructProxy, StructType, compiled_struct
from controller.jit import jit as _jit

#: Summary feature kinds as kernel codes (config.SUMMARY_FEATURE_PATTERNS keys).
KIND_CODES: dict[str, int] = {
    "band_power": 0,
    "band_log_power": 1,
    "band_rel_power": 2,
    "theta_alpha_ratio": 3,
    "alpha_peak_mean": 4,
    "alpha_peak_variability": 5,
    "line_length": 6,
    "coherence": 7,
    "phase_sync": 8,
    "mean_connectivity": 9,
}


@_jit
def _maximum(a: float, b: float) -> float:
    """np.maximum for non-NaN floats, including which zero it returns (a if a >= b)."""
    return a if a >= b else b


@_jit
def _sign(x: float) -> float:
    """np.sign of a non-NaN float (+0.0 for either zero)."""
    if x > 0.0:
        return 1.0
    if x < 0.0:
        return -1.0
    return 0.0


@_jit
def median_mad_step(
    location: np.ndarray,
    scale: np.ndarray,
    values: np.ndarray,
    use: np.ndarray,
    rate: float,
    floor_fraction: float,
    min_scale: float,
    median_step: float,
    mad_step_divisor: float,
    mad_to_sd: float,
) -> None:
    """baseline.StreamingMedianMad.update in place, for entries with ``use`` and finite values.

    Same expressions in the same order as the numpy code (hence the same bits).
    """
    if rate <= 0.0:
        return
    for k in range(location.shape[0]):
        x = values[k]
        if not (use[k] and math.isfinite(x)):
            continue
        loc = location[k]
        sc = scale[k]
        step_scale = _maximum(_maximum(sc, floor_fraction * abs(loc)), min_scale)
        deviation = x - loc
        mad = sc / mad_to_sd
        location_step = median_step * rate * step_scale * _sign(deviation)
        mad_step = (rate * step_scale / mad_step_divisor) * _sign(abs(deviation) - mad)
        location[k] = loc + location_step
        scale[k] = mad_to_sd * _maximum(mad + mad_step, 0.0)


@_jit
def alpha_variability_step(
    mean: np.ndarray,
    var: np.ndarray,
    followed_s: np.ndarray,
    started: np.ndarray,
    alpha_peak_hz: np.ndarray,
    good: np.ndarray,
    a: float,
    dt_s: float,
) -> None:
    """score.AlphaPeakVariability.update in place (``a`` = relaxation rate of ``dt_s``)."""
    credit = dt_s if dt_s > 0.0 else 0.0
    for c in range(mean.shape[0]):
        x = alpha_peak_hz[c]
        if not (good[c] and math.isfinite(x) and x > 0.0):
            continue
        if not started[c]:
            mean[c] = x
            started[c] = True
            continue
        delta = x - mean[c]
        mean[c] = mean[c] + a * delta
        var[c] = (1.0 - a) * (var[c] + a * delta * delta)
        followed_s[c] = followed_s[c] + credit


@_jit
def line_length_z(
    line_length: np.ndarray,
    judged: np.ndarray,
    location: np.ndarray,
    scale: np.ndarray,
    floor_fraction: float,
    min_scale: float,
    z_limit: float,
    z_out: np.ndarray,
) -> int:
    """Robust z of each judged channel's line length (detector.ArtifactGate.check).

    Fills ``z_out`` (NaN where not judged) and returns how many judged channels exceed
    ``z_limit``.
    """
    jumped = 0
    for c in range(line_length.shape[0]):
        if not judged[c]:
            z_out[c] = np.nan
            continue
        sc = _maximum(_maximum(scale[c], floor_fraction * abs(location[c])), min_scale)
        z = (line_length[c] - location[c]) / sc
        z_out[c] = z
        if z > z_limit:
            jumped += 1
    return jumped


@_jit
def _mean_over_good(values: np.ndarray, good: np.ndarray, positive_only: bool) -> float:
    """Mean of values over good channels (and values > 0 if asked); NaN when none."""
    total = 0.0
    count = 0
    for c in range(values.shape[0]):
        if good[c] and (not positive_only or values[c] > 0.0):
            total += values[c]
            count += 1
    return total / count if count > 0 else np.nan


@_jit
def summary_values(
    kinds: np.ndarray,
    bands: np.ndarray,
    good: np.ndarray,
    band_power_uv2: np.ndarray,
    relative_power: np.ndarray,
    theta_alpha_ratio: np.ndarray,
    alpha_peak_hz: np.ndarray,
    line_length_uv: np.ndarray,
    mean_coherence: np.ndarray,
    mean_phase_sync: np.ndarray,
    mean_connectivity: np.ndarray,
    variability_hz: float,
    log_power_floor: float,
    out: np.ndarray,
) -> None:
    """score.SummaryFeatures.values: feature i of kind ``kinds[i]`` (KIND_CODES), band
    ``bands[i]``; channel means over good channels, pair summaries need two good ones."""
    n_good = 0
    for c in range(good.shape[0]):
        if good[c]:
            n_good += 1
    log_power = np.empty(band_power_uv2.shape[0])
    for i in range(kinds.shape[0]):
        kind = kinds[i]
        b = bands[i]
        value = np.nan
        if kind == 0:
            value = _mean_over_good(band_power_uv2[:, b], good, False)
        elif kind == 1:
            for c in range(log_power.shape[0]):
                log_power[c] = np.log10(_maximum(band_power_uv2[c, b], log_power_floor))
            value = _mean_over_good(log_power, good, False)
        elif kind == 2:
            value = _mean_over_good(relative_power[:, b], good, False)
        elif kind == 3:
            value = _mean_over_good(theta_alpha_ratio, good, False)
        elif kind == 4:
            value = _mean_over_good(alpha_peak_hz, good, True)
        elif kind == 5:
            value = variability_hz
        elif kind == 6:
            value = _mean_over_good(line_length_uv, good, False)
        elif n_good >= 2:
            if kind == 7:
                value = mean_coherence[b]
            elif kind == 8:
                value = mean_phase_sync[b]
            else:
                value = mean_connectivity[b]
        out[i] = value


@_jit
def signature_score(
    values: np.ndarray,
    location: np.ndarray,
    scale: np.ndarray,
    floor_fraction: float,
    min_scale: float,
    z_clip: float,
    sign: np.ndarray,
    both: np.ndarray,
    weights: np.ndarray,
    mean_abs_normal: float,
    z_out: np.ndarray,
) -> float:
    """score.z_scores and SignatureWeights.score in one pass; NaN when no term is finite.

    ``z_out`` gets the clipped z-scores (NaN for missing features).
    """
    weighted = 0.0
    weight_sum = 0.0
    for i in range(values.shape[0]):
        sc = _maximum(_maximum(scale[i], floor_fraction * abs(location[i])), min_scale)
        z = (values[i] - location[i]) / sc
        if z > z_clip:
            z = z_clip
        elif z < -z_clip:
            z = -z_clip
        z_out[i] = z
        signed = abs(z) - mean_abs_normal if both[i] else sign[i] * z
        if math.isfinite(signed):
            weighted += weights[i] * signed
            weight_sum += weights[i]
    return weighted / weight_sum if weight_sum > 0.0 else np.nan


@_jit
def alpha_variability_value(
    var: np.ndarray, followed_s: np.ndarray, good: np.ndarray, tau_s: float
) -> float:
    """score.AlphaPeakVariability.value_hz: mean SD over good channels followed >= tau."""
    total = 0.0
    count = 0
    for c in range(var.shape[0]):
        if good[c] and followed_s[c] >= tau_s:
            total += math.sqrt(var[c])
            count += 1
    return total / count if count > 0 else np.nan


class SteadyConstantsType(StructType):
    """numba's type of a :class:`SteadyConstants`."""


class SteadyConstants(StructProxy):
    """What :func:`steady_window` reads besides each window's own values, as one numba
    structref: the detector's settings and the arrays the compiled path updates in place
    (the artifact references, the alpha-peak variability, the baseline tracker), shared
    with their owners, not copied.  Built with the fields in the order annotated here."""

    min_good: int
    stim_channels: np.ndarray
    reference_location: np.ndarray
    reference_scale: np.ndarray
    reference_floor_fraction: float
    z_limit: float
    line_z_out: np.ndarray
    gate_floor_fraction: float
    min_scale: float
    median_step: float
    mad_step_divisor: float
    mad_to_sd: float
    variability_mean: np.ndarray
    variability_var: np.ndarray
    variability_followed_s: np.ndarray
    variability_started: np.ndarray
    variability_tau_s: float
    needs_variability: bool
    kinds: np.ndarray
    bands: np.ndarray
    log_power_floor: float
    score_window: bool
    baseline_location: np.ndarray
    baseline_scale: np.ndarray
    baseline_floor_fraction: float
    z_clip: float
    sign: np.ndarray
    both: np.ndarray
    weights: np.ndarray
    mean_abs_normal: float
    z_out: np.ndarray


#: The fields of a SteadyConstants, in constructor order.
STEADY_CONSTANTS_FIELDS = tuple(SteadyConstants.__annotations__)
compiled_struct(SteadyConstants, SteadyConstantsType, STEADY_CONSTANTS_FIELDS)


@_jit
def new_steady_constants(values: tuple[object, ...]) -> SteadyConstants:
    """A SteadyConstants of ``values`` (in STEADY_CONSTANTS_FIELDS order).

    Why not ``SteadyConstants(*values)``: the proxy's own constructor is compiled afresh
    in every process (~0.3 s); this one is cached like the kernels.
    """
    return SteadyConstants(*values)


@_jit
def steady_window(
    line_length: np.ndarray,
    good: np.ndarray,
    changing: bool,
    reference_rate: float,
    variability_rate: float,
    dt_s: float,
    band_power_uv2: np.ndarray,
    relative_power: np.ndarray,
    theta_alpha_ratio: np.ndarray,
    alpha_peak_hz: np.ndarray,
    mean_coherence: np.ndarray,
    mean_phase_sync: np.ndarray,
    mean_connectivity: np.ndarray,
    values_out: np.ndarray,
    constants: SteadyConstants,
) -> tuple[int, int, int, float]:
    """One window of a detector whose artifact references are all initialised: the
    artifact gate's rules (a stimulation channel flagged bad, the line-length rule) and
    reference update, the alpha-peak variability
    update (windows that are neither blanked nor short of good channels), the summary
    values and, once calibrated (``score_window``), the signature score, by the kernels
    above called in the detector's order (so the same bits as calling them one by one).

    ``changing``: the window is blanked after a stimulation change.  Returns (stimulation
    channels flagged bad, channels over the line-length limit, good channels, raw score;
    NaN when too few good channels or no finite term).  The stimulation-channel rule is
    also ArtifactGate.bad_stimulation_channels (which names the channels, and serves the
    unfused path); the detector's fused-versus-separate tests pin the two equal.
    Everything that is the same every window comes in ``constants`` (one argument for
    ~30: numba checks and unboxes each argument of a call).
    """
    c = constants
    n_good = 0
    for channel in range(good.shape[0]):
        if good[channel]:
            n_good += 1
    bad_stim = 0
    for channel in c.stim_channels:
        if not good[channel]:
            bad_stim += 1
    jumped = line_length_z(
        line_length,
        good,
        c.reference_location,
        c.reference_scale,
        c.gate_floor_fraction,
        c.min_scale,
        c.z_limit,
        c.line_z_out,
    )
    median_mad_step(
        c.reference_location,
        c.reference_scale,
        line_length,
        good,
        reference_rate,
        c.reference_floor_fraction,
        c.min_scale,
        c.median_step,
        c.mad_step_divisor,
        c.mad_to_sd,
    )
    enough = n_good >= c.min_good
    if enough and not (bad_stim > 0 or changing or jumped > 0):
        alpha_variability_step(
            c.variability_mean,
            c.variability_var,
            c.variability_followed_s,
            c.variability_started,
            alpha_peak_hz,
            good,
            variability_rate,
            dt_s,
        )
    variability_hz = np.nan
    if c.needs_variability:
        variability_hz = alpha_variability_value(
            c.variability_var, c.variability_followed_s, good, c.variability_tau_s
        )
    summary_values(
        c.kinds,
        c.bands,
        good,
        band_power_uv2,
        relative_power,
        theta_alpha_ratio,
        alpha_peak_hz,
        line_length,
        mean_coherence,
        mean_phase_sync,
        mean_connectivity,
        variability_hz,
        c.log_power_floor,
        values_out,
    )
    score = np.nan
    if enough and c.score_window:
        score = signature_score(
            values_out,
            c.baseline_location,
            c.baseline_scale,
            c.baseline_floor_fraction,
            c.min_scale,
            c.z_clip,
            c.sign,
            c.both,
            c.weights,
            c.mean_abs_normal,
            c.z_out,
        )
    return bad_stim, jumped, n_good, score
