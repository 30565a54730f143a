"""Same seed, same report: a few short headless runs replayed against the JSON reports
recorded before the hot path was optimised (``tests/data/reports``), every field except
wall time. Speed work must not change what a run reports.

A deliberate change of behaviour (physiology, firmware, detector, policy) changes these
reports too; that is expected. Then re-record them with
``python benchmarks/record_reports.py`` and commit the reviewed diff with the change.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

RECORDER = Path(__file__).resolve().parent.parent / "benchmarks" / "record_reports.py"


def _recorder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("record_reports", RECORDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


RECORDS = _recorder()


@pytest.mark.parametrize("run", RECORDS.RUNS, ids=[r.name for r in RECORDS.RUNS])
def test_report_equals_the_recorded_one(run: object) -> None:
    recorded = json.loads(RECORDS.report_path(run).read_text(encoding="utf-8"))
    current = RECORDS.comparable(RECORDS.run_recorded(run))
    for key in sorted(set(recorded) | set(current)):
        assert current.get(key) == recorded.get(key), f"report field {key!r} differs"
