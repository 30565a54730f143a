"""The prodrome detector: one FeatureFrame in, one DetectorOutput out (sans-IO, no clock).

Per window: quality gating (UNKNOWN below ``min_good_channels``), artifact and
stimulation-change blanking, summary features, baseline calibration or z-scores, the
signature score and its smoothing, the state machine, then slow baseline adaptation in
NORMAL only.  The algorithm and every default are documented in docs/detector.md.

Time credited to a window is the time since the previous window's end (the hop), capped at
the window length so a gap in the stream does not count; the very first window gets 0.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from controller.detector.baseline import (
    MAD_STEP_DIVISOR,
    MAD_TO_SD,
    MEDIAN_STEP,
    MIN_SCALE,
    Baseline,
    BaselineSettings,
    StreamingMedianMad,
    floored_scale,
    relaxation_rate,
)
from controller.detector.config import DetectorConfig
from controller.detector.kernels import (
    STEADY_CONSTANTS_FIELDS,
    SteadyConstants,
    line_length_z,
    new_steady_constants,
    steady_window,
)
from controller.detector.score import (
    LOG_POWER_FLOOR_UV2,
    MEAN_ABS_NORMAL,
    ScoreSmoother,
    SignatureWeights,
    SummaryFeatures,
    z_scores,
)
from controller.detector.signature import calibrated_detector_config
from controller.detector.state_machine import ProdromeStateMachine
from controller.detector.types import DetectorOutput, DetectorState
from controller.features import FeatureFrame
from controller.jit import numba_enabled
from firmware_bridge.frozen import build_frozen


def _credited_s(since_s: float, window_s: float) -> float:
    """``min(max(since_s, 0.0), max(window_s, 0.0))`` (the same value, NaN and signed
    zeros included) without three builtin calls, which cost ~0.2 us a window."""
    since_s = 0.0 if since_s < 0.0 else since_s
    window_s = 0.0 if window_s < 0.0 else window_s
    return window_s if window_s < since_s else since_s


# Detector states as globals: compared at every window (on Python 3.11 reading an Enum
# member through its class is a descriptor call).
_NORMAL = DetectorState.NORMAL
_UNKNOWN = DetectorState.UNKNOWN
_CALIBRATING = DetectorState.CALIBRATING

#: Good windows per channel that initialise the line-length reference (median/MAD):
#: 64 hops = 32 s with the default 0.5 s hop.  Engineering choice.
ARTIFACT_WARMUP_WINDOWS = 64


class ArtifactGate:
    """Flags windows that carry stimulation or movement artifacts.

    Two rules: (1) a stimulation channel is marked bad by the window's quality flags;
    (2) a good channel's line length (Esteller et al. 2001) is more than ``line_length_z``
    robust z above that channel's running reference.  The reference is a streaming
    median/MAD per channel, initialised from the channel's first ARTIFACT_WARMUP_WINDOWS
    good windows and then relaxing with ``reference_tau_s``.  It is updated with every good
    window, flagged or not: a sign-step update moves it by a bounded amount, so a brief
    artifact barely moves it, while a lasting change of level (e.g. a new stimulation
    setting) is absorbed within a few time constants instead of blanking forever.
    """

    def __init__(
        self,
        n_channels: int,
        line_length_z: float,
        reference_tau_s: float,
        scale_floor_fraction: float,
        stim_channels: Sequence[int] = (),
        use_numba: bool = True,
    ) -> None:
        self._use_numba = numba_enabled(use_numba)
        self._n = n_channels
        self._z_limit = line_length_z
        self._tau_s = reference_tau_s
        self._floor = scale_floor_fraction
        self._warmup = np.full((ARTIFACT_WARMUP_WINDOWS, n_channels), np.nan)
        self._warmup_count = np.zeros(n_channels, dtype=np.int64)
        self._ready = np.zeros(n_channels, dtype=bool)
        self._reference = StreamingMedianMad(
            np.zeros(n_channels), np.zeros(n_channels), scale_floor_fraction, self._use_numba
        )
        self._stim: tuple[int, ...] = ()
        self.stim_channels = stim_channels
        self._all_ready = False  # every channel's reference initialised (the steady state)
        self._z = np.empty(n_channels)

    @property
    def stim_channels(self) -> tuple[int, ...]:
        """Row indices of the stimulation electrodes."""
        return self._stim

    @stim_channels.setter
    def stim_channels(self, indices: Sequence[int]) -> None:
        chosen = tuple(sorted({int(i) for i in indices}))
        bad = [i for i in chosen if not 0 <= i < self._n]
        if bad:
            raise ValueError(f"stim_channels {bad} out of range for {self._n} channels")
        self._stim = chosen

    @property
    def reference_ready(self) -> np.ndarray:
        """Per channel: True once the line-length reference is initialised."""
        return self._ready.copy()

    @property
    def compiled_ready(self) -> bool:
        """Every reference is initialised and the compiled kernels are on: the steady state
        in which the detector runs the whole gate inside one kernel call."""
        return self._all_ready and self._use_numba

    @property
    def reference(self) -> StreamingMedianMad:
        """The live line-length reference (location, scale) per channel."""
        return self._reference

    @property
    def reference_tau_s(self) -> float:
        return self._tau_s

    @property
    def z_limit(self) -> float:
        return self._z_limit

    @property
    def scale_floor_fraction(self) -> float:
        return self._floor

    @property
    def line_z(self) -> np.ndarray:
        """The last judged window's robust z per channel (compiled path; NaN: not judged)."""
        return self._z

    def check(self, frame: FeatureFrame, good: np.ndarray, dt_s: float) -> str:
        """Why the window is an artifact ("" if clean); then learn its line lengths."""
        reasons: list[str] = []
        bad_stim = self.bad_stimulation_channels(frame, good)
        if bad_stim:
            reasons.append(bad_stim)
        line_length = np.asarray(frame.line_length_uv, dtype=np.float64)
        if self.compiled_ready:
            reasons.extend(self._check_compiled(frame, line_length, good))
            self._reference.update(line_length, relaxation_rate(dt_s, self._tau_s), good)
            return "; ".join(reasons)
        judged = good & self._ready
        if judged.any():
            ref = self._reference
            scale = floored_scale(ref.scale, ref.location, self._floor)
            z = (line_length - ref.location) / scale
            jumped = judged & (z > self._z_limit)
            if jumped.any():
                reasons.append(self._jump_text(frame, jumped, z))
        self._learn(line_length, good, dt_s)
        return "; ".join(reasons)

    def bad_stimulation_channels(self, frame: FeatureFrame, good: np.ndarray) -> str:
        """Rule (1): the reason naming the stimulation channels flagged bad ("" if none)."""
        bad_stim = [frame.channel_names[i] for i in self._stim if not good[i]]
        return f"stimulation channel(s) {bad_stim} flagged bad" if bad_stim else ""

    def jump_reason(self, frame: FeatureFrame, good: np.ndarray) -> str:
        """Rule (2)'s reason from the compiled path's z (:attr:`line_z`)."""
        return self._jump_text(frame, good & (self._z > self._z_limit), self._z)

    def _jump_text(self, frame: FeatureFrame, jumped: np.ndarray, z: np.ndarray) -> str:
        names = [frame.channel_names[i] for i in np.flatnonzero(jumped)]
        return (
            f"line length jump > {self._z_limit:g} robust z on {names} "
            f"(max {float(z[jumped].max()):.1f})"
        )

    def _check_compiled(
        self, frame: FeatureFrame, line_length: np.ndarray, good: np.ndarray
    ) -> list[str]:
        """The line-length rule of :meth:`check` once all references are ready, compiled.

        Then the judged channels are the good ones, and learning (the sign-step update of
        the good channels' references) needs no warm-up bookkeeping.
        """
        ref = self._reference
        jumped = line_length_z(
            line_length,
            good,
            ref.location,
            ref.scale,
            self._floor,
            MIN_SCALE,
            self._z_limit,
            self._z,
        )
        return [self.jump_reason(frame, good)] if jumped else []

    def _learn(self, line_length: np.ndarray, good: np.ndarray, dt_s: float) -> None:
        warming = good & ~self._ready & np.isfinite(line_length)
        if warming.any():
            rows = self._warmup_count[warming]
            self._warmup[rows, np.flatnonzero(warming)] = line_length[warming]
            self._warmup_count[warming] += 1
            full = warming & (self._warmup_count >= ARTIFACT_WARMUP_WINDOWS)
            if full.any():
                sample = self._warmup[:, full]
                median = np.median(sample, axis=0)
                mad = np.median(np.abs(sample - median), axis=0)
                self._reference.location[full] = median
                self._reference.scale[full] = MAD_TO_SD * mad
                self._ready |= full
                self._all_ready = bool(self._ready.all())
        tracked = good & self._ready & ~warming
        if tracked.any():
            self._reference.update(
                np.where(tracked, line_length, np.nan), relaxation_rate(dt_s, self._tau_s)
            )


class Detector:
    """Prodrome detector for one montage: ``update(frame)`` once per feature window.

    ``baseline`` may be a loaded (calibrated) one: the detector then starts in NORMAL and
    skips calibration.  Its feature names must equal the configured ones
    (BaselineMismatchError otherwise); its settings are replaced by this configuration's.
    ``stim_channels`` are row indices of the stimulation electrodes (artifact gating).
    ``use_numba`` (default; effective when numba is importable) computes the summary
    features, z-scores and score with compiled kernels (controller/detector/kernels.py):
    the same values to rounding, several times faster per window.  Once every artifact
    reference is initialised, ``fuse_steady_state`` (default) runs those kernels in one
    call per window (kernels.steady_window); False calls them one by one, the reference
    the fused call is tested against bit for bit.
    """

    def __init__(
        self,
        config: DetectorConfig,
        channel_names: Sequence[str],
        baseline: Baseline | None = None,
        *,
        stim_channels: Sequence[int] = (),
        use_numba: bool = True,
        fuse_steady_state: bool = True,
    ) -> None:
        if config.calibration_file is not None and baseline is None:
            config, baseline = calibrated_detector_config(config)
        self._config = config
        self._use_numba = numba_enabled(use_numba)
        self._fuse_steady_state = fuse_steady_state
        #: The fused steady-state path is on (set at the first window that may use it).
        self._steady = False
        self._steady_constants: dict[bool, SteadyConstants] = {}
        #: The relaxation rates of the artifact reference and the alpha-peak variability
        #: for the last credited time (both taus are fixed).
        self._steady_rates_dt_s = math.nan
        self._steady_rates = (0.0, 0.0)
        self._channel_names = tuple(channel_names)
        n = len(self._channel_names)
        self._min_good = config.resolved_min_good_channels(n)
        settings = BaselineSettings(
            calibration_s=config.calibration_s,
            adaptation_tau_s=config.baseline_adaptation_tau_s,
            scale_floor_fraction=config.scale_floor_fraction,
            max_calibration_windows=config.max_calibration_windows,
        )
        if baseline is None:
            baseline = Baseline(config.feature_names, settings, use_numba=self._use_numba)
        else:
            baseline.use_numba = self._use_numba
            baseline.check_features(config.feature_names)
            # The running configuration governs adaptation; the stored buffer cap stays.
            baseline.settings = dataclasses.replace(
                settings, max_calibration_windows=baseline.settings.max_calibration_windows
            )
        self._baseline = baseline
        self._summary = SummaryFeatures(
            config.feature_names, n, config.alpha_peak_variability_s, use_numba=use_numba
        )
        self._weights = SignatureWeights(config.features)
        self._feature_names = config.feature_names
        self._z = np.empty(len(self._feature_names))
        #: The steady path's summary values (read within the window, never kept).
        self._values = np.empty(len(self._feature_names))
        self._gate = ArtifactGate(
            n,
            config.artifact_line_length_z,
            config.artifact_reference_tau_s,
            config.scale_floor_fraction,
            stim_channels,
            use_numba=self._use_numba,
        )
        self._smoother = ScoreSmoother(config.score_smoothing_s)
        self._machine = ProdromeStateMachine(
            config.upper_threshold,
            config.lower_threshold,
            config.onset_s,
            config.termination_s,
            calibrated=baseline.ready,
        )
        self._blank_until_s = -math.inf
        self._last_t_end_s: float | None = None
        self._last_raw_score: float | None = None

    # -- properties ---------------------------------------------------------------------

    @property
    def config(self) -> DetectorConfig:
        """The configuration the detector was built with."""
        return self._config

    @property
    def channel_names(self) -> tuple[str, ...]:
        """Channel names, in row order."""
        return self._channel_names

    @property
    def baseline(self) -> Baseline:
        """The baseline (save it once ``baseline.ready``)."""
        return self._baseline

    @property
    def state(self) -> DetectorState:
        """The state reported for the last window."""
        return self._machine.state

    @property
    def thresholds(self) -> tuple[float, float]:
        """(upper, lower) thresholds in score units (weighted mean robust z), for plots."""
        return (self._config.upper_threshold, self._config.lower_threshold)

    @property
    def min_good_channels(self) -> int:
        """Fewest good channels for a decision (below: UNKNOWN)."""
        return self._min_good

    @property
    def stim_channels(self) -> tuple[int, ...]:
        """Row indices of the stimulation electrodes (for artifact gating)."""
        return self._gate.stim_channels

    @stim_channels.setter
    def stim_channels(self, indices: Sequence[int]) -> None:
        self._gate.stim_channels = indices
        self._steady_constants.clear()  # they hold the stimulation channels

    @property
    def blanked_until_s(self) -> float:
        """Windows starting before this time are blanked (-inf: no blanking)."""
        return self._blank_until_s

    @property
    def last_raw_score(self) -> float | None:
        """The last window's unsmoothed score (None when not computed)."""
        return self._last_raw_score

    # -- inputs -------------------------------------------------------------------------

    def blank_until(self, t_s: float) -> None:
        """Blank every window that starts before ``t_s`` (the latest call wins if later)."""
        self._blank_until_s = max(self._blank_until_s, float(t_s))

    def blank_after_change(self, t_change_s: float) -> None:
        """Blank for ``blanking_after_change_s`` after a stimulation change at ``t_change_s``."""
        self.blank_until(t_change_s + self._config.blanking_after_change_s)

    def update(self, frame: FeatureFrame) -> DetectorOutput:
        """Process one window; return the verdict (see docs/detector.md, "Per window")."""
        if len(frame.channel_names) != len(self._channel_names):
            raise ValueError(
                f"frame has {len(frame.channel_names)} channels, the detector "
                f"{len(self._channel_names)}"
            )
        # Time credited: since the previous window's end, within [0, window length].
        previous, t_end_s = self._last_t_end_s, frame.t_end_s
        self._last_t_end_s = t_end_s
        dt_s = (
            0.0 if previous is None else _credited_s(t_end_s - previous, t_end_s - frame.t_start_s)
        )
        good = np.asarray(frame.quality.good, dtype=bool)
        baseline = self._baseline
        calibrated = baseline.ready
        z: np.ndarray | None = None
        if not self._steady:  # once every artifact reference is ready it stays so
            self._steady = self._fuse_steady_state and self._gate.compiled_ready
        if self._steady:
            n_good, blank_reasons, values, z = self._steady_window(frame, good, dt_s, calibrated)
            enough = n_good >= self._min_good
        else:
            n_good = int(np.count_nonzero(good))
            enough = n_good >= self._min_good
            blank_reasons = []
            artifact = self._gate.check(frame, good, dt_s)
            if artifact:
                blank_reasons.append(f"artifact: {artifact}")
            if frame.t_start_s < self._blank_until_s:
                blank_reasons.append(self._change_blanking_reason())
            values = self._summary.values(frame, good, dt_s, learn=enough and not blank_reasons)
            self._last_raw_score = None
            if calibrated and enough:
                z = self._z_and_score(values)

        finished_calibration = False
        if not calibrated and enough and not blank_reasons:
            finished_calibration = baseline.add_calibration(values, dt_s)
        return self._conclude(
            frame, dt_s, n_good, blank_reasons, values, z, calibrated, finished_calibration
        )

    def _steady_window(
        self, frame: FeatureFrame, good: np.ndarray, dt_s: float, calibrated: bool
    ) -> tuple[int, list[str], np.ndarray, np.ndarray | None]:
        """:meth:`update`'s gate, summary values and (once calibrated) score in one
        compiled call, once every artifact reference is initialised (the steady state).

        Same steps in the same order as the separate calls (kernels.steady_window), so the
        same bits; returns the good channels, the blanking reasons, the values and the
        z-scores (None when not scored), and sets ``_last_raw_score``.
        """
        gate, summary = self._gate, self._summary
        changing = frame.t_start_s < self._blank_until_s
        summary.resolve(frame)
        constants = self._steady_constants.get(calibrated)
        if constants is None:
            constants = self._steady_constants[calibrated] = self._steady_window_constants()
        if dt_s != self._steady_rates_dt_s:  # nearly every window credits the same hop
            self._steady_rates = (
                relaxation_rate(dt_s, gate.reference_tau_s),
                relaxation_rate(dt_s, summary.variability.tau_s),
            )
            self._steady_rates_dt_s = dt_s
        reference_rate, variability_rate = self._steady_rates
        values = self._values
        n_bad_stim, jumped, n_good, raw = steady_window(
            np.asarray(frame.line_length_uv, dtype=np.float64),
            good,
            changing,
            reference_rate,
            variability_rate,
            dt_s,
            frame.band_power_uv2,
            frame.relative_power,
            frame.theta_alpha_ratio,
            np.asarray(frame.alpha_peak_hz, dtype=np.float64),
            frame.mean_coherence,
            frame.mean_phase_sync,
            frame.mean_connectivity,
            values,
            constants,
        )
        artifacts = [gate.bad_stimulation_channels(frame, good)] if n_bad_stim else []
        if jumped:
            artifacts.append(gate.jump_reason(frame, good))
        blank_reasons = [f"artifact: {'; '.join(artifacts)}"] if artifacts else []
        if changing:
            blank_reasons.append(self._change_blanking_reason())
        scored = calibrated and n_good >= self._min_good
        self._last_raw_score = None if not scored or math.isnan(raw) else float(raw)
        return n_good, blank_reasons, values, self._z if scored else None

    def _steady_window_constants(self) -> SteadyConstants:
        """What kernels.steady_window reads that is the same objects every window (before
        calibration, and after it): the compiled path updates the references, the
        variability and the baseline tracker in place, so the struct is built once."""
        gate, summary, baseline, weights = self._gate, self._summary, self._baseline, self._weights
        reference, variability = gate.reference, summary.variability
        calibrated = baseline.ready
        unscored = np.zeros(len(self._feature_names))  # no baseline yet: no score
        constants: dict[str, object] = {
            "min_good": int(self._min_good),
            "stim_channels": np.array(gate.stim_channels, dtype=np.int64),
            "reference_location": reference.location,
            "reference_scale": reference.scale,
            "reference_floor_fraction": float(reference.floor_fraction),
            "z_limit": float(gate.z_limit),
            "line_z_out": gate.line_z,
            "gate_floor_fraction": float(gate.scale_floor_fraction),
            "min_scale": float(MIN_SCALE),
            "median_step": float(MEDIAN_STEP),
            "mad_step_divisor": float(MAD_STEP_DIVISOR),
            "mad_to_sd": float(MAD_TO_SD),
            "variability_mean": variability.mean,
            "variability_var": variability.var,
            "variability_followed_s": variability.followed_s,
            "variability_started": variability.started,
            "variability_tau_s": float(variability.tau_s),
            "needs_variability": bool(summary.needs_variability),
            "kinds": summary.kinds,
            "bands": summary.bands,
            "log_power_floor": float(LOG_POWER_FLOOR_UV2),
            "score_window": bool(calibrated),
            "baseline_location": baseline.tracker_location if calibrated else unscored,
            "baseline_scale": baseline.tracker_scale if calibrated else unscored,
            "baseline_floor_fraction": float(baseline.settings.scale_floor_fraction),
            "z_clip": float(self._config.z_clip),
            "sign": weights.sign,
            "both": weights.both,
            "weights": weights.weights,
            "mean_abs_normal": float(MEAN_ABS_NORMAL),
            "z_out": self._z,
        }
        return new_steady_constants(tuple(constants[name] for name in STEADY_CONSTANTS_FIELDS))

    def _conclude(
        self,
        frame: FeatureFrame,
        dt_s: float,
        n_good: int,
        blank_reasons: list[str],
        values: np.ndarray,
        z: np.ndarray | None,
        calibrated: bool,
        finished_calibration: bool,
    ) -> DetectorOutput:
        """Smoothing, the state machine, baseline adaptation and the verdict of a window
        whose values and raw score (``_last_raw_score``) are known."""
        blanked = bool(blank_reasons)
        enough = n_good >= self._min_good
        learn = enough and not blanked
        z_by_name: dict[str, float] = {}
        if z is not None:
            values_z = z.tolist()
            # A finite sum has only finite terms (NaN marks a missing feature); an
            # overflowing sum of finite terms merely takes the filtering branch.
            if not math.isfinite(sum(values_z)):
                z_by_name = {
                    name: v
                    for name, v in zip(self._feature_names, values_z, strict=True)
                    if math.isfinite(v)
                }
            else:
                # z has one entry per feature name; a strict zip costs ~0.13 us a window
                z_by_name = dict(zip(self._feature_names, values_z))  # noqa: B905
            if self._last_raw_score is not None and not blanked:
                self._smoother.update(self._last_raw_score, dt_s)

        smoothed = self._smoother.value  # the state machine does not change it
        state, changed, machine_reason = self._machine.advance(
            dt_s,
            smoothed if self._last_raw_score is not None else None,
            blanked,
            enough,
            calibrated,
        )
        # The baseline is frozen above the lower threshold even in NORMAL: a score
        # climbing towards the upper threshold may be the start of a prodrome, which the
        # baseline must not learn.
        if (
            learn
            and calibrated
            and state is _NORMAL
            and (smoothed is None or smoothed <= self._config.lower_threshold)
        ):
            self._baseline.adapt(values, dt_s)

        if state is _UNKNOWN:
            reason = f"{n_good} good channels < {self._min_good} required; {machine_reason}"
        elif state is _CALIBRATING:
            b = self._baseline
            if finished_calibration:
                reason = f"baseline calibrated over {b.calibrated_s:.1f} s"
            else:
                reason = f"calibrating {b.calibrated_s:.1f}/{b.settings.calibration_s:.1f} s"
                if blanked:
                    reason = f"{reason}; window not used ({'; '.join(blank_reasons)})"
        else:
            reason = f"{'; '.join(blank_reasons)}; {machine_reason}" if blanked else machine_reason
        return build_frozen(
            DetectorOutput,
            {
                "t_s": frame.t_end_s,
                "state": state,
                "score": smoothed if state is not _CALIBRATING and state is not _UNKNOWN else None,
                "changed": changed,
                "blanked": blanked,
                "good_channels": n_good,
                "reason": reason,
                "z_scores": z_by_name,
            },
        )

    def _change_blanking_reason(self) -> str:
        return f"stimulation change, blanking until {self._blank_until_s:.1f} s"

    # -- helpers ------------------------------------------------------------------------

    def _z_and_score(self, values: np.ndarray) -> np.ndarray:
        """The window's clipped z-scores; sets the raw score (None if no term is finite)."""
        baseline = self._baseline
        if not self._use_numba:
            z = z_scores(values, baseline.location, baseline.effective_scale(), self._config.z_clip)
            self._last_raw_score = self._weights.score(z)
            return z
        score = self._weights.score_compiled(
            values,
            baseline.tracker_location,
            baseline.tracker_scale,
            baseline.settings.scale_floor_fraction,
            self._config.z_clip,
            self._z,
        )
        self._last_raw_score = score
        return self._z
