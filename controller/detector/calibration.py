"""Per-patient calibration: from a run-in's feature log and attack onsets to a signature.

The steps (docs/detector.md, "Per-patient calibration"):

1. **Baseline** - median and 1.4826 MAD of single windows, leaving out every window from
   ``baseline_exclusion_before_h`` (48 h) before an attack onset to
   ``baseline_exclusion_after_h`` after it: the pre-attack period the detector must
   recognise is never learnt as normal, nor the attack and postdrome.
2. **Signature** - for each occurrence period M tried, each candidate feature's mean z
   over [onset - M, onset - horizon] is taken per attack; its t statistic across attacks
   (mean / standard error) says how consistently it moved, and in which direction.  The
   ``max_features`` features with the largest |t| (at least ``min_abs_t``; the best one
   if none reaches it) form the signature: direction = sign of t, weight = |mean shift| /
   interictal variance of its block z (the linear discriminant of independent features),
   scaled so the largest weight is 1.
3. **Operating point** - the score the online detector would compute (weighted mean of
   signed z, smoothed with ``score_smoothing_s``) is replayed over the run-in through the
   detector's own state machine for a grid of upper thresholds (quantiles of the score);
   the lower threshold sits ``hysteresis_fraction`` of the way from the interictal median
   to the upper one.  The operating point is the lowest threshold whose alarms keep the
   time in warning at or below ``target_time_in_warning``: the most sensitive one within
   the warning budget.  Among occurrence periods the one with the smallest binomial
   p-value against chance at its own time in warning wins (then the larger sensitivity
   minus time in warning).

The replay runs on ``block_s`` block means, not on every 0.5 s window (the score is smoothed
over minutes; onset and termination durations stay in seconds), and with the baseline held
fixed where the online detector adapts it slowly (at most 0.1 robust z per hour at the
default time constant); the prospective scores measure what that approximation costs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from controller.detector.baseline import MAD_TO_SD, Baseline, floored_scale
from controller.detector.config import DetectorConfig, SignatureFeature
from controller.detector.feature_log import FeatureLog
from controller.detector.score import ScoreSmoother
from controller.detector.signature import PatientSignature, RunInFit
from controller.detector.state_machine import ProdromeStateMachine, WindowInput
from controller.detector.types import DetectorState
from firmware_bridge.units import SECONDS_PER_DAY, SECONDS_PER_HOUR


class CalibrationError(ValueError):
    """The run-in cannot calibrate a detector (too few attacks, too little interictal time)."""


@dataclass(frozen=True)
class CalibrationSettings:
    """How a run-in is turned into a signature (defaults justified in docs/detector.md)."""

    target_time_in_warning: float = 0.30
    min_attacks: int = 5
    baseline_exclusion_before_h: float = 48.0
    baseline_exclusion_after_h: float = 24.0
    occurrence_periods_h: tuple[float, ...] = (12.0, 24.0, 48.0)
    horizon_min: float = 30.0
    max_features: int = 6
    min_abs_t: float = 2.0
    threshold_candidates: int = 40
    hysteresis_fraction: float = 0.5
    min_baseline_samples: int = 100

    def __post_init__(self) -> None:
        if not 0.0 < self.target_time_in_warning < 1.0:
            raise ValueError(
                f"target_time_in_warning={self.target_time_in_warning} must lie in (0, 1)"
            )
        if self.baseline_exclusion_before_h < 0 or self.baseline_exclusion_after_h < 0:
            raise ValueError("baseline exclusion periods must be >= 0 h")
        if self.min_attacks < 2:
            raise ValueError("min_attacks must be >= 2 (a t statistic needs two attacks)")
        if not self.occurrence_periods_h:
            raise ValueError("occurrence_periods_h must not be empty")
        for period_h in self.occurrence_periods_h:
            if not period_h * 60.0 > self.horizon_min >= 0.0:
                raise ValueError(
                    f"occurrence period {period_h} h must exceed the horizon {self.horizon_min} min"
                )
        if self.max_features < 1 or self.threshold_candidates < 2:
            raise ValueError("max_features must be >= 1 and threshold_candidates >= 2")
        if not 0.0 < self.hysteresis_fraction < 1.0:
            raise ValueError("hysteresis_fraction must lie in (0, 1)")


# --- prediction on the run-in: the rules of the in-silico scoring (docs/scoring.md) --------


@dataclass(frozen=True)
class AlarmScore:
    """Attacks, predicted attacks and time in warning of a set of alarms."""

    attacks: int
    predicted: int
    alarms: int
    time_in_warning: float

    @property
    def sensitivity(self) -> float | None:
        return self.predicted / self.attacks if self.attacks else None

    @property
    def p_value(self) -> float | None:
        """One-sided binomial test against a chance predictor with the same time in warning."""
        return binomial_p_value(self.predicted, self.attacks, self.time_in_warning)


def binomial_p_value(successes: int, trials: int, chance: float) -> float | None:
    """P(X >= successes), X ~ Binomial(trials, chance); None without trials (Snyder 2008)."""
    if trials == 0:
        return None
    p = min(max(chance, 0.0), 1.0)
    if p == 0.0:
        return 1.0 if successes == 0 else 0.0
    if p == 1.0:
        return 1.0
    from scipy import stats  # here: importing scipy.stats costs ~0.5 s, most runs never test

    return float(stats.binomtest(successes, trials, p, alternative="greater").pvalue)


def score_alarms(
    alarms_s: Sequence[float],
    onsets_s: Sequence[float],
    duration_s: float,
    *,
    occurrence_period_h: float,
    horizon_min: float,
) -> AlarmScore:
    """An alarm at a counts for the onset o when horizon <= o - a <= occurrence period;
    attacks with o < horizon are not scored; time in warning = |U [a + horizon, a + M]
    within [0, duration]| / duration.  The same rules as ``insilico.scoring`` (tested)."""
    min_lead_s, max_lead_s = horizon_min * 60.0, occurrence_period_h * SECONDS_PER_HOUR
    alarms = np.sort(np.asarray(alarms_s, dtype=float))
    onsets = np.asarray([o for o in onsets_s if 0.0 <= o <= duration_s], dtype=float)
    lead = onsets[:, None] - alarms[None, :]
    hit = ((lead >= min_lead_s) & (lead <= max_lead_s)).any(axis=1) & (onsets >= min_lead_s)
    covered = 0.0
    end = -math.inf
    for a in alarms:
        lo, hi = max(a + min_lead_s, 0.0, end), min(a + max_lead_s, duration_s)
        if hi > lo:
            covered += hi - lo
        end = max(end, min(a + max_lead_s, duration_s))
    return AlarmScore(
        attacks=int((onsets >= min_lead_s).sum()),
        predicted=int(hit.sum()),
        alarms=int(alarms.size),
        time_in_warning=float(min(max(covered / duration_s, 0.0), 1.0)),
    )


# --- the online score, replayed over blocks -------------------------------------------------


def replay_alarms(
    t_end_s: np.ndarray,
    smoothed: np.ndarray,
    upper: float,
    lower: float,
    onset_s: float,
    termination_s: float,
    dt_s: float,
) -> list[float]:
    """PRODROME onsets of the detector's state machine fed one smoothed score per block
    (NaN: a block without a score, which holds the state as a blanked window does).

    The rules of :class:`ProdromeStateMachine` (state_machine.py) on plain floats, because
    the operating-point search replays weeks of blocks for every candidate threshold; a
    property test checks that both give the same alarms for any scores.
    """
    normal, suspect, prodrome = 0, 1, 2
    state = normal
    above_s = below_s = 0.0
    onset_reached = onset_s - 1e-9 * max(1.0, onset_s)
    termination_reached = termination_s - 1e-9 * max(1.0, termination_s)
    alarms = []
    for t, score in zip(t_end_s.tolist(), smoothed.tolist(), strict=True):
        if score != score:  # NaN: held, timers paused
            continue
        if state == normal:
            if score > upper:
                state, above_s = suspect, 0.0
        elif state == suspect:
            if score > upper:
                above_s += dt_s
                if above_s >= onset_reached:
                    state, below_s = prodrome, -1.0
                    alarms.append(t)
            elif score < lower:
                state = normal
            else:
                above_s = -dt_s  # cleared: restarts at 0 with the next block above
        elif score < lower:
            below_s = 0.0 if below_s < 0.0 else below_s + dt_s
            if below_s >= termination_reached:
                state = normal
        else:
            below_s = -1.0
    return alarms


def replay_alarms_reference(
    t_end_s: np.ndarray,
    smoothed: np.ndarray,
    upper: float,
    lower: float,
    onset_s: float,
    termination_s: float,
    dt_s: float,
) -> list[float]:
    """:func:`replay_alarms` through :class:`ProdromeStateMachine` itself (its test reference)."""
    machine = ProdromeStateMachine(upper, lower, onset_s, termination_s, calibrated=True)
    alarms = []
    for t, s in zip(t_end_s.tolist(), smoothed.tolist(), strict=True):
        transition = machine.step(WindowInput(dt_s=dt_s, score=None if math.isnan(s) else s))
        if transition.changed and transition.state is DetectorState.PRODROME:
            alarms.append(t)
    return alarms


def smoothed_scores(raw: np.ndarray, tau_s: float, dt_s: float) -> np.ndarray:
    """The detector's score smoothing (ScoreSmoother) over blocks; NaN blocks hold it."""
    smoother = ScoreSmoother(tau_s)
    out = np.full(raw.shape, np.nan)
    for k, value in enumerate(raw.tolist()):
        if not math.isnan(value):
            smoother.update(value, dt_s)
        if smoother.value is not None:
            out[k] = smoother.value
    return out


def signed_score(z: np.ndarray, signs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean over available features of sign * z, per row (NaN if none available)."""
    signed = z * signs[None, :]
    available = np.isfinite(signed)
    total = np.where(available, weights[None, :], 0.0).sum(axis=1)
    summed = np.where(available, signed * weights[None, :], 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, summed / np.where(total > 0, total, 1.0), np.nan)


# --- calibration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    signature: PatientSignature
    score: AlarmScore


def excluded_mask(
    t_s: np.ndarray, onsets_s: Sequence[float], before_s: float, after_s: float
) -> np.ndarray:
    """True where t lies in [onset - before, onset + after) of some attack."""
    out = np.zeros(t_s.shape, dtype=bool)
    for onset in onsets_s:
        out |= (t_s >= onset - before_s) & (t_s < onset + after_s)
    return out


def calibrate(
    log: FeatureLog,
    onsets_s: Sequence[float],
    config: DetectorConfig,
    settings: CalibrationSettings | None = None,
) -> PatientSignature:
    """Learn a patient's signature, thresholds and baseline from a run-in (module docstring).

    ``onsets_s`` are attack onsets in seconds from the log's start; ``config`` supplies
    the smoothing, onset/termination durations, z clipping and baseline settings the
    online detector will use.  CalibrationError names what the run-in lacks.
    """
    s = settings if settings is not None else CalibrationSettings()
    onsets = sorted(float(o) for o in onsets_s if 0.0 <= o <= log.duration_s)
    if len(onsets) < s.min_attacks:
        raise CalibrationError(
            f"the run-in has {len(onsets)} attack onset(s) within its "
            f"{log.duration_s / SECONDS_PER_DAY:.1f} "
            f"days; calibration needs at least {s.min_attacks}"
        )
    before_s = s.baseline_exclusion_before_h * SECONDS_PER_HOUR
    after_s = s.baseline_exclusion_after_h * SECONDS_PER_HOUR
    baseline = _baseline(log, onsets, before_s, after_s, config, s.min_baseline_samples)
    location = baseline.location
    scale = floored_scale(baseline.scale, location, config.scale_floor_fraction)
    with np.errstate(invalid="ignore"):
        z = np.clip((log.block_mean - location) / scale, -config.z_clip, config.z_clip)
    interictal = ~excluded_mask(log.block_end_s, onsets, before_s, after_s)
    interictal &= log.block_usable_s > 0
    best: _Candidate | None = None
    for period_h in s.occurrence_periods_h:
        candidate = _fit_period(log, z, onsets, interictal, period_h, baseline, config, s)
        if best is None or _better(candidate.score, best.score):
            best = candidate
    assert best is not None
    return best.signature


def _baseline(
    log: FeatureLog,
    onsets: list[float],
    before_s: float,
    after_s: float,
    config: DetectorConfig,
    min_samples: int,
) -> Baseline:
    keep = ~excluded_mask(log.sample_t_s, onsets, before_s, after_s)
    rows = log.sample_values[keep]
    finite = np.isfinite(rows).sum(axis=0)
    if rows.shape[0] < min_samples or int(finite.min()) < min_samples:
        raise CalibrationError(
            f"only {rows.shape[0]} sampled windows lie outside the {before_s / 3600:g} h before "
            f"and {after_s / 3600:g} h after the attacks (need {min_samples}); record a longer "
            "run-in"
        )
    with np.errstate(all="ignore"):
        location = np.nanmedian(rows, axis=0)
        scale = MAD_TO_SD * np.nanmedian(np.abs(rows - location), axis=0)
    usable_s = float(
        log.block_usable_s[~excluded_mask(log.block_end_s, onsets, before_s, after_s)].sum()
    )
    return Baseline.from_dict(
        {
            "format": "neurostim.detector.baseline",
            "version": 1,
            "features": list(log.feature_names),
            "location": location.tolist(),
            "scale": scale.tolist(),
            "calibrated_s": usable_s,
            "adapted_s": 0.0,
            "settings": {
                "calibration_s": config.calibration_s,
                "adaptation_tau_s": config.baseline_adaptation_tau_s,
                "scale_floor_fraction": config.scale_floor_fraction,
                "max_calibration_windows": config.max_calibration_windows,
            },
        }
    )


def feature_evidence(
    z: np.ndarray,
    t_end_s: np.ndarray,
    onsets: Sequence[float],
    period_h: float,
    horizon_min: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Per feature: the t statistic of the per-attack mean z over [o - M, o - horizon] and
    the mean of those per-attack shifts (NaN where fewer than two attacks had data)."""
    lo_lead, hi_lead = horizon_min * 60.0, period_h * SECONDS_PER_HOUR
    shifts = []
    for onset in onsets:
        window = (t_end_s >= onset - hi_lead) & (t_end_s <= onset - lo_lead)
        if window.any():
            with np.errstate(all="ignore"):
                shifts.append(np.nanmean(np.where(window[:, None], z, np.nan), axis=0))
    if not shifts:
        nan = np.full(z.shape[1], np.nan)
        return nan, nan
    per_attack = np.array(shifts)
    n = np.isfinite(per_attack).sum(axis=0)
    with np.errstate(all="ignore"):
        mean = np.nanmean(per_attack, axis=0)
        sd = np.nanstd(per_attack, axis=0, ddof=1)
        t = mean / (np.maximum(sd, 1e-9) / np.sqrt(n))
    t = np.where(n >= 2, t, np.nan)
    return t, np.where(n >= 2, mean, np.nan)


def _fit_period(
    log: FeatureLog,
    z: np.ndarray,
    onsets: list[float],
    interictal: np.ndarray,
    period_h: float,
    baseline: Baseline,
    config: DetectorConfig,
    s: CalibrationSettings,
) -> _Candidate:
    t_stat, shift = feature_evidence(z, log.block_end_s, onsets, period_h, s.horizon_min)
    ranked = [
        i for i in np.argsort(-np.nan_to_num(np.abs(t_stat), nan=-1.0)) if np.isfinite(t_stat[i])
    ]
    if not ranked:
        raise CalibrationError("no candidate feature had data before two or more attacks")
    chosen = [i for i in ranked if abs(t_stat[i]) >= s.min_abs_t][: s.max_features] or ranked[:1]
    with np.errstate(all="ignore"):
        variance = np.nanvar(np.where(interictal[:, None], z, np.nan), axis=0)
    raw_weights = np.array(
        [
            abs(shift[i]) / max(float(variance[i]), 1e-6) if np.isfinite(variance[i]) else 0.0
            for i in chosen
        ]
    )
    if not raw_weights.max(initial=0.0) > 0:
        raw_weights = np.ones(len(chosen))
    weights = np.maximum(raw_weights / raw_weights.max(), 1e-3)
    signs = np.sign(t_stat[chosen])
    names = [log.feature_names[i] for i in chosen]
    features = tuple(
        SignatureFeature(
            name=name,
            weight=float(w),
            direction="up" if sign > 0 else "down",
            source=f"calibrated on the run-in: t = {t_stat[i]:+.2f} over {len(onsets)} attacks "
            f"(window {period_h:g} h)",
        )
        for name, w, sign, i in zip(names, weights, signs, chosen, strict=True)
    )
    raw = signed_score(z[:, chosen], signs, weights)
    smoothed = smoothed_scores(raw, config.score_smoothing_s, log.block_s)
    upper, lower, alarms = _operating_point(log, smoothed, interictal, onsets, period_h, config, s)
    score = score_alarms(
        alarms,
        onsets,
        log.duration_s,
        occurrence_period_h=period_h,
        horizon_min=s.horizon_min,
    )
    chosen_baseline = Baseline.from_dict(
        {
            **baseline.to_dict(),
            "features": names,
            "location": [float(baseline.location[i]) for i in chosen],
            "scale": [float(baseline.scale[i]) for i in chosen],
        }
    )
    signature = PatientSignature(
        features=features,
        upper_threshold=upper,
        lower_threshold=lower,
        occurrence_period_h=period_h,
        horizon_min=s.horizon_min,
        baseline=chosen_baseline,
        run_in=RunInFit(
            duration_s=log.duration_s,
            attacks=score.attacks,
            predicted=score.predicted,
            alarms=score.alarms,
            time_in_warning=score.time_in_warning,
            p_value=score.p_value,
            target_time_in_warning=s.target_time_in_warning,
        ),
        evidence={n: float(t) for n, t in zip(log.feature_names, t_stat, strict=True)},
    )
    return _Candidate(signature, score)


def _operating_point(
    log: FeatureLog,
    smoothed: np.ndarray,
    interictal: np.ndarray,
    onsets: list[float],
    period_h: float,
    config: DetectorConfig,
    s: CalibrationSettings,
) -> tuple[float, float, list[float]]:
    """(upper, lower, alarms) of the most sensitive threshold within the warning budget;
    among equally sensitive ones the least time in warning (then the higher threshold)."""
    finite = smoothed[np.isfinite(smoothed)]
    if finite.size == 0:
        raise CalibrationError("the run-in has no block with a score (no usable window)")
    quiet = smoothed[interictal & np.isfinite(smoothed)]
    centre = float(np.median(quiet)) if quiet.size else float(np.median(finite))
    levels = np.unique(np.quantile(finite, np.linspace(0.5, 0.999, s.threshold_candidates)))
    top = float(finite.max()) + 1e-6 * max(1.0, abs(float(finite.max())))
    best: tuple[tuple[int, float, float], float, float, list[float]] | None = None
    for upper in [*levels.tolist(), top]:
        if upper <= centre:
            continue
        lower = centre + s.hysteresis_fraction * (upper - centre)
        alarms = replay_alarms(
            log.block_end_s,
            smoothed,
            upper,
            lower,
            config.onset_s,
            config.termination_s,
            log.block_s,
        )
        result = score_alarms(
            alarms, onsets, log.duration_s, occurrence_period_h=period_h, horizon_min=s.horizon_min
        )
        if result.time_in_warning > s.target_time_in_warning:
            continue
        rank = (result.predicted, -result.time_in_warning, upper)
        if best is None or rank > best[0]:
            best = (rank, upper, lower, alarms)
    if best is None:  # only when the centre is the maximum: a flat score
        raise CalibrationError("the run-in's score never rises above its interictal median")
    return best[1], best[2], best[3]


def _better(a: AlarmScore, b: AlarmScore) -> bool:
    """Smaller p-value against chance wins; then larger sensitivity minus time in warning."""
    pa = 1.0 if a.p_value is None else a.p_value
    pb = 1.0 if b.p_value is None else b.p_value
    if not math.isclose(pa, pb, rel_tol=1e-9, abs_tol=1e-12):
        return pa < pb
    gain_a = (a.sensitivity or 0.0) - a.time_in_warning
    gain_b = (b.sensitivity or 0.0) - b.time_in_warning
    return gain_a > gain_b
