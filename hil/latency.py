"""Latency statistics in an HdrHistogram: p50/p99/p99.9/max and a percentile file.

Latencies are measured from the *scheduled* send time (wrk2's rule): a rig or device that
stalls delays the sends after the stall, and that delay is counted, not hidden
(coordinated omission).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hdrh.histogram import HdrHistogram

_MAX_US = 3_600_000_000  # one hour: any longer is a lost answer, counted separately


@dataclass(frozen=True)
class Percentiles:
    count: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float


class LatencyRecorder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.histogram = HdrHistogram(1, _MAX_US, 3)
        self.lost = 0

    def record_s(self, latency_s: float | None) -> None:
        if latency_s is None:
            self.lost += 1
            return
        self.histogram.record_value(min(_MAX_US, max(1, round(latency_s * 1e6))))

    def percentiles(self) -> Percentiles:
        h = self.histogram

        def ms(pct: float) -> float:
            return h.get_value_at_percentile(pct) / 1000.0

        return Percentiles(h.get_total_count(), ms(50), ms(99), ms(99.9), h.get_max_value() / 1e3)

    def write(self, directory: str, stem: str) -> Path:
        """The HdrHistogram percentile distribution (values in ms), as HistogramLogProcessor
        and the HdrHistogram plotter read it."""
        path = Path(directory) / f"{stem}-{self.name}.hgrm"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            self.histogram.output_percentile_distribution(out, 1000.0)
        return path
