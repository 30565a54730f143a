"""Scenarios: TOML parsing and validation, built-ins, determinism, fault schedules."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from simulator.link_faults import LinkFaultSettings
from simulator.physiology.cycle import Phase
from simulator.physiology.patient import PatientSimulation
from simulator.physiology.scenario import (
    LinkFaultKind,
    ScenarioError,
    builtin_scenario_names,
    link_fault_settings_at,
    load_scenario,
    parse_duration_s,
    scenario_from_dict,
)
from simulator.physiology.sensor_faults import SensorFaultKind
from simulator.signals import DEFAULT_SITES, NO_STIMULATION

FS_HZ = 250.0


def read_all(sim: PatientSimulation, seconds: float, block: int = 2500) -> np.ndarray:
    n_blocks = int(seconds * FS_HZ) // block
    return np.concatenate([sim.read(block, NO_STIMULATION) for _ in range(n_blocks)], axis=1)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("36h", 129600.0),
        ("30min", 1800.0),
        ("1h30min", 5400.0),
        ("2d", 172800.0),
        ("90s", 90.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        (42, 42.0),
        ("42", 42.0),
        (" 2.5 ", 2.5),
        (2.5, 2.5),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "abc", "5 parsecs", "-3h", "h", True])
def test_parse_duration_rejects_garbage(bad: str | bool) -> None:
    with pytest.raises(ValueError):
        parse_duration_s(bad)


def test_builtin_scenarios_load() -> None:
    assert {"default", "aura-demo", "faults"} <= set(builtin_scenario_names())
    default = load_scenario("default")
    assert default.spec.patient.phenotype.value == "episodic-without-aura"
    assert default.duration_s == 24 * 3600.0
    assert default.model == "spectral"
    aura = load_scenario("aura-demo")
    assert aura.patient().cycle.aura_probability >= 0.5


def test_aura_demo_has_a_csd_arrival_within_30_virtual_minutes() -> None:
    sim = load_scenario("aura-demo").build_source()
    read_all(sim, 30 * 60.0)
    events = sim.drain_ground_truth()
    arrivals = [e for e in events if e.kind == "csd_arrival"]
    assert arrivals and all(e.t_s <= 30 * 60.0 for e in arrivals)
    assert arrivals[0].site == "O1"
    onset = next(e for e in events if e.kind == "attack_onset")
    assert onset.detail["aura"] == "yes"
    assert any(e.kind == "aura_onset" for e in events)
    assert sim.phase is Phase.ATTACK


def test_faults_scenario_covers_every_sensor_and_link_fault_in_turn() -> None:
    scenario = load_scenario("faults")
    assert {f.kind for f in scenario.sensor_faults} == set(SensorFaultKind)
    assert {f.kind for f in scenario.link_faults} == set(LinkFaultKind)
    windows = sorted(
        [(f.start_s, f.end_s) for f in scenario.sensor_faults]
        + [(f.start_s, f.end_s) for f in scenario.link_faults]
    )
    for (_, end), (next_start, _) in itertools.pairwise(windows):
        assert end <= next_start  # one at a time
    assert windows[-1][1] <= scenario.duration_s

    corruption = next(f for f in scenario.link_faults if f.kind is LinkFaultKind.CORRUPTION)
    during = link_fault_settings_at(scenario.link_faults, corruption.start_s + 1.0)
    assert isinstance(during, LinkFaultSettings)
    assert during.byte_corruption_rate == corruption.byte_corruption_rate > 0.0
    assert during.frame_drop_rate == 0.0
    after = link_fault_settings_at(scenario.link_faults, corruption.end_s + 1.0)
    assert after.byte_corruption_rate == 0.0
    delay = next(f for f in scenario.link_faults if f.kind is LinkFaultKind.DELAY)
    assert link_fault_settings_at(scenario.link_faults, delay.start_s).delay_s == delay.delay_s
    disconnect = next(f for f in scenario.link_faults if f.kind is LinkFaultKind.DISCONNECT)
    assert after.disconnects == ((disconnect.start_s, disconnect.duration_s),)


def test_faults_scenario_injects_sensor_faults_into_the_signal() -> None:
    scenario = load_scenario("faults")
    sim = scenario.build_source()
    x = read_all(sim, 16 * 60.0, block=10 * 25)
    labels = [s.label for s in DEFAULT_SITES]
    flat = next(f for f in scenario.sensor_faults if f.kind is SensorFaultKind.FLATLINE)
    segment = x[
        labels.index(str(flat.channel)), int(flat.start_s * FS_HZ) : int(flat.end_s * FS_HZ)
    ]
    assert np.ptp(segment) == 0.0
    clip = next(f for f in scenario.sensor_faults if f.kind is SensorFaultKind.CLIPPING)
    clipped = x[
        labels.index(str(clip.channel)), int(clip.start_s * FS_HZ) : int(clip.end_s * FS_HZ)
    ]
    assert np.max(np.abs(clipped)) <= 40.0 and np.mean(np.abs(clipped) == 40.0) > 0.05
    starts = [e for e in sim.drain_ground_truth() if e.kind == "sensor_fault_start"]
    assert [e.detail["fault"] for e in starts] == [
        k.value
        for k in (
            SensorFaultKind.FLATLINE,
            SensorFaultKind.CLIPPING,
            SensorFaultKind.LINE_NOISE,
            SensorFaultKind.ELECTRODE_POP,
            SensorFaultKind.IMPEDANCE_RISE,
        )
    ]


@pytest.mark.parametrize("model", ["spectral", "jansen-rit"])
def test_same_scenario_and_seed_give_bit_identical_samples(model: str) -> None:
    scenario = load_scenario("aura-demo")

    def run(seed: int | None) -> np.ndarray:
        sim = scenario.build_source(seed_override=seed, model_override=model)
        return np.concatenate([sim.read(n, NO_STIMULATION) for n in (10, 10, 500, 1250, 3)], axis=1)

    a, b = run(None), run(None)
    assert np.array_equal(a, b)
    assert not np.allclose(a, run(99))


def test_seed_override_changes_the_patient_only_if_it_has_no_own_seed(tmp_path: Path) -> None:
    pinned = load_scenario("default")  # [patient] seed = 10
    assert pinned.patient(seed_override=5) == pinned.patient(seed_override=6)
    path = tmp_path / "free.toml"
    path.write_text('duration_s = "1h"\n[patient]\nphenotype = "chronic"\n')
    free = load_scenario(path)
    assert free.patient(seed_override=5) != free.patient(seed_override=6)


def test_model_override_is_validated() -> None:
    with pytest.raises(ScenarioError, match="model"):
        load_scenario("default").build_source(model_override="hodgkin-huxley")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("toml", "field", "hint"),
    [
        ('duration_s = "forever"\n', "duration_s", "cannot parse duration"),
        ('model = "hodgkin-huxley"\n', "model", "spectral"),
        ("seed = -1\n", "seed", "greater than or equal to 0"),
        ('[patient]\nphenotype = "cluster"\n', "patient.phenotype", "episodic-without-aura"),
        (
            "[patient.overrides.cycle]\nattacks_per_month = 40\n",
            "patient.overrides.cycle.attacks_per_month",
            "less than or equal to 25",
        ),
        (
            "[patient.overrides.csd]\nspeed_mm_per_min = 0.1\n",
            "patient.overrides.csd.speed_mm_per_min",
            "greater than or equal to 1",
        ),
        (
            '[[events]]\nkind = "force_attack"\nat_s = "soon"\n',
            "events[0].force_attack.at_s",
            "cannot parse duration",
        ),
        ('[[events]]\nkind = "teleport"\nat_s = 1\n', "events[0]", "force_prodrome"),
        (
            '[[events]]\nkind = "sensor_fault"\nfault = "flatline"\nchannel = -1\nat_s = 1\n'
            "duration_s = 1\n",
            "events[0].sensor_fault.channel",
            ">= 0",
        ),
        (
            '[[events]]\nkind = "sensor_fault"\nfault = "smoke"\nchannel = 1\nat_s = 1\n'
            "duration_s = 1\n",
            "events[0].sensor_fault.fault",
            "flatline",
        ),
        (
            '[[events]]\nkind = "link_fault"\nfault = "drop"\nframe_drop_rate = 1.5\nat_s = 1\n'
            "duration_s = 1\n",
            "events[0].link_fault.frame_drop_rate",
            "less than or equal to 1",
        ),
        (
            '[[events]]\nkind = "link_fault"\nfault = "delay"\nat_s = 1\nduration_s = 0\n',
            "events[0].link_fault.duration_s",
            "duration must be > 0",
        ),
        ("colour = 3\n", "colour", "Extra inputs are not permitted"),
    ],
)
def test_bad_scenario_names_the_field(tmp_path: Path, toml: str, field: str, hint: str) -> None:
    with pytest.raises(ScenarioError) as excinfo:
        load_scenario(write(tmp_path, toml))
    message = str(excinfo.value)
    assert f"  {field}:" in message, message
    assert hint in message, message
    assert "bad.toml" in message


def test_channel_outside_the_montage_is_reported_at_build() -> None:
    scenario = scenario_from_dict(
        {
            "events": [
                {
                    "kind": "sensor_fault",
                    "fault": "flatline",
                    "channel": 8,
                    "at_s": 1,
                    "duration_s": 1,
                }
            ],
        }
    )
    with pytest.raises(ScenarioError, match=r"events\[0\]\.channel: channel 8 out of range 0-7"):
        scenario.build_source()
    labelled = scenario_from_dict(
        {
            "events": [
                {
                    "kind": "sensor_fault",
                    "fault": "flatline",
                    "channel": "Cz",
                    "at_s": 1,
                    "duration_s": 1,
                }
            ],
        }
    )
    with pytest.raises(ScenarioError, match="'Cz' not in"):
        labelled.build_source()


def test_invalid_toml_and_unknown_names_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="invalid TOML"):
        load_scenario(write(tmp_path, "duration_s = \n"))
    with pytest.raises(ScenarioError, match=r"unknown scenario 'nope'.*aura-demo"):
        load_scenario("nope")
    with pytest.raises(ScenarioError, match="not found"):
        load_scenario(tmp_path / "missing.toml")


def test_csd_origin_outside_the_montage_is_reported_at_build() -> None:
    scenario = scenario_from_dict({"patient": {"overrides": {"csd": {"origin": "Cz"}}}})
    with pytest.raises(ScenarioError, match="csd origin 'Cz'"):
        scenario.build_source()
