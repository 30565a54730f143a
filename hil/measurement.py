"""Measurements with limits and a marginal band, OpenHTF-style: every check of the rig is a
value with a unit, judged against [low, high] (FAIL outside) and an inner band (MARGINAL
between the band and a limit), so a device that only just passes is visible as such."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


class Verdict(Enum):
    PASS = "PASS"
    MARGINAL = "MARGINAL"
    FAIL = "FAIL"
    ERROR = "ERROR"  # the case could not finish (timeout, link lost, exception)
    SKIP = "SKIP"  # not applicable to this device or configuration

    @property
    def ok(self) -> bool:
        return self in (Verdict.PASS, Verdict.MARGINAL, Verdict.SKIP)


_RANK = {Verdict.SKIP: 0, Verdict.PASS: 1, Verdict.MARGINAL: 2, Verdict.FAIL: 3, Verdict.ERROR: 4}


def worst(verdicts: list[Verdict]) -> Verdict:
    """The verdict of a case from those of its measurements (PASS when there are none)."""
    return max(verdicts, key=_RANK.__getitem__, default=Verdict.PASS)


@dataclass(frozen=True)
class Measurement:
    """One measured value. ``marginal_low``/``marginal_high`` (inside the limits) bound the
    PASS band; None means the band reaches the limit on that side."""

    name: str
    value: float
    unit: str
    low: float | None = None
    high: float | None = None
    marginal_low: float | None = None
    marginal_high: float | None = None

    @property
    def verdict(self) -> Verdict:
        v = self.value
        if math.isnan(v):
            return Verdict.FAIL
        if (self.low is not None and v < self.low) or (self.high is not None and v > self.high):
            return Verdict.FAIL
        if (self.marginal_low is not None and v < self.marginal_low) or (
            self.marginal_high is not None and v > self.marginal_high
        ):
            return Verdict.MARGINAL
        return Verdict.PASS

    def limits_text(self) -> str:
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "+inf" if self.high is None else f"{self.high:g}"
        return f"[{lo}, {hi}] {self.unit}".rstrip()

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "value": None if math.isnan(self.value) else self.value,
            "unit": self.unit,
            "low": self.low,
            "high": self.high,
            "marginal_low": self.marginal_low,
            "marginal_high": self.marginal_high,
            "verdict": self.verdict.value,
        }
