"""The per-patient baseline: robust location and scale of each signature feature.

Calibration takes the median and the MAD (scaled by 1.4826, consistent with the SD of a
normal distribution) of the feature values seen during ``calibration_s`` of good,
unblanked signal.  Memory is bounded: at most ``max_calibration_windows`` rows are kept;
when the buffer fills, every second row is dropped and from then on only every second
window is stored (a uniform subsample of the whole calibration period).

Afterwards the baseline adapts slowly, and only when the detector says NORMAL, with a
streaming median/MAD (stochastic-approximation quantile tracking): each window moves the
location by ``±1.2533 * a * scale`` towards the new value and the MAD by
``±a * scale / 1.271`` towards the new absolute deviation, ``a = 1 - exp(-dt / tau)``.
For normally distributed values these steps make both estimates relax with time constant
``tau``; a single outlier can move them by at most one step, and the location can never
drift faster than ``1.2533 * scale / tau`` whatever the data (docs/detector.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from controller.detector.kernels import median_mad_step
from controller.jit import numba_enabled

#: MAD -> SD for normal data: 1 / Phi^-1(3/4).
MAD_TO_SD = 1.4826
#: Location step per unit rate and scale: 1 / (2 phi(0)) = sqrt(pi / 2).
MEDIAN_STEP = math.sqrt(math.pi / 2.0)
#: MAD step divisor: 2 * density of |X - mu| at its median, times SD (= 4 phi(0.6745)).
MAD_STEP_DIVISOR = 4.0 * math.exp(-0.5 * 0.6744897501960817**2) / math.sqrt(2.0 * math.pi)
#: Smallest usable scale whatever the floor fraction (keeps z finite for constant features).
MIN_SCALE = 1e-12
#: Finite values each feature needs before calibration may finish.
MIN_CALIBRATION_VALUES = 20
FILE_FORMAT = "neurostim.detector.baseline"
FILE_VERSION = 1


class BaselineMismatchError(ValueError):
    """A baseline's feature set differs from the one the detector is configured for."""


@dataclass(frozen=True)
class BaselineSettings:
    """How a baseline calibrates and adapts (from DetectorConfig; stored with the file)."""

    calibration_s: float = 1800.0
    adaptation_tau_s: float = 43_200.0
    scale_floor_fraction: float = 0.01
    max_calibration_windows: int = 4096

    def __post_init__(self) -> None:
        if not (self.calibration_s > 0 and self.adaptation_tau_s > 0):
            raise ValueError("calibration_s and adaptation_tau_s must be > 0")
        if not 0.0 <= self.scale_floor_fraction <= 1.0:
            raise ValueError(f"scale_floor_fraction={self.scale_floor_fraction} not in [0, 1]")
        if self.max_calibration_windows < 2:
            raise ValueError("max_calibration_windows must be >= 2")


def floored_scale(scale: np.ndarray, location: np.ndarray, floor_fraction: float) -> np.ndarray:
    """max(scale, floor_fraction * |location|, MIN_SCALE): a scale safe to divide by."""
    return np.maximum(np.maximum(scale, floor_fraction * np.abs(location)), MIN_SCALE)


def relaxation_rate(dt_s: float, tau_s: float) -> float:
    """Fraction of the way an exponential average moves in ``dt_s``: 1 - exp(-dt/tau)."""
    return -math.expm1(-max(dt_s, 0.0) / tau_s)


class StreamingMedianMad:
    """Vectorised running median and MAD by sign steps (bounded influence, O(1) memory).

    ``location`` tracks the median; ``scale`` tracks 1.4826 * MAD.  NaN inputs leave their
    entry unchanged.  Steps are proportional to the floored scale, so a zero MAD can grow.
    ``use_numba`` (when numba is importable) updates with the compiled kernel.
    """

    def __init__(
        self,
        location: np.ndarray,
        scale: np.ndarray,
        floor_fraction: float,
        use_numba: bool = True,
    ) -> None:
        self.location = np.array(location, dtype=np.float64)
        self.scale = np.array(scale, dtype=np.float64)
        self.floor_fraction = floor_fraction
        self.use_numba = numba_enabled(use_numba)
        self._everywhere = np.ones(self.location.shape, dtype=bool)

    def update(self, values: np.ndarray, rate: float, use: np.ndarray | None = None) -> None:
        """Move towards ``values`` with relaxation ``rate`` (0..1) per the module docstring.

        Only entries with ``use`` (default: all) and a finite value move.  The compiled
        kernel (``use_numba``) does it in place, with the same result bit for bit.
        """
        x = np.asarray(values, dtype=np.float64)
        if self.use_numba:
            median_mad_step(
                self.location,
                self.scale,
                x,
                self._everywhere if use is None else use,
                rate,
                self.floor_fraction,
                MIN_SCALE,
                MEDIAN_STEP,
                MAD_STEP_DIVISOR,
                MAD_TO_SD,
            )
            return
        if use is not None:
            x = np.where(use, x, np.nan)
        self.update_numpy(x, rate)

    def update_numpy(self, values: np.ndarray, rate: float) -> None:
        """The numpy formulation of :meth:`update` (the fallback, and its test reference)."""
        x = np.asarray(values, dtype=np.float64)
        seen = np.isfinite(x)
        if rate <= 0.0 or not seen.any():
            return
        step_scale = floored_scale(self.scale, self.location, self.floor_fraction)
        deviation = np.where(seen, x - self.location, 0.0)
        mad = self.scale / MAD_TO_SD
        location_step = MEDIAN_STEP * rate * step_scale * np.sign(deviation)
        mad_step = (rate * step_scale / MAD_STEP_DIVISOR) * np.sign(np.abs(deviation) - mad)
        self.location = np.where(seen, self.location + location_step, self.location)
        new_mad = np.maximum(mad + mad_step, 0.0)
        self.scale = np.where(seen, MAD_TO_SD * new_mad, self.scale)


class _CalibrationBuffer:
    """At most ``capacity`` rows of feature values, decimated 2:1 whenever it fills."""

    def __init__(self, n_features: int, capacity: int) -> None:
        self._rows = np.full((capacity, n_features), np.nan)
        self._count = 0
        self._stride = 1
        self._offered = 0
        # Finite stored values per feature = the counts of rows with a missing value plus
        # the number of wholly finite rows, kept as a Python int: nearly every calibration
        # window is wholly finite, and a numpy count update costs ~0.9 us a window.
        self._partial_counts = np.zeros(n_features, dtype=np.int64)
        self._finite_rows = 0

    @property
    def finite_counts(self) -> np.ndarray:
        """Stored finite values per feature."""
        return self._partial_counts + self._finite_rows

    def offer(self, values: np.ndarray) -> None:
        if self._offered % self._stride == 0:
            if self._count == self._rows.shape[0]:
                kept = self._rows[::2].copy()
                self._rows[:] = np.nan
                self._rows[: kept.shape[0]] = kept
                self._count = kept.shape[0]
                self._stride *= 2
                self._offered = 0  # the next offer is stored: restart the stride phase
                self._partial_counts = np.isfinite(kept).sum(axis=0)
                self._finite_rows = 0
            self._rows[self._count] = values
            self._count += 1
            # a finite sum has only finite terms (an overflowing one takes the other branch)
            if math.isfinite(sum(values.tolist())):
                self._finite_rows += 1
            else:
                self._partial_counts += np.isfinite(values)
        self._offered += 1

    @property
    def rows(self) -> np.ndarray:
        return self._rows[: self._count]


class Baseline:
    """Robust location/scale per named feature: calibrated, then slowly adapted, saved as JSON.

    Feature values are passed as arrays in ``feature_names`` order; NaN means "not available
    in this window" and is skipped.  ``use_numba`` selects the tracker's compiled update.
    """

    def __init__(
        self,
        feature_names: Sequence[str],
        settings: BaselineSettings | None = None,
        use_numba: bool = True,
    ) -> None:
        names = tuple(feature_names)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"feature_names must be distinct and non-empty, got {names}")
        self._names = names
        self.settings = settings if settings is not None else BaselineSettings()
        self._buffer: _CalibrationBuffer | None = _CalibrationBuffer(
            len(names), self.settings.max_calibration_windows
        )
        self._tracker: StreamingMedianMad | None = None
        self._use_numba = numba_enabled(use_numba)
        self.calibrated_s = 0.0
        self.adapted_s = 0.0
        #: The last adaptation's credited time and time constant, and their rate.
        self._adapt_dt_s = math.nan
        self._adapt_tau_s = math.nan
        self._adapt_rate = 0.0

    # -- state --------------------------------------------------------------------------

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The features, in the order of every values array."""
        return self._names

    @property
    def use_numba(self) -> bool:
        """Whether the tracker updates with the compiled kernel."""
        return self._use_numba

    @use_numba.setter
    def use_numba(self, value: bool) -> None:
        self._use_numba = numba_enabled(value)
        if self._tracker is not None:
            self._tracker.use_numba = self._use_numba

    @property
    def ready(self) -> bool:
        """True once calibrated (or loaded): location and scale are defined."""
        return self._tracker is not None

    @property
    def location(self) -> np.ndarray:
        """Robust location (median) per feature (a copy); ValueError before calibration."""
        return self._require_tracker().location.copy()

    @property
    def scale(self) -> np.ndarray:
        """Robust scale (1.4826 MAD) per feature, not floored (a copy)."""
        return self._require_tracker().scale.copy()

    @property
    def tracker_location(self) -> np.ndarray:
        """The live location array (no copy: read-only use in the detector's hot path)."""
        return self._require_tracker().location

    @property
    def tracker_scale(self) -> np.ndarray:
        """The live, unfloored scale array (no copy: read-only use in the hot path)."""
        return self._require_tracker().scale

    def effective_scale(self) -> np.ndarray:
        """The scale used for z-scores: floored per ``settings.scale_floor_fraction``."""
        tracker = self._require_tracker()
        return floored_scale(tracker.scale, tracker.location, self.settings.scale_floor_fraction)

    def check_features(self, expected: Sequence[str]) -> None:
        """BaselineMismatchError naming the differences unless the feature lists are equal."""
        expected_names = tuple(expected)
        if expected_names == self._names:
            return
        missing = [n for n in expected_names if n not in self._names]
        extra = [n for n in self._names if n not in expected_names]
        detail = f"missing {missing}, unexpected {extra}" if missing or extra else "order differs"
        raise BaselineMismatchError(
            f"baseline features {list(self._names)} do not match the configured "
            f"{list(expected_names)}: {detail}; recalibrate or fix [detector].features"
        )

    # -- learning -----------------------------------------------------------------------

    def add_calibration(self, values: np.ndarray, dt_s: float) -> bool:
        """Add one window (credited ``dt_s`` seconds); return True when calibration finished."""
        if self._buffer is None:
            raise ValueError("baseline is already calibrated")
        row = self._checked(values)
        self._buffer.offer(row)
        self.calibrated_s += 0.0 if dt_s < 0.0 else dt_s  # max(dt_s, 0.0)
        if (
            self.calibrated_s >= self.settings.calibration_s - 1e-9
            and self._buffer.finite_counts.min() >= MIN_CALIBRATION_VALUES
        ):
            self._finish_calibration()
            return True
        return False

    def _finish_calibration(self) -> None:
        assert self._buffer is not None
        rows = self._buffer.rows
        location = np.nanmedian(rows, axis=0)
        mad = np.nanmedian(np.abs(rows - location), axis=0)
        self._tracker = StreamingMedianMad(
            location, MAD_TO_SD * mad, self.settings.scale_floor_fraction, self._use_numba
        )
        self._buffer = None

    def adapt(self, values: np.ndarray, dt_s: float) -> None:
        """Slow update with one NORMAL window (the caller guarantees the state)."""
        tracker = self._require_tracker()
        settings = self.settings
        tau_s = settings.adaptation_tau_s
        if dt_s != self._adapt_dt_s or tau_s != self._adapt_tau_s:  # nearly always the hop
            self._adapt_rate = relaxation_rate(dt_s, tau_s)
            self._adapt_dt_s, self._adapt_tau_s = dt_s, tau_s
        tracker.floor_fraction = settings.scale_floor_fraction
        tracker.update(self._checked(values), self._adapt_rate)
        self.adapted_s += 0.0 if dt_s < 0.0 else dt_s  # max(dt_s, 0.0)

    # -- persistence --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (format, version, feature names, statistics, settings)."""
        tracker = self._require_tracker()
        s = self.settings
        return {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "features": list(self._names),
            "location": [float(v) for v in tracker.location],
            "scale": [float(v) for v in tracker.scale],
            "calibrated_s": self.calibrated_s,
            "adapted_s": self.adapted_s,
            "settings": {
                "calibration_s": s.calibration_s,
                "adaptation_tau_s": s.adaptation_tau_s,
                "scale_floor_fraction": s.scale_floor_fraction,
                "max_calibration_windows": s.max_calibration_windows,
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Baseline:
        """Inverse of :meth:`to_dict`; ValueError naming what is wrong."""
        if data.get("format") != FILE_FORMAT:
            raise ValueError(f"not a baseline file: format={data.get('format')!r}")
        if data.get("version") != FILE_VERSION:
            raise ValueError(
                f"baseline version {data.get('version')!r} is not supported (want {FILE_VERSION})"
            )
        names = [str(n) for n in data["features"]]
        location = np.asarray(data["location"], dtype=np.float64)
        scale = np.asarray(data["scale"], dtype=np.float64)
        if location.shape != (len(names),) or scale.shape != (len(names),):
            raise ValueError("baseline file: location and scale need one value per feature")
        if not (
            np.all(np.isfinite(location)) and np.all(np.isfinite(scale)) and np.all(scale >= 0)
        ):
            raise ValueError("baseline file: location and scale must be finite, scale >= 0")
        baseline = cls(names, BaselineSettings(**data["settings"]))
        baseline._buffer = None
        baseline._tracker = StreamingMedianMad(
            location, scale, baseline.settings.scale_floor_fraction, baseline.use_numba
        )
        baseline.calibrated_s = float(data["calibrated_s"])
        baseline.adapted_s = float(data["adapted_s"])
        return baseline

    def save(self, path: str | Path) -> None:
        """Write the calibrated baseline as JSON (ValueError if not yet calibrated)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Baseline:
        """Read a baseline written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    # -- helpers ------------------------------------------------------------------------

    def _checked(self, values: np.ndarray) -> np.ndarray:
        row = np.asarray(values, dtype=np.float64)
        if row.shape != (len(self._names),):
            raise ValueError(f"expected {len(self._names)} feature values, got shape {row.shape}")
        return row

    def _require_tracker(self) -> StreamingMedianMad:
        if self._tracker is None:
            raise ValueError(
                f"baseline not calibrated yet ({self.calibrated_s:.1f} of "
                f"{self.settings.calibration_s:.1f} s)"
            )
        return self._tracker
