"""Loop latency through the async shell, with the audit log and the EDF+ recording on.

A scripted device (``DeviceSession`` from the protocol package: it streams noise at the
declared rate in real time, ACKs every command, ramps at the commanded rate and counts
its charge, so the controller's device check finds nothing)
serves on an in-memory link; the real ``ControllerLoop`` and ``ControllerNode`` run
against it with their files on writer threads. Measured, wall clock:

- chunk latency: from the moment the shell's ``receive()`` returns bytes to the moment it
  asks for the next ones, i.e. what handling one SAMPLES frame costs the event loop
  (session, features, detector, policy, envelope, audit, recording, sending);
- loop lag: how late a 1 ms timer in the same loop fires, i.e. whatever blocks the loop
  (an fsync on the loop thread would show here).

Printed, never asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from controller.bench_device import bench_device
from controller.config import ControllerConfig
from controller.loop import ControllerLoop
from controller.run import build_node
from firmware_bridge.clock import AsyncioClock
from firmware_bridge.errors import LinkClosed
from firmware_bridge.events import EstopRequested, HandshakeCompleted, StimSetRequested
from firmware_bridge.messages import (
    DeviceInfo,
    MsgType,
    Status,
    StimSetting,
    StimState,
)
from firmware_bridge.session import DeviceSession
from firmware_bridge.transports.base import Link
from firmware_bridge.transports.memory import memory_link_pair
from firmware_bridge.transports.registry import TransportRegistry
from firmware_bridge.url import DeviceURL


@dataclass(frozen=True)
class AsyncLatencyRow:
    config: str
    files: str
    chunks: int
    chunk_p50_ms: float
    chunk_p99_ms: float
    chunk_max_ms: float
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    audit_syncs: int
    audit_overflows: int


class _TimedLink:
    """The controller's end of the link, timing each received chunk's handling."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self._got_at: float | None = None
        self.chunk_s: list[float] = []

    @property
    def description(self) -> str:
        return self._link.description

    async def send(self, data: bytes) -> None:
        await self._link.send(data)

    async def receive(self) -> bytes:
        if self._got_at is not None:
            self.chunk_s.append(time.perf_counter() - self._got_at)
            self._got_at = None
        data = await self._link.receive()
        self._got_at = time.perf_counter()
        return data

    async def close(self) -> None:
        await self._link.close()

    async def __aenter__(self) -> _TimedLink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _HonestOutput:
    """What the scripted device delivers: ramps at the commanded rate and counts its
    charge, so the controller's device check has nothing to flag."""

    def __init__(self, max_rate_ma_per_s: float) -> None:
        self.max_rate = max_rate_ma_per_s
        self.setting = StimSetting(False, 0.0, 0, 0.0, 0.0)
        self.command_id = 0
        self._from_ma, self._t0, self._rate = 0.0, 0.0, max_rate_ma_per_s
        self._charge_uc, self._t_charge = 0.0, 0.0

    def amplitude(self, t_s: float) -> float:
        target = self.setting.amplitude_ma if self.setting.enabled else 0.0
        step = self._rate * max(0.0, t_s - self._t0)
        if target >= self._from_ma:
            return min(target, self._from_ma + step)
        return max(target, self._from_ma - step)

    def command(self, command_id: int, setting: StimSetting, t_s: float) -> None:
        self._count(t_s)
        self._from_ma, self._t0 = self.amplitude(t_s), t_s
        rate = setting.ramp_rate_ma_per_s
        self._rate = self.max_rate if not rate > 0 else min(rate, self.max_rate)
        self.setting, self.command_id = setting, command_id

    def state(self, t_s: float) -> StimState:
        self._count(t_s)
        s, amplitude = self.setting, self.amplitude(t_s)
        target = s.amplitude_ma if s.enabled else 0.0
        return StimState(
            s.enabled, amplitude != target, False, False, amplitude, target,
            s.pulse_width_us, s.frequency_hz, self._charge_uc, self.command_id,
        )

    def _count(self, t_s: float) -> None:
        """Charge since the last count at the mean amplitude of the stretch (a linear ramp
        or a constant between two commands)."""
        dt = t_s - self._t_charge
        if dt > 0 and self.setting.enabled:
            mean_ma = 0.5 * (self.amplitude(self._t_charge) + self.amplitude(t_s))
            s = self.setting
            self._charge_uc += mean_ma * s.pulse_width_us * 1e-3 * s.frequency_hz * dt
        self._t_charge = t_s


async def _scripted_device(link: Link, info: DeviceInfo, clock: AsyncioClock) -> None:
    """Streams noise in real time; ACKs commands and reports what it delivers."""
    session = DeviceSession(info)
    rng = np.random.default_rng(0)
    n, spf = info.n_channels, info.samples_per_frame
    blocks = [rng.integers(-400, 400, (n, spf), dtype=np.int16) for _ in range(16)]
    output = _HonestOutput(info.limits.max_ramp_rate_ma_per_s)
    status = Status(90, 0, tuple([1000] * info.n_electrodes))
    frame_s = spf / info.sampling_rate_hz

    async def reader() -> None:
        while True:
            data = await link.receive()
            now = clock.now()
            for event in session.receive_data(data, now):
                if isinstance(event, HandshakeCompleted):
                    session.send_stim_state(output.state(now), now)
                    session.send_status(status, now)
                elif isinstance(event, StimSetRequested):
                    session.ack(event.command_id, MsgType.STIM_SET, now)
                    output.command(event.command_id, event.setting, now)
                    session.send_stim_state(output.state(now), now)
                elif isinstance(event, EstopRequested):
                    session.ack(event.command_id, MsgType.ESTOP, now)
            data_out = session.data_to_send()
            if data_out:
                await link.send(data_out)

    async def streamer() -> None:
        index = 0
        start = clock.now()
        k = 0
        per_second = max(1, round(1.0 / frame_s))
        while True:
            now = clock.now()
            if session.handshaken:
                session.send_samples(index, blocks[k % 16], now)
                index += spf
                k += 1
                if k % per_second == 0:
                    session.send_stim_state(output.state(now), now)
                    session.send_status(status, now)
            session.handle_timeout(now)
            data_out = session.data_to_send()
            if data_out:
                await link.send(data_out)
            await clock.sleep_until(start + k * frame_s if session.handshaken else now + 0.01)

    tasks = [asyncio.create_task(reader()), asyncio.create_task(streamer())]
    try:
        await asyncio.gather(*tasks)
    except LinkClosed:
        pass
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, LinkClosed):
                await task


class BenchDevices:
    """``sim://`` in a registry of its own: every link opened is a scripted device on a
    memory link, timed on the controller's side."""

    def __init__(self, info: DeviceInfo, clock: AsyncioClock) -> None:
        self.info, self.clock = info, clock
        self.links: list[_TimedLink] = []
        self._devices: list[asyncio.Task[None]] = []
        self.registry = TransportRegistry()
        self.registry.register("sim", self._open)

    async def _open(self, url: DeviceURL) -> Link:
        ctl, dev = memory_link_pair("bench")
        self._devices.append(asyncio.create_task(_scripted_device(dev, self.info, self.clock)))
        link = _TimedLink(ctl)
        self.links.append(link)
        return link

    def chunk_s(self) -> list[float]:
        return [t for link in self.links for t in link.chunk_s]

    async def stop(self) -> None:
        for task in self._devices:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, LinkClosed):
                await task


async def _lag_probe(lags_s: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due = loop.time() + 0.001
        await asyncio.sleep(0.001)
        lags_s.append(max(0.0, loop.time() - due))


async def _measure(
    n_channels: int, rate_hz: int, seconds: float, files: bool, directory: Path
) -> AsyncLatencyRow:
    clock = AsyncioClock()
    info = bench_device(n_channels, rate_hz, samples_per_frame=max(1, rate_hz // 100))
    config = ControllerConfig.model_validate(
        {"policy": {"name": "open-loop", "open_loop": {"mode": "continuous"}}}
    )
    audit = directory / f"bench-{n_channels}-{rate_hz}.jsonl" if files else None
    record = directory / f"bench-{n_channels}-{rate_hz}.edf" if files else None
    node = build_node(
        config, audit, record, datetime.now(UTC), threaded_writes=True
    )
    bench = BenchDevices(info, clock)
    stop_probe = asyncio.Event()
    lags: list[float] = []
    probe = asyncio.create_task(_lag_probe(lags, stop_probe))
    try:
        await ControllerLoop("sim://bench", node, clock, bench.registry).run(seconds)
    finally:
        stop_probe.set()
        await probe
        await bench.stop()
    chunk_ms = np.array(bench.chunk_s()) * 1e3
    lag_ms = np.array(lags) * 1e3
    return AsyncLatencyRow(
        f"{n_channels} ch @ {rate_hz} Hz",
        "audit + EDF+" if files else "none",
        int(chunk_ms.size),
        float(np.percentile(chunk_ms, 50)),
        float(np.percentile(chunk_ms, 99)),
        float(chunk_ms.max()),
        float(np.percentile(lag_ms, 50)),
        float(np.percentile(lag_ms, 99)),
        float(lag_ms.max()),
        node.audit.syncs,
        node.audit.overflows,
    )


def measure_async_latency(seconds: float = 20.0) -> list[AsyncLatencyRow]:
    """8 ch @ 250 Hz and 64 ch @ 1 kHz, each with the files on and off, in one run."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_channels, rate_hz in ((8, 250), (64, 1000)):
            for files in (True, False):
                rows.append(
                    asyncio.run(_measure(n_channels, rate_hz, seconds, files, Path(tmp)))
                )
    return rows


def format_async_rows(rows: list[AsyncLatencyRow]) -> str:
    lines = [
        f"{'configuration':<18}{'files':<14}{'chunks':>7}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'max ms':>8}{'lag p50':>9}{'lag p99':>9}{'lag max':>9}{'fsyncs':>8}{'overflow':>9}"
    ]
    for r in rows:
        lines.append(
            f"{r.config:<18}{r.files:<14}{r.chunks:>7}{r.chunk_p50_ms:>8.3f}"
            f"{r.chunk_p99_ms:>8.3f}{r.chunk_max_ms:>8.2f}{r.lag_p50_ms:>9.3f}"
            f"{r.lag_p99_ms:>9.3f}{r.lag_max_ms:>9.2f}{r.audit_syncs:>8}{r.audit_overflows:>9}"
        )
    return "\n".join(lines)
