"""EDF+ recorder: exact counts, µV scale, gaps, padding, annotations, read by pyedflib and MNE."""

from __future__ import annotations

import tracemalloc
import warnings
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import mne
import numpy as np
import pyedflib
import pytest

from controller.recorder import (
    EdfRecorder,
    EdfRecordingSummary,
    edf_number,
    physical_range_uv,
)

FS_HZ = 250
LABELS = ("Fp1", "O2", "Cz")
SCALES = (0.1, 0.195, 0.5)  # µV/count whose int16 ranges fit EDF's 8 characters exactly
START = datetime(2024, 5, 17, 8, 30, 0)
Recording = tuple[Path, np.ndarray, EdfRecordingSummary]


def _synthetic_counts(n_channels: int, n_samples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    counts = rng.integers(-32768, 32768, size=(n_channels, n_samples), dtype=np.int64)
    counts[:, 0], counts[:, 1], counts[:, 2] = -32768, 32767, 0  # the rails must survive too
    return counts.astype(np.int16)


def _write_blocks(rec: EdfRecorder, counts: np.ndarray, first_index: int, sizes: list[int]) -> None:
    position, k = 0, 0
    while position < counts.shape[1]:
        size = sizes[k % len(sizes)]
        rec.write_counts(first_index + position, counts[:, position : position + size])
        position += size
        k += 1


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    """3.2 s of counts in odd block sizes, a 100-sample gap, then 1.1 s more, annotated."""
    path = tmp_path_factory.mktemp("edf") / "run.edf"
    part1 = _synthetic_counts(3, 800, seed=1)
    part2 = _synthetic_counts(3, 275, seed=2)
    origin = 1_000_000  # device sample index of the first sample
    rec = EdfRecorder(
        path,
        LABELS,
        SCALES,
        FS_HZ,
        START,
        1.0,
        patient_code="P001",
        patient_info="bench phantom",
        recording_info="neurostim sim-1 fw 1.2.0",
        equipment="neurostim-sim",
        technician="",
    )
    rec.annotate(0.5, "detector SUSPECT")
    _write_blocks(rec, part1, origin, [1, 7, 64, 333, 25])
    rec.annotate_now("stimulation 2.00 mA 250 us 60 Hz")  # at 800 samples = 3.2 s
    _write_blocks(rec, part2, origin + 900, [50])  # samples 800..899 missing
    rec.annotate(2.0, "truth prodrome onset", duration_s=1.5)  # out of order on purpose
    rec.annotate(4.0, "marker 7 button")
    summary = rec.close()
    expected = np.concatenate(
        [part1, np.zeros((3, 100), np.int16), part2, np.zeros((3, 75), np.int16)], axis=1
    )
    return path, expected, summary


def test_summary_counts_gaps_and_padding(recording: Recording) -> None:
    _, expected, summary = recording
    assert summary.samples_written == 1075
    assert (summary.gaps, summary.gap_samples) == (1, 100)
    assert summary.padded_samples == 75 and summary.data_records == 5
    assert summary.samples_in_file == expected.shape[1] == 1250
    assert summary.annotations_written == 6 and summary.annotations_dropped == 0
    assert summary.duplicate_samples == 0 and summary.annotations_truncated == 0


def test_pyedflib_reads_exact_counts_labels_units_and_annotations(
    recording: Recording,
) -> None:
    path, expected, _ = recording
    with pyedflib.EdfReader(str(path)) as reader:
        assert tuple(reader.getSignalLabels()) == LABELS
        assert list(reader.getSampleFrequencies()) == [FS_HZ] * 3
        assert reader.getStartdatetime() == START
        assert reader.getPatientCode() == "P001"
        assert reader.getEquipment() == "neurostim-sim"
        assert reader.getTechnician() == ""
        assert reader.getPatientAdditional() == "bench_phantom"
        assert reader.getRecordingAdditional() == "neurostim_sim-1_fw_1.2.0"
        for ch, scale in enumerate(SCALES):
            assert reader.getPhysicalDimension(ch) == "uV"
            assert (reader.getDigitalMinimum(ch), reader.getDigitalMaximum(ch)) == (-32768, 32767)
            assert reader.getPhysicalMaximum(ch) == pytest.approx(32767 * scale, abs=1e-9)
            digital = reader.readSignal(ch, digital=True)
            np.testing.assert_array_equal(digital, expected[ch])
            # physical = counts × scale; the scales above are exact in the header, so only
            # float rounding remains (far below the 1-count resolution of `scale` µV)
            physical = reader.readSignal(ch)
            np.testing.assert_allclose(physical, expected[ch] * scale, rtol=0, atol=1e-9)
        onsets, durations, texts = reader.readAnnotations()
    got = sorted(zip(onsets, durations, texts, strict=True))
    assert got == [
        (0.5, -1.0, "detector SUSPECT"),
        (2.0, 1.5, "truth prodrome onset"),
        (3.2, -1.0, "stimulation 2.00 mA 250 us 60 Hz"),
        (3.2, 0.4, "gap 100 samples"),
        (4.0, -1.0, "marker 7 button"),
        (4.7, 0.3, "padding 75 samples"),
    ]


def test_mne_reads_volts_channels_and_annotation_onsets(
    recording: Recording,
) -> None:
    path, expected, _ = recording
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    assert raw.ch_names == list(LABELS)
    assert raw.info["sfreq"] == FS_HZ
    assert raw.n_times == expected.shape[1]
    data_v = raw.get_data()
    for ch, scale in enumerate(SCALES):
        # MNE returns volts. Tolerance: 1e-3 of one count (scale µV), far inside the digital
        # resolution, so a count off by one would fail.
        np.testing.assert_allclose(
            data_v[ch], expected[ch] * scale * 1e-6, rtol=0, atol=1e-3 * scale * 1e-6
        )
    annotations = {
        d: o for o, d in zip(raw.annotations.onset, raw.annotations.description, strict=True)
    }
    for text, onset_s in [
        ("detector SUSPECT", 0.5),
        ("truth prodrome onset", 2.0),
        ("stimulation 2.00 mA 250 us 60 Hz", 3.2),
        ("gap 100 samples", 3.2),
        ("marker 7 button", 4.0),
        ("padding 75 samples", 4.7),
    ]:
        assert abs(annotations[text] - onset_s) <= 1 / FS_HZ, text


def test_scale_that_does_not_fit_eight_characters_is_rounded_within_a_count(
    tmp_path: Path,
) -> None:
    scale = 0.0298  # -32768 × 0.0298 = -976.4864 needs 9 characters
    lo, hi = physical_range_uv(scale)
    assert (lo, hi) == (-976.486, 976.4566)
    path = tmp_path / "odd.edf"
    counts = _synthetic_counts(1, 500)
    with EdfRecorder(path, ["LFP1"], [scale], FS_HZ, START) as rec:
        rec.write_counts(0, counts)
        effective = rec.effective_scales_uv_per_count[0]
    assert abs(effective / scale - 1) < 1e-6
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    error_uv = np.abs(raw.get_data()[0] * 1e6 - counts[0] * scale)
    assert error_uv.max() < 0.5 * scale  # less than half a count: no count is misread
    with pyedflib.EdfReader(str(path)) as reader:
        np.testing.assert_array_equal(reader.readSignal(0, digital=True), counts[0])


def test_overlapping_blocks_are_ignored_and_index_origin_sets_time_zero(tmp_path: Path) -> None:
    path = tmp_path / "dup.edf"
    counts = _synthetic_counts(2, 500, seed=3)
    rec = EdfRecorder(path, ["a", "b"], [1.0, 1.0], FS_HZ, START, index_origin=100)
    rec.write_counts(100, counts[:, :300])
    rec.write_counts(200, counts[:, 100:400])  # 200 of these 300 samples were written
    rec.write_counts(150, counts[:, 50:100])  # all old
    rec.write_counts(400, counts[:, 300:])
    assert rec.index_origin == 100 and rec.now_s == 2.0
    summary = rec.close()
    assert summary.duplicate_samples == 350 and summary.gaps == 0 and summary.padded_samples == 0
    with pyedflib.EdfReader(str(path)) as reader:
        np.testing.assert_array_equal(reader.readSignal(1, digital=True), counts[1])
    with pytest.raises(ValueError, match="closed"):
        rec.write_counts(600, counts)
    assert rec.close() is summary


def test_gap_before_the_first_sample_and_a_long_gap(tmp_path: Path) -> None:
    path = tmp_path / "gap.edf"
    rec = EdfRecorder(path, ["a"], [1.0], FS_HZ, START, 0.5, index_origin=0)
    rec.write_counts(10, np.full((1, 115), 5, np.int16))
    rec.write_counts(10 + 115 + 1000, np.full((1, 125), 7, np.int16))
    summary = rec.close()
    assert (summary.gaps, summary.gap_samples, summary.padded_samples) == (2, 1010, 0)
    assert summary.data_records == 10  # 1250 samples in 0.5 s records of 125
    with pyedflib.EdfReader(str(path)) as reader:
        assert reader.getFileDuration() == 5.0
        signal = reader.readSignal(0, digital=True)
        texts = list(reader.readAnnotations()[2])
    assert (signal[:10] == 0).all() and (signal[10:125] == 5).all()
    assert (signal[125:1125] == 0).all() and (signal[1125:] == 7).all()
    assert texts == ["gap 10 samples", "gap 1000 samples"]


def test_recording_memory_does_not_grow_with_length(tmp_path: Path) -> None:
    path = tmp_path / "long.edf"
    block = _synthetic_counts(8, 250)
    rec = EdfRecorder(path, [f"ch{i}" for i in range(8)], [0.1] * 8, FS_HZ, START)
    tracemalloc.start()
    try:
        for second in range(120):  # 120 s: 480 kB of counts
            rec.write_counts(second * 250, block)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rec.close()
    assert peak_bytes < 64_000
    assert path.stat().st_size > 120 * 8 * 250 * 2


def test_annotation_capacity_and_long_texts(tmp_path: Path) -> None:
    path = tmp_path / "busy.edf"
    rec = EdfRecorder(path, ["a"], [1.0], FS_HZ, START, annotation_signals=2)
    rec.write_counts(0, np.zeros((1, 500), np.int16))  # 2 records: capacity 4
    rec.annotate(0.1, "fault IMPEDANCE raised: " + "x" * 40 + " µ")
    for k in range(4):
        rec.annotate(0.2 + 0.1 * k, f"a{k}")
    with pytest.warns(RuntimeWarning, match="1 annotation"):
        summary = rec.close()
    assert (summary.annotations_written, summary.annotations_dropped) == (4, 1)
    assert summary.annotations_truncated == 1
    with pyedflib.EdfReader(str(path)) as reader:
        texts = list(reader.readAnnotations()[2])
    assert texts == ["fault IMPEDANCE raised: xxxxxxxxxxxxxxxx", "a0", "a1", "a2"]


def test_empty_recording_is_one_padded_record_and_aware_start_is_utc(tmp_path: Path) -> None:
    path = tmp_path / "empty.edf"
    start = datetime(2024, 5, 17, 10, 30, tzinfo=timezone(timedelta(hours=2)))
    summary = EdfRecorder(path, ["a"], [1.0], FS_HZ, start).close()
    assert summary.data_records == 1 and summary.padded_samples == FS_HZ
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    assert raw.info["meas_date"] == datetime(2024, 5, 17, 8, 30, tzinfo=UTC)
    assert list(raw.annotations.description) == ["padding 250 samples"]


def test_invalid_setups_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.edf"
    with pytest.raises(ValueError, match="16"):
        EdfRecorder(path, ["a" * 17], [1.0], FS_HZ, START)
    with pytest.raises(ValueError, match="ASCII"):
        EdfRecorder(path, ["µV1"], [1.0], FS_HZ, START)
    with pytest.raises(ValueError, match="distinct"):
        EdfRecorder(path, ["a", "a"], [1.0, 1.0], FS_HZ, START)
    with pytest.raises(ValueError, match="one scale per channel"):
        EdfRecorder(path, ["a", "b"], [1.0], FS_HZ, START)
    with pytest.raises(ValueError, match="whole"):
        EdfRecorder(path, ["a"], [1.0], FS_HZ, START, record_duration_s=0.002)
    with pytest.raises(ValueError, match="8-character"):
        EdfRecorder(path, ["a"], [1e-8], FS_HZ, START)
    with pytest.raises(ValueError, match="patient_code"):
        EdfRecorder(path, ["a"], [1.0], FS_HZ, START, patient_code="P" * 65)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pyedflib would warn about fields over 80 characters
        rec = EdfRecorder(
            path, ["a"], [1.0], FS_HZ, START, recording_info="dévice " * 20, patient_info="x" * 90
        )
    with pytest.raises(TypeError, match="integers"):
        rec.write_counts(0, np.zeros((1, 5)))
    with pytest.raises(ValueError, match="int16"):
        rec.write_counts(0, np.full((1, 5), 40_000))
    with pytest.raises(ValueError, match="shaped"):
        rec.write_counts(0, np.zeros((2, 5), np.int16))
    with pytest.raises(ValueError, match=">= 0"):
        rec.annotate(-1.0, "x")
    rec.close()
    with pyedflib.EdfReader(str(path)) as reader:
        recording_info = reader.getRecordingAdditional()
        # equipment "neurostim" (9) leaves 30 of edflib's 39 characters
        assert recording_info == ("d_vice_" * 5)[:30]
        assert reader.getPatientAdditional() == "x" * 64


def test_edf_number_fits_the_header_field() -> None:
    assert edf_number(3276.7) == 3276.7
    assert edf_number(-6389.76) == -6389.76
    assert edf_number(-976.4864) == -976.486
    assert edf_number(1234567.8) == 1234568.0
    assert edf_number(-0.00001) == -0.00001
    assert edf_number(-0.000001) == 0.0
    with pytest.raises(ValueError):
        edf_number(1e9)
