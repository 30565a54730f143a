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


class _Captured(Exception):
    pass


def test_run_hands_the_key_file_key_to_the_controller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import controller.cli

    path = tmp_path / "keys"
    key = add_key(path, "SIM-0001")
    add_key(path, "SIM-0002")

    async def capture(*args: object, **kwargs: object) -> None:
        raise _Captured(kwargs["key"])

    monkeypatch.setattr(controller.cli, "run_controller", capture)
    argv = ["run", "--device", "sim://", "--duration", "1", "--key-file", str(path)]
    with pytest.raises(_Captured) as got:
        main([*argv, "--device-id", "SIM-0001"])
    assert got.value.args == (key,)
    assert main(argv) == 2  # two keys and no --device-id: which one?


def test_a_device_served_with_a_key_file_refuses_unsigned_commands(tmp_path: Path) -> None:
    from firmware_bridge.framing import FrameDecoder, encode_frame
    from firmware_bridge.messages import Hello, MsgType, Nack, NackReason, StimSet, parse_payload
    from simulator.device_factory import build_device

    path = tmp_path / "keys"
    add_key(path, "*")
    fw = build_device("noise", {}, signing_key=device_key(str(path))).firmware
    fw.receive_data(encode_frame(MsgType.HELLO, Hello(1, 1).encode(), 0, 0), 0.0)
    unsigned = StimSet(1, StimSetting(True, 1.0, 100, 130.0)).encode()
    fw.receive_data(encode_frame(MsgType.STIM_SET, unsigned, 1, 10), 0.01)
    answers = [
        parse_payload(f.msg_type, f.payload)
        for f in FrameDecoder().feed(fw.data_to_send())
        if f.msg_type == MsgType.NACK
    ]
    assert answers == [Nack(1, MsgType.STIM_SET, NackReason.AUTH)]
