"""``neurostim bench controller``: feature pipeline speed and in-process loop latency.

Printed, never asserted. The latency is measured through the real objects: SAMPLES
bytes into the ControllerNode (session, then features, detector, policy, envelope in
the core), the command into the session, STIM_SET bytes out.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

import numpy as np

from controller.audit import AuditLog
from controller.bench_async import format_async_rows, measure_async_latency
from controller.bench_device import bench_device
from controller.config import ControllerConfig
from controller.core import ControllerCore
from controller.features.bench import bench_features_rows, format_rows
from controller.node import ControllerNode
from controller.observations import CommandIssued
from firmware_bridge.framing import encode_frame
from firmware_bridge.messages import (
    Ack,
    MsgType,
    Status,
    StimState,
    encode_samples_payload,
)


@dataclass(frozen=True)
class LatencyRow:
    config: str
    triggers: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    frame_p50_ms: float  # every SAMPLES frame, triggering or not


def measure_latency(
    n_channels: int, rate_hz: int, triggers: int = 200, seed: int = 0
) -> LatencyRow:
    """Open-loop continuous policy: every time the device reports the output off, the next
    completed feature hop requests it on again; that frame's bytes-in to bytes-out is timed."""
    config = ControllerConfig.model_validate(
        {"policy": {"name": "open-loop", "open_loop": {"mode": "continuous"}}}
    )
    node = ControllerNode(ControllerCore(config), AuditLog(None))
    sent: list[int] = []
    node.subscribe(lambda e: sent.append(e.command_id) if isinstance(e, CommandIssued) else None)
    node.start(0.0)
    node.data_to_send()
    info = bench_device(n_channels, rate_hz)
    node.receive_data(encode_frame(MsgType.DEVICE_INFO, info.encode(), 0, 0), 0.0)
    node.data_to_send()
    status = Status(90, 0, tuple([1000] * n_channels))  # impedances inside the window
    node.receive_data(encode_frame(MsgType.STATUS, status.encode(), 0, 0), 0.0)
    rng = np.random.default_rng(seed)
    blocks = [rng.integers(-400, 400, (n_channels, 10), dtype=np.int16) for _ in range(32)]
    off = StimState(False, False, False, False, 0.0, 0.0, 0, 0.0, 0.0, 0)
    latencies: list[float] = []
    frame_times: list[float] = []
    index = 0
    seq = 1
    now = 0.0
    gap_s = config.envelope.min_change_interval_s + 1.0
    max_frames = triggers * 2000
    while len(latencies) < triggers:
        if len(frame_times) > max_frames:
            raise RuntimeError(f"only {len(latencies)} triggers in {max_frames} frames")
        wire = encode_frame(
            MsgType.SAMPLES, encode_samples_payload(index, blocks[seq & 31]), seq, int(now * 1e6)
        )
        seq += 1
        index += 10
        now += 10 / rate_hz
        sent.clear()
        start = time.perf_counter()
        node.receive_data(wire, now)
        out = node.data_to_send()
        elapsed = time.perf_counter() - start
        frame_times.append(elapsed)
        if not sent:
            continue
        assert out, "a command was decided but no bytes left the session"
        latencies.append(elapsed)
        # The device acknowledges and, later, reports the output off again.
        now += gap_s
        for reply in (Ack(sent[0], MsgType.STIM_SET), off):
            payload = reply.encode()
            node.receive_data(encode_frame(reply.MSG_TYPE, payload, seq, int(now * 1e6)), now)
            seq += 1
        node.data_to_send()
    lat = np.array(latencies) * 1e3
    return LatencyRow(
        f"{n_channels} ch @ {rate_hz} Hz",
        len(latencies),
        float(np.percentile(lat, 50)),
        float(np.percentile(lat, 99)),
        float(lat.max()),
        float(np.percentile(np.array(frame_times) * 1e3, 50)),
    )


def main_bench_controller(json_out: bool = False, async_seconds: float = 20.0) -> int:
    feature_rows = bench_features_rows()
    latency_rows = [measure_latency(8, 250), measure_latency(64, 1000, triggers=100)]
    async_rows = measure_async_latency(async_seconds) if async_seconds > 0 else []
    if json_out:
        print(
            json.dumps(
                {
                    "features": [asdict(r) for r in feature_rows],
                    "latency": [asdict(r) for r in latency_rows],
                    "async_shell": [asdict(r) for r in async_rows],
                },
                indent=2,
            )
        )
        return 0
    print("Feature pipeline (streaming vs recomputing each window with scipy)")
    print(format_rows(feature_rows))
    print()
    print("In-process latency: SAMPLES bytes in -> STIM_SET bytes out, when the frame triggers")
    print(
        f"{'configuration':<18}{'triggers':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'any frame p50 ms':>18}"
    )
    for r in latency_rows:
        print(
            f"{r.config:<18}{r.triggers:>9}{r.p50_ms:>9.3f}{r.p99_ms:>9.3f}{r.max_ms:>9.3f}"
            f"{r.frame_p50_ms:>18.3f}"
        )
    if async_rows:
        print()
        print(
            f"Async shell, real time, {async_seconds:g} s each: chunk = handling one received "
            "chunk on the event loop; lag = lateness of a 1 ms timer in the same loop"
        )
        print(format_async_rows(async_rows))
    return 0
