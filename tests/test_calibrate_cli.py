"""``neurostim calibrate``: an EDF+ run-in with a planted pre-attack signature, and bad input."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pyedflib
import pytest

from controller.analyze import analyze_recording
from controller.calibrate import read_attacks_file, recording_feature_log, truth_attack_onsets
from controller.config import load_config
from controller.detector import DetectorState
from controller.detector.signature import PatientSignature
from neurostim_cli.main import main

FS_HZ = 128
CHANNELS = ("Fp1", "F3", "C3", "P3")
CYCLE_S = 3000.0  # an attack every 50 min
PRE_ATTACK_S = 600.0  # beta rises in the 10 min before each onset
ONSETS_S = [CYCLE_S * (k + 1) for k in range(6)]


def _write_run_in(path: Path, seed: int = 0) -> None:
    """4 channels of alpha + noise; beta x3 before each onset; truth annotations as sim writes."""
    rng = np.random.default_rng(seed)
    duration_s = ONSETS_S[-1] + 600.0
    n = int(duration_s * FS_HZ)
    t = np.arange(n) / FS_HZ
    pre = np.zeros(n, dtype=bool)
    for onset in ONSETS_S:
        pre |= (t >= onset - PRE_ATTACK_S) & (t < onset)
    beta_gain = np.where(pre, 3.0, 1.0)
    shared_beta = rng.standard_normal(n)
    signals = []
    for ch in range(len(CHANNELS)):
        alpha = 20.0 * np.sin(2 * np.pi * 10.0 * t + ch)
        beta = 4.0 * beta_gain * (np.sin(2 * np.pi * 20.0 * t + 0.5 * ch) + 0.3 * shared_beta)
        signals.append(alpha + beta + 5.0 * rng.standard_normal(n))
    writer = pyedflib.EdfWriter(str(path), len(CHANNELS), pyedflib.FILETYPE_EDFPLUS)
    writer.setSignalHeaders(
        [
            {
                "label": label,
                "dimension": "uV",
                "sample_frequency": FS_HZ,
                "physical_max": 3276.7,
                "physical_min": -3276.8,
                "digital_max": 32767,
                "digital_min": -32768,
                "transducer": "",
                "prefilter": "",
            }
            for label in CHANNELS
        ]
    )
    writer.writeSamples(signals)
    for onset in ONSETS_S:
        writer.writeAnnotation(onset, -1, "truth attack_onset")
    writer.close()


@pytest.fixture(scope="module")
def run_in(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("runin")
    recording = folder / "runin.edf"
    _write_run_in(recording)
    config = folder / "fast.toml"
    config.write_text(
        "[features]\nhop_s = 2.0\n\n[detector]\nscore_smoothing_s = 60.0\nonset_s = 60.0\n"
        "termination_s = 120.0\n"
    )
    return recording, config


def _short_args(recording: Path, config: Path, out: Path, *extra: str) -> list[str]:
    return [
        "calibrate",
        str(recording),
        "--out",
        str(out),
        "--config",
        str(config),
        "--exclude-before-h",
        "0.25",
        "--exclude-after-h",
        "0.1",
        "--occurrence-periods-h",
        "0.2",
        "--horizon-min",
        "1",
        *extra,
    ]


def test_calibrate_learns_the_planted_beta_rise(
    run_in: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recording, config = run_in
    out = tmp_path / "patient.json"
    assert main(_short_args(recording, config, out)) == 0
    assert "wrote" in capsys.readouterr().out
    signature = PatientSignature.load(out)
    by_name = {f.name: f for f in signature.features}
    assert by_name["beta_rel_power.mean"].direction == "up"
    assert by_name["beta_log_power.mean"].direction == "up"
    assert signature.run_in.attacks == 6 and signature.run_in.predicted >= 5
    assert signature.run_in.time_in_warning <= 0.30

    # The calibration drives the detector through the configuration, as run/sim/trial load it.
    with_file = tmp_path / "calibrated.toml"
    with_file.write_text(config.read_text() + f'calibration_file = "{out}"\n')
    rows = analyze_recording(recording, load_config(with_file))
    assert rows[0].state is DetectorState.NORMAL  # no CALIBRATING: the baseline came with it
    prodrome_onsets = [
        r.t_end_s
        for prev, r in itertools.pairwise(rows)
        if r.state is DetectorState.PRODROME and prev.state is not DetectorState.PRODROME
    ]
    hits = [any(0 < o - a <= 900.0 for a in prodrome_onsets) for o in ONSETS_S]
    assert sum(hits) >= 5


def test_attacks_file_overrides_the_truth_annotations(
    run_in: tuple[Path, Path], tmp_path: Path
) -> None:
    recording, config = run_in
    attacks = tmp_path / "attacks.txt"
    attacks.write_text("# onsets, s\n" + "\n".join(f"{o:g}" for o in ONSETS_S[:4]) + "\n")
    out = tmp_path / "p.json"
    assert main(_short_args(recording, config, out, "--attacks", str(attacks))) == 2
    assert not out.exists()


def test_bad_input_exits_2_with_a_clear_message(
    run_in: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recording, config = run_in
    out = tmp_path / "p.json"
    assert main(["calibrate", str(tmp_path / "none.edf"), "--out", str(out)]) == 2
    assert "no such recording" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_text("100\nsoon\n")
    assert main(_short_args(recording, config, out, "--attacks", str(bad))) == 2
    assert "line 2: 'soon' is not a number" in capsys.readouterr().err
    not_edf = tmp_path / "x.edf"
    not_edf.write_text("hello")
    assert main(["calibrate", str(not_edf), "--out", str(out), "--attacks", str(bad)]) == 2
    assert "line 2" in capsys.readouterr().err  # the attacks file is read first
    attacks = tmp_path / "ok.txt"
    attacks.write_text("1\n2\n3\n4\n5\n")
    assert main(["calibrate", str(not_edf), "--out", str(out), "--attacks", str(attacks)]) == 2
    assert "cannot read as EDF" in capsys.readouterr().err
    assert main(_short_args(recording, config, out, "--time-in-warning", "2")) == 2
    assert "target_time_in_warning" in capsys.readouterr().err
    assert main(_short_args(recording, config, out, "--min-attacks", "7")) == 2
    assert "6 attack onset(s) given" in capsys.readouterr().err
    assert not out.exists()


def test_attacks_files_text_and_json(tmp_path: Path) -> None:
    text = tmp_path / "a.txt"
    text.write_text("  30.5  # first\n\n10\n")
    assert read_attacks_file(text) == [10.0, 30.5]
    as_list = tmp_path / "a.json"
    as_list.write_text("[5, 1.5]")
    assert read_attacks_file(as_list) == [1.5, 5.0]
    as_object = tmp_path / "b.json"
    as_object.write_text(json.dumps({"attack_onsets_s": [7]}))
    assert read_attacks_file(as_object) == [7.0]
    negative = tmp_path / "c.txt"
    negative.write_text("-1\n")
    with pytest.raises(ValueError, match="line 1: onset '-1' must be a finite number >= 0"):
        read_attacks_file(negative)


def test_feature_log_of_a_recording(run_in: tuple[Path, Path]) -> None:
    recording, config = run_in
    log = recording_feature_log(recording, load_config(config))
    assert truth_attack_onsets(recording) == ONSETS_S
    assert log.duration_s == pytest.approx(ONSETS_S[-1] + 600.0)
    assert log.block_mean.shape == (len(log.block_end_s), len(log.feature_names))
    assert log.block_s == 12.0  # a fifth of the 60 s smoothing
    assert log.block_usable_s.max() == pytest.approx(12.0)  # whole blocks of 2 s hops
    assert 0.9 * log.duration_s / 10.0 < log.sample_values.shape[0] <= log.duration_s / 10.0
    beta = log.column("beta_rel_power.mean")
    pre = np.zeros(len(log.block_end_s), dtype=bool)
    for onset in ONSETS_S:
        pre |= (log.block_end_s > onset - PRE_ATTACK_S + 12) & (log.block_end_s <= onset)
    assert np.nanmean(log.block_mean[pre, beta]) > 1.5 * np.nanmean(log.block_mean[~pre, beta])
