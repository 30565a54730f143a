"""Signing keys: the key file, its permission check, ``neurostim keygen`` and
``device serve --key-file``; a controller and a device keyed from one file talk signed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from firmware_bridge.clock import VirtualClock
from firmware_bridge.events import CommandAcked, CommandNacked
from firmware_bridge.keys import KeyFileError, add_key, load_key, load_keys, parse_keys
from firmware_bridge.lockstep import LockstepPump, RecordingPeer
from firmware_bridge.messages import StimSetting
from firmware_bridge.session import ControllerSession
from neurostim_cli.main import main
from simulator.cli import device_key
from simulator.firmware import FirmwareConfig, VirtualFirmware
from simulator.signals import NoiseSource


def test_keygen_creates_a_private_file_and_appends_one_key_per_device(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    assert main(["keygen", "--out", str(path)]) == 0
    assert main(["keygen", "--device-id", "SIM-0001", "--out", str(path)]) == 0
    assert os.stat(path).st_mode & 0o777 == 0o600
    keys = load_keys(path)
    assert set(keys) == {"*", "SIM-0001"} and all(len(k) == 32 for k in keys.values())
    assert keys["*"] != keys["SIM-0001"]
    assert main(["keygen", "--device-id", "SIM-0001", "--out", str(path)]) == 2  # no second


def test_a_key_file_others_can_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    add_key(path, "SIM-0001")
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key(path, "SIM-0001")
    with pytest.raises(KeyFileError, match="chmod 600"):
        device_key(str(path))


def test_the_device_line_wins_over_the_wildcard_and_an_unknown_device_is_an_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys"
    own = add_key(path, "SIM-0001")
    anyone = add_key(path, "*")
    assert load_key(path, "SIM-0001") == own
    assert load_key(path, "OTHER") == anyone
    with pytest.raises(KeyFileError, match="2 keys"):
        load_key(path)  # which one?
    single = tmp_path / "single"
    only = add_key(single, "SIM-0001")
    assert load_key(single) == only
    with pytest.raises(KeyFileError, match="no key for device 'OTHER'"):
        load_key(single, "OTHER")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("SIM-1\n", "expected"),
        ("SIM-1 zz\n", "not hex"),
        ("SIM-1 " + "ab" * 8 + "\n", "16-64 bytes"),
        ("SIM-1 " + "ab" * 16 + "\nSIM-1 " + "cd" * 16 + "\n", "second key"),
    ],
)
def test_malformed_key_files_name_the_line(text: str, error: str) -> None:
    with pytest.raises(KeyFileError, match=error):
        parse_keys(text)


def test_comments_and_blank_lines_are_skipped() -> None:
    key = bytes(range(16))
    assert parse_keys(f"# keys\n\nSIM-1  {key.hex()}  # the bench unit\n") == {"SIM-1": key}


def test_a_controller_and_a_device_keyed_from_one_file_talk_signed(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    add_key(path, FirmwareConfig().device_id)
    device_side = device_key(str(path))
    controller_side = load_key(path)
    assert device_side == controller_side
    clock = VirtualClock()
    fw = VirtualFirmware(NoiseSource(seed=2), FirmwareConfig(seed=2, signing_key=device_side))
    ctl = RecordingPeer(ControllerSession(key=controller_side))
    pump = LockstepPump(ctl, fw, clock)
    ctl.session.connect(0.0)
    pump.run_until(0.5)
    ctl.session.send_stim_set(StimSetting(True, 1.0, 100, 130.0), clock.now())
    pump.run_until(1.0)
    assert ctl.of_type(CommandAcked) and not ctl.of_type(CommandNacked)
    assert fw.session.stats.auth_failures == 0


def test_run_refuses_a_key_file_others_can_read_before_connecting(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    add_key(path, "SIM-0001")
    path.chmod(0o640)
    assert main(["run", "--device", "sim://", "--duration", "1", "--key-file", str(path)]) == 2


def test_device_serve_and_run_keyed_from_one_file_complete_a_signed_session(
    tmp_path: Path,
) -> None:
    import json
    import signal
    import subprocess
    import sys

    path = tmp_path / "keys"
    add_key(path, "SIM-0001")
    neurostim = [sys.executable, "-m", "neurostim_cli.main"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    serve = [*neurostim, "device", "serve", "--pty", "--scenario", "noise"]
    server = subprocess.Popen(
        [*serve, "--key-file", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        run = subprocess.run(
            [
                *neurostim,
                *("run", "--device", url, "--duration", "2", "--json"),
                *("--key-file", str(path)),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["loop"]["ramped_down"] is True  # its off was accepted
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=10)
        assert server.returncode == 0
        assert " 0 commands applied" not in err, err
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
