"""Record the JSON reports of a few short headless runs into ``tests/data/``.

``tests/test_same_report.py`` replays the same runs and compares every field of the
report except the wall-time ones, so a speed-up cannot change what a run reports. When
the behaviour changes on purpose (physiology, firmware, detector), re-record with

    python benchmarks/record_reports.py

and review the diff of ``tests/data/reports/*.json`` in the same commit.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from controller.config import ControllerConfig  # noqa: E402
from insilico.report import SimReport  # noqa: E402
from insilico.runner import SimSpec, run_sim  # noqa: E402
from simulator.physiology.scenario import load_scenario  # noqa: E402

REPORTS_DIR = REPO / "tests" / "data" / "reports"

#: Points of the report's decimated timeline (score, state, amplitude): enough to compare
#: the traces, small enough to review a re-recorded file.
TIMELINE_POINTS = 600

#: Fields that depend on the machine, not on the run.
WALL_TIME_FIELDS = ("wall_s", "realtime_factor")


@dataclass(frozen=True)
class RecordedRun:
    """One run whose report is kept: short enough for the test suite."""

    name: str
    scenario: str
    duration_s: float
    model: str
    config: dict[str, object] | None = None  # controller configuration; None: the default

    def controller_config(self) -> ControllerConfig:
        return ControllerConfig.model_validate(self.config or {})


RUNS = (
    # The default patient past calibration (30 min) into the forced prodrome (2 h).
    RecordedRun("default-spectral-3h", "default", 3 * 3600.0, "spectral"),
    # Every sensor and link fault in turn.
    RecordedRun("faults-spectral", "faults", 1800.0, "spectral"),
    RecordedRun("default-jansen-rit-40min", "default", 2400.0, "jansen-rit"),
    # Stimulation on: commands, acks, STIM_STATE reports and the envelope in the loop.
    RecordedRun(
        "default-open-loop-1h",
        "default",
        3600.0,
        "spectral",
        {
            "detector": {"calibration_s": 120.0, "onset_s": 60.0, "score_smoothing_s": 30.0},
            "policy": {"name": "open-loop", "open_loop": {"mode": "continuous"}},
        },
    ),
)


def run_recorded(run: RecordedRun) -> SimReport:
    scenario = load_scenario(run.scenario)
    spec = SimSpec(
        scenario,
        run.duration_s,
        run.controller_config(),
        model=run.model,
        timeline_points=TIMELINE_POINTS,
    )
    return run_sim(spec)


def comparable(report: SimReport) -> dict[str, object]:
    """The report as JSON data without the wall-time fields."""
    data: dict[str, object] = json.loads(report.model_dump_json())
    for name in WALL_TIME_FIELDS:
        del data[name]
    return data


def report_path(run: RecordedRun) -> Path:
    return REPORTS_DIR / f"{run.name}.json"


def main() -> int:
    REPORTS_DIR.mkdir(parents=True, exist_ok=True)
    for run in RUNS:
        report = run_recorded(run)
        report_path(run).write_text(
            json.dumps(comparable(report), indent=1, sort_keys=True) + "\n", encoding="utf-8"
        )
        print(
            f"{report_path(run).relative_to(REPO)}: {report.virtual_s:.0f} virtual s, "
            f"{report.wall_s:.1f} s wall"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
