"""analyze: offline rows equal the online pipeline's; units; writers; the two CLI commands."""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyedflib
import pytest

from controller.analyze import (
    AnalysisRow,
    analyze_recording,
    csv_columns,
    iter_analysis,
    row_as_json,
    uv_per_unit,
    write_csv,
    write_json,
)
from controller.audit import AuditLog
from controller.config import ControllerConfig
from controller.detector import Detector, DetectorConfig, DetectorOutput, DetectorState
from controller.features import FeatureExtractor, FeatureFrame
from controller.recorder import EdfRecorder
from controller.records_cli import analyze_command, audit_verify_command, register_records

FS_HZ = 250
LABELS = ("Fp1", "Fp2", "O1", "O2")
SCALE_UV = 0.1
FRAME_SAMPLES = 25  # a SAMPLES frame, as the device streams them
START = datetime(2024, 5, 17, 8, 30)
COMMAND_AFTER_WINDOW = 40  # the online "core" sends a stimulation command after this window


def _config() -> ControllerConfig:
    detector = DetectorConfig(
        calibration_s=8.0,
        score_smoothing_s=0.0,
        onset_s=1.0,
        termination_s=1.0,
        blanking_after_change_s=3.0,
        alpha_peak_variability_s=2.0,
    )
    return ControllerConfig(detector=detector)


def _counts(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise plus a 10 Hz rhythm; from 20 s on a shared 20 Hz beta source grows in."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS_HZ)
    t = np.arange(n) / FS_HZ
    uv = 15 * rng.standard_normal((len(LABELS), n))
    uv += 20 * np.sin(2 * np.pi * 10 * t + rng.uniform(0, 2 * np.pi, (len(LABELS), 1)))
    beta = rng.standard_normal(n)
    beta = np.convolve(beta, np.sin(2 * np.pi * 20 * np.arange(25) / FS_HZ), mode="same")
    uv += np.clip((t - 20) / 5, 0, 1) * 10 * beta
    return np.round(uv / SCALE_UV).astype(np.int16)


@dataclass
class OnlineRun:
    path: Path
    frames: list[FeatureFrame]
    outputs: list[DetectorOutput]


def _record_online(path: Path, counts: np.ndarray, config: ControllerConfig) -> OnlineRun:
    """Stream counts frame by frame as the core does: recorder, extractor, detector, and a
    stimulation command (annotation + blanking) after one window."""
    extractor = FeatureExtractor(
        len(LABELS),
        FS_HZ,
        config.features,
        clip_level_uv=32767 * SCALE_UV,
        channel_names=LABELS,
    )
    detector = Detector(config.detector, list(LABELS))
    frames: list[FeatureFrame] = []
    outputs: list[DetectorOutput] = []
    with EdfRecorder(path, LABELS, [SCALE_UV] * len(LABELS), FS_HZ, START) as recorder:
        for first in range(0, counts.shape[1], FRAME_SAMPLES):
            block = counts[:, first : first + FRAME_SAMPLES]
            recorder.write_counts(5000 + first, block)
            for frame in extractor.push(block * SCALE_UV):
                frames.append(frame)
                outputs.append(detector.update(frame))
                if len(frames) == COMMAND_AFTER_WINDOW:
                    recorder.annotate_now("stimulation 1.00 mA 250 us 60 Hz")
                    detector.blank_after_change(frame.t_end_s)
        recorder.annotate_now("marker 1 not a stimulation")
    return OnlineRun(path, frames, outputs)


@pytest.fixture(scope="module")
def online(tmp_path_factory: pytest.TempPathFactory) -> OnlineRun:
    path = tmp_path_factory.mktemp("analyze") / "run.edf"
    return _record_online(path, _counts(40.0), _config())


def test_offline_rows_equal_the_online_pipeline(online: OnlineRun) -> None:
    rows = analyze_recording(online.path, _config())
    assert len(rows) == len(online.frames) == 77  # (40 s - 2 s window) / 0.5 s hop + 1
    for row, frame, output in zip(rows, online.frames, online.outputs, strict=True):
        assert (row.t_start_s, row.t_end_s) == (frame.t_start_s, frame.t_end_s)
        assert row.channel_names == LABELS
        # the file holds counts × 0.1 µV; pyedflib's (digital - dmin) × gain + pmin differs
        # from counts × 0.1 only by float rounding
        np.testing.assert_allclose(row.band_power_uv2, frame.band_power_uv2, rtol=1e-9)
        np.testing.assert_allclose(row.coherence, frame.coherence, rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(row.quality.good, frame.quality.good)
        assert (row.state, row.blanked, row.good_channels) == (
            output.state,
            output.blanked,
            output.good_channels,
        )
        if output.score is None:
            assert row.score is None
        else:
            assert row.score == pytest.approx(output.score, rel=1e-6, abs=1e-9)
    states = {row.state for row in rows}
    # calibrated on the first 8 s, then the growing shared beta source drives the score up
    assert {DetectorState.CALIBRATING, DetectorState.NORMAL, DetectorState.PRODROME} <= states
    assert any(row.score is not None for row in rows)
    # the stimulation annotation blanked the windows starting within 3 s of the command
    command_t_s = online.frames[COMMAND_AFTER_WINDOW - 1].t_end_s
    blanked = [r.blanked for r in rows if command_t_s <= r.t_start_s < command_t_s + 3.0]
    assert blanked and all(blanked)
    assert not rows[COMMAND_AFTER_WINDOW - 1].blanked


def test_without_replaying_stimulation_the_windows_are_not_blanked(online: OnlineRun) -> None:
    rows = list(iter_analysis(online.path, _config(), replay_stimulation_blanking=False))
    assert not any(r.blanked for r in rows)


def _rewrite_in(path: Path, source: Path, unit: str, factor: float, fs_hz: list[int]) -> None:
    """The same digital samples with the physical range expressed in another unit."""
    with pyedflib.EdfReader(str(source)) as reader:
        digital = [reader.readSignal(ch, digital=True).astype(np.int32) for ch in range(4)]
        headers = reader.getSignalHeaders()
    new_headers: list[dict[str, str | int | float | None]] = [
        {
            "label": str(header["label"]),
            "dimension": unit,
            "sample_frequency": rate,
            "physical_max": float(header["physical_max"]) * factor,
            "physical_min": float(header["physical_min"]) * factor,
            "digital_max": int(header["digital_max"]),
            "digital_min": int(header["digital_min"]),
            "transducer": "",
            "prefilter": "",
        }
        for header, rate in zip(headers, fs_hz, strict=True)
    ]
    writer = pyedflib.EdfWriter(str(path), 4, pyedflib.FILETYPE_EDFPLUS)
    writer.setSignalHeaders(new_headers)
    writer.writeSamples(digital, digital=True)
    writer.close()


def test_millivolt_recordings_are_converted_and_mixed_rates_refused(
    online: OnlineRun, tmp_path: Path
) -> None:
    mv_path = tmp_path / "mv.edf"
    _rewrite_in(mv_path, online.path, "mV", 1e-3, [FS_HZ] * 4)
    config = _config()
    uv_rows = list(iter_analysis(online.path, config, replay_stimulation_blanking=False))
    mv_rows = list(iter_analysis(mv_path, config, replay_stimulation_blanking=False))
    assert len(mv_rows) == len(uv_rows)
    for a, b in zip(mv_rows, uv_rows, strict=True):
        np.testing.assert_allclose(a.band_power_uv2, b.band_power_uv2, rtol=1e-6)
    mixed = tmp_path / "mixed.edf"
    _rewrite_in(mixed, online.path, "uV", 1.0, [FS_HZ, FS_HZ, FS_HZ, 2 * FS_HZ])
    with pytest.raises(ValueError, match="different sampling rates"):
        analyze_recording(mixed, config)
    assert uv_per_unit("µV") == 1.0 and uv_per_unit(" V") == 1e6 and uv_per_unit("nV") == 1e-3
    with pytest.raises(ValueError, match="not a voltage"):
        uv_per_unit("degC")


def test_json_and_csv_writers(online: OnlineRun, tmp_path: Path) -> None:
    rows = analyze_recording(online.path, _config())
    assert write_json(rows, tmp_path / "rows.json") == len(rows)
    assert write_csv(rows, tmp_path / "rows.csv") == len(rows)

    loaded = json.loads((tmp_path / "rows.json").read_text())
    assert len(loaded) == len(rows)
    first, last = loaded[0], rows[-1]
    assert first["channels"] == list(LABELS) and first["state"] == "CALIBRATING"
    assert first["score"] is None
    assert loaded[-1]["coherence"]["alpha"] == last.coherence[2].tolist()
    assert loaded[-1]["band_power_uv2"]["beta"] == last.band_power_uv2[:, 3].tolist()
    assert loaded[-1]["quality"]["good"] == [True] * 4

    with (tmp_path / "rows.csv").open(newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    header = list(table[0])
    assert header == csv_columns(LABELS, rows[0].band_names)
    assert header[:4] == ["t_start_s", "t_end_s", "delta_power_uv2.Fp1", "delta_power_uv2.Fp2"]
    assert "coherence.alpha.Fp1~O2" in header and "coherence.alpha.O2~Fp1" not in header
    assert header[-6:] == [*(f"quality.good.{ch}" for ch in LABELS), "score", "state"]
    n_pairs = len(LABELS) * (len(LABELS) - 1) // 2
    assert len(header) == 2 + 5 * 4 + 5 * n_pairs + 4 + 2
    row, csv_row = rows[-1], table[-1]
    assert float(csv_row["t_end_s"]) == row.t_end_s
    assert float(csv_row["theta_power_uv2.O1"]) == row.band_power_uv2[2, 1]
    assert float(csv_row["coherence.beta.Fp2~O2"]) == row.coherence[3, 1, 3]
    assert csv_row["state"] == row.state.value
    assert table[0]["score"] == "" and csv_row["score"] == repr(row.score)


def _analyze_args(recording: Path, **kw: object) -> argparse.Namespace:
    defaults: dict[str, object] = {
        "recording": recording,
        "config": None,
        "baseline": None,
        "json_path": None,
        "csv_path": None,
    }
    defaults.update(kw)
    return argparse.Namespace(**defaults)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neurostim")
    register_records(parser.add_subparsers(dest="command", required=True))
    return parser


def test_analyze_command_prints_a_summary_and_writes_files(
    online: OnlineRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = tmp_path / "controller.toml"
    config_path.write_text(
        "[detector]\ncalibration_s = 8.0\nscore_smoothing_s = 0.0\nonset_s = 1.0\n"
        "termination_s = 1.0\nblanking_after_change_s = 3.0\nalpha_peak_variability_s = 2.0\n"
    )
    args = _parser().parse_args(
        [
            "analyze",
            str(online.path),
            "--config",
            str(config_path),
            "--json",
            str(tmp_path / "a.json"),
            "--csv",
            str(tmp_path / "a.csv"),
        ]
    )
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "windows     77 of 4 ch, 0.0 .. 40.0 s" in out
    rows = analyze_recording(online.path, _config())
    counts = Counter(r.state.value for r in rows)
    assert "states      " + ", ".join(f"{s} {n}" for s, n in sorted(counts.items())) in out
    scores = [r.score for r in rows if r.score is not None]
    assert f"score       {min(scores):.3f} .. {max(scores):.3f} ({len(scores)} scored" in out
    assert json.loads((tmp_path / "a.json").read_text()) == json.loads(
        json.dumps([row_as_json(r) for r in rows])
    )
    assert len((tmp_path / "a.csv").read_text().splitlines()) == 78

    bad = tmp_path / "bad.toml"
    bad.write_text("[detector]\ncalibration_s = -5\n")
    assert analyze_command(_analyze_args(online.path, config=bad)) == 2
    assert "calibration_s" in capsys.readouterr().err
    assert analyze_command(_analyze_args(tmp_path / "missing.edf")) == 2
    assert "missing.edf" in capsys.readouterr().err


def test_audit_verify_command_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        log.record("connect", 0.0)
        log.record_stimulation(
            "command", 1.0, amplitude_ma=1.0, pulse_width_us=250, frequency_hz=60.0
        )
        log.record("ack", 1.1)
    parser = _parser()
    args = parser.parse_args(["audit", "verify", str(path)])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "OK, 3 record(s)" in out and "command 1" in out

    path.write_bytes(path.read_bytes() + b'{"partial')
    assert audit_verify_command(argparse.Namespace(file=path, json=False)) == 0
    assert "cut short" in capsys.readouterr().out

    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"amplitude_ma":1.0', b'"amplitude_ma":9.0')
    path.write_bytes(b"\n".join(lines))
    args = parser.parse_args(["audit", "verify", "--json", str(path)])
    assert args.handler(args) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is False and result["first_break"] == 2 and result["records"] == 1

    assert audit_verify_command(argparse.Namespace(file=tmp_path / "nope", json=False)) == 2


def test_analysis_row_of_keeps_the_detector_verdict(online: OnlineRun) -> None:
    row = AnalysisRow.of(online.frames[-1], online.outputs[-1])
    assert row.state is online.outputs[-1].state and row.reason == online.outputs[-1].reason
