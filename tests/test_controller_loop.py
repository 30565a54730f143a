"""The controller core and its async shell against the simulated device: lockstep and real
transports, audit chain, EDF+ recording, reconnection, envelope conflicts, signals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import mne
import pytest

from controller.audit import AuditLog, verify_audit
from controller.config import ControllerConfig
from controller.core import ControllerCore
from controller.envelope import EnvelopeConflict
from controller.node import ControllerNode
from controller.run import run_controller
from firmware_bridge.clock import AsyncioClock, MonotonicClock, VirtualClock
from firmware_bridge.lockstep import LockstepPump
from firmware_bridge.transports.memory import memory_link_pair
from firmware_bridge.transports.registry import transports
from firmware_bridge.url import DeviceURL
from simulator.embedded import open_embedded_url
from simulator.firmware import FirmwareConfig, VirtualFirmware
from simulator.serve import serve_firmware
from simulator.signals import NoiseSource

NEUROSTIM = [sys.executable, "-m", "neurostim_cli.main"]


def _open_loop_config() -> ControllerConfig:
    return ControllerConfig.model_validate(
        {"policy": {"name": "open-loop", "open_loop": {"mode": "continuous"}}}
    )


def test_core_in_lockstep_stimulates_within_the_envelope_and_audits_everything(
    tmp_path: Path,
) -> None:
    config = _open_loop_config()
    audit_path = tmp_path / "audit.jsonl"
    node = ControllerNode(ControllerCore(config), AuditLog(audit_path))
    core = node.core
    fw = VirtualFirmware(NoiseSource(seed=1), FirmwareConfig(seed=1))
    clock = VirtualClock()
    pump = LockstepPump(node, fw, clock)
    node.start(0.0)
    pump.run_until(120.0)
    therapy = config.policy.stimulation
    assert fw.output.enabled
    assert fw.output.amplitude_ma == pytest.approx(therapy.amplitude_ma, rel=1e-6)
    assert core.stats.commands >= 1 and core.stats.acks == core.stats.commands
    # Ramp-up never faster than the envelope's configured rate.
    assert fw.output.ramp_rate_ma_per_s <= config.envelope.ramp_up_ma_per_s + 1e-9
    node.close(clock.now())
    check = verify_audit(audit_path)
    assert check.ok and check.records >= 5
    kinds = {json.loads(line)["kind"] for line in audit_path.read_text().splitlines()}
    assert {"connect", "decision", "command", "ack", "stim_state", "stop"} <= kinds
    command = next(
        json.loads(line)
        for line in audit_path.read_text().splitlines()
        if json.loads(line)["kind"] == "command"
    )
    assert {"amplitude_ma", "pulse_width_us", "frequency_hz"} <= set(command)


async def test_run_against_the_embedded_device_records_edf_and_audit(tmp_path: Path) -> None:
    transports.register("sim", open_embedded_url)
    audit_path, edf_path = tmp_path / "run.jsonl", tmp_path / "run.edf"
    result = await run_controller(
        "sim://noise?seed=2",
        _open_loop_config(),
        MonotonicClock(),
        start=datetime(2026, 11, 22, tzinfo=UTC),
        duration_s=3.0,
        audit_path=audit_path,
        record_path=edf_path,
    )
    assert result.loop.connects == 1
    assert result.loop.stopped_by == "duration" and result.loop.ramped_down
    assert result.core.commands >= 2  # therapy on, then the shutdown ramp-down
    assert verify_audit(audit_path).ok
    raw = mne.io.read_raw_edf(edf_path, preload=True, verbose=False)
    assert raw.info["sfreq"] == 250 and len(raw.ch_names) == 8
    assert raw.n_times >= 250 * 2
    texts = list(raw.annotations.description)
    assert any(t.startswith("stimulation") for t in texts)


async def test_configuration_beyond_the_device_is_refused_at_connect(tmp_path: Path) -> None:
    transports.register("sim", open_embedded_url)
    config = ControllerConfig.model_validate(
        {"envelope": {"max_amplitude_ma": 14.0}, "loop": {"shutdown_ramp_down_timeout_s": 200.0}}
    )
    with pytest.raises(EnvelopeConflict, match="max_amplitude_ma"):
        await run_controller(
            "sim://noise", config, MonotonicClock(), start=datetime.now(UTC), duration_s=2.0
        )


@pytest.mark.looptime
async def test_loop_reconnects_after_the_link_drops() -> None:
    """In fast-forwarded virtual time (looptime): the loop's clock jumps whenever every
    task waits, so the 1.5 s cut and the 4 s run take no wall time and always line up."""
    opened: list[int] = []
    tasks: list[asyncio.Task[None]] = []

    async def flaky_device(url: DeviceURL) -> object:
        """First link dies after 1.5 s; the second one stays."""
        clock = AsyncioClock()
        fw = VirtualFirmware(NoiseSource(seed=3), FirmwareConfig(seed=3), start_s=clock.now())
        ctl_end, dev_end = memory_link_pair()
        tasks.append(asyncio.create_task(serve_firmware(fw, dev_end, clock)))
        opened.append(1)
        if len(opened) == 1:

            async def cut() -> None:
                await asyncio.sleep(1.5)
                await dev_end.close()

            tasks.append(asyncio.create_task(cut()))
        return ctl_end

    with transports.registered("sim", flaky_device):  # type: ignore[arg-type]
        result = await run_controller(
            "sim://flaky",
            _open_loop_config(),
            AsyncioClock(),
            start=datetime.now(UTC),
            duration_s=4.0,
        )
    assert len(opened) == 2
    assert result.loop.connects == 2 and result.loop.link_losses == 1
    assert result.loop.ramped_down


def test_sigint_ramps_down_and_exits_zero(tmp_path: Path) -> None:
    audit = tmp_path / "sig.jsonl"
    proc = subprocess.Popen(
        [*NEUROSTIM, "run", "--device", "sim://noise", "--audit", str(audit), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        deadline = 30.0
        while deadline > 0 and (not audit.exists() or audit.stat().st_size == 0):
            subprocess.run(["sleep", "0.2"], check=True)
            deadline -= 0.2
        subprocess.run(["sleep", "1.0"], check=True)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    report = json.loads(out)
    assert report["loop"]["stopped_by"] == "signal"
    assert report["loop"]["ramped_down"] is True
    assert verify_audit(audit).ok


def test_sim_ground_truth_lands_in_the_recording_as_annotations(tmp_path: Path) -> None:
    scenario = tmp_path / "quick-aura.toml"
    scenario.write_text(
        'name = "quick-aura"\nduration_s = "1h"\nmodel = "spectral"\nseed = 0\n'
        '[patient]\nphenotype = "episodic-with-aura"\nseed = 2\n'
        '[[events]]\nkind = "force_attack"\nat_s = "1s"\naura = true\n'
    )
    edf = tmp_path / "truth.edf"
    run = subprocess.run(
        [
            *NEUROSTIM,
            "run",
            "--device",
            f"sim://{scenario}",
            "--duration",
            "3",
            "--record",
            str(edf),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    raw = mne.io.read_raw_edf(edf, preload=False, verbose=False)
    truth = [
        (onset, text)
        for onset, text in zip(raw.annotations.onset, raw.annotations.description, strict=True)
        if text.startswith("truth")
    ]
    texts = [t for _, t in truth]
    assert any("attack_onset" in t or "aura_onset" in t for t in texts), texts
    assert all(0.0 <= onset <= 3.5 for onset, _ in truth)


@pytest.mark.looptime
async def test_the_async_shell_runs_ten_virtual_minutes_and_stops_cleanly() -> None:
    transports.register("sim", open_embedded_url)
    result = await run_controller(
        "sim://noise?seed=4",
        _open_loop_config(),
        AsyncioClock(),
        start=datetime(2026, 11, 22, tzinfo=UTC),
        duration_s=600.0,
    )
    loop = result.loop
    assert loop.connects == 1 and loop.link_losses == 0
    assert loop.stopped_by == "duration" and loop.ramped_down
    assert loop.link["samples"] >= 600 * 250 and loop.link["sample_gaps"] == 0
    assert result.core.commands >= 2 and result.core.acks == result.core.commands


@pytest.mark.looptime
async def test_the_summary_counts_the_ramp_down_too() -> None:
    """The link counters run to the end: frames of the shutdown ramp are counted, so a gap
    or a CRC error during the ramp-down would show."""
    transports.register("sim", open_embedded_url)
    result = await run_controller(
        "sim://noise?seed=6",
        _open_loop_config(),
        AsyncioClock(),
        start=datetime(2026, 11, 22, tzinfo=UTC),
        duration_s=100.0,  # 3 mA reached at 0.03 mA/s; down at 0.12 mA/s takes 25 s more
    )
    assert result.loop.ramped_down
    assert result.loop.link["samples"] >= (100.0 + 20.0) * 250
