"""A long recording reduced to what per-patient calibration needs: summary features in time.

Calibration looks at weeks of signal, far too many 0.5 s windows to keep.  ``FeatureLogger``
takes the same frames the online detector takes, gates them the same way (too few good
channels, stimulation blanking, the line-length artifact gate) and keeps, for every
candidate summary feature:

* the **block means**: the mean over each ``block_s`` block of the usable windows (for the
  score in time, which the detector smooths over minutes anyway), and
* **samples**: one usable window every ``sample_every_s`` (individual windows, so that the
  baseline's median and MAD describe single windows, as the online z-scores need).

Memory: (duration / block_s + duration / sample_every_s) x features floats: 30 days at the
defaults (60 s, 10 s) and 24 features are ~7 MB.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from controller.detector.config import DetectorConfig
from controller.detector.detector import ArtifactGate
from controller.detector.score import SummaryFeatures
from controller.features import FeatureFrame


def credited_s(previous_end_s: float | None, frame: FeatureFrame) -> float:
    """Seconds a window adds (0 for the first; a gap in the stream does not count)."""
    if previous_end_s is None:
        return 0.0
    window_s = max(frame.t_end_s - frame.t_start_s, 0.0)
    return min(max(frame.t_end_s - previous_end_s, 0.0), window_s)


def candidate_feature_names(band_names: Sequence[str], phase_measure: str) -> list[str]:
    """Every summary feature the detector can score, for these bands (the calibration's menu).

    Absolute powers are offered as log power only (closer to normal, which suits median/MAD
    z-scores); ``mean_connectivity`` repeats coherence or the phase measure and is left out.
    """
    names = [f"{band}_log_power.mean" for band in band_names]
    names += [f"{band}_rel_power.mean" for band in band_names]
    names += [
        "theta_alpha_ratio.mean",
        "alpha_peak_hz.mean",
        "alpha_peak_hz.variability",
        "line_length_uv.mean",
    ]
    names += [f"coherence.{band}.mean" for band in band_names]
    names += [f"{phase_measure}.{band}.mean" for band in band_names]
    return names


#: Longest block of the log (s): short next to the default 300 s score smoothing.
MAX_BLOCK_S = 60.0


def calibration_block_s(config: DetectorConfig, hop_s: float) -> float:
    """Block length for a log that calibrates ``config``: a fifth of the score smoothing
    time constant (so a replay over block means follows the smoothed score closely), at
    most ``MAX_BLOCK_S`` and at least one hop."""
    return min(max(config.score_smoothing_s / 5.0, hop_s), MAX_BLOCK_S)


@dataclass(frozen=True)
class FeatureLog:
    """Block means and sampled windows of named summary features over one recording.

    ``block_end_s[k]`` ends block k (blocks are ``block_s`` long, from t = 0);
    ``block_mean[k]`` is NaN where the block had no usable window (or the feature was NaN
    in all of them); ``block_usable_s[k]`` is the usable time in it.
    """

    feature_names: tuple[str, ...]
    block_s: float
    block_end_s: np.ndarray  # (blocks,)
    block_mean: np.ndarray  # (blocks, features)
    block_usable_s: np.ndarray  # (blocks,)
    sample_t_s: np.ndarray  # (samples,)
    sample_values: np.ndarray  # (samples, features)
    duration_s: float

    def column(self, name: str) -> int:
        """Index of feature ``name`` (ValueError naming the known ones)."""
        try:
            return self.feature_names.index(name)
        except ValueError:
            raise ValueError(
                f"feature {name!r} is not in the log ({list(self.feature_names)})"
            ) from None


class FeatureLogger:
    """Collects a :class:`FeatureLog` from a stream of frames, gated as the detector gates.

    ``blank_after_change`` mirrors :meth:`Detector.blank_after_change` (stimulation
    changes annotated in a recording); the artifact gate and the channel minimum are the
    detector's own (``config``).
    """

    def __init__(
        self,
        feature_names: Sequence[str],
        channel_names: Sequence[str],
        config: DetectorConfig,
        *,
        stim_channels: Sequence[int] = (),
        block_s: float = 60.0,
        sample_every_s: float = 10.0,
    ) -> None:
        if not (block_s > 0 and sample_every_s > 0):
            raise ValueError("block_s and sample_every_s must be > 0")
        self._names = tuple(feature_names)
        n = len(channel_names)
        self._config = config
        self._min_good = config.resolved_min_good_channels(n)
        self._summary = SummaryFeatures(self._names, n, config.alpha_peak_variability_s)
        self._gate = ArtifactGate(
            n,
            config.artifact_line_length_z,
            config.artifact_reference_tau_s,
            config.scale_floor_fraction,
            stim_channels,
        )
        self._block_s = float(block_s)
        self._sample_every_s = float(sample_every_s)
        self._sums: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []
        self._usable: list[float] = []
        self._sample_t: list[float] = []
        self._samples: list[np.ndarray] = []
        self._since_sample_s = math.inf
        self._last_end_s: float | None = None
        self._blank_until_s = -math.inf
        self._end_s = 0.0

    def blank_after_change(self, t_change_s: float) -> None:
        """Windows starting before ``t_change_s + blanking_after_change_s`` are not used."""
        until = t_change_s + self._config.blanking_after_change_s
        self._blank_until_s = max(self._blank_until_s, until)

    def push(self, frame: FeatureFrame) -> None:
        """Add one window."""
        dt_s = credited_s(self._last_end_s, frame)
        self._last_end_s = frame.t_end_s
        self._end_s = max(self._end_s, frame.t_end_s)
        good = np.asarray(frame.quality.good, dtype=bool)
        enough = int(np.count_nonzero(good)) >= self._min_good
        artifact = self._gate.check(frame, good, dt_s)
        blanked = bool(artifact) or frame.t_start_s < self._blank_until_s
        usable = enough and not blanked
        values = self._summary.values(frame, good, dt_s, learn=usable)
        if not usable:
            return
        block = int(frame.t_end_s // self._block_s)
        self._grow_to(block)
        finite = np.isfinite(values)
        self._sums[block][finite] += values[finite]
        self._counts[block] += finite
        self._usable[block] += dt_s
        self._since_sample_s += dt_s
        if self._since_sample_s >= self._sample_every_s:
            self._since_sample_s = 0.0
            self._sample_t.append(frame.t_end_s)
            self._samples.append(values.copy())

    def _grow_to(self, block: int) -> None:
        while len(self._sums) <= block:
            self._sums.append(np.zeros(len(self._names)))
            self._counts.append(np.zeros(len(self._names), dtype=np.int64))
            self._usable.append(0.0)

    def log(self) -> FeatureLog:
        """The log so far (blocks up to the last window's end)."""
        n_blocks = max(math.ceil(self._end_s / self._block_s), len(self._sums))
        self._grow_to(n_blocks - 1)
        sums = np.array(self._sums[:n_blocks]).reshape(n_blocks, len(self._names))
        counts = np.array(self._counts[:n_blocks]).reshape(n_blocks, len(self._names))
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        samples = (
            np.array(self._samples)
            if self._samples
            else np.zeros((0, len(self._names)), dtype=np.float64)
        )
        return FeatureLog(
            feature_names=self._names,
            block_s=self._block_s,
            block_end_s=(np.arange(n_blocks) + 1.0) * self._block_s,
            block_mean=means,
            block_usable_s=np.array(self._usable[:n_blocks], dtype=np.float64),
            sample_t_s=np.array(self._sample_t, dtype=np.float64),
            sample_values=samples,
            duration_s=self._end_s,
        )
