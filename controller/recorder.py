"""Streaming EDF+ recording of the raw channels with annotations, through pyedflib.

Counts are written as EDF digital samples unchanged; each channel's physical range is the
int16 range times its µV-per-count scale, so readers (pyedflib, MNE, EDFbrowser) get
``counts × scale`` in µV.  Samples are buffered only up to one data record; edflib writes
each record as it completes, so memory does not grow with the recording.  Annotations are
kept in memory until :meth:`EdfRecorder.close`, when edflib writes them (edflib's rule);
they grow with the number of events, not samples.  Layout and vocabulary:
docs/recording.md.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyedflib

INT16_MIN = -32768
INT16_MAX = 32767
EDF_FIELD_CHARS = 8  # EDF header numbers (physical min/max) are 8 ASCII characters
EDF_LABEL_CHARS = 16
MAX_ANNOTATION_BYTES = 40  # edflib writes at most 40 bytes of an annotation's text
MAX_ANNOTATION_SIGNALS = 64  # edflib's limit
PHYSICAL_UNIT = "uV"  # EDF headers are ASCII: "uV" is the usual spelling of µV
# EDF+ identification fields are 80 characters.  Free room, measured with pyedflib 0.1.42:
# patient code + additional text <= 64 (pyedflib warns above, with the name "X"; edflib
# keeps 71); technician + equipment + additional text <= 39 (edflib cuts the rest)
PATIENT_FREE_CHARS = 64
RECORDING_FREE_CHARS = 39


@dataclass(frozen=True)
class EdfAnnotation:
    """One annotation: onset and duration in seconds from the recording start."""

    onset_s: float
    duration_s: float  # -1: no duration
    text: str


@dataclass(frozen=True)
class EdfRecordingSummary:
    """What :meth:`EdfRecorder.close` wrote, including anything it had to alter or drop."""

    path: Path
    data_records: int
    samples_written: int  # samples per channel received from the caller
    gap_samples: int  # zeros written for missing samples
    gaps: int
    duplicate_samples: int  # samples per channel received again and ignored
    padded_samples: int  # zeros that complete the last data record
    annotations_written: int
    annotations_dropped: int  # beyond the file's annotation capacity (the latest onsets)
    annotations_truncated: int  # text cut to MAX_ANNOTATION_BYTES

    @property
    def samples_in_file(self) -> int:
        """Samples per channel in the file (data, gap zeros and padding)."""
        return self.samples_written + self.gap_samples + self.padded_samples


def edf_number(value: float) -> float:
    """``value`` rounded to the nearest number EDF's 8-character header field can hold."""
    for decimals in range(EDF_FIELD_CHARS - 1, -1, -1):
        text = f"{value:.{decimals}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        if text in ("-0", ""):
            text = "0"
        if len(text) <= EDF_FIELD_CHARS:
            return float(text)
    raise ValueError(f"{value} does not fit in an EDF header field of 8 characters")


def physical_range_uv(scale_uv_per_count: float) -> tuple[float, float]:
    """(physical_min, physical_max) in µV of an int16 channel, as the header stores them."""
    return edf_number(INT16_MIN * scale_uv_per_count), edf_number(INT16_MAX * scale_uv_per_count)


def _check_ascii(name: str, text: str, limit: int | None = None) -> str:
    if not all(32 <= ord(ch) < 127 for ch in text):
        raise ValueError(f"{name}={text!r} must be printable ASCII (EDF header)")
    if limit is not None and len(text) > limit:
        raise ValueError(f"{name}={text!r} is longer than {limit} characters (EDF header)")
    return text


def _header_text(text: str) -> str:
    """An EDF+ header subfield: printable ASCII without spaces (others become '_')."""
    return "".join(ch if 32 < ord(ch) < 127 else "_" for ch in text.strip())


def _clean_annotation(text: str) -> tuple[str, bool]:
    """Text safe for an EDF+ TAL (no control bytes), cut to edflib's byte limit."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text).strip() or "-"
    encoded = cleaned.encode("utf-8")
    if len(encoded) <= MAX_ANNOTATION_BYTES:
        return cleaned, False
    return encoded[:MAX_ANNOTATION_BYTES].decode("utf-8", errors="ignore").rstrip(), True


@dataclass(frozen=True)
class _Identity:
    patient_code: str
    patient_info: str
    recording_info: str
    equipment: str
    technician: str


def _identity(
    patient_code: str, patient_info: str, recording_info: str, equipment: str, technician: str
) -> _Identity:
    """Header strings made ASCII; the free-text parts cut to what EDF's 80 characters leave."""
    code, equip, tech = (_header_text(x) for x in (patient_code, equipment, technician))
    if len(code) > PATIENT_FREE_CHARS:
        raise ValueError(f"patient_code={code!r} is longer than {PATIENT_FREE_CHARS} characters")
    if len(equip) + len(tech) > RECORDING_FREE_CHARS:
        raise ValueError(
            f"equipment + technician ({equip!r}, {tech!r}) are longer than "
            f"{RECORDING_FREE_CHARS} characters"
        )
    return _Identity(
        patient_code=code,
        patient_info=_header_text(patient_info)[: PATIENT_FREE_CHARS - len(code)],
        recording_info=_header_text(recording_info)[
            : RECORDING_FREE_CHARS - len(equip) - len(tech)
        ],
        equipment=equip,
        technician=tech,
    )


def _naive_utc(start: datetime) -> datetime:
    """EDF has no time zone: aware datetimes are stored as UTC."""
    if start.tzinfo is not None:
        start = start.astimezone(UTC).replace(tzinfo=None)
    if not 1985 <= start.year <= 2084:
        raise ValueError(f"start year {start.year} outside EDF's 1985-2084")
    return start


class EdfRecorder:
    """Write int16 counts (channels, samples) to an EDF+ file as they arrive.

    Sample indices are the device's (``first_index`` of each block).  The recording starts
    at ``index_origin`` (default: the first block's ``first_index``), which is ``start``
    and time 0 of annotations.  A jump forward in ``first_index`` is filled with zeros and
    annotated ``gap N samples``; samples already written are ignored (a file is not
    rewritten).  ``annotation_signals`` (1-64) sets the annotation capacity: one
    annotation per signal per data record over the whole file.  The identification
    strings go to the EDF+ header made ASCII; ``patient_info`` and ``recording_info`` (free
    text, spaces become '_' as EDF+ subfields require) are cut to what edflib keeps of the
    80-character header fields.
    """

    def __init__(
        self,
        path: Path | str,
        labels: Sequence[str],
        scales_uv_per_count: Sequence[float] | np.ndarray,
        sampling_rate_hz: int,
        start: datetime,
        record_duration_s: float = 1.0,
        *,
        patient_code: str = "",
        patient_info: str = "",
        recording_info: str = "",
        equipment: str = "neurostim",
        technician: str = "",
        annotation_signals: int = 4,
        index_origin: int | None = None,
    ) -> None:
        labels = [_check_ascii("label", str(x), EDF_LABEL_CHARS) for x in labels]
        scales = np.asarray(scales_uv_per_count, dtype=np.float64)
        if not labels or len(set(labels)) != len(labels):
            raise ValueError(f"labels must be distinct and non-empty, got {labels}")
        if scales.shape != (len(labels),):
            raise ValueError(f"need one scale per channel ({len(labels)}), got {scales.shape}")
        if not np.all(np.isfinite(scales) & (scales > 0)):
            raise ValueError(f"scales_uv_per_count must be finite and > 0, got {scales}")
        if int(sampling_rate_hz) != sampling_rate_hz or sampling_rate_hz < 1:
            raise ValueError(f"sampling_rate_hz={sampling_rate_hz} must be a positive integer")
        record_samples = sampling_rate_hz * record_duration_s
        if (
            not 0.001 <= record_duration_s <= 60
            or abs(record_samples - round(record_samples)) > 1e-9
        ):
            raise ValueError(
                f"record_duration_s={record_duration_s} must be 0.001-60 s and hold a whole "
                f"number of samples at {sampling_rate_hz} Hz"
            )
        if not 1 <= annotation_signals <= MAX_ANNOTATION_SIGNALS:
            raise ValueError(f"annotation_signals={annotation_signals} must be 1-64")
        identity = _identity(patient_code, patient_info, recording_info, equipment, technician)
        ranges = [physical_range_uv(float(s)) for s in scales]
        effective = np.array([(hi - lo) / (INT16_MAX - INT16_MIN) for lo, hi in ranges])
        if np.any(np.abs(effective / scales - 1.0) > 1e-4):
            raise ValueError(
                f"scales {scales} µV/count cannot be stored in EDF's 8-character physical "
                "range to 1e-4; record in another unit"
            )

        self._path = Path(path)
        self._labels = tuple(labels)
        self._scales = scales
        self._effective_scales = effective
        self._fs = int(sampling_rate_hz)
        self._record_samples = round(record_samples)
        self._annotation_signals = int(annotation_signals)
        self._index_origin = index_origin
        self._next_index: int | None = index_origin
        self._buffer = np.zeros((len(labels), self._record_samples), dtype=np.int16)
        self._filled = 0
        self._records = 0
        self._samples_written = 0
        self._gap_samples = 0
        self._gaps = 0
        self._duplicate_samples = 0
        self._annotations: list[EdfAnnotation] = []
        self._truncated = 0
        self._summary: EdfRecordingSummary | None = None
        self._writer = self._open_writer(identity, ranges, _naive_utc(start), record_duration_s)

    def _open_writer(
        self,
        identity: _Identity,
        ranges: list[tuple[float, float]],
        start: datetime,
        record_duration_s: float,
    ) -> pyedflib.EdfWriter:
        writer = pyedflib.EdfWriter(str(self._path), len(self._labels), pyedflib.FILETYPE_EDFPLUS)
        try:
            with warnings.catch_warnings():
                # setDatarecordDuration always warns that it overrides the automatic choice
                warnings.simplefilter("ignore", UserWarning)
                writer.setSignalHeaders(
                    [
                        {
                            "label": label,
                            "dimension": PHYSICAL_UNIT,
                            "sample_frequency": self._fs,
                            "physical_min": lo,
                            "physical_max": hi,
                            "digital_min": INT16_MIN,
                            "digital_max": INT16_MAX,
                            "transducer": "",
                            "prefilter": "",
                        }
                        for label, (lo, hi) in zip(self._labels, ranges, strict=True)
                    ]
                )
                writer.setDatarecordDuration(record_duration_s)
            writer.set_number_of_annotation_signals(self._annotation_signals)
            writer.setPatientCode(identity.patient_code)
            writer.setPatientName("X")  # EDF+: X for an unknown/withheld name
            writer.setPatientAdditional(identity.patient_info)
            writer.setEquipment(identity.equipment)
            writer.setTechnician(identity.technician)
            writer.setRecordingAdditional(identity.recording_info)
            writer.setStartdatetime(start)
        except BaseException:
            writer.close()
            raise
        return writer

    # -- public API -------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

    @property
    def sampling_rate_hz(self) -> int:
        return self._fs

    @property
    def record_samples(self) -> int:
        """Samples per channel in one EDF data record."""
        return self._record_samples

    @property
    def effective_scales_uv_per_count(self) -> np.ndarray:
        """µV per count as readers compute it from the 8-character header range.

        Equal to the given scales when ``32767 × scale`` and ``-32768 × scale`` fit in 8
        characters (e.g. 0.1, 0.195, 0.5 µV/count); otherwise within 1e-4 relative.
        """
        return self._effective_scales.copy()

    @property
    def index_origin(self) -> int | None:
        """Device sample index of the recording's first sample (None before any data)."""
        return self._index_origin

    @property
    def samples_in_file(self) -> int:
        """Samples per channel accepted so far (data and gap zeros), including the buffer."""
        return self._records * self._record_samples + self._filled

    @property
    def now_s(self) -> float:
        """Time of the next sample from the recording start: where ``annotate_now`` goes."""
        return self.samples_in_file / self._fs

    def write_counts(self, first_index: int, counts: np.ndarray) -> None:
        """Append an int16 block (channels, samples) starting at device index ``first_index``."""
        self._check_open()
        block = np.asarray(counts)
        if block.ndim != 2 or block.shape[0] != len(self._labels):
            raise ValueError(
                f"counts must be shaped ({len(self._labels)}, n_samples), got {block.shape}"
            )
        if not np.issubdtype(block.dtype, np.integer):
            raise TypeError(f"counts must be integers (int16 ADC counts), got {block.dtype}")
        if (
            block.dtype != np.int16
            and block.size
            and (block.min() < INT16_MIN or block.max() > INT16_MAX)
        ):
            raise ValueError("counts outside the int16 range")
        if self._next_index is None:
            self._index_origin = int(first_index)
            self._next_index = int(first_index)
        first = int(first_index)
        if first < self._next_index:
            overlap = min(self._next_index - first, block.shape[1])
            self._duplicate_samples += overlap
            block = block[:, overlap:]
            first += overlap
        if first > self._next_index:
            self._fill_gap(first - self._next_index)
        if block.shape[1]:
            self._append(block)
            self._samples_written += block.shape[1]

    def annotate(self, t_s: float, text: str, duration_s: float = -1) -> None:
        """Annotate ``text`` at ``t_s`` seconds from the recording start (duration -1: none)."""
        self._check_open()
        onset = float(t_s)
        if not (math.isfinite(onset) and onset >= 0):
            raise ValueError(f"annotation onset t_s={t_s} must be finite and >= 0")
        duration = float(duration_s)
        if not math.isfinite(duration) or (duration < 0 and duration != -1):
            raise ValueError(f"duration_s={duration_s} must be >= 0 or -1 (none)")
        cleaned, truncated = _clean_annotation(text)
        self._truncated += truncated
        self._annotations.append(EdfAnnotation(onset, duration, cleaned))

    def annotate_now(self, text: str, duration_s: float = -1) -> None:
        """Annotate at the current end of the recording (the next sample's time)."""
        self.annotate(self.now_s, text, duration_s)

    def close(self) -> EdfRecordingSummary:
        """Pad the last data record with zeros (annotated), write annotations, close.

        A recording without any sample gets one zero record so that it is a readable file.
        Calling close again returns the same summary.
        """
        if self._summary is not None:
            return self._summary
        padded = (self._record_samples - self._filled) % self._record_samples
        if self._records == 0 and self._filled == 0:
            padded = self._record_samples
        if padded:
            self.annotate(self.now_s, f"padding {padded} samples", padded / self._fs)
            self._append(np.zeros((len(self._labels), padded), dtype=np.int16))
        capacity = self._records * self._annotation_signals
        ordered = sorted(self._annotations, key=lambda a: a.onset_s)  # stable: same-onset order
        kept = ordered[:capacity]
        for annotation in kept:
            self._writer.writeAnnotation(annotation.onset_s, annotation.duration_s, annotation.text)
        self._writer.close()
        dropped = len(ordered) - len(kept)
        if dropped:
            warnings.warn(
                f"{self._path}: {dropped} annotation(s) after {kept[-1].onset_s:.3f} s dropped: "
                f"capacity {capacity} ({self._annotation_signals} per data record); raise "
                "annotation_signals",
                RuntimeWarning,
                stacklevel=2,
            )
        self._summary = EdfRecordingSummary(
            path=self._path,
            data_records=self._records,
            samples_written=self._samples_written,
            gap_samples=self._gap_samples,
            gaps=self._gaps,
            duplicate_samples=self._duplicate_samples,
            padded_samples=padded,
            annotations_written=len(kept),
            annotations_dropped=dropped,
            annotations_truncated=self._truncated,
        )
        self._annotations = []
        return self._summary

    def __enter__(self) -> EdfRecorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._summary is not None:
            raise ValueError(f"{self._path}: recording is closed")

    def _fill_gap(self, n_missing: int) -> None:
        assert self._next_index is not None
        self.annotate(self.now_s, f"gap {n_missing} samples", n_missing / self._fs)
        self._gaps += 1
        self._gap_samples += n_missing
        zeros = np.zeros((len(self._labels), self._record_samples), dtype=np.int16)
        remaining = n_missing
        while remaining:  # record by record: a long gap must not allocate its whole length
            take = min(remaining, self._record_samples)
            self._append(zeros[:, :take])
            remaining -= take

    def _append(self, block: np.ndarray) -> None:
        position = 0
        total = block.shape[1]
        while position < total:
            take = min(total - position, self._record_samples - self._filled)
            self._buffer[:, self._filled : self._filled + take] = block[
                :, position : position + take
            ]
            self._filled += take
            position += take
            if self._filled == self._record_samples:
                self._write_record()
        if self._next_index is not None:
            self._next_index += total

    def _write_record(self) -> None:
        # one data record: all samples of signal 0, then signal 1, ... (C order)
        status = self._writer.blockWriteDigitalShortSamples(self._buffer.reshape(-1))
        if status < 0:
            raise OSError(f"{self._path}: edflib could not write data record {self._records}")
        self._records += 1
        self._filled = 0
