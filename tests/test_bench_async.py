"""The async-shell latency bench runs the real shell with its files on writer threads:
the files it leaves are complete and verify (timings are printed, never asserted)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import mne

from controller.audit import verify_audit
from controller.bench_async import _measure, format_async_rows


def test_the_async_bench_leaves_a_verified_audit_log_and_a_readable_recording(
    tmp_path: Path,
) -> None:
    row = asyncio.run(_measure(8, 250, 2.0, True, tmp_path))
    assert row.chunks > 100 and row.audit_overflows == 0 and row.audit_syncs >= 1
    audit = tmp_path / "bench-8-250.jsonl"
    check = verify_audit(audit)
    assert check.ok and check.records >= 4
    raw = mne.io.read_raw_edf(tmp_path / "bench-8-250.edf", preload=False, verbose=False)
    assert raw.info["sfreq"] == 250 and len(raw.ch_names) == 8
    assert "8 ch @ 250 Hz" in format_async_rows([row])
    # The scripted device is honest: the controller's device check found nothing.
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert not [r for r in records if r["kind"] in ("device_fault", "estop")]
