"""``neurostim bench codec``: codec throughput and wire efficiency (printed, never asserted)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

import numpy as np

from firmware_bridge.framing import FrameDecoder, encode_frame
from firmware_bridge.messages import MsgType, Samples, encode_samples_payload

UART_921600_BYTES_PER_S = 921_600 / 10  # 8N1: 10 bits per byte


@dataclass(frozen=True)
class WireRow:
    config: str
    channels: int
    rate_hz: int
    frame_ms: float
    sample_bytes: int
    payload_bytes: int
    wire_bytes: int
    efficiency_samples: float  # sample bytes / wire bytes
    efficiency_payload: float  # payload bytes / wire bytes
    wire_bytes_per_s: float
    fits_921600_uart: bool  # with 20 % headroom


@dataclass(frozen=True)
class ThroughputRow:
    frames: int
    seconds: float
    frames_per_s: float
    wire_mb_per_s: float


def wire_row(channels: int, rate_hz: int, samples_per_frame: int) -> WireRow:
    # Worst case for COBS: no zero bytes at all (0x0101 everywhere).
    counts = np.full((channels, samples_per_frame), 0x0101, dtype=np.int16)
    payload = encode_samples_payload(0, counts)
    wire = encode_frame(MsgType.SAMPLES, payload, 0x0101, 0x010101010101)
    frames_per_s = rate_hz / samples_per_frame
    sample_bytes = counts.nbytes
    return WireRow(
        config=f"{channels} ch @ {rate_hz} Hz",
        channels=channels,
        rate_hz=rate_hz,
        frame_ms=1000.0 * samples_per_frame / rate_hz,
        sample_bytes=sample_bytes,
        payload_bytes=len(payload),
        wire_bytes=len(wire),
        efficiency_samples=sample_bytes / len(wire),
        efficiency_payload=len(payload) / len(wire),
        wire_bytes_per_s=len(wire) * frames_per_s,
        fits_921600_uart=len(wire) * frames_per_s <= 0.8 * UART_921600_BYTES_PER_S,
    )


def measure_throughput(n_frames: int = 100_000, seed: int = 0) -> ThroughputRow:
    """Encode and decode ``n_frames`` SAMPLES frames of 8 channels x 10 samples."""
    rng = np.random.default_rng(seed)
    blocks = [rng.integers(-2000, 2000, (8, 10), dtype=np.int16) for _ in range(64)]
    decoder = FrameDecoder()
    wire_total = 0
    start = time.perf_counter()
    for i in range(n_frames):
        wire = encode_frame(
            MsgType.SAMPLES, encode_samples_payload(i * 10, blocks[i & 63]), i, i * 40_000
        )
        wire_total += len(wire)
        for frame in decoder.feed(wire):
            Samples.decode_with(frame.payload, 8)
    elapsed = time.perf_counter() - start
    if decoder.stats.frames_ok != n_frames:
        raise RuntimeError(f"decoded {decoder.stats.frames_ok} of {n_frames} frames")
    return ThroughputRow(n_frames, elapsed, n_frames / elapsed, wire_total / elapsed / 1e6)


def main_bench_codec(json_out: bool = False, n_frames: int = 100_000) -> int:
    rows = [wire_row(8, 250, 10), wire_row(64, 1000, 10), wire_row(32, 1000, 10)]
    tput = measure_throughput(n_frames)
    if json_out:
        print(json.dumps({"throughput": asdict(tput), "wire": [asdict(r) for r in rows]}, indent=2))
        return 0
    print("SAMPLES codec throughput (8 ch x 10 samples, encode + decode, one core)")
    print(
        f"  {tput.frames_per_s:,.0f} frames/s   {tput.wire_mb_per_s:.2f} MB/s on the wire   "
        f"({tput.frames:,} frames in {tput.seconds:.2f} s)"
    )
    print()
    print(
        f"{'configuration':<18}{'frame':>8}{'samples B':>11}{'wire B':>8}"
        f"{'eff. samples':>14}{'eff. payload':>14}{'wire B/s':>10}  921600-baud UART"
    )
    for r in rows:
        print(
            f"{r.config:<18}{r.frame_ms:>6.0f}ms{r.sample_bytes:>11}{r.wire_bytes:>8}"
            f"{100 * r.efficiency_samples:>13.1f}%{100 * r.efficiency_payload:>13.1f}%"
            f"{r.wire_bytes_per_s:>10,.0f}  {'fits' if r.fits_921600_uart else 'does NOT fit'}"
        )
    print(
        f"(a 921600-baud 8N1 UART carries {UART_921600_BYTES_PER_S:,.0f} B/s; "
        "'fits' leaves 20 % headroom)"
    )
    return 0
