"""Device presets in `neurostim sim` and `trial`: the firmware, the envelope, the therapy and
the patient's dose all come from the chosen preset, and every report says whether that
device's therapy response is calibrated."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from controller.config import ControllerConfig
from insilico.device_setup import controller_config_for, resolve_device
from insilico.report import SimReport
from insilico.runner import SimSpec, build_device, device_scenario, run_sim
from simulator.devices import IMPLANT
from simulator.physiology.scenario import scenario_from_dict

NEUROSTIM = [sys.executable, "-m", "neurostim_cli.main"]
SCENARIO = {"name": "preset", "duration_s": "40min", "seed": 3}
#: Continuous open loop after a 2-min calibration: one long session to measure.
FAST = {
    "detector": {"calibration_s": 120.0, "onset_s": 60.0, "score_smoothing_s": 30.0},
    "policy": {"name": "open-loop", "open_loop": {"mode": "continuous"}},
}


def _run(device: str) -> SimReport:
    preset = resolve_device(device)
    config = controller_config_for(ControllerConfig.model_validate(FAST), preset)
    scenario = scenario_from_dict(SCENARIO)
    return run_sim(SimSpec(scenario, scenario.duration_s, config, device=preset.name))


@pytest.fixture(scope="module")
def implant() -> SimReport:
    return _run("implant")


def test_the_implant_runs_its_own_limits_and_labelled_setting(implant: SimReport) -> None:
    assert implant.device == "implant"
    assert "UNCALIBRATED" in implant.therapy_calibration
    # The implant's labelled 3 mA (the default e-TNS therapy is 16 mA, beyond its 12.7 mA).
    assert max(implant.timeline.amplitude_ma) == pytest.approx(IMPLANT.labelled.amplitude_ma)
    assert not implant.safety.refusals
    stim = implant.stimulation
    assert stim.sessions >= 1 and stim.charge_uc > 0
    assert stim.charge_per_session_uc == pytest.approx(stim.charge_uc / stim.sessions)
    assert stim.dose_se == pytest.approx(stim.charge_uc / IMPLANT.session_charge_uc)


def test_the_preset_reaches_the_firmware_and_the_patient() -> None:
    scenario = scenario_from_dict(SCENARIO)
    spec = SimSpec(scenario, 60.0, ControllerConfig(), device="implant")
    source, firmware = build_device(spec)
    assert firmware.info.limits == IMPLANT.limits
    assert firmware.info.electrode_area_cm2 == IMPLANT.electrode_area_cm2
    assert source.patient.response.session_charge_uc == pytest.approx(IMPLANT.session_charge_uc)
    # A scenario's own dose conversion wins over the preset's.
    own = scenario_from_dict(
        {**SCENARIO, "patient": {"overrides": {"response": {"session_charge_uc": 1000.0}}}}
    )
    assert device_scenario(own, "implant").patient().response.session_charge_uc == 1000.0


def test_a_user_setting_wins_over_the_preset() -> None:
    config = ControllerConfig.model_validate({"policy": {"stimulation": {"amplitude_ma": 2.0}}})
    derived = controller_config_for(config, IMPLANT)
    assert derived.policy.stimulation.amplitude_ma == 2.0
    assert derived.envelope.max_amplitude_ma == IMPLANT.limits.max_amplitude_ma
    assert derived.policy.sham.stimulation.amplitude_ma == IMPLANT.sham.amplitude_ma
    # The default device keeps the configuration as it is (its defaults are the e-TNS's).
    assert controller_config_for(config, resolve_device("e-tns")) == config


def test_sim_command_takes_the_preset_and_reports_its_note(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text('name = "s"\nduration_s = "20min"\nseed = 2\n')
    out = tmp_path / "report.json"
    done = subprocess.run(
        [
            *NEUROSTIM,
            "sim",
            "--scenario",
            str(scenario),
            "--device-preset",
            "implant",
            "--policy",
            "off",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["device"] == "implant"
    assert "UNCALIBRATED" in report["therapy_calibration"]
    assert "UNCALIBRATED" in done.stdout  # the table says it too


def test_trial_command_runs_every_arm_on_the_preset(tmp_path: Path) -> None:
    out = tmp_path / "trial.json"
    done = subprocess.run(
        [
            *NEUROSTIM,
            "trial",
            "--patients",
            "1",
            "--days",
            "0.02",
            "--policies",
            "off,open-loop",
            "--phenotypes",
            "chronic",
            "--device-preset",
            "implant",
            "--workers",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["device"] == "implant"
    assert "UNCALIBRATED" in report["therapy_calibration"]
    assert {e["device"] for e in report["entries"]} == {"implant"}
    open_loop = next(e for e in report["entries"] if e["policy"] == "open-loop")
    # The 08:00 session starts at t = 0: its charge is counted in implant sessions.
    assert open_loop["charge_uc"] > 0
    assert open_loop["dose_se"] == pytest.approx(open_loop["charge_uc"] / IMPLANT.session_charge_uc)
    assert "UNCALIBRATED" in done.stdout
