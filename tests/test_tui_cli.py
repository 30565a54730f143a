"""``neurostim console``'s arguments, checked before any screen opens."""

from __future__ import annotations

import pytest

from firmware_bridge.exit_codes import ExitCode
from neurostim_cli.main import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--device", "serial:///dev/ttyNOPE", "--speed", "3"], "paces a simulated device only"),
        (["--speed", "0"], "--speed must be > 0"),
        (["--device", "nonsense://x"], "nonsense"),
        (["--broker", "mqtt://localhost:1883"], "MQTT presence reader"),
    ],
)
def test_bad_arguments_exit_2_with_the_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["console", *argv]) == ExitCode.USAGE
    assert message in capsys.readouterr().err
