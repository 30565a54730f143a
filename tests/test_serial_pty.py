"""The controller and the simulated device over a real pseudo-terminal at 921600 baud."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tty
from pathlib import Path

import pytest

from firmware_bridge.clock import MonotonicClock
from firmware_bridge.connection import DeviceConnection, ProtocolMismatch
from firmware_bridge.events import CommandAcked, SamplesReceived, StimStateReceived
from firmware_bridge.framing import PROTOCOL_MAJOR, PROTOCOL_MINOR, FrameDecoder, encode_frame
from firmware_bridge.messages import HelloReject, MsgType, StimSetting
from firmware_bridge.transports.pty_link import PtyDeviceLink
from firmware_bridge.transports.serial_link import SerialLink
from simulator.firmware import FirmwareConfig, VirtualFirmware
from simulator.serve import serve_firmware
from simulator.signals import NoiseSource

NEUROSTIM = [sys.executable, "-m", "neurostim_cli.main"]


async def test_handshake_streaming_and_stimulation_change_over_a_pty() -> None:
    clock = MonotonicClock()
    device_end = PtyDeviceLink()
    firmware = VirtualFirmware(NoiseSource(seed=5), FirmwareConfig(seed=5), start_s=clock.now())
    server = asyncio.create_task(serve_firmware(firmware, device_end, clock))
    link = await SerialLink.open(device_end.url.removeprefix("serial://"), 921_600)
    try:
        async with DeviceConnection(link, clock) as conn:
            info = await asyncio.wait_for(conn.connect(), 5)
            assert info.n_channels == 8 and info.sampling_rate_hz == 250
            result = await asyncio.wait_for(
                conn.set_stimulation(StimSetting(True, 1.5, 90, 130.0, 5.0)), 5
            )
            assert isinstance(result, CommandAcked)
            samples = 0
            final_state = None
            loop_end = clock.now() + 1.5
            while clock.now() < loop_end:
                event = await asyncio.wait_for(conn.next_event(), 2)
                if isinstance(event, SamplesReceived):
                    samples += event.counts.shape[1]
                elif isinstance(event, StimStateReceived):
                    final_state = event.state
            assert samples >= 250  # >= 1 s of 250 Hz signal arrived
            assert final_state is not None and final_state.amplitude_ma == pytest.approx(1.5)
            stats = conn.session.stats
            assert stats.crc_errors == 0 and stats.sample_gaps == 0
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
        await device_end.close()


async def test_controller_reports_a_device_speaking_another_major_version() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    loop = asyncio.get_running_loop()
    decoder = FrameDecoder()

    def answer() -> None:
        for frame in decoder.feed(os.read(master, 4096)):
            if frame.msg_type == MsgType.HELLO:
                reject = HelloReject(2, 1, 1, "this device speaks 2.1")
                os.write(
                    master, encode_frame(MsgType.HELLO_REJECT, reject.encode(), 0, 0, version=2)
                )

    loop.add_reader(master, answer)
    try:
        link = await SerialLink.open(path, 921_600)
        async with DeviceConnection(link, MonotonicClock()) as conn:
            ours = rf"{PROTOCOL_MAJOR}\.{PROTOCOL_MINOR}"
            with pytest.raises(ProtocolMismatch, match=rf"2\.1.*{ours}"):
                await asyncio.wait_for(conn.connect(), 5)
    finally:
        loop.remove_reader(master)
        os.close(master)
        os.close(slave)


def test_device_serve_pty_prints_url_first_and_a_controller_run_succeeds(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    server = subprocess.Popen(
        [*NEUROSTIM, "device", "serve", "--transport", "serial", "--pty", "--scenario", "noise"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        assert url.startswith("serial:///dev/pts/"), url
        run = subprocess.run(
            [*NEUROSTIM, "run", "--device", url, "--duration", "2", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert run.returncode == 0, run.stderr
        import json

        summary = json.loads(run.stdout)
        assert summary["loop"]["device"]["device_id"] == "SIM-0001"
        assert summary["loop"]["link"]["samples"] >= 400
        assert summary["loop"]["link"]["crc_errors"] == 0
        assert summary["loop"]["ramped_down"] is True
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_run_exits_nonzero_with_a_clear_message_when_nothing_answers() -> None:
    master, slave = os.openpty()  # a tty where nobody speaks the protocol
    try:
        run = subprocess.run(
            [*NEUROSTIM, "run", "--device", os.ttyname(slave), "--duration", "1"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.close(master)
        os.close(slave)
    assert run.returncode == 3
    assert "no answer to HELLO" in run.stderr


def test_run_rejects_a_bad_url_with_usage_exit_code() -> None:
    run = subprocess.run(
        [*NEUROSTIM, "run", "--device", "ftp://x", "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "unknown scheme" in run.stderr
