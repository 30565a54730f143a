"""Configuration root: the commented default TOML, loading, and `config check` errors."""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

import pytest

from controller.config import (
    ConfigError,
    ControllerConfig,
    default_config_toml,
    load_config,
    parse_config,
)
from controller.config_cli import config_check, config_show, register_config


def _write(tmp_path: Path, text: str, name: str = "neurostim.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = config_check(argparse.Namespace(file=str(path)))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_default_toml_loads_back_to_the_defaults(tmp_path: Path) -> None:
    text = default_config_toml()
    assert load_config(_write(tmp_path, text)) == ControllerConfig()


def test_default_toml_is_complete_and_every_field_has_a_comment() -> None:
    text = default_config_toml()
    data = tomllib.loads(text)

    def dumped_keys(value: object, prefix: str = "") -> set[str]:
        if isinstance(value, dict):
            keys = set()
            for key, item in value.items():
                keys |= (
                    dumped_keys(item, f"{prefix}{key}.")
                    if isinstance(item, dict)
                    else {f"{prefix}{key}"}
                )
            return keys
        return set()

    expected = ControllerConfig().model_dump(mode="json", exclude_none=True)
    for section in ("features", "policy", "envelope", "loop", "recording"):
        assert dumped_keys(data[section]) == dumped_keys(expected[section]), section
    assert len(data["detector"]["features"]) == len(expected["detector"]["features"])

    lines = text.splitlines()
    assignments = [i for i, line in enumerate(lines) if re.match(r"^[a-z_\"][^#]* = ", line)]
    assert len(assignments) > 80
    for i in assignments:
        assert lines[i - 1].startswith("# "), f"no comment above {lines[i]!r}"
    assert "# max_amplitude_ma" not in text
    assert "# highest amplitude (Cefaly maximum) (mA; 0.0 <= value <= 100.0)" in text
    assert "shannon_k_max = 1.5" in text and "value <= 1.85" in text
    assert "# edf_path =" in text  # unset optional fields are shown commented out


def test_missing_sections_and_fields_take_their_defaults(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, '[policy]\nname = "dual-threshold"\n'))
    assert config.policy.name == "dual-threshold"
    assert config.envelope == ControllerConfig().envelope


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            "[envelope]\nmax_amplitude_ma = 150.0\n",
            ["envelope.max_amplitude_ma = 150.0", "0.0 <= value <= 100.0", "mA"],
        ),
        (
            "[envelope]\nshannon_k_max = 2.0\n",
            ["envelope.shannon_k_max = 2.0", "0.0 <= value <= 1.85"],
        ),
        (
            "[envelope]\nramp_up_ma_per_s = -1\n",
            ["envelope.ramp_up_ma_per_s = -1", "0.0 < value <= 100.0", "mA/s"],
        ),
        ("[features]\nhop_s = 0\n", ["features.hop_s = 0", "0.0 < value <= 600.0"]),
        ('[policy]\nname = "random"\n', ["policy.name = 'random'", "'prodrome-session'"]),
        ("[envelope]\nmax_amp = 1\n", ["envelope.max_amp: unknown field", "max_amplitude_ma"]),
        (
            "[detector]\nupper_threshold = 0.1\nlower_threshold = 0.5\n",
            ["detector", "lower_threshold=0.5 must be < upper_threshold=0.1"],
        ),
        (
            "[policy.stimulation]\namplitude_ma = 20.0\n",
            ["policy.stimulation.amplitude_ma=20.0 is outside envelope 0.0-16.0 mA"],
        ),
        (
            "[loop]\nshutdown_ramp_down_timeout_s = 10\n",
            ["loop.shutdown_ramp_down_timeout_s=10.0 is shorter", "133.3 s"],
        ),
        (
            '[envelope]\nmax_amplitude_ma = "lots"\n',
            ["envelope.max_amplitude_ma = 'lots'", "valid number"],
        ),
        ("[envelope\nmax_amplitude_ma = 1\n", ["not valid TOML"]),
    ],
)
def test_config_check_rejects_bad_files_naming_field_value_and_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, expected: list[str]
) -> None:
    code, output = _check(_write(tmp_path, toml), capsys)
    assert code == 2
    for fragment in expected:
        assert fragment in output, (fragment, output)


def test_config_check_reports_every_problem_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = "[envelope]\nmax_amplitude_ma = 150.0\nmin_change_interval_s = -1\n[loop]\nx = 1\n"
    code, output = _check(_write(tmp_path, toml), capsys)
    assert code == 2
    assert "3 problem(s)" in output
    assert "envelope.min_change_interval_s = -1" in output and "loop.x: unknown field" in output


def test_config_check_accepts_a_good_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = _check(_write(tmp_path, default_config_toml()), capsys)
    assert code == 0
    assert output.startswith("ok: ")
    assert "policy     prodrome-session" in output
    assert "Shannon k <= 1.5" in output


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "absent.toml")


def test_parse_config_error_lists_problems() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"recording": {"audit_flush_interval_s": 5.0}})
    assert info.value.problems == [
        "recording.audit_flush_interval_s = 5.0: Input should be less than or equal to 1 "
        "(allowed: 0.0 < value <= 1.0; unit: s)"
    ]


def test_config_show_prints_the_default_toml(capsys: pytest.CaptureFixture[str]) -> None:
    assert config_show(argparse.Namespace()) == 0
    printed = capsys.readouterr().out
    assert printed == default_config_toml()
    assert ControllerConfig.model_validate(tomllib.loads(printed)) == ControllerConfig()


def test_register_config_adds_show_and_check() -> None:
    parser = argparse.ArgumentParser()
    register_config(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["config", "check", "some.toml"])
    assert args.handler is config_check and args.file == "some.toml"
    assert parser.parse_args(["config", "show"]).handler is config_show
    with pytest.raises(SystemExit):
        parser.parse_args(["config"])
