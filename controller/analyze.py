"""``neurostim analyze``: the online feature -> detector pipeline run over an EDF/EDF+ file.

The recording is read in chunks and pushed through the same :class:`FeatureExtractor` and
:class:`Detector` objects the controller core uses, so each row is what the closed loop
would have seen for that window.  Stimulation changes annotated in the recording
("stimulation ..." annotations written by the controller) blank the detector exactly as the
core does after it sends a command.  Output columns: docs/recording.md.
"""

from __future__ import annotations

import copy
import csv
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
import pyedflib

from controller.config import ControllerConfig
from controller.detector import Baseline, Detector
from controller.detector.types import DetectorOutput, DetectorState
from controller.features import FeatureExtractor, FeatureFrame, SignalQuality

STIMULATION_ANNOTATION_PREFIX = "stimulation"
"""Annotations starting with this word mark a commanded stimulation change."""

DEFAULT_CHUNK_SAMPLES = 4096

# physical dimension (lower case, µ/μ spelled u) -> µV per unit
_UV_PER_UNIT = {"uv": 1.0, "mv": 1.0e3, "v": 1.0e6, "nv": 1.0e-3}


def uv_per_unit(dimension: str) -> float:
    """Factor from an EDF physical dimension (uV, µV, mV, V, nV) to µV; ValueError otherwise."""
    key = dimension.strip().replace("µ", "u").replace("μ", "u").lower()
    if key not in _UV_PER_UNIT:
        raise ValueError(f"physical dimension {dimension!r} is not a voltage unit (uV, mV, V, nV)")
    return _UV_PER_UNIT[key]


@dataclass(frozen=True)
class AnalysisRow:
    """One window: its features of interest and the detector's verdict."""

    t_start_s: float  # from the recording start
    t_end_s: float
    channel_names: tuple[str, ...]
    band_names: tuple[str, ...]
    band_power_uv2: np.ndarray  # (channels, bands)
    coherence: np.ndarray  # (bands, channels, channels), zero diagonal
    quality: SignalQuality
    score: float | None
    state: DetectorState
    blanked: bool
    good_channels: int
    reason: str

    @classmethod
    def of(cls, frame: FeatureFrame, output: DetectorOutput) -> AnalysisRow:
        """The row for a frame and the detector's output for it."""
        return cls(
            t_start_s=frame.t_start_s,
            t_end_s=frame.t_end_s,
            channel_names=frame.channel_names,
            band_names=frame.band_names,
            band_power_uv2=frame.band_power_uv2,
            coherence=frame.coherence,
            quality=frame.quality,
            score=output.score,
            state=output.state,
            blanked=output.blanked,
            good_channels=output.good_channels,
            reason=output.reason,
        )


@dataclass(frozen=True)
class EdfSignals:
    """What analyze needs from an EDF header."""

    labels: tuple[str, ...]
    sampling_rate_hz: float
    n_samples: int
    uv_per_unit: np.ndarray  # per channel
    clip_level_uv: np.ndarray  # per channel: the smaller physical rail, in µV


def edf_signals(reader: pyedflib.EdfReader, path: Path) -> EdfSignals:
    n = reader.signals_in_file
    if n < 1:
        raise ValueError(f"{path}: no signals")
    labels = tuple(str(x).strip() for x in reader.getSignalLabels())
    rates = np.asarray(reader.getSampleFrequencies(), dtype=np.float64)
    if not np.all(rates == rates[0]):
        listing = ", ".join(f"{lab} {r:g} Hz" for lab, r in zip(labels, rates, strict=True))
        raise ValueError(f"{path}: channels have different sampling rates ({listing})")
    lengths = np.asarray(reader.getNSamples())
    factors = np.empty(n)
    clip = np.empty(n)
    for ch in range(n):
        try:
            factors[ch] = uv_per_unit(reader.getPhysicalDimension(ch))
        except ValueError as exc:
            raise ValueError(f"{path}: channel {labels[ch]!r}: {exc}") from exc
        rails = sorted(
            (abs(float(reader.getPhysicalMinimum(ch))), abs(float(reader.getPhysicalMaximum(ch))))
        )
        rail = rails[0] if rails[0] > 0 else rails[1]
        clip[ch] = rail * factors[ch] if rail > 0 else math.inf
    return EdfSignals(labels, float(rates[0]), int(lengths.min()), factors, clip)


def stimulation_onsets_s(reader: pyedflib.EdfReader) -> list[float]:
    onsets, _durations, texts = reader.readAnnotations()
    return sorted(
        float(onset)
        for onset, text in zip(onsets, texts, strict=True)
        if str(text).split(" ", 1)[0] == STIMULATION_ANNOTATION_PREFIX
    )


def _read_block_uv(
    reader: pyedflib.EdfReader, signals: EdfSignals, start: int, n: int
) -> np.ndarray:
    block = np.empty((len(signals.labels), n))
    for ch in range(len(signals.labels)):
        block[ch] = reader.readSignal(ch, start, n) * signals.uv_per_unit[ch]
    return block


def iter_analysis(
    path: Path | str,
    config: ControllerConfig | None = None,
    *,
    chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
    baseline: Baseline | None = None,
    replay_stimulation_blanking: bool = True,
) -> Iterator[AnalysisRow]:
    """Rows of a recording, one per feature window, computed as the file is read.

    Without ``baseline`` the detector calibrates on the recording itself (CALIBRATING for
    ``detector.calibration_s``); a saved baseline is copied, so the caller's stays as is.
    """
    cfg = config if config is not None else ControllerConfig()
    if chunk_samples < 1:
        raise ValueError(f"chunk_samples={chunk_samples} must be >= 1")
    edf_path = Path(path)
    with pyedflib.EdfReader(str(edf_path)) as reader:
        signals = edf_signals(reader, edf_path)
        finite_clip = np.isfinite(signals.clip_level_uv).all()
        extractor = FeatureExtractor(
            len(signals.labels),
            signals.sampling_rate_hz,
            cfg.features,
            clip_level_uv=signals.clip_level_uv if finite_clip else None,
            channel_names=signals.labels,
        )
        detector = Detector(
            cfg.detector,
            list(signals.labels),
            copy.deepcopy(baseline) if baseline is not None else None,
        )
        changes_s = stimulation_onsets_s(reader) if replay_stimulation_blanking else []
        for frame, change_s in iter_frames(reader, signals, extractor, changes_s, chunk_samples):
            if change_s is not None:
                detector.blank_after_change(change_s)
            yield AnalysisRow.of(frame, detector.update(frame))


def iter_frames(
    reader: pyedflib.EdfReader,
    signals: EdfSignals,
    extractor: FeatureExtractor,
    changes_s: Sequence[float],
    chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
) -> Iterator[tuple[FeatureFrame, float | None]]:
    """The recording's frames, each with the time to blank from after a stimulation change.

    A command annotated after the previous window blanks from that window's end on, as the
    core blanks from the moment it sends one (the first window: from the annotation);
    None when no change came since the previous window.
    """
    next_change = 0
    last_t_end_s: float | None = None
    for start in range(0, signals.n_samples, chunk_samples):
        n = min(chunk_samples, signals.n_samples - start)
        for frame in extractor.push(_read_block_uv(reader, signals, start, n)):
            change_s: float | None = None
            while next_change < len(changes_s) and changes_s[next_change] < frame.t_end_s:
                onset_s = changes_s[next_change]
                next_change += 1
                change_s = last_t_end_s if last_t_end_s is not None else onset_s
            yield frame, change_s
            last_t_end_s = frame.t_end_s


def analyze_recording(
    path: Path | str, config: ControllerConfig | None = None, *, baseline: Baseline | None = None
) -> list[AnalysisRow]:
    """All rows of a recording (see :func:`iter_analysis` to stream long files)."""
    return list(iter_analysis(path, config, baseline=baseline))


# -- writers ----------------------------------------------------------------------------


def _finite_or_none(x: float | None) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(x)


def row_as_json(row: AnalysisRow) -> dict[str, Any]:
    """A row as plain JSON types; matrices as nested lists in channel order."""
    q = row.quality
    return {
        "t_start_s": row.t_start_s,
        "t_end_s": row.t_end_s,
        "channels": list(row.channel_names),
        "band_power_uv2": {
            band: row.band_power_uv2[:, b].tolist() for b, band in enumerate(row.band_names)
        },
        "coherence": {band: row.coherence[b].tolist() for b, band in enumerate(row.band_names)},
        "quality": {
            "good": q.good.astype(bool).tolist(),
            "flatline": q.flatline.astype(bool).tolist(),
            "clipped": q.clipped.astype(bool).tolist(),
            "invalid": q.invalid.astype(bool).tolist(),
            "line_noise_ratio": q.line_noise_ratio.tolist(),
        },
        "good_channels": row.good_channels,
        "score": _finite_or_none(row.score),
        "state": row.state.value,
        "blanked": row.blanked,
        "reason": row.reason,
    }


def csv_columns(channel_names: Sequence[str], band_names: Sequence[str]) -> list[str]:
    """CSV header: times, band powers, upper-triangle coherence, good flags, score, state."""
    columns = ["t_start_s", "t_end_s"]
    columns += [f"{band}_power_uv2.{ch}" for band in band_names for ch in channel_names]
    pairs = [(a, b) for i, a in enumerate(channel_names) for b in channel_names[i + 1 :]]
    columns += [f"coherence.{band}.{a}~{b}" for band in band_names for a, b in pairs]
    columns += [f"quality.good.{ch}" for ch in channel_names]
    columns += ["score", "state"]
    return columns


def csv_values(row: AnalysisRow) -> list[str]:
    """The row's values in :func:`csv_columns` order (floats as repr, score empty if None)."""
    values = [repr(row.t_start_s), repr(row.t_end_s)]
    values += [repr(float(x)) for x in row.band_power_uv2.T.ravel()]
    upper = np.triu_indices(len(row.channel_names), k=1)
    values += [repr(float(x)) for x in row.coherence[:, upper[0], upper[1]].ravel()]
    values += [str(int(g)) for g in row.quality.good]
    score = _finite_or_none(row.score)
    values += ["" if score is None else repr(score), row.state.value]
    return values


class JsonRowWriter:
    """Streams rows into a JSON array (one object per row); memory stays one row."""

    def __init__(self, path: Path | str) -> None:
        # the writer owns the file until close() (rows arrive one at a time)
        self._file: IO[str] = Path(path).open("w", encoding="utf-8")  # noqa: SIM115
        self._file.write("[")
        self.rows = 0

    def write(self, row: AnalysisRow) -> None:
        self._file.write(",\n" if self.rows else "\n")
        self._file.write(json.dumps(row_as_json(row), allow_nan=False))
        self.rows += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.write("\n]\n")
            self._file.close()

    def __enter__(self) -> JsonRowWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class CsvRowWriter:
    """Streams rows into a CSV file, one line per window; the header comes from the first row."""

    def __init__(self, path: Path | str) -> None:
        # the writer owns the file until close() (rows arrive one at a time)
        self._file: IO[str] = Path(path).open("w", encoding="utf-8", newline="")  # noqa: SIM115
        self._writer = csv.writer(self._file)
        self._columns: list[str] | None = None
        self.rows = 0

    def write(self, row: AnalysisRow) -> None:
        if self._columns is None:
            self._columns = csv_columns(row.channel_names, row.band_names)
            self._writer.writerow(self._columns)
        values = csv_values(row)
        if len(values) != len(self._columns):
            raise ValueError("rows of one CSV must share channels and bands")
        self._writer.writerow(values)
        self.rows += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> CsvRowWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def write_json(rows: Iterable[AnalysisRow], path: Path | str) -> int:
    """Write rows as a JSON array of objects; returns the number of rows."""
    with JsonRowWriter(path) as writer:
        for row in rows:
            writer.write(row)
    return writer.rows


def write_csv(rows: Iterable[AnalysisRow], path: Path | str) -> int:
    """Write rows as CSV (columns: :func:`csv_columns`); returns the number of rows."""
    with CsvRowWriter(path) as writer:
        for row in rows:
            writer.write(row)
    return writer.rows
