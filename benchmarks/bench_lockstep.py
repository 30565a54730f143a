"""Benchmark of the lockstep byte pump: controller session <-> virtual firmware in virtual time.

Every byte goes through the real codec (COBS + CRC-32) and both sans-IO sessions; the
controller side is a bare ``ControllerSession`` that only counts its events. Printed, never
asserted (wall and CPU time are best of ``--repeat`` runs each; CPU time is steadier on
a shared machine). Run from the repository root::

    .venv/bin/python -m benchmarks.bench_lockstep [--seconds 3600] [--repeat 3] [--json]

Reports virtual seconds per wall second, wall and CPU µs per virtual second, for a few
SAMPLES frame sizes, with the placeholder noise source and with the
default physiology scenario (spectral model + sensor faults), and with "fixed": blocks
recorded from the noise source up front and replayed, so the source costs nothing and the
row is the protocol + firmware + pump cost alone. "+stim" switches stimulation on after
1 s (bare session, one STIM_SET): ramps, STIM_STATE every second, battery drain by TEED.
"source µs/vs" is the cost of the signal source alone (``read`` of the same number of
samples, CPU time, measured separately), so "CPU-source" is roughly the protocol +
firmware + pump cost.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from firmware_bridge.clock import VirtualClock
from firmware_bridge.lockstep import LockstepPump
from firmware_bridge.messages import StimSetting
from firmware_bridge.session import ControllerSession
from simulator.firmware import FirmwareConfig, VirtualFirmware
from simulator.signals import GroundTruthEvent, NoiseSource, SignalSource, Site, StimulationInput

FRAME_SIZES = (10, 50, 125)
SOURCE_BLOCK_SAMPLES = 250  # a multiple of every frame size above: 1 s at 250 Hz
THERAPY = StimSetting(True, 2.0, 90, 130.0, 0.0)


class CountingPeer:
    """The controller side: a ``ControllerSession`` whose events are counted, not kept."""

    def __init__(self, session: ControllerSession) -> None:
        self.session = session
        self.events = 0

    def receive_data(self, data: bytes, now: float) -> None:
        self.events += len(self.session.receive_data(data, now))

    def data_to_send(self) -> bytes:
        return self.session.data_to_send()

    def next_deadline(self) -> float | None:
        return self.session.next_deadline()

    def on_time(self, now: float) -> None:
        self.events += len(self.session.handle_timeout(now))


@dataclass(frozen=True)
class Row:
    source: str
    samples_per_frame: int
    virtual_s: float
    wall_s: float
    x_real_time: float
    us_per_virtual_s: float
    cpu_us_per_virtual_s: float
    source_us_per_virtual_s: float
    frames: int


def _noise_source() -> SignalSource:
    return NoiseSource(seed=1)


class ReplayBlocks:
    """A signal source that costs (almost) nothing: it cycles through a few blocks recorded
    from ``NoiseSource`` up front, so a run measures the protocol, firmware and pump alone."""

    def __init__(self, n_blocks: int = 16) -> None:
        noise = NoiseSource(seed=1)
        stim = StimulationInput(0.0, 0.0, 0.0)
        self._blocks = [noise.read(SOURCE_BLOCK_SAMPLES, stim) for _ in range(n_blocks)]
        self._sites = noise.sites
        self._fs = noise.sampling_rate_hz
        self._next = 0

    @property
    def sites(self) -> tuple[Site, ...]:
        return self._sites

    @property
    def sampling_rate_hz(self) -> float:
        return self._fs

    def read(self, n_samples: int, stim: StimulationInput) -> np.ndarray:
        block = self._blocks[self._next % len(self._blocks)]
        self._next += 1
        if n_samples != block.shape[1]:
            raise ValueError(f"ReplayBlocks serves blocks of {block.shape[1]} samples")
        return block.copy()

    def impedance_ohm(self) -> np.ndarray | None:
        return None

    def drain_ground_truth(self) -> list[GroundTruthEvent]:
        return []


def _replay_source() -> SignalSource:
    return ReplayBlocks()


def _physiology_source() -> SignalSource:
    from simulator.device_factory import build_device

    return build_device("default", {}).firmware.source


def _run_once(
    make_source: Callable[[], SignalSource], spf: int, seconds: float, stim: bool = False
) -> tuple[float, float, int]:
    source = make_source()
    fw = VirtualFirmware(
        source, FirmwareConfig(samples_per_frame=spf, source_block_samples=SOURCE_BLOCK_SAMPLES)
    )
    peer = CountingPeer(ControllerSession())
    clock = VirtualClock()
    pump = LockstepPump(peer, fw, clock)
    peer.session.connect(0.0)
    cpu0 = time.process_time()
    start = time.perf_counter()
    if stim:
        # Stimulation on from t = 1 s: ramps, STIM_STATE every second, battery drain by TEED.
        pump.run_until(1.0)
        peer.session.send_stim_set(THERAPY, clock.now())
    pump.run_until(seconds)
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    if peer.session.info is None:
        raise RuntimeError("the controller never connected")
    frames = peer.session.stats.frames_tx + fw.session.stats.frames_tx
    return wall, cpu, frames


def _source_cost(make_source: Callable[[], SignalSource], seconds: float) -> float:
    source = make_source()
    fs = source.sampling_rate_hz
    blocks = int(seconds * fs) // SOURCE_BLOCK_SAMPLES
    stim = StimulationInput(0.0, 0.0, 0.0)
    start = time.process_time()
    for _ in range(blocks):
        source.read(SOURCE_BLOCK_SAMPLES, stim)
        source.impedance_ohm()
    return time.process_time() - start


def bench_rows(seconds: float, repeat: int) -> list[Row]:
    rows = []
    variants = (
        ("fixed", _replay_source, False),
        ("fixed+stim", _replay_source, True),
        ("noise", _noise_source, False),
        ("noise+stim", _noise_source, True),
        ("physiology", _physiology_source, False),
    )
    for name, make, stim in variants:
        src_wall = min(_source_cost(make, seconds) for _ in range(repeat))
        for spf in FRAME_SIZES:
            runs = [_run_once(make, spf, seconds, stim) for _ in range(repeat)]
            wall = min(r[0] for r in runs)
            cpu = min(r[1] for r in runs)
            frames = runs[0][2]
            rows.append(
                Row(
                    source=name,
                    samples_per_frame=spf,
                    virtual_s=seconds,
                    wall_s=wall,
                    x_real_time=seconds / wall,
                    us_per_virtual_s=1e6 * wall / seconds,
                    cpu_us_per_virtual_s=1e6 * cpu / seconds,
                    source_us_per_virtual_s=1e6 * src_wall / seconds,
                    frames=frames,
                )
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3600.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = bench_rows(args.seconds, args.repeat)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    print(
        f"lockstep pump, bare ControllerSession <-> VirtualFirmware, {args.seconds:.0f} virtual s, "
        f"best of {args.repeat}"
    )
    print(
        f"{'source':<12}{'spf':>5}{'frames':>9}{'wall s':>9}{'x real time':>13}"
        f"{'wall µs/vs':>12}{'CPU µs/vs':>11}{'source µs/vs':>14}{'CPU-source':>12}"
    )
    for r in rows:
        print(
            f"{r.source:<12}{r.samples_per_frame:>5}{r.frames:>9}{r.wall_s:>9.3f}"
            f"{r.x_real_time:>13,.0f}{r.us_per_virtual_s:>12.1f}{r.cpu_us_per_virtual_s:>11.1f}"
            f"{r.source_us_per_virtual_s:>14.1f}"
            f"{r.cpu_us_per_virtual_s - r.source_us_per_virtual_s:>12.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
