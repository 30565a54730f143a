"""``neurostim hil`` end to end against ``neurostim device serve --pty``: the full suite
passes, SIGTERM mid-run leaves a valid JUnit file and the device off, exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import junitparser
import pytest

from firmware_bridge.clock import MonotonicClock
from firmware_bridge.framing import FrameDecoder, encode_frame
from firmware_bridge.keys import add_key
from firmware_bridge.messages import HelloReject, MsgType
from neurostim_cli.main import main
from simulator.firmware import FirmwareConfig, VirtualFirmware
from simulator.signals import NoiseSource
from tests.hil_broken_devices import EstopIgnored, build
from tests.hil_support import assert_valid_junit, served_on_pty

NEUROSTIM = [sys.executable, "-m", "neurostim_cli.main"]


@pytest.fixture
def pty_device() -> Iterator[str]:
    proc = subprocess.Popen(
        [*NEUROSTIM, "device", "serve", "--pty", "--scenario", "noise", "--seed", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("serial://"), url
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _hil(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NEUROSTIM, "hil", *args], capture_output=True, text=True, timeout=timeout
    )


def test_the_full_suite_passes_against_the_simulated_device_on_a_pty(
    pty_device: str, tmp_path: Path
) -> None:
    junit, out_json, hist = tmp_path / "hil.xml", tmp_path / "hil.json", tmp_path / "hist"
    done = _hil(
        "--device",
        pty_device,
        "--iterations",
        "50",
        "--junit",
        str(junit),
        "--json",
        str(out_json),
        "--histograms",
        str(hist),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert_valid_junit(junit)
    doc = json.loads(out_json.read_text())
    verdicts = {c["id"]: c["verdict"] for c in doc["cases"]}
    assert set(verdicts.values()) <= {"PASS", "MARGINAL", "SKIP"}
    # Skipped only what needs a key or a device-side fault.
    assert {i for i, v in verdicts.items() if v == "SKIP"} == {
        "NK-012",
        "SG-001",
        "SG-002",
        "SG-003",
        "SG-004",
        "SG-005",
    }
    assert doc["properties"]["device_id"] == "SIM-0001"
    assert doc["properties"]["protocol_version"] == "1.1"
    assert {p.name for p in hist.iterdir()} == {
        f"SIM-0001-{n}.hgrm"
        for n in (
            "stim_set_to_ack",
            "stim_set_to_stim_state",
            "estop_to_zero",
            "heartbeat_lateness",
        )
    }
    assert "HS-001" in done.stdout and "verdict" in done.stdout


def test_sigterm_mid_run_leaves_a_valid_junit_and_the_device_off(
    pty_device: str, tmp_path: Path
) -> None:
    junit = tmp_path / "hil.xml"
    rig = subprocess.Popen(
        [
            *NEUROSTIM,
            "hil",
            "--device",
            pty_device,
            "--junit",
            str(junit),
            "--case",
            "HS-001",
            "--case",
            "RP-001",
            "--case",
            "ST-003",
            "--case",
            "ES-001",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # ST-003 stimulates for over 2 s: wait until it has started, then stop the rig.
    assert rig.stderr is not None
    deadline = time.monotonic() + 60
    for line in rig.stderr:
        if "ST-003" in line:
            break
        assert time.monotonic() < deadline
    time.sleep(0.8)
    rig.send_signal(signal.SIGTERM)
    rig.wait(30)
    assert rig.returncode == 1
    assert_valid_junit(junit)
    suite = next(iter(junitparser.JUnitXml.fromfile(str(junit))))
    names = [c.name.split()[0] for c in suite]
    assert names == ["HS-001", "ST-003"]  # catalog order; RP-001 and ES-001 never ran
    last = list(suite)[-1]
    assert isinstance(last.result[0], junitparser.Error)
    # The device: a fresh look at its output (a handshake changes nothing).
    state = subprocess.run(
        [sys.executable, "-c", _STATE_SCRIPT, pty_device],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert state.stdout.strip() == "amplitude 0.0 enabled False", state.stdout + state.stderr


_STATE_SCRIPT = """
import asyncio, sys
from firmware_bridge.clock import MonotonicClock
from firmware_bridge.transports.registry import open_link
from hil.probe import Probe

async def main():
    async with Probe(await open_link(sys.argv[1]), MonotonicClock()) as p:
        _, s = await p.handshake()
        print(f"amplitude {s.amplitude_ma} enabled {s.enabled}")

asyncio.run(main())
"""


def test_exit_codes_for_bad_arguments_and_an_unreachable_device(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["hil", "--device", "sim://", "--case", "XX-999"]) == 2
    assert main(["hil", "--device", "sim://", "--suite", "nonsense"]) == 2
    assert main(["hil", "--device", "bogus"]) == 2
    master, slave = os.openpty()  # a port where nothing answers
    tty.setraw(slave)
    try:
        code = main(["hil", "--device", f"serial://{os.ttyname(slave)}", "--case", "HS-001"])
    finally:
        os.close(master)
        os.close(slave)
    assert code == 3, capsys.readouterr().err


@contextlib.contextmanager
def _served_in_a_thread(firmware_factory: Callable[[], VirtualFirmware]) -> Iterator[str]:
    """A device on a pty, served by its own event loop in a thread (the CLI runs its own)."""
    url: list[str] = []
    ready, stop = threading.Event(), threading.Event()

    async def serve() -> None:
        async with served_on_pty(firmware_factory()) as pty_url:
            url.append(pty_url)
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)

    server = threading.Thread(target=lambda: asyncio.run(serve()))
    server.start()
    try:
        assert ready.wait(10)
        yield url[0]
    finally:
        stop.set()
        server.join(10)


def test_a_failing_case_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    """Against a device that ignores ESTOP."""
    with _served_in_a_thread(lambda: build(EstopIgnored, MonotonicClock().now())) as url:
        code = main(["hil", "--device", url, "--case", "ES-001", "--case", "HS-002"])
        out = capsys.readouterr().out
        aborted = main(
            ["hil", "--device", url, "--abort-early", "--case", "ES-001", "--case", "RB-001"]
        )
    assert code == 1
    assert re.search(r"^ES-001 +FAIL", out, re.M) and re.search(r"^HS-002 +PASS", out, re.M)
    # --abort-early: nothing runs after the first failure.
    assert aborted == 1 and "RB-001" not in capsys.readouterr().out


def test_key_file_enables_the_signing_cases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "bench.keys"
    key = add_key(keys, "SIM-0001")

    def keyed() -> VirtualFirmware:
        config = dataclasses.replace(FirmwareConfig(seed=2), signing_key=key)
        return VirtualFirmware(NoiseSource(seed=2), config, MonotonicClock().now())

    with _served_in_a_thread(keyed) as url:
        code = main(
            [
                "hil",
                "--device",
                url,
                "--key-file",
                str(keys),
                "--case",
                "SG-001",
                "--case",
                "SG-003",
            ]
        )
        out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"^SG-001 +PASS", out, re.M) and re.search(r"^SG-003 +PASS", out, re.M)
    keys.chmod(0o644)  # readable by others: refused before anything is opened
    assert main(["hil", "--device", "sim://", "--key-file", str(keys)]) == 2


def test_a_device_of_another_major_exits_4(capsys: pytest.CaptureFixture[str]) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    done = threading.Event()

    def device_of_major_2() -> None:
        decoder = FrameDecoder()
        while not done.is_set():
            ready, _, _ = select.select([master], [], [], 0.05)
            if not ready:
                continue
            for frame in decoder.feed(os.read(master, 4096)):
                if frame.msg_type == MsgType.HELLO:
                    reject = HelloReject(2, 0, 1, "this device speaks 2.0")
                    os.write(
                        master, encode_frame(MsgType.HELLO_REJECT, reject.encode(), 0, 0, version=2)
                    )

    answer = threading.Thread(target=device_of_major_2)
    answer.start()
    try:
        code = main(["hil", "--device", f"serial://{os.ttyname(slave)}", "--case", "HS-001"])
    finally:
        done.set()
        answer.join(5)
        os.close(master)
        os.close(slave)
    assert code == 4, capsys.readouterr().err
