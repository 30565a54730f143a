"""Benchmark of the link alone: a ControllerSession and a DeviceSession through the lockstep
pump, nothing else (no signal source, no firmware model, no controller pipeline).

The device side sends what the simulated device sends in a steady virtual second: its
heartbeat every 250 ms, a SAMPLES frame of 125 samples of every channel twice a second and a
STATUS once a second; the controller side answers with its heartbeats. Every frame is really
encoded (header, sequence number, timestamp, CRC-32, COBS) and decoded and checked on the
other side. "heartbeats only" leaves out SAMPLES and STATUS: a lockstep step in which only
heartbeats are due. Printed, never asserted; CPU time, best and median of ``--repeat`` runs
(steadier than wall time on a shared machine). Run from the repository root::

    .venv/bin/python -m benchmarks.bench_link [--seconds 300] [--repeat 7]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.bench_lockstep import CountingPeer
from firmware_bridge.clock import VirtualClock
from firmware_bridge.lockstep import LockstepPump
from firmware_bridge.messages import DeviceInfo, Status
from firmware_bridge.session import ControllerSession, DeviceSession
from simulator.devices import DEFAULT_DEVICE
from simulator.firmware import VirtualFirmware, firmware_config_for
from simulator.signals import NoiseSource

SAMPLES_PER_FRAME = 125
FRAME_S = 0.5
STATUS_S = 1.0


class DevicePeer:
    """The device side: its session's heartbeats, and SAMPLES and STATUS on their cadence
    (``with_data`` false: heartbeats only)."""

    def __init__(self, info: DeviceInfo, with_data: bool) -> None:
        self.session = DeviceSession(info)
        self.with_data = with_data
        n_channels = len(info.channels)
        rng = np.random.default_rng(1)
        counts = rng.integers(-3000, 3000, size=SAMPLES_PER_FRAME * n_channels, dtype=np.int16)
        self.interleaved = counts.astype("<i2").tobytes()
        self.status = Status(80, 0, tuple(1000 for _ in range(n_channels)))
        self.next_frame_s, self.next_status_s, self.index = FRAME_S, STATUS_S, 0

    def receive_data(self, data: bytes, now: float) -> None:
        self.session.receive_data(data, now)

    def data_to_send(self) -> bytes:
        return self.session.data_to_send()

    def next_deadline(self) -> float | None:
        due = self.session.next_deadline()
        if not self.with_data:
            return due
        own = min(self.next_frame_s, self.next_status_s)
        return own if due is None or own < due else due

    def on_time(self, now: float) -> None:
        """In the firmware's order (``VirtualFirmware.advance_to``): the frame that ends now,
        then the session's timers (its heartbeat), then STATUS."""
        if self.with_data and now >= self.next_frame_s:
            if self.session.handshaken:
                self.session.send_samples_interleaved(self.index, self.interleaved, now)
            self.index += SAMPLES_PER_FRAME
            self.next_frame_s += FRAME_S
        self.session.handle_timeout(now)
        if self.with_data and now >= self.next_status_s:
            if self.session.handshaken:
                self.session.send_status(self.status, now)
            self.next_status_s += STATUS_S


def default_device_info() -> DeviceInfo:
    """The DEVICE_INFO of the default simulated device (its channels, its heartbeat)."""
    return VirtualFirmware(NoiseSource(seed=1), firmware_config_for(DEFAULT_DEVICE)).info


def cpu_us_per_virtual_s(info: DeviceInfo, seconds: float, with_data: bool) -> float:
    clock = VirtualClock()
    controller, device = CountingPeer(ControllerSession()), DevicePeer(info, with_data)
    pump = LockstepPump(controller, device, clock, session_peers=True)
    controller.session.connect(0.0)
    pump.run_until(5.0)  # handshake done
    start = time.process_time()
    pump.run_until(5.0 + seconds)
    cpu_s = time.process_time() - start
    if with_data and controller.session.stats.samples_rx == 0:
        raise RuntimeError("no samples crossed the link")
    return cpu_s / seconds * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    info = default_device_info()
    print(f"link alone, {len(info.channels)} channels, {args.seconds:g} virtual s per run")
    rows = (("heartbeats, SAMPLES 2/s, STATUS 1/s", True), ("heartbeats only", False))
    for name, with_data in rows:
        runs = sorted(
            cpu_us_per_virtual_s(info, args.seconds, with_data) for _ in range(args.repeat)
        )
        print(
            f"  {name:38s} CPU µs per virtual s: best {runs[0]:6.1f}  "
            f"median {runs[len(runs) // 2]:6.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
