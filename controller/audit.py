"""Hash-chained JSONL audit log: every decision, command, ack, clamp and fault, tamper-evident.

One record per line.  Each line is the canonical JSON of the record without ``hash``
(``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=True,
allow_nan=False)``) with ``,"hash":"<hex>"}`` spliced in before its closing brace, where
``hash`` is the SHA-256 of that canonical JSON (UTF-8, here pure ASCII).  ``prev`` is the
SHA-256 of the previous record's complete line (without its newline), or
:data:`GENESIS_PREV` for the first record.  docs/recording.md states how to verify a log
without this code.

Durability: lines go through a buffered file; ``sync=True`` (every stimulation change)
flushes and ``os.fsync``s at once, other records at the latest once per
``flush_interval_s`` of the caller's time (``t`` of records or :meth:`AuditLog.tick`).
The log never reads a clock.  Given a ``WriterThread``, the writes and fsyncs run on it,
off the caller's (event-loop) thread: the hash chain is still built in order by the
caller, :attr:`AuditLog.durable` says whether every ``sync=True`` record is on disk yet,
and ``on_durable`` is called (on the writer thread) each time an fsync completes.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import os
import re
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime
from pathlib import Path, PurePath
from typing import IO, Any

import numpy as np

from controller.writer_thread import WriterThread

GENESIS_PREV = "0" * 64
"""``prev`` of the first record of a log."""

RESERVED_FIELDS = frozenset({"seq", "t", "kind", "prev", "hash"})

_HASH_SUFFIX = re.compile(rb',"hash":"([0-9a-f]{64})"\}$')
_TAIL_READ_BYTES = 64 * 1024


class AuditLogError(ValueError):
    """An existing log cannot be continued (its last complete line is not a record)."""


def canonical_json(record: Mapping[str, Any]) -> str:
    """The canonical JSON text a record's ``hash`` is computed over (see module docstring)."""
    return json.dumps(
        record, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: numpy scalars/arrays, enums, dataclasses, pydantic
    models, paths, datetimes and bytes are converted; non-finite floats become the strings
    "NaN", "Infinity", "-Infinity" (JSON has no such numbers).  TypeError for anything else,
    so an unexpected object fails loudly in tests rather than being logged as a repr."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _float_jsonable(value)
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):
        return to_jsonable(model_dump(mode="json"))
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((to_jsonable(v) for v in value), key=canonical_json)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    raise TypeError(f"audit field value of type {type(value).__name__} is not JSON-convertible")


def _float_jsonable(x: float) -> float | str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return float(x)


def seal_record(body: Mapping[str, Any]) -> tuple[bytes, str]:
    """The line (without newline) and hash of a record whose fields are already JSON types."""
    text = canonical_json(body)
    digest = sha256_hex(text.encode("ascii"))
    line = f'{text[:-1]},"hash":"{digest}"}}'
    return line.encode("ascii"), digest


@dataclasses.dataclass(frozen=True)
class _ChainTail:
    """Where an existing log's chain stands: its last seq, the hash of its last line."""

    seq: int
    prev: str
    complete_bytes: int  # file offset just past the last complete line
    discarded_tail_bytes: int  # bytes after it (a line cut short by a crash)


def _read_chain_tail(path: Path) -> _ChainTail:
    size = path.stat().st_size
    if size == 0:
        return _ChainTail(0, GENESIS_PREV, 0, 0)
    with path.open("rb") as f:
        end = size
        chunk = b""
        # read backwards until the chunk holds the last two newlines (or the whole file)
        while end > 0 and chunk.count(b"\n") < 2:
            start = max(0, end - _TAIL_READ_BYTES)
            f.seek(start)
            chunk = f.read(end - start) + chunk
            end = start
    last_nl = chunk.rfind(b"\n")
    if last_nl < 0:  # a single line without newline: nothing complete yet
        return _ChainTail(0, GENESIS_PREV, 0, size)
    complete_bytes = end + last_nl + 1
    line_start = chunk.rfind(b"\n", 0, last_nl) + 1
    line = chunk[line_start:last_nl]
    try:
        record = json.loads(line)
        seq = int(record["seq"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AuditLogError(
            f"{path}: the last complete line is not an audit record ({exc}); "
            "run 'neurostim audit verify' and start a new log"
        ) from exc
    return _ChainTail(seq, sha256_hex(line), complete_bytes, size - complete_bytes)


class AuditLog:
    """Append-only, hash-chained JSONL audit log (or in memory only when ``path`` is None).

    Appending to an existing file continues its chain from the last complete line.  A
    partial last line left by a crash is cut off first, and the next record written is a
    ``log_tail_discarded`` record saying how many bytes were dropped (and their SHA-256).
    The last ``keep_last`` records stay available in :attr:`records` for tests and UIs.
    """

    def __init__(
        self,
        path: Path | None,
        flush_interval_s: float = 1.0,
        *,
        keep_last: int = 1000,
        writer: WriterThread | None = None,
    ) -> None:
        if not (flush_interval_s >= 0.0 and math.isfinite(flush_interval_s)):
            raise ValueError(f"flush_interval_s={flush_interval_s} must be finite and >= 0")
        self._path = Path(path) if path is not None else None
        self._flush_interval_s = float(flush_interval_s)
        self._records: deque[dict[str, Any]] = deque(maxlen=max(1, keep_last))
        self._seq = 0
        self._prev = GENESIS_PREV
        self._last_sync_t: float | None = None
        self._dirty = False
        self._syncs = 0
        self._tail_note: dict[str, Any] | None = None
        self._file: IO[bytes] | None = None
        self._writer = writer
        self._sync_requested_seq = 0
        self._durable_seq = 0
        self.on_durable: Callable[[], None] | None = None
        if self._path is not None:
            self._file = self._open(self._path)

    def _open(self, path: Path) -> IO[bytes]:
        existed = path.exists()
        if existed:
            tail = _read_chain_tail(path)
            self._seq, self._prev = tail.seq, tail.prev
            if tail.discarded_tail_bytes:
                with path.open("rb") as f:
                    f.seek(tail.complete_bytes)
                    cut = f.read()
                os.truncate(path, tail.complete_bytes)
                self._tail_note = {
                    "discarded_bytes": tail.discarded_tail_bytes,
                    "discarded_sha256": sha256_hex(cut),
                }
        handle = path.open("ab", buffering=64 * 1024)
        if not existed:
            _fsync_directory(path.parent)
        return handle

    # -- public API -------------------------------------------------------------------

    @property
    def path(self) -> Path | None:
        """The log file, or None for an in-memory log."""
        return self._path

    @property
    def seq(self) -> int:
        """``seq`` of the last record written (0 before the first)."""
        return self._seq

    @property
    def records(self) -> tuple[dict[str, Any], ...]:
        """The most recent records (at most ``keep_last``), oldest first."""
        return tuple(self._records)

    @property
    def last(self) -> dict[str, Any] | None:
        """The last record written, or None."""
        return self._records[-1] if self._records else None

    @property
    def syncs(self) -> int:
        """How many times the file was flushed and fsynced (0 for an in-memory log)."""
        return self._syncs

    @property
    def durable(self) -> bool:
        """Every record written with ``sync=True`` (or flushed) is on disk."""
        return self._durable_seq >= self._sync_requested_seq

    @property
    def overflows(self) -> int:
        """Times the writer thread's queue was full and the caller waited for room."""
        return 0 if self._writer is None else self._writer.overflows

    def record(self, kind: str, t: float, *, sync: bool = False, **fields: Any) -> dict[str, Any]:
        """Append one record and return it (with ``seq``, ``prev`` and ``hash``).

        ``sync=True`` for stimulation changes: the record is on disk (fsync) when this
        returns, or, with a writer thread, once :attr:`durable` is true again.  Field names
        ``seq``, ``prev`` and ``hash`` are reserved.
        """
        if self._file is None and self._path is not None:
            raise ValueError("audit log is closed")
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"kind must be a non-empty string, got {kind!r}")
        reserved = RESERVED_FIELDS.intersection(fields)
        if reserved:
            raise ValueError(f"audit fields {sorted(reserved)} are reserved")
        t_s = float(t)
        if not math.isfinite(t_s):
            raise ValueError(f"t={t} must be finite")
        if self._tail_note is not None:
            note, self._tail_note = self._tail_note, None
            self._append("log_tail_discarded", t_s, note)
        record = self._append(kind, t_s, fields)
        if sync or self._sync_due(t_s):
            self._sync(t_s)
        return record

    def record_stimulation(
        self,
        kind: str,
        t: float,
        *,
        amplitude_ma: float,
        pulse_width_us: float,
        frequency_hz: float,
        **fields: Any,
    ) -> dict[str, Any]:
        """A stimulation record (command, observed stim state...): always fsynced."""
        return self.record(
            kind,
            t,
            sync=True,
            amplitude_ma=amplitude_ma,
            pulse_width_us=pulse_width_us,
            frequency_hz=frequency_hz,
            **fields,
        )

    def tick(self, t: float) -> None:
        """Let time pass: flush and fsync pending records once ``flush_interval_s`` is up."""
        t_s = float(t)
        if self._dirty and self._sync_due(t_s):
            self._sync(t_s)

    def flush(self, t: float) -> None:
        """Flush and fsync now."""
        self._sync(float(t))

    def close(self) -> None:
        """Flush, fsync and close the file; records after this raise (in-memory logs stay open)."""
        if self._file is None:
            return
        file, self._file = self._file, None
        if self._writer is not None:
            self._writer.submit(self._close_file, file)
            self._writer.close()
            return
        self._close_file(file)

    def _close_file(self, file: IO[bytes]) -> None:
        file.flush()
        os.fsync(file.fileno())
        if self._dirty:
            self._syncs += 1
            self._dirty = False
        file.close()
        self._durable_seq = self._seq

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------

    def _append(self, kind: str, t_s: float, fields: Mapping[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {str(k): to_jsonable(v) for k, v in fields.items()}
        body.update(seq=self._seq + 1, t=t_s, kind=kind, prev=self._prev)
        line, digest = seal_record(body)
        if self._file is not None:
            if self._writer is not None:
                self._writer.submit(self._file.write, line + b"\n")
            else:
                self._file.write(line + b"\n")
            self._dirty = True
        self._seq += 1
        self._prev = sha256_hex(line)
        body["hash"] = digest
        self._records.append(body)
        return body

    def _sync_due(self, t_s: float) -> bool:
        last = self._last_sync_t
        return last is None or t_s < last or t_s - last >= self._flush_interval_s

    def _sync(self, t_s: float) -> None:
        self._last_sync_t = t_s
        if self._file is None:
            return
        self._dirty = False
        self._sync_requested_seq = self._seq
        if self._writer is not None:
            self._writer.submit(self._fsync, self._file, self._seq)
        else:
            self._fsync(self._file, self._seq)

    def _fsync(self, file: IO[bytes], seq: int) -> None:
        file.flush()
        os.fsync(file.fileno())
        self._syncs += 1
        self._durable_seq = seq
        if self.on_durable is not None:
            self.on_durable()


def _fsync_directory(directory: Path) -> None:
    """Make a newly created file's directory entry durable (POSIX; a no-op elsewhere)."""
    flags = getattr(os, "O_DIRECTORY", None)
    if flags is None:
        return
    fd = os.open(directory, os.O_RDONLY | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclasses.dataclass(frozen=True)
class AuditVerification:
    """Result of :func:`verify_audit`.

    ``ok`` is True when every complete line verifies; ``truncated_tail`` then says a
    partial last line (a crash mid-write) was ignored.  Otherwise ``first_break`` is the
    1-based line number of the first line that fails and ``reason`` says why; ``records``
    counts the records verified before it.
    """

    ok: bool
    records: int
    first_break: int | None
    reason: str
    truncated_tail: bool = False
    tail_bytes: int = 0
    first_t: float | None = None
    last_t: float | None = None
    kinds: dict[str, int] = dataclasses.field(default_factory=dict)


def _lines(path: Path) -> Iterator[tuple[bytes, bool]]:
    """(line without newline, complete) for each line of the file, streamed."""
    with path.open("rb") as f:
        for raw in f:
            if raw.endswith(b"\n"):
                yield raw[:-1], True
            else:
                yield raw, False


def _check_line(line: bytes, expected_seq: int, expected_prev: str) -> tuple[dict[str, Any], str]:
    """The parsed record, or raises ValueError naming what is wrong with the line."""
    if not line:
        raise ValueError("empty line")
    match = _HASH_SUFFIX.search(line)
    if match is None:
        raise ValueError('line does not end with ,"hash":"<64 hex>"}')
    body = line[: match.start()] + b"}"
    digest = match.group(1).decode("ascii")
    if sha256_hex(body) != digest:
        raise ValueError("hash does not match the record's content (record edited)")
    try:
        record = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    if "hash" in record:
        raise ValueError("duplicate 'hash' field")
    if canonical_json(record).encode("ascii") != body:
        raise ValueError("record is not in canonical form")
    seq, t, kind, prev = (record.get(k) for k in ("seq", "t", "kind", "prev"))
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise ValueError(f"seq missing or not an integer: {seq!r}")
    if seq != expected_seq:
        raise ValueError(f"seq {seq} where {expected_seq} was expected (record missing or added)")
    if not isinstance(t, int | float) or isinstance(t, bool):
        raise ValueError(f"t missing or not a number: {t!r}")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"kind missing or not a string: {kind!r}")
    if prev != expected_prev:
        raise ValueError("prev does not match the previous line (chain broken)")
    record["hash"] = digest
    return record, kind


def verify_audit(path: Path | str) -> AuditVerification:
    """Check seq continuity, ``prev`` links and hashes of a whole log, streaming it."""
    log_path = Path(path)
    records = 0
    expected_prev = GENESIS_PREV
    kinds: dict[str, int] = {}
    first_t: float | None = None
    last_t: float | None = None
    for number, (line, complete) in enumerate(_lines(log_path), start=1):
        if not complete:
            return AuditVerification(
                True,
                records,
                None,
                f"intact up to record {records}; partial last line ({len(line)} bytes, "
                "no newline) ignored: the log was cut short",
                truncated_tail=True,
                tail_bytes=len(line),
                first_t=first_t,
                last_t=last_t,
                kinds=kinds,
            )
        try:
            record, kind = _check_line(line, records + 1, expected_prev)
        except (ValueError, UnicodeDecodeError) as exc:
            return AuditVerification(
                False, records, number, str(exc), first_t=first_t, last_t=last_t, kinds=kinds
            )
        records += 1
        expected_prev = sha256_hex(line)
        kinds[kind] = kinds.get(kind, 0) + 1
        last_t = float(record["t"])
        if first_t is None:
            first_t = last_t
    reason = f"intact: {records} records" if records else "empty log"
    return AuditVerification(
        True, records, None, reason, first_t=first_t, last_t=last_t, kinds=kinds
    )
