"""From a FeatureFrame to the prodrome signature score.

1. ``SummaryFeatures`` reduces the frame to the configured summary features (means over the
   window's good channels, the frame's connectivity summaries, and the running variability
   of each channel's alpha peak frequency).
2. ``z_scores`` standardises them against the baseline, clipped to ±z_clip.
3. ``signature_score`` signs them by direction and takes the weighted mean: the raw score,
   in units of robust z.
4. ``ScoreSmoother`` is an exponential moving average of the raw score in time.

Everything is O(features × channels) per window.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from controller.detector.baseline import MIN_SCALE, relaxation_rate
from controller.detector.config import SignatureFeature, parse_summary_feature
from controller.detector.kernels import (
    KIND_CODES,
    alpha_variability_step,
    alpha_variability_value,
    signature_score,
    summary_values,
)
from controller.features import FeatureFrame
from controller.jit import numba_enabled

#: log10 floor for band powers (µV²) so a silent band gives a finite log power.
LOG_POWER_FLOOR_UV2 = 1e-12
#: Mean of |z| for a standard normal z: "both"-direction terms subtract it to centre on 0.
MEAN_ABS_NORMAL = math.sqrt(2.0 / math.pi)

_Getter = Callable[[FeatureFrame, np.ndarray], float]


def _mean_over(values: np.ndarray, good: np.ndarray) -> float:
    """Mean of ``values`` over good channels; NaN when no channel is good."""
    if not good.any():
        return math.nan
    return float(np.mean(values[good]))


class AlphaPeakVariability:
    """Running SD (Hz) of each channel's alpha peak frequency over successive windows.

    Exponentially weighted mean and variance with time constant ``tau_s`` (West 1979 form),
    per channel, updated only from good channels with a peak (alpha_peak_hz > 0).  A
    channel contributes once it has been followed for ``tau_s``; the feature is the mean
    SD over the good channels that qualify (Bjørk et al. 2009 measure the marker per site).
    ``use_numba`` (when numba is importable) updates with the compiled kernel.
    """

    def __init__(self, n_channels: int, tau_s: float, use_numba: bool = True) -> None:
        self._use_numba = numba_enabled(use_numba)
        self._tau_s = tau_s
        self._mean = np.zeros(n_channels)
        self._var = np.zeros(n_channels)
        self._followed_s = np.zeros(n_channels)
        self._started = np.zeros(n_channels, dtype=bool)

    def update(self, alpha_peak_hz: np.ndarray, good: np.ndarray, dt_s: float) -> None:
        """Add one window's peaks for the good channels (credited ``dt_s`` seconds).

        The compiled kernel (``use_numba``) does it in place, with the same result bit for bit.
        """
        if self._use_numba:
            alpha_variability_step(
                self._mean,
                self._var,
                self._followed_s,
                self._started,
                np.asarray(alpha_peak_hz, dtype=np.float64),
                good,
                relaxation_rate(dt_s, self._tau_s),
                dt_s,
            )
            return
        self.update_numpy(alpha_peak_hz, good, dt_s)

    def update_numpy(self, alpha_peak_hz: np.ndarray, good: np.ndarray, dt_s: float) -> None:
        """The numpy formulation of :meth:`update` (the fallback, and its test reference)."""
        x = np.asarray(alpha_peak_hz, dtype=np.float64)
        use = good & np.isfinite(x) & (x > 0.0)
        fresh = use & ~self._started
        self._mean[fresh] = x[fresh]
        self._started |= fresh
        old = use & ~fresh
        a = relaxation_rate(dt_s, self._tau_s)
        delta = np.where(old, x - self._mean, 0.0)
        self._mean = np.where(old, self._mean + a * delta, self._mean)
        self._var = np.where(old, (1.0 - a) * (self._var + a * delta * delta), self._var)
        self._followed_s = np.where(old, self._followed_s + max(dt_s, 0.0), self._followed_s)

    @property
    def tau_s(self) -> float:
        return self._tau_s

    @property
    def mean(self) -> np.ndarray:
        """Live running mean per channel (Hz), for the detector's fused kernel."""
        return self._mean

    @property
    def var(self) -> np.ndarray:
        """Live running variance per channel (Hz²)."""
        return self._var

    @property
    def followed_s(self) -> np.ndarray:
        """Live time each channel has been followed."""
        return self._followed_s

    @property
    def started(self) -> np.ndarray:
        """Live flags: the channel has had a peak."""
        return self._started

    def value_hz_compiled(self, good: np.ndarray) -> float:
        """:meth:`value_hz` by the compiled kernel (same to rounding; needs numba)."""
        return float(alpha_variability_value(self._var, self._followed_s, good, self._tau_s))

    def value_hz(self, good: np.ndarray) -> float:
        """Mean running SD over good channels followed long enough; NaN if there is none."""
        ready = good & (self._followed_s >= self._tau_s)
        if not ready.any():
            return math.nan
        return float(np.mean(np.sqrt(self._var[ready])))


class SummaryFeatures:
    """Computes the configured summary features of a frame, in configuration order.

    Names are parsed once (config.SUMMARY_FEATURE_PATTERNS); bands are resolved against the
    first frame's band names (ValueError naming the feature if a band is missing).
    ``use_numba`` (when numba is importable) computes all values in one compiled call
    (kernels.summary_values) instead of one numpy getter each: the same values to rounding.
    """

    def __init__(
        self,
        names: Sequence[str],
        n_channels: int,
        alpha_peak_variability_s: float,
        use_numba: bool = True,
    ):
        self.names = tuple(names)
        self._parsed = [parse_summary_feature(name) for name in self.names]
        self._variability = AlphaPeakVariability(
            n_channels, alpha_peak_variability_s, use_numba=use_numba
        )
        self._getters: list[_Getter] | None = None
        self._resolved_for: tuple[tuple[str, ...], str] | None = None
        #: The frame's band names object last resolved (frames of one extractor share it).
        self._resolved_names: tuple[str, ...] | None = None
        self._use_numba = numba_enabled(use_numba)
        self._kinds = np.array([KIND_CODES[kind] for kind, _ in self._parsed], dtype=np.int64)
        self._bands = np.full(len(self.names), -1, dtype=np.int64)
        self._needs_variability = "alpha_peak_variability" in (kind for kind, _ in self._parsed)

    @property
    def variability(self) -> AlphaPeakVariability:
        """The running alpha-peak variability (updated in place by the fused kernel)."""
        return self._variability

    @property
    def needs_variability(self) -> bool:
        """Whether a configured feature is the alpha-peak variability."""
        return self._needs_variability

    @property
    def kinds(self) -> np.ndarray:
        """Kernel code per feature (kernels.KIND_CODES)."""
        return self._kinds

    @property
    def bands(self) -> np.ndarray:
        """Band index per feature (-1: no band); valid after :meth:`resolve`."""
        return self._bands

    def values(self, frame: FeatureFrame, good: np.ndarray, dt_s: float, learn: bool) -> np.ndarray:
        """Feature values of ``frame`` (NaN where unavailable).

        ``learn`` lets this window update the running alpha-peak variability (the detector
        passes False for blanked and UNKNOWN windows, so artifacts never enter it).
        """
        getters = self.resolve(frame)
        if learn:
            self._variability.update(frame.alpha_peak_hz, good, dt_s)
        if not self._use_numba:
            return np.array([get(frame, good) for get in getters], dtype=np.float64)
        out = np.empty(len(self.names))
        summary_values(
            self._kinds,
            self._bands,
            good,
            frame.band_power_uv2,
            frame.relative_power,
            frame.theta_alpha_ratio,
            frame.alpha_peak_hz,
            frame.line_length_uv,
            frame.mean_coherence,
            frame.mean_phase_sync,
            frame.mean_connectivity,
            self._variability.value_hz_compiled(good) if self._needs_variability else math.nan,
            LOG_POWER_FLOOR_UV2,
            out,
        )
        return out

    def resolve(self, frame: FeatureFrame) -> list[_Getter]:
        """Resolve bands and measures against ``frame`` (again only when they change);
        ValueError naming the feature when the frame lacks one."""
        band_names = frame.band_names
        if self._getters is not None and band_names is self._resolved_names:
            resolved = self._resolved_for
            if resolved is not None and frame.phase_measure == resolved[1]:
                return self._getters  # the same (immutable) band names as last time
        key = (tuple(band_names), frame.phase_measure)
        if self._getters is None or self._resolved_for != key:
            self._getters = [
                self._getter(name, kind, groups, frame)
                for name, (kind, groups) in zip(self.names, self._parsed, strict=True)
            ]
            self._bands[:] = [
                frame.band_names.index(groups["band"]) if "band" in groups else -1
                for _, groups in self._parsed
            ]
            self._resolved_for = key
        # Only an immutable tuple may be recognised by identity next time.
        self._resolved_names = band_names if isinstance(band_names, tuple) else None
        return self._getters

    def _getter(self, name: str, kind: str, groups: dict[str, str], frame: FeatureFrame) -> _Getter:
        band = groups.get("band")
        b = -1
        if band is not None:
            if band not in frame.band_names:
                raise ValueError(
                    f"detector feature {name!r}: band {band!r} is not among the frame's bands "
                    f"{list(frame.band_names)}"
                )
            b = frame.band_names.index(band)
        measure = groups.get("measure")
        if measure is not None and measure != frame.phase_measure:
            raise ValueError(
                f"detector feature {name!r}: frames carry {frame.phase_measure!r}, not {measure!r}"
            )
        if kind == "band_power":
            return lambda f, g: _mean_over(f.band_power_uv2[:, b], g)
        if kind == "band_log_power":
            return lambda f, g: _mean_over(
                np.log10(np.maximum(f.band_power_uv2[:, b], LOG_POWER_FLOOR_UV2)), g
            )
        if kind == "band_rel_power":
            return lambda f, g: _mean_over(f.relative_power[:, b], g)
        if kind == "theta_alpha_ratio":
            return lambda f, g: _mean_over(f.theta_alpha_ratio, g)
        if kind == "alpha_peak_mean":
            return lambda f, g: _mean_over(f.alpha_peak_hz, g & (f.alpha_peak_hz > 0.0))
        if kind == "alpha_peak_variability":
            return lambda f, g: self._variability.value_hz(g)
        if kind == "line_length":
            return lambda f, g: _mean_over(f.line_length_uv, g)
        if kind == "coherence":
            return lambda f, g: _pair_summary(float(f.mean_coherence[b]), g)
        if kind == "phase_sync":
            return lambda f, g: _pair_summary(float(f.mean_phase_sync[b]), g)
        if kind == "mean_connectivity":
            return lambda f, g: _pair_summary(float(f.mean_connectivity[b]), g)
        raise AssertionError(f"unhandled summary feature kind {kind!r}")


def _pair_summary(value: float, good: np.ndarray) -> float:
    """A good-pair summary from the frame; NaN with fewer than two good channels (no pair)."""
    return value if np.count_nonzero(good) >= 2 else math.nan


def z_scores(
    values: np.ndarray, location: np.ndarray, scale: np.ndarray, z_clip: float
) -> np.ndarray:
    """(values - location) / scale, clipped to ±z_clip; NaN stays NaN (missing feature).

    ``scale`` must already be floored (Baseline.effective_scale), so it is > 0.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        z = (np.asarray(values, dtype=np.float64) - location) / scale
    return np.clip(z, -z_clip, z_clip)


class SignatureWeights:
    """Signs and weights of the signature terms, applied to z-scores."""

    def __init__(self, features: Sequence[SignatureFeature]) -> None:
        self.weights = np.array([f.weight for f in features], dtype=np.float64)
        #: +1 (up) or -1 (down) per term; 0 for "both" terms, which use |z| instead.
        self.sign = np.array(
            [{"up": 1.0, "down": -1.0, "both": 0.0}[f.direction] for f in features]
        )
        self.both = np.array([f.direction == "both" for f in features])

    def signed(self, z: np.ndarray) -> np.ndarray:
        """Each z as evidence for a prodrome: +z (up), -z (down), |z| - sqrt(2/pi) (both)."""
        return np.where(self.both, np.abs(z) - MEAN_ABS_NORMAL, self.sign * z)

    def score(self, z: np.ndarray) -> float | None:
        """Weighted mean of the signed z over available features; None if none is available."""
        signed = self.signed(z)
        available = np.isfinite(signed)
        if not available.any():
            return None
        w = self.weights[available]
        return float(np.dot(w, signed[available]) / w.sum())

    def score_compiled(
        self,
        values: np.ndarray,
        location: np.ndarray,
        scale: np.ndarray,
        floor_fraction: float,
        z_clip: float,
        z_out: np.ndarray,
    ) -> float | None:
        """z_scores then :meth:`score` in one compiled call (same to rounding; needs numba).

        ``scale`` is the raw (unfloored) scale; ``z_out`` receives the clipped z-scores.
        """
        score = signature_score(
            values,
            location,
            scale,
            floor_fraction,
            MIN_SCALE,
            z_clip,
            self.sign,
            self.both,
            self.weights,
            MEAN_ABS_NORMAL,
            z_out,
        )
        return None if math.isnan(score) else float(score)


class ScoreSmoother:
    """Exponential moving average in time, bias-corrected at the start.

    With weights ``a = 1 - exp(-dt/tau)`` the smoothed value is the normalised weighted
    mean of the scores seen so far, so the first value is the first score (no pull towards
    an arbitrary start) and later values are the usual EMA.  ``tau_s = 0`` disables it.
    """

    def __init__(self, tau_s: float) -> None:
        self._tau_s = tau_s
        self._value: float | None = None
        self._weight = 0.0
        self._rate_dt_s = math.nan  # the last credited time and its relaxation rate
        self._rate = 0.0

    @property
    def value(self) -> float | None:
        """The current smoothed score (None before the first score)."""
        return self._value

    def update(self, raw: float, dt_s: float) -> float:
        """Add one raw score credited ``dt_s`` seconds; return the smoothed score."""
        if self._tau_s <= 0.0:
            a = 1.0
        elif dt_s == self._rate_dt_s:  # nearly every window credits the same hop
            a = self._rate
        else:
            a = self._rate = relaxation_rate(dt_s, self._tau_s)
            self._rate_dt_s = dt_s
        self._weight = (1.0 - a) * self._weight + a
        if self._value is None:
            self._value = raw
        elif self._weight > 0.0:
            w = a / self._weight
            mixed = (1.0 - w) * self._value + w * raw
            # A convex combination lies between its ends; clamping keeps rounding from
            # overflowing near the float limits.  Written as the comparisons builtin
            # min/max make (same values, NaN included): four calls cost ~0.2 us a window.
            value = self._value
            lo = raw if raw < value else value  # min(value, raw)
            hi = raw if raw > value else value  # max(value, raw)
            mixed = lo if lo > mixed else mixed  # max(mixed, lo)
            self._value = hi if hi < mixed else mixed  # min(mixed, hi)
        return self._value
