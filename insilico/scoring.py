"""Pure scoring of headless simulation runs (docs/scoring.md).

Prediction is scored with a seizure-prediction characteristic (Winterhalder 2003): an alarm
counts for an attack when it comes at most the *occurrence period* (``max_lead_h``) and at
least the *horizon* (``min_lead_min``) before the onset. Every sensitivity is reported next
to that of a chance predictor with the same time in warning (Snyder 2008), because a
detector that warns most of the time "predicts" most attacks without knowing anything.

Therapy is scored as a migraine trial would be: attacks per 30 days, attack-free days, and
the stimulation dose (time, charge, TEED, Koss 2005).

Times are seconds since the start of the run. No I/O, and no simulator or controller imports:
the caller turns reports into plain numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from scipy import special

from controller.detector.calibration import binomial_p_value
from firmware_bridge.units import SECONDS_PER_DAY
from insilico.report import PredictionScores, TherapyScores

Attack = tuple[float, float | None]  # (onset_s, end_s); end None: still running at the end
FloatArray = npt.NDArray[np.float64]
Numeric = TypeVar("Numeric", float, FloatArray)


# --- interval helpers ---------------------------------------------------------------------


def _union_length_s(starts_s: FloatArray, ends_s: FloatArray, lo_s: float, hi_s: float) -> float:
    """Length of the union of the closed intervals [start, end], clipped to [lo, hi]."""
    starts = np.clip(starts_s, lo_s, hi_s)
    ends = np.clip(ends_s, lo_s, hi_s)
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if starts.size == 0:
        return 0.0
    order = np.argsort(starts, kind="stable")
    total = 0.0
    cur_start, cur_end = float(starts[order[0]]), float(ends[order[0]])
    for s, e in zip(starts[order[1:]], ends[order[1:]], strict=True):
        if s > cur_end:
            total += cur_end - cur_start
            cur_start, cur_end = float(s), float(e)
        else:
            cur_end = max(cur_end, float(e))
    return total + (cur_end - cur_start)


def _counts_for(
    onsets_s: FloatArray, alarms_s: FloatArray, min_lead_s: float, max_lead_s: float
) -> npt.NDArray[np.bool_]:
    """``[i, j]``: alarm j counts for the attack with onset i (min_lead <= o - a <= max_lead).

    The one predicate behind sensitivity, lead times, false alarms and the surrogates, so
    "an alarm counts for an attack" and "an attack lies in an alarm's window" never disagree
    at a boundary by a rounding error.
    """
    lead_s = onsets_s[:, None] - alarms_s[None, :]
    return (lead_s >= min_lead_s) & (lead_s <= max_lead_s)


def _check_run(duration_s: float) -> None:
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be a positive finite number, got {duration_s!r}")


def _leads_s(max_lead_h: float, min_lead_min: float) -> tuple[float, float]:
    min_lead_s, max_lead_s = min_lead_min * 60.0, max_lead_h * 3600.0
    if not (0.0 <= min_lead_s < max_lead_s):
        raise ValueError(
            "need 0 <= horizon < occurrence period, got "
            f"min_lead_min={min_lead_min!r}, max_lead_h={max_lead_h!r}"
        )
    return min_lead_s, max_lead_s


def _attack_arrays(attacks: Sequence[Attack], duration_s: float) -> tuple[FloatArray, FloatArray]:
    """Onsets and ends of the attacks whose onset lies in the run [0, duration_s].

    An end of None (still running) becomes ``duration_s``; ends are clipped to the run.
    """
    onsets, ends = [], []
    for onset_s, end_s in attacks:
        end = duration_s if end_s is None else end_s
        if end < onset_s:
            raise ValueError(f"attack ends before it starts: onset {onset_s} s, end {end_s} s")
        if 0.0 <= onset_s <= duration_s:
            onsets.append(float(onset_s))
            ends.append(min(float(end), duration_s))
    return np.asarray(onsets, dtype=float), np.asarray(ends, dtype=float)


# --- prediction ---------------------------------------------------------------------------


def score_prediction(
    alarms_s: Sequence[float],
    attacks: Sequence[Attack],
    duration_s: float,
    *,
    max_lead_h: float = 48.0,
    min_lead_min: float = 30.0,
) -> PredictionScores:
    """Score detector alarms against attack onsets (Winterhalder 2003, Snyder 2008).

    Args:
        alarms_s: alarm times (PRODROME onsets), s since the run start, expected in the run.
        attacks: ``(onset_s, end_s)``; ``end_s`` None means still running at the end.
            Attacks whose onset is outside [0, duration_s] are not part of the run: ignored.
        duration_s: length of the run (> 0).
        max_lead_h: occurrence period: the earliest an alarm may come before the onset.
        min_lead_min: horizon: the latest an alarm may come before the onset (time to act).

    Rules (L = min_lead, M = max_lead, o = onset, a = alarm):

    * a counts for the attack at o iff L <= o - a <= M (both ends inclusive).
    * Scored attacks: onset o >= L. An earlier attack could not be predicted by any alarm
      in the run, so it is counted nowhere (neither in ``attacks`` nor ``predicted``); its
      time still is attack time for the interictal time.
    * ``sensitivity`` = predicted / attacks (None without scored attacks).
    * An alarm is true if it counts for some attack; otherwise it is *pending* when its
      occurrence window reaches past the end of the run (a + M > duration_s: an attack may
      still come), else *false*. Pending alarms count in ``alarms``, not in ``false_alarms``.
    * Interictal time: [0, duration_s - M] (where an alarm can be judged) minus the union
      of [o - M, end] over all attacks in the run (pre-attack window plus the attack).
      ``false_alarms_per_day`` = false alarms / interictal days (None when there is no
      interictal time, e.g. in runs no longer than M).
    * ``median_lead_h``: median over predicted attacks of o - (earliest counting alarm).
    * ``time_in_warning``: fraction of the run covered by the union of the alarms'
      occurrence windows [a + L, a + M].
    * ``chance_sensitivity`` = ``time_in_warning``: warnings covering that fraction of the
      time independently of the attacks contain each onset with that probability.
    * ``p_value``: one-sided binomial test of ``predicted`` out of ``attacks`` against
      ``chance_sensitivity`` (None without attacks); ``beats_chance`` = p_value < 0.05.
    """
    _check_run(duration_s)
    min_lead_s, max_lead_s = _leads_s(max_lead_h, min_lead_min)
    alarms = np.sort(np.asarray(alarms_s, dtype=float))
    onsets, ends = _attack_arrays(attacks, duration_s)

    counts = _counts_for(onsets, alarms, min_lead_s, max_lead_s)
    scored = onsets >= min_lead_s
    hit = counts.any(axis=1) & scored
    n_attacks, n_predicted = int(scored.sum()), int(hit.sum())

    true_alarm = counts.any(axis=0)
    pending = ~true_alarm & (alarms + max_lead_s > duration_s)
    n_false = int((~true_alarm & ~pending).sum())

    judged_until_s = max(duration_s - max_lead_s, 0.0)  # later alarms may still come true
    not_interictal_s = _union_length_s(onsets - max_lead_s, ends, 0.0, judged_until_s)
    interictal_days = max(judged_until_s - not_interictal_s, 0.0) / SECONDS_PER_DAY

    # alarms are sorted, so argmax over a row is the earliest counting alarm
    earliest = counts[hit].argmax(axis=1) if n_predicted else np.zeros(0, dtype=int)
    leads_h = (onsets[hit] - alarms[earliest]) / 3600.0

    in_warning_s = _union_length_s(alarms + min_lead_s, alarms + max_lead_s, 0.0, duration_s)
    time_in_warning = min(max(in_warning_s / duration_s, 0.0), 1.0)
    chance = time_in_warning
    p_value = binomial_p_value(n_predicted, n_attacks, chance)

    return PredictionScores(
        max_lead_h=max_lead_h,
        min_lead_min=min_lead_min,
        attacks=n_attacks,
        predicted=n_predicted,
        sensitivity=n_predicted / n_attacks if n_attacks else None,
        alarms=int(alarms.size),
        false_alarms=n_false,
        interictal_days=interictal_days,
        false_alarms_per_day=n_false / interictal_days if interictal_days > 0 else None,
        median_lead_h=float(np.median(leads_h)) if leads_h.size else None,
        time_in_warning=time_in_warning,
        chance_sensitivity=chance,
        p_value=p_value,
        beats_chance=p_value is not None and p_value < 0.05,
    )


def surrogate_chance_sensitivity(
    alarms_s: Sequence[float],
    attacks: Sequence[Attack],
    duration_s: float,
    n_surrogates: int = 1000,
    seed: int = 0,
    *,
    max_lead_h: float = 48.0,
    min_lead_min: float = 30.0,
) -> float | None:
    """Mean sensitivity of surrogate predictors (Andrzejak 2003): the same number of alarms
    placed uniformly at random in [0, duration_s], scored by the rules of `score_prediction`.

    A Monte Carlo check of the analytic ``chance_sensitivity`` (which it matches when
    alarms are sparse and attacks lie far from the run's edges; see docs/scoring.md).
    None without scored attacks; 0.0 without alarms.
    """
    _check_run(duration_s)
    if n_surrogates < 1:
        raise ValueError(f"n_surrogates must be >= 1, got {n_surrogates}")
    min_lead_s, max_lead_s = _leads_s(max_lead_h, min_lead_min)
    onsets, _ = _attack_arrays(attacks, duration_s)
    onsets = onsets[onsets >= min_lead_s]
    if onsets.size == 0:
        return None
    n_alarms = len(alarms_s)
    if n_alarms == 0:
        return 0.0
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n_surrogates):
        alarms = rng.uniform(0.0, duration_s, size=n_alarms)
        hits += int(_counts_for(onsets, alarms, min_lead_s, max_lead_s).any(axis=1).sum())
    return hits / (n_surrogates * onsets.size)


# --- therapy ------------------------------------------------------------------------------


def score_therapy(
    attacks: Sequence[Attack],
    duration_s: float,
    *,
    stim_time_s: float,
    charge_uc: float,
    teed_j: float,
) -> TherapyScores:
    """Attack frequency and dose of one run.

    ``attacks`` counts onsets in [0, duration_s] (an attack already running at the start
    has no onset in the run and is not counted). ``attack_free_days`` counts the whole days
    [k·86400, (k+1)·86400) lying fully inside the run that no attack period [onset, end]
    touches (end None: the end of the run); the trailing partial day is never counted.
    The dose values are passed through (they come from the device's reports).
    """
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(
            f"cannot score therapy of a run of {duration_s!r} s: attacks per 30 days "
            "needs a positive duration"
        )
    days = duration_s / SECONDS_PER_DAY
    onsets, ends = _attack_arrays(attacks, duration_s)
    whole_days = math.floor(days + 1e-9)  # tolerate 30 d that came out as 29.999999999 d
    day_start = np.arange(whole_days, dtype=float) * SECONDS_PER_DAY
    day_end = day_start + SECONDS_PER_DAY
    touched = (onsets[None, :] < day_end[:, None]) & (ends[None, :] >= day_start[:, None])
    return TherapyScores(
        days=days,
        attacks=int(onsets.size),
        attacks_per_30d=onsets.size / days * 30.0,
        attack_free_days=int((~touched.any(axis=1)).sum()),
        stim_time_s=stim_time_s,
        charge_uc=charge_uc,
        teed_j=teed_j,
    )


def teed_j(
    times_s: npt.ArrayLike,
    amplitudes_ma: npt.ArrayLike,
    impedance_ohm: npt.ArrayLike,
    frequency_hz: npt.ArrayLike,
    pulse_width_us: npt.ArrayLike,
) -> float:
    """Total electrical energy delivered, TEED = ∫ I(t)² · R · f · PW dt (Koss 2005), in J.

    ``amplitudes_ma`` is sampled at ``times_s`` (non-decreasing) and is linear in between;
    each segment's ∫ I² dt is integrated exactly: Δt · (I₀² + I₀·I₁ + I₁²) / 3 (a ramp 0 → I
    over T gives I²T/3, not (I/2)²T). ``impedance_ohm``, ``frequency_hz`` and
    ``pulse_width_us`` are scalars or one value per sample; a segment uses the value at its
    start. For a step in amplitude, repeat the time (a zero-length segment adds nothing).
    Units: I in mA (converted to A), R in Ω, f in Hz, PW in µs (converted to s; the width
    of the phase that Koss's formula counts), t in s.
    """
    t = np.asarray(times_s, dtype=float)
    i_a = np.asarray(amplitudes_ma, dtype=float) * 1e-3
    if t.ndim != 1 or i_a.shape != t.shape:
        raise ValueError("times_s and amplitudes_ma must be 1-D and of the same length")
    if t.size < 2:
        return 0.0
    dt = np.diff(t)
    if np.any(dt < 0):
        raise ValueError("times_s must be non-decreasing")
    per_segment = []
    for name, value in (
        ("impedance_ohm", impedance_ohm),
        ("frequency_hz", frequency_hz),
        ("pulse_width_us", pulse_width_us),
    ):
        arr = np.asarray(value, dtype=float)
        if arr.ndim == 0:
            arr = np.full(t.shape, float(arr))
        elif arr.shape != t.shape:
            raise ValueError(f"{name} must be a scalar or one value per sample")
        if np.any(arr < 0):
            raise ValueError(f"{name} must be >= 0")
        per_segment.append(arr[:-1])
    r_ohm, f_hz, pw_us = per_segment
    return float(np.sum(ramp_teed_j(dt, i_a[:-1], i_a[1:], r_ohm, f_hz, pw_us)))


def ramp_teed_j(
    dt_s: Numeric, i0_a: Numeric, i1_a: Numeric, r_ohm: Numeric, f_hz: Numeric, pw_us: Numeric
) -> Numeric:
    """TEED of linear ramps from ``i0_a`` to ``i1_a`` (A) over ``dt_s``, in J: floats or
    arrays (one ramp per element), the same arithmetic either way, so a running meter that
    prices one segment at a time adds exactly what :func:`teed_j` sums."""
    i2_dt = dt_s * (i0_a * i0_a + i0_a * i1_a + i1_a * i1_a) / 3.0  # A² s
    return i2_dt * r_ohm * f_hz * pw_us * 1e-6


# --- trial aggregation --------------------------------------------------------------------


def mean_ci95(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): two-sided 95 % confidence interval of the mean, t distribution.

    One value gives (x, x, x): the interval is undefined, reported as a point (the report
    also gives n). No values raise ValueError.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("mean_ci95 needs at least one value")
    mean = float(x.mean())
    if x.size == 1:
        return mean, mean, mean
    # Student t and normal quantiles from scipy.special: scipy.stats' t.ppf and norm.ppf
    # return these numbers and cost ~0.5 s to import.
    half = float(special.stdtrit(x.size - 1, 0.975) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def paired_reduction(
    off_values: Sequence[float], policy_values: Sequence[float]
) -> list[float | None]:
    """Per-patient relative reduction 1 - policy / off (e.g. of attacks per 30 days).

    Negative when the policy made things worse. A patient with off == 0 has no baseline to
    reduce: the reduction is None (undefined) and the caller leaves the patient out, as a
    trial would not have enrolled a patient without baseline attacks.
    """
    if len(off_values) != len(policy_values):
        raise ValueError(
            f"paired values differ in length: {len(off_values)} off, {len(policy_values)} policy"
        )
    out: list[float | None] = []
    for off, pol in zip(off_values, policy_values, strict=True):
        if off < 0 or pol < 0:
            raise ValueError(f"values must be >= 0, got off={off}, policy={pol}")
        out.append(None if off == 0 else 1.0 - pol / off)
    return out


def responder_rate(reductions: Sequence[float | None], threshold: float = 0.5) -> float | None:
    """Share of patients with a reduction >= threshold (50 %: the usual migraine responder).

    Undefined reductions (None) are left out; None when none is defined.
    """
    defined = [r for r in reductions if r is not None]
    if not defined:
        return None
    return sum(r >= threshold for r in defined) / len(defined)


def wilson_ci95(successes: int, n: int) -> tuple[float, float]:
    """Wilson score 95 % interval of a proportion (good at small n and near 0 or 1)."""
    if n <= 0:
        raise ValueError("wilson_ci95 needs n >= 1")
    z = float(special.ndtri(0.975))
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
