"""``neurostim bench mqtt``: the MQTT transport on a local Mosquitto broker (printed, never
asserted).

- STIM_SET -> ACK round trip over >= 1000 signed commands sent on a fixed schedule; each
  latency counts from the command's *scheduled* send time, so a stall delays every command
  behind it instead of hiding them (no coordinated omission).
- SAMPLES throughput of one device at 8 ch @ 250 Hz and at 64 ch @ 1 kHz.
- ``--count N`` devices (served by a separate ``neurostim device serve --count N``
  process) each with its own controller session in this process: messages per second
  through the broker, sample gaps, and the per-device round-trip p99.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from firmware_bridge.clock import AsyncioClock
from firmware_bridge.events import (
    CommandAcked,
    CommandNacked,
    CommandTimedOut,
    Connected,
    Event,
    HandshakeFailed,
    SamplesReceived,
)
from firmware_bridge.messages import StimSetting
from firmware_bridge.session import ControllerSession
from firmware_bridge.transports.base import LinkClosed
from firmware_bridge.transports.mqtt import (
    MqttControllerLink,
    MqttDeviceLink,
    open_controller_link,
)
from firmware_bridge.transports.mqtt_presence import SessionCounter
from firmware_bridge.url import MqttBroker, MqttURL, parse_broker_url
from simulator.firmware import FirmwareConfig, VirtualFirmware
from simulator.local_broker import LocalBroker
from simulator.serve import serve_firmware
from simulator.signals import NoiseSource, Site

KEY = bytes(range(32))
#: Alternating settings, so every command changes something on the device.
SETTINGS = (StimSetting(True, 1.0, 100, 50.0, 0.0), StimSetting(True, 1.2, 100, 50.0, 0.0))


def register(bench_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = bench_sub.add_parser("mqtt", help="MQTT transport on a local broker")
    parser.add_argument(
        "--broker", help="an existing broker mqtt://host:port (default: start a local one)"
    )
    parser.add_argument("--commands", type=int, default=1000, help="STIM_SETs timed")
    parser.add_argument("--rate", type=float, default=200.0, help="commands per second")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each stream test")
    parser.add_argument("--count", type=int, default=0, help="also N devices on one broker")
    parser.add_argument(
        "--fleet-samples-per-frame",
        type=int,
        default=FirmwareConfig.samples_per_frame,
        help="the fleet devices' SAMPLES frame length (default %(default)s: 40 ms at 250 Hz)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(handler=main_bench_mqtt)


@dataclass
class ControllerEnd:
    """A hand-pumped controller session on a real controller link, timing its commands."""

    link: MqttControllerLink
    session: ControllerSession = field(default_factory=lambda: ControllerSession(key=KEY))
    scheduled_s: dict[int, float] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)
    samples: int = 0
    #: Commands answered otherwise than ACK, by what happened (a NACK's reason, timeout).
    not_acked: Counter[str] = field(default_factory=Counter)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    _wake: asyncio.Event | None = None

    def wake(self) -> None:
        """A new command moved the session's next deadline (its retry timer)."""
        if self._wake is not None:
            self._wake.set()

    def take(self, events: list[Event], now: float) -> None:
        for event in events:
            if isinstance(event, CommandAcked):
                scheduled = self.scheduled_s.pop(event.command_id, None)
                if scheduled is not None:
                    self.latencies_s.append(now - scheduled)
            elif isinstance(event, CommandNacked):
                self._not_acked(event.command_id, event.reason_name)
            elif isinstance(event, CommandTimedOut):
                self._not_acked(event.command_id, "TIMEOUT")
            elif isinstance(event, SamplesReceived):
                self.samples += event.counts.shape[1]
            elif isinstance(event, Connected):
                self.connected.set()
            elif isinstance(event, HandshakeFailed):
                self.session.connect(now)  # a loaded device answers late: ask again

    def _not_acked(self, command_id: int, what: str) -> None:
        if self.scheduled_s.pop(command_id, None) is not None:
            self.not_acked[what] += 1

    async def flush(self) -> None:
        data = self.session.data_to_send()
        if data:
            await self.link.send(data)

    async def run(self, stop: asyncio.Event) -> None:
        """Receive (a frame is handled the moment it arrives) and answer timers until
        ``stop``: one task each, as the device side does."""
        loop = asyncio.get_running_loop()
        wake = self._wake = asyncio.Event()

        async def reader() -> None:
            while True:
                data = await self.link.receive()
                self.take(self.session.receive_data(data, loop.time()), loop.time())
                await self.flush()
                wake.set()

        async def timers() -> None:
            while not stop.is_set():
                timer = self.session.next_deadline()
                if timer is not None and loop.time() >= timer:
                    self.take(self.session.handle_timeout(loop.time()), loop.time())
                    await self.flush()
                    continue
                wake.clear()
                # Not wait_for: on Python 3.11 it can swallow a cancel that arrives as the
                # event is set, and this loop would then wait forever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(timer):
                        await wake.wait()

        self.session.connect(loop.time())
        await self.flush()
        tasks = [asyncio.create_task(reader()), asyncio.create_task(timers())]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, LinkClosed):
                    await task

    async def command_at(self, scheduled_s: float, setting: StimSetting) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, scheduled_s - loop.time()))
        command_id = self.session.send_stim_set(setting, loop.time())
        self.scheduled_s[command_id] = scheduled_s
        await self.flush()
        self.wake()


def _percentiles_ms(latencies_s: list[float]) -> dict[str, float]:
    if not latencies_s:
        return {"n": 0}
    ms = np.asarray(latencies_s) * 1e3
    return {
        "n": int(ms.size),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "max_ms": round(float(ms.max()), 3),
    }


def _device_firmware(
    n_channels: int, rate_hz: int, device_id: str, start_s: float
) -> VirtualFirmware:
    sites = tuple(Site(f"C{i}", 0.0, 10.0 * i) for i in range(n_channels))
    config = FirmwareConfig(device_id=device_id, signing_key=KEY, samples_per_frame=10)
    return VirtualFirmware(NoiseSource(sites, float(rate_hz), seed=1), config, start_s)


@contextlib.asynccontextmanager
async def _one_device(
    broker: MqttBroker, n_channels: int, rate_hz: int, device_id: str, state_dir: Path
) -> AsyncIterator[ControllerEnd]:
    clock = AsyncioClock()
    firmware = _device_firmware(n_channels, rate_hz, device_id, clock.now())
    counter = SessionCounter.in_dir(state_dir, device_id)
    device_link = MqttDeviceLink(broker, device_id, firmware.info.firmware_version, counter)
    device_link.start()
    stop = asyncio.Event()
    serving = asyncio.create_task(serve_firmware(firmware, device_link, clock, stop))
    await device_link.wait_connected(5.0)
    url = MqttURL(broker.host, device_id, broker.port)
    end = ControllerEnd(await open_controller_link(url))
    pumping = asyncio.create_task(end.run(stop))
    try:
        await asyncio.wait_for(end.connected.wait(), 5.0)
        yield end
    finally:
        stop.set()
        await pumping
        await end.link.close()
        await serving
        await device_link.close()


async def _round_trip(
    broker: MqttBroker, n: int, rate_hz: float, state_dir: Path
) -> dict[str, object]:
    async with _one_device(broker, 8, 250, "bench-rtt", state_dir) as end:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.2
        sends = [
            asyncio.create_task(end.command_at(start + i / rate_hz, SETTINGS[i % 2]))
            for i in range(n)
        ]
        await asyncio.gather(*sends)
        deadline = loop.time() + 2.0
        while end.scheduled_s and loop.time() < deadline:
            await asyncio.sleep(0.01)
        result: dict[str, object] = dict(_percentiles_ms(end.latencies_s))
        result["unanswered"] = len(end.scheduled_s)
        result["not_acked"] = dict(end.not_acked)
        result["rate_per_s"] = rate_hz
        return result


async def _throughput(
    broker: MqttBroker, n_channels: int, rate_hz: int, seconds: float, state_dir: Path
) -> dict[str, object]:
    device_id = f"bench-{n_channels}ch"
    async with _one_device(broker, n_channels, rate_hz, device_id, state_dir) as end:
        before = end.samples
        await asyncio.sleep(seconds)
        got = end.samples - before
        stats = end.session.stats
        return {
            "channels": n_channels,
            "rate_hz": rate_hz,
            "samples_per_s": round(got / seconds, 1),
            "expected_per_s": rate_hz,
            "bytes_per_s": round(got * n_channels * 2 / seconds),
            "sample_gaps": stats.sample_gaps,
            "samples_missing": stats.samples_missing,
        }


async def _fleet(
    broker: MqttBroker, count: int, seconds: float, state_dir: Path, samples_per_frame: int
) -> dict[str, object]:
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "neurostim_cli.main",
            "device",
            "serve",
            "--transport",
            "mqtt",
            "--broker",
            f"mqtt://{broker.host}:{broker.port}",
            "--device-id",
            "fleet",
            "--count",
            str(count),
            "--insecure",
            "--scenario",
            "noise",
            "--state-dir",
            str(state_dir),
            # One process plays every device: the signal is made a second at a time so
            # that the devices' CPU goes to the frames and the broker, which are measured.
            "--samples-per-frame",
            str(samples_per_frame),
            "--signal-block-frames",
            str(max(1, 250 // samples_per_frame)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    opened: list[ControllerEnd] = []
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        assert serve.stdout is not None
        urls = [await asyncio.to_thread(serve.stdout.readline) for _ in range(count)]
        await asyncio.sleep(1.0)  # the devices connect
        _progress(f"{len(urls)} devices serving; connecting the controllers")
        for url_text in urls:
            device_id = url_text.strip().rsplit("/", 1)[-1]
            link = await open_controller_link(MqttURL(broker.host, device_id, broker.port))
            end = ControllerEnd(link, ControllerSession())
            opened.append(end)
            tasks.append(asyncio.create_task(end.run(stop)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(e.connected.wait() for e in opened)), 60.0)
        ends = [e for e in opened if e.connected.is_set()]
        _progress(f"{len(ends)} of {len(opened)} handshaken; timing commands")
        if not ends:
            raise RuntimeError("no device answered a handshake within 60 s")
        loop = asyncio.get_running_loop()
        tx0 = sum(e.link.stats.publishes_tx for e in ends)
        rx0 = sum(e.link.stats.publishes_rx for e in ends)
        samples0 = sum(e.samples for e in ends)
        start = loop.time() + 0.1
        per_device = max(1, int(seconds * 2))  # two commands per second per device
        sends = [
            asyncio.create_task(e.command_at(start + k / 2 + i * 0.5 / len(ends), SETTINGS[k % 2]))
            for i, e in enumerate(ends)
            for k in range(per_device)
        ]
        await asyncio.gather(*sends)
        await asyncio.sleep(max(0.0, start + seconds - loop.time()) + 0.5)
        elapsed = loop.time() - start
        tx = sum(e.link.stats.publishes_tx for e in ends) - tx0
        rx = sum(e.link.stats.publishes_rx for e in ends) - rx0
        p99s = [_percentiles_ms(e.latencies_s)["p99_ms"] for e in ends if e.latencies_s]
        return {
            "devices": count,
            "samples_per_frame": samples_per_frame,
            "handshaken": len(ends),
            # Each message crosses the broker once each way: the devices' publishes arrive
            # here (rx), ours go to the devices (tx); both pass through the broker.
            "broker_messages_per_s": round((tx + rx) / elapsed),
            "to_controllers_per_s": round(rx / elapsed),
            "samples_per_s_per_device": round(
                (sum(e.samples for e in ends) - samples0) / elapsed / len(ends), 1
            ),
            "sample_gaps": sum(e.session.stats.sample_gaps for e in ends),
            "commands": sum(len(e.latencies_s) for e in ends),
            "unanswered": sum(len(e.scheduled_s) for e in ends),
            "not_acked": dict(sum((e.not_acked for e in ends), Counter[str]())),
            # Over the devices with at least one ACK (all of them when nothing is lost).
            "per_device_p99_ms_median": round(float(np.median(p99s)), 3) if p99s else None,
            "per_device_p99_ms_worst": round(float(np.max(p99s)), 3) if p99s else None,
        }
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(Exception):
                await task
        await asyncio.gather(*(e.link.close() for e in opened))
        serve.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            serve.wait(15)


async def _bench(
    args: argparse.Namespace, broker: MqttBroker, state_dir: Path
) -> dict[str, object]:
    results: dict[str, object] = {"broker": str(broker)}
    _progress(f"round trip: {args.commands} STIM_SETs at {args.rate:g}/s")
    results["round_trip"] = await _round_trip(broker, args.commands, args.rate, state_dir)
    _progress("SAMPLES throughput: 8 ch @ 250 Hz, 64 ch @ 1 kHz")
    results["throughput"] = [
        await _throughput(broker, 8, 250, args.seconds, state_dir),
        await _throughput(broker, 64, 1000, args.seconds, state_dir),
    ]
    if args.count:
        _progress(f"{args.count} devices on one broker")
        results["fleet"] = await _fleet(
            broker, args.count, args.seconds, state_dir, args.fleet_samples_per_frame
        )
    return results


def _progress(text: str) -> None:
    print(f"bench mqtt: {text}", file=sys.stderr, flush=True)


def main_bench_mqtt(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="neurostim-bench-mqtt-") as tmp:
        local: LocalBroker | None = None
        if args.broker:
            broker = parse_broker_url(args.broker)
        else:
            local = LocalBroker(Path(tmp) / "broker")
            local.start()
            broker = MqttBroker("127.0.0.1", local.port)
        try:
            results = asyncio.run(_bench(args, broker, Path(tmp) / "state"))
        finally:
            if local is not None:
                local.stop()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"MQTT on {results['broker']}")
    rtt = results["round_trip"]
    print(f"  STIM_SET -> ACK from the scheduled send, {rtt}")
    for row in results["throughput"]:  # type: ignore[attr-defined]
        print(f"  SAMPLES {row}")
    if "fleet" in results:
        print(f"  fleet {results['fleet']}")
    return 0
