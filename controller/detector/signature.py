"""A patient's own detector settings, learnt from a run-in: ``PatientSignature`` and its file.

RNS and Percept detectors are tuned to each patient (device manuals); this is the tuning,
saved together with the baseline it was learnt against: the signature's features, their
directions and weights, the two thresholds, the occurrence period and horizon the operating
point was chosen for, and what the run-in's ROC gave there.  The file is JSON with
``format`` "neurostim.detector.calibration" and ``version`` 1 (docs/detector.md).

``[detector] calibration_file`` names such a file; the :class:`Detector` then runs with it
(:func:`calibrated_detector_config`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.detector.baseline import Baseline
from controller.detector.config import DetectorConfig, SignatureFeature

FILE_FORMAT = "neurostim.detector.calibration"
FILE_VERSION = 1


@dataclass(frozen=True)
class RunInFit:
    """The run-in's own prediction scores at the chosen operating point (in-sample)."""

    duration_s: float
    attacks: int  # scored attacks (onset at least the horizon after the start)
    predicted: int
    alarms: int
    time_in_warning: float
    p_value: float | None
    target_time_in_warning: float

    @property
    def sensitivity(self) -> float | None:
        """predicted / attacks (None without scored attacks)."""
        return self.predicted / self.attacks if self.attacks else None


@dataclass(frozen=True)
class PatientSignature:
    """Per-patient detector settings learnt from a run-in, with their baseline.

    ``evidence`` holds, per candidate feature, the t statistic of its pre-attack shift
    across the run-in's attacks (positive: it rose), for the record.
    """

    features: tuple[SignatureFeature, ...]
    upper_threshold: float
    lower_threshold: float
    occurrence_period_h: float
    horizon_min: float
    baseline: Baseline
    run_in: RunInFit
    evidence: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.features:
            raise ValueError("a patient signature needs at least one feature")
        if not self.lower_threshold < self.upper_threshold:
            raise ValueError(
                f"lower_threshold={self.lower_threshold} must be < "
                f"upper_threshold={self.upper_threshold}"
            )
        self.baseline.check_features([f.name for f in self.features])

    def apply(self, config: DetectorConfig) -> DetectorConfig:
        """``config`` with this signature's features and thresholds (and no calibration file).

        Everything else (smoothing, onset and termination durations, blanking, gating)
        stays the configuration's: the run-in chose the operating point with those.
        """
        document = config.model_dump()
        document.update(
            features=[f.model_dump() for f in self.features],
            upper_threshold=self.upper_threshold,
            lower_threshold=self.lower_threshold,
            calibration_file=None,
        )
        return DetectorConfig.model_validate(document)

    # -- persistence --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (format, version, signature, thresholds, baseline, fit)."""
        fit = self.run_in
        return {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "features": [f.model_dump() for f in self.features],
            "upper_threshold": self.upper_threshold,
            "lower_threshold": self.lower_threshold,
            "occurrence_period_h": self.occurrence_period_h,
            "horizon_min": self.horizon_min,
            "baseline": self.baseline.to_dict(),
            "run_in": {
                "duration_s": fit.duration_s,
                "attacks": fit.attacks,
                "predicted": fit.predicted,
                "alarms": fit.alarms,
                "time_in_warning": fit.time_in_warning,
                "p_value": fit.p_value,
                "target_time_in_warning": fit.target_time_in_warning,
            },
            "evidence": {k: float(v) for k, v in self.evidence.items() if math.isfinite(v)},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PatientSignature:
        """Inverse of :meth:`to_dict`; ValueError naming what is wrong."""
        if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"not a calibration file: format={found!r}")
        if data.get("version") != FILE_VERSION:
            raise ValueError(
                f"calibration version {data.get('version')!r} is not supported "
                f"(want {FILE_VERSION})"
            )
        try:
            fit = data["run_in"]
            return cls(
                features=tuple(SignatureFeature.model_validate(f) for f in data["features"]),
                upper_threshold=float(data["upper_threshold"]),
                lower_threshold=float(data["lower_threshold"]),
                occurrence_period_h=float(data["occurrence_period_h"]),
                horizon_min=float(data["horizon_min"]),
                baseline=Baseline.from_dict(data["baseline"]),
                run_in=RunInFit(
                    duration_s=float(fit["duration_s"]),
                    attacks=int(fit["attacks"]),
                    predicted=int(fit["predicted"]),
                    alarms=int(fit["alarms"]),
                    time_in_warning=float(fit["time_in_warning"]),
                    p_value=None if fit["p_value"] is None else float(fit["p_value"]),
                    target_time_in_warning=float(fit["target_time_in_warning"]),
                ),
                evidence={str(k): float(v) for k, v in data.get("evidence", {}).items()},
            )
        except KeyError as exc:
            raise ValueError(f"calibration file: missing field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"calibration file: {exc}") from None

    def save(self, path: str | Path) -> None:
        """Write the signature as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> PatientSignature:
        """Read a file written by :meth:`save`; ValueError (naming the file) if unusable."""
        where = Path(path)
        try:
            data = json.loads(where.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"{where}: cannot read calibration file: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not JSON: {exc}") from None
        try:
            return cls.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None


def calibrated_detector_config(config: DetectorConfig) -> tuple[DetectorConfig, Baseline | None]:
    """The configuration to run and its baseline, honouring ``config.calibration_file``.

    Without a calibration file: ``(config, None)``.  With one: the signature applied to
    ``config`` and a fresh copy of its baseline (the detector adapts it; the file stays).
    """
    if config.calibration_file is None:
        return config, None
    signature = PatientSignature.load(config.calibration_file)
    return signature.apply(config), Baseline.from_dict(signature.baseline.to_dict())
