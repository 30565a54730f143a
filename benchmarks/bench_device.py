"""Benchmark of the simulated device alone: the virtual firmware in the lockstep pump, and
the default physiology source, as ``neurostim sim`` configures them.

Printed, never asserted; CPU µs per virtual second, best of ``--repeat`` runs. "firmware"
pumps the firmware (frames of 125 samples, source blocks of 500) against a bare
``ControllerSession`` with a replayed source (blocks recorded from the default physiology
source), so it is firmware + device and controller sessions + pump (session peers, as in
``run_sim``); "source" reads the
default physiology source block by block as the firmware does (``read`` then the STATUS
impedance look-ups). Run it against another checkout by putting that checkout first on
``PYTHONPATH``::

    .venv/bin/python benchmarks/bench_device.py [--seconds 3600] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from firmware_bridge.clock import VirtualClock
from firmware_bridge.lockstep import LockstepPump
from firmware_bridge.session import ControllerSession
from simulator.devices import DEFAULT_DEVICE
from simulator.firmware import VirtualFirmware, firmware_config_for
from simulator.physiology.scenario import load_scenario
from simulator.signals import GroundTruthEvent, Site, StimulationInput

BLOCK_SAMPLES = 500
FRAME_SAMPLES = 125


def _physiology_source():  # type: ignore[no-untyped-def]
    return load_scenario("default").build_source(seed_override=3, model_override="spectral")


class _Replay:
    """Blocks and the impedance reading recorded from the physiology source, served again."""

    def __init__(self, n_blocks: int = 32) -> None:
        source = _physiology_source()
        stim = StimulationInput()
        self._blocks = [source.read(BLOCK_SAMPLES, stim) for _ in range(n_blocks)]
        self._impedance = source.impedance_ohm()
        self._sites = source.sites
        self._fs = source.sampling_rate_hz
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
        return block.copy()

    def impedance_ohm(self) -> np.ndarray | None:
        return None if self._impedance is None else self._impedance.copy()

    def drain_ground_truth(self) -> list[GroundTruthEvent]:
        return []


class _Peer:
    """A bare controller session as a lockstep peer: it sends its session's bytes only."""

    def __init__(self) -> None:
        self.session = ControllerSession()

    def receive_data(self, data: bytes, now: float) -> None:
        self.session.receive_data(data, now)

    def data_to_send(self) -> bytes:
        return self.session.data_to_send()

    def next_deadline(self) -> float | None:
        return self.session.next_deadline()

    def on_time(self, now: float) -> None:
        self.session.handle_timeout(now)


def firmware_cpu_s(seconds: float) -> float:
    config = firmware_config_for(
        DEFAULT_DEVICE,
        samples_per_frame=FRAME_SAMPLES,
        source_block_samples=BLOCK_SAMPLES,
    )
    fw = VirtualFirmware(_Replay(), config)
    peer = _Peer()
    clock = VirtualClock()
    pump = LockstepPump(peer, fw, clock, session_peers=True)  # as run_sim
    peer.session.connect(0.0)
    start = time.process_time()
    pump.run_until(seconds)
    return time.process_time() - start


def source_cpu_s(seconds: float) -> float:
    source = _physiology_source()
    blocks = int(seconds * source.sampling_rate_hz) // BLOCK_SAMPLES
    stim = StimulationInput()
    start = time.process_time()
    for _ in range(blocks):
        source.read(BLOCK_SAMPLES, stim)
        source.impedance_ohm()
        source.impedance_ohm()
    return time.process_time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3600.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    firmware_cpu_s(60.0)
    source_cpu_s(60.0)  # warm-up: numba caches, imports
    fw = min(firmware_cpu_s(args.seconds) for _ in range(args.repeat))
    src = min(source_cpu_s(args.seconds) for _ in range(args.repeat))
    per_s = 1e6 / args.seconds
    print(f"firmware+sessions+pump  {fw * per_s:7.2f} CPU µs per virtual s")
    print(f"physiology source       {src * per_s:7.2f} CPU µs per virtual s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
