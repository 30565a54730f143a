"""Benchmark of the controller node alone: a recorded sim's device bytes replayed into it.

The controller side of ``neurostim sim`` (default scenario and device, seed 3) is recorded
once: every call the lockstep pump made on the node (bytes received with their time,
timers, deadlines, sends). The replay feeds the same calls, in the same order, to a fresh
node with the sim's observer subscribed, so the simulated device, the pump and the link
cost nothing and the time is the node's: session decoding, features, detector, core,
envelope, policy, device check and observers. What the replayed node sends is compared
with what the recorded one sent (the same bytes, or the replay says so). Printed, never
asserted. Run from the repository root::

    .venv/bin/python -m benchmarks.bench_core --record /tmp/node-calls.pkl [--seconds 3600]
    .venv/bin/python -m benchmarks.bench_core --replay /tmp/node-calls.pkl [--repeat 5]
    .venv/bin/python -m benchmarks.bench_core --replay /tmp/node-calls.pkl --profile

``--profile``: one replay under cProfile instead, and the time spent in the lines of the
controller's own loop (core, node, envelope, policy, device check, observations, the sim's
observer), profiled µs and calls per virtual second: the slice around the features and
the detector, which the unprofiled total hides under their cost.

A recording replays under another checkout of the code (``PYTHONPATH=OTHER python
benchmarks/bench_core.py --replay ...``), so two versions can be timed on the same input
in alternating processes.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import pickle
import pstats
import re
import sys
import time
from datetime import datetime
from pathlib import Path

from controller.config import ControllerConfig
from controller.node import ControllerNode
from controller.run import build_node
from firmware_bridge.clock import VirtualClock
from firmware_bridge.lockstep import LockstepPump
from insilico.runner import SimSpec, _Observations, build_device
from simulator.physiology.scenario import load_scenario

RX, TX, DEADLINE, TIME = 0, 1, 2, 3
#: The files of the controller's own loop (``--profile``).
LOOP_FILES = re.compile(
    r"controller/(core\.py|node\.py|envelope/|policy/|device_check\.py|observations\.py)"
    r"|insilico/runner\.py"
)


class _Tap:
    """The node as the pump sees it, with every call written down."""

    def __init__(self, node: ControllerNode, calls: list[tuple[int, bytes, float]]) -> None:
        self.node = node
        self.calls = calls

    @property
    def session(self) -> object:
        return self.node.session

    def receive_data(self, data: bytes, now: float) -> None:
        self.calls.append((RX, data, now))
        self.node.receive_data(data, now)

    def data_to_send(self) -> bytes:
        data = self.node.data_to_send()
        self.calls.append((TX, data, 0.0))
        return data

    def next_deadline(self) -> float | None:
        self.calls.append((DEADLINE, b"", 0.0))
        return self.node.next_deadline()

    def on_time(self, now: float) -> None:
        self.calls.append((TIME, b"", now))
        self.node.on_time(now)


def _spec(seconds: float) -> SimSpec:
    return SimSpec(load_scenario("default"), seconds, ControllerConfig(), seed=3)


def _node(spec: SimSpec) -> tuple[ControllerNode, _Observations]:
    """The node and observer as ``run_sim`` builds them (no files)."""
    _, firmware = build_device(spec)
    node = build_node(
        spec.config,
        None,
        None,
        datetime(2000, 1, 1),
        client_name="neurostim sim",
        retry_first_connect=True,
    )
    seen = _Observations(stim_channels=firmware.info.stim_channels)
    seen.attach(node)
    return node, seen


def record(path: Path, seconds: float) -> None:
    spec = _spec(seconds)
    _, firmware = build_device(spec)
    node, _ = _node(spec)
    calls: list[tuple[int, bytes, float]] = []
    tap = _Tap(node, calls)
    clock = VirtualClock()
    pump = LockstepPump(tap, firmware, clock, session_peers=True)
    node.start(clock.now())
    pump.run_until(seconds)
    with path.open("wb") as f:
        pickle.dump({"seconds": seconds, "calls": calls}, f)
    print(f"recorded {len(calls)} calls over {seconds:g} virtual s to {path}")


def replay_once(seconds: float, calls: list[tuple[int, bytes, float]]) -> tuple[float, float, str]:
    node, _ = _node(_spec(seconds))
    node.start(0.0)
    sent = hashlib.sha256()
    receive, send, deadline, on_time = (
        node.receive_data,
        node.data_to_send,
        node.next_deadline,
        node.on_time,
    )
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for kind, data, now in calls:
        if kind == RX:
            receive(data, now)
        elif kind == TIME:
            on_time(now)
        elif kind == DEADLINE:
            deadline()
        else:
            sent.update(send())
    wall_s, cpu_s = time.perf_counter() - wall0, time.process_time() - cpu0
    return wall_s, cpu_s, sent.hexdigest()


def replay(path: Path, repeat: int, profile: bool = False) -> None:
    with path.open("rb") as f:
        document = pickle.load(f)
    seconds, calls = document["seconds"], document["calls"]
    expected = hashlib.sha256(b"".join(d for k, d, _ in calls if k == TX)).hexdigest()
    # Warm-up: the first 120 virtual s load every compiled kernel, also those of the
    # detector's steady state (from ~35 s on), before anything is timed.
    warm_up_s = min(seconds, 120.0)
    replay_once(warm_up_s, [call for call in calls if call[2] <= warm_up_s])
    if profile:
        profiler = cProfile.Profile()
        profiler.runcall(replay_once, seconds, calls)
        stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
        loop = [v for k, v in stats.items() if LOOP_FILES.search(k[0])]
        print(
            f"node replay {seconds:g} vs, profiled: controller loop "
            f"{1e6 * sum(v[2] for v in loop) / seconds:.1f} µs/vs in "
            f"{sum(v[1] for v in loop) / seconds:.1f} calls/vs; everything "
            f"{1e6 * sum(v[2] for v in stats.values()) / seconds:.1f} µs/vs"
        )
        return
    runs = [replay_once(seconds, calls) for _ in range(repeat)]
    wall_s = min(r[0] for r in runs)
    cpu_s = min(r[1] for r in runs)
    same = all(r[2] == expected for r in runs)
    print(
        f"node replay {seconds:g} vs: wall {1e6 * wall_s / seconds:.1f} µs/vs, "
        f"cpu {1e6 * cpu_s / seconds:.1f} µs/vs (best of {repeat}); "
        f"same bytes sent: {'yes' if same else 'NO'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--record", type=Path)
    group.add_argument("--replay", type=Path)
    parser.add_argument("--seconds", type=float, default=3600.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="one profiled replay")
    args = parser.parse_args(argv)
    if args.record is not None:
        record(args.record, args.seconds)
    else:
        replay(args.replay, args.repeat, args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
