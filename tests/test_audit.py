"""Audit log: hash chain, canonical form, durability points, appending, crash tails, tampering."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from controller.audit import (
    GENESIS_PREV,
    AuditLog,
    AuditLogError,
    canonical_json,
    to_jsonable,
    verify_audit,
)
from controller.detector.types import DetectorState


def _write_log(path: Path, n: int) -> None:
    with AuditLog(path) as log:
        for i in range(n):
            log.record("decision", 0.5 * i, reason=f"r{i}", score=float(i) / 3)


def _third_party_verify(path: Path) -> int:
    """Verify as docs/recording.md tells an outsider: hashlib and json only."""
    prev = "0" * 64
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    for seq, line in enumerate(lines[:-1], start=1):
        record = json.loads(line)
        digest = record.pop("hash")
        body = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        assert hashlib.sha256(body.encode()).hexdigest() == digest
        # the same body, cut textually out of the line (no JSON re-serialisation needed)
        suffix = f',"hash":"{digest}"}}'.encode()
        assert line.endswith(suffix)
        assert line[: -len(suffix)] + b"}" == body.encode()
        assert record["seq"] == seq and record["prev"] == prev
        prev = hashlib.sha256(line).hexdigest()
    return len(lines) - 1


def test_in_memory_chain_links_each_record_to_the_previous_line() -> None:
    log = AuditLog(None)
    first = log.record("connect", 0.0, device_id="sim-1")
    second = log.record("decision", 0.5, reason="prodrome", score=1.25)
    assert (first["seq"], second["seq"]) == (1, 2)
    assert first["prev"] == GENESIS_PREV
    body = {k: v for k, v in first.items() if k != "hash"}
    assert first["hash"] == hashlib.sha256(canonical_json(body).encode()).hexdigest()
    first_line = canonical_json(body)[:-1] + f',"hash":"{first["hash"]}"}}'
    assert second["prev"] == hashlib.sha256(first_line.encode()).hexdigest()
    assert log.last is second and log.seq == 2 and log.syncs == 0


def test_file_log_verifies_and_an_outsider_can_check_it(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        log.record("connect", 0.0, device_id="sim-1", labels=("Fp1", "Fp2"))
        log.record_stimulation(
            "command", 1.0, amplitude_ma=2.5, pulse_width_us=250, frequency_hz=60.0
        )
        log.record("detector_state", 1.5, state=DetectorState.PRODROME, score=None)
    result = verify_audit(path)
    assert result.ok and result.records == 3 and result.first_break is None
    assert not result.truncated_tail
    assert result.kinds == {"connect": 1, "command": 1, "detector_state": 1}
    assert (result.first_t, result.last_t) == (0.0, 1.5)
    assert _third_party_verify(path) == 3
    command = json.loads(path.read_text().splitlines()[1])
    assert (command["amplitude_ma"], command["pulse_width_us"], command["frequency_hz"]) == (
        2.5,
        250,
        60.0,
    )


@dataclasses.dataclass(frozen=True)
class _Clamp:
    rule: str
    allowed: np.float32


def test_non_json_values_are_converted() -> None:
    log = AuditLog(None)
    rec = log.record(
        "clamp",
        np.float64(2.0),
        value=np.float32(0.25),
        count=np.int64(7),
        flag=np.bool_(True),
        array=np.arange(3, dtype=np.int16),
        state=DetectorState.SUSPECT,
        clamp=_Clamp("max_amplitude", np.float32(4.0)),
        path=Path("/tmp/x"),
        bad=float("nan"),
        big=float("-inf"),
    )
    assert rec["t"] == 2.0 and isinstance(rec["t"], float)
    assert rec["value"] == 0.25 and rec["count"] == 7 and rec["flag"] is True
    assert rec["array"] == [0, 1, 2] and rec["state"] == "SUSPECT"
    assert rec["clamp"] == {"rule": "max_amplitude", "allowed": 4.0}
    assert rec["path"] == "/tmp/x" and rec["bad"] == "NaN" and rec["big"] == "-Infinity"
    json.loads(canonical_json({k: v for k, v in rec.items() if k != "hash"}))
    with pytest.raises(TypeError, match="object"):
        to_jsonable(object())


def test_reserved_fields_bad_kind_and_time_are_rejected() -> None:
    log = AuditLog(None)
    for name in ("seq", "prev", "hash"):
        with pytest.raises(ValueError, match="reserved"):
            fields: dict[str, Any] = {name: 1}
            log.record("decision", 0.0, **fields)
    with pytest.raises(ValueError, match="kind"):
        log.record("", 0.0)
    with pytest.raises(ValueError, match="finite"):
        log.record("decision", float("nan"))
    assert log.seq == 0


def test_sync_records_are_on_disk_at_once_others_within_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, flush_interval_s=1.0)
    log.record("connect", 10.0)  # the first record syncs
    assert log.syncs == 1 and len(path.read_bytes().splitlines()) == 1
    log.record("decision", 10.3)
    log.record("decision", 10.6)
    assert log.syncs == 1 and len(path.read_bytes().splitlines()) == 1  # still buffered
    log.record_stimulation("command", 10.7, amplitude_ma=1.0, pulse_width_us=250, frequency_hz=60)
    assert log.syncs == 2 and len(path.read_bytes().splitlines()) == 4
    log.record("ack", 10.8)
    log.tick(11.6)
    assert log.syncs == 2  # 0.9 s since the last sync
    log.tick(11.7)
    assert log.syncs == 3 and len(path.read_bytes().splitlines()) == 5
    log.tick(20.0)
    assert log.syncs == 3  # nothing pending, nothing to sync
    log.record("decision", 20.5)  # 8.8 s since the last sync: due
    assert log.syncs == 4
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.record("decision", 21.0)


def test_appending_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 3)
    with AuditLog(path) as log:
        assert log.seq == 3
        rec = log.record("connect", 0.0)
        assert rec["seq"] == 4
    result = verify_audit(path)
    assert result.ok and result.records == 4 and not result.truncated_tail


def test_crash_tail_verifies_up_to_the_last_complete_record_and_is_cut_on_append(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 3)
    full = path.read_bytes()
    partial = b'{"kind":"command","prev":"ab'
    path.write_bytes(full + partial)
    result = verify_audit(path)
    assert result.ok and result.truncated_tail and result.records == 3
    assert result.first_break is None and result.tail_bytes == len(partial)
    assert "cut short" in result.reason

    with AuditLog(path) as log:
        rec = log.record("connect", 5.0)
    note, after = log.records
    assert note["kind"] == "log_tail_discarded" and note["seq"] == 4
    assert note["discarded_bytes"] == len(partial)
    assert note["discarded_sha256"] == hashlib.sha256(partial).hexdigest()
    assert rec is after and rec["seq"] == 5
    result = verify_audit(path)
    assert result.ok and result.records == 5 and not result.truncated_tail


def test_a_log_that_is_only_a_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"kind":"conn')
    assert verify_audit(path).truncated_tail
    with AuditLog(path) as log:
        log.record("connect", 0.0)
    assert [r["seq"] for r in log.records] == [1, 2]
    assert verify_audit(path).records == 2


def test_edited_deleted_and_forged_records_report_the_first_break(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 6)
    lines = path.read_bytes().split(b"\n")[:-1]

    def check(new_lines: list[bytes], line: int, reason: str) -> None:
        path.write_bytes(b"".join(x + b"\n" for x in new_lines))
        result = verify_audit(path)
        assert not result.ok and result.first_break == line and result.records == line - 1
        assert reason in result.reason

    edited = lines.copy()
    edited[2] = edited[2].replace(b'"reason":"r2"', b'"reason":"r9"')
    check(edited, 3, "hash does not match")

    # a forger who recomputes the edited record's hash still breaks the next link
    record = json.loads(edited[2])
    record.pop("hash")
    body = canonical_json(record)
    forged = lines.copy()
    forged[2] = (body[:-1] + f',"hash":"{hashlib.sha256(body.encode()).hexdigest()}"}}').encode()
    check(forged, 4, "prev does not match")

    check(lines[:1] + lines[2:], 2, "seq 3 where 2 was expected")
    check([*lines[:3], b"", *lines[3:]], 4, "empty line")
    check([*lines[:2], lines[3], lines[2], *lines[4:]], 3, "seq 4 where 3")


def test_any_single_byte_change_is_detected_or_shortens_the_log(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 4)
    original = path.read_bytes()
    for position in range(len(original)):
        damaged = bytearray(original)
        damaged[position] ^= 0x01
        path.write_bytes(bytes(damaged))
        result = verify_audit(path)
        assert not result.ok or result.records < 4, position


def test_refuses_to_continue_a_log_whose_last_line_is_not_a_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"hello\n")
    with pytest.raises(AuditLogError, match="not an audit record"):
        AuditLog(path)


def test_empty_log_verifies_and_memory_keeps_only_the_last_records(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"")
    result = verify_audit(path)
    assert result.ok and result.records == 0 and result.reason == "empty log"
    log = AuditLog(None, keep_last=5)
    for i in range(20):
        log.record("decision", float(i))
    assert [r["seq"] for r in log.records] == [16, 17, 18, 19, 20]
