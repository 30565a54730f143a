"""A tee on the device link that keeps the last minute of every channel for the traces.

The controller node has no sample event (it must not pay for a display), so the console
reads the samples where they pass anyway: the bytes from the device go through unchanged,
and a copy is decoded here into a bounded, decimated ring buffer. STIM_STATE reports mark
the samples during which the device said it was delivering, on the same sample clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import numpy as np

from firmware_bridge.framing import FrameDecoder
from firmware_bridge.messages import (
    DeviceInfo,
    MalformedPayload,
    MsgType,
    Samples,
    StimState,
    parse_payload,
)
from firmware_bridge.transports.base import Link
from firmware_bridge.transports.registry import TransportRegistry
from firmware_bridge.url import DeviceURL

#: Display points per second kept per channel: enough for a 10 s span on a wide terminal.
DISPLAY_RATE_HZ = 100.0
#: The longest time span the traces can show.
MAX_SPAN_S = 60.0


@dataclass(frozen=True)
class TraceWindow:
    """The last ``span_s`` of every channel, decimated: ``uv`` (channels, points), the
    time of each point on the device's sample clock, and where the device reported
    stimulation."""

    labels: tuple[str, ...]
    t_s: np.ndarray
    uv: np.ndarray
    stimulating: np.ndarray


class SampleBuffer:
    """Bounded ring of decimated µV per channel (block means of ``factor`` samples)."""

    def __init__(self, info: DeviceInfo, max_span_s: float = MAX_SPAN_S) -> None:
        self.info = info
        self.labels = tuple(ch.label for ch in info.channels)
        self.rate_hz = float(info.sampling_rate_hz)
        self.factor = max(1, math.ceil(self.rate_hz / DISPLAY_RATE_HZ))
        self.point_s = self.factor / self.rate_hz
        self.capacity = max(2, math.ceil(max_span_s / self.point_s))
        n = len(self.labels)
        self._scale = np.array([ch.scale_uv_per_count for ch in info.channels])[:, None]
        self._uv = np.zeros((n, self.capacity), dtype=np.float32)
        self._t = np.zeros(self.capacity)
        self._stim = np.zeros(self.capacity, dtype=bool)
        self._filled = 0
        self._head = 0  # next slot to write
        self._pending = np.zeros((n, 0))
        self._pending_first = 0
        self.stimulating = False
        self.samples_seen = 0

    def push(self, first_index: int, counts: np.ndarray) -> None:
        self.samples_seen += counts.shape[1]
        if self._pending.shape[1] == 0:
            self._pending_first = first_index
        block = np.concatenate([self._pending, counts * self._scale], axis=1)
        whole = block.shape[1] // self.factor * self.factor
        if whole:
            means = block[:, :whole].reshape(block.shape[0], -1, self.factor).mean(axis=2)
            times = (self._pending_first + np.arange(0, whole, self.factor)) / self.rate_hz
            self._write(means, times)
        self._pending = block[:, whole:]
        self._pending_first += whole

    def _write(self, means: np.ndarray, times: np.ndarray) -> None:
        n = means.shape[1]
        if n >= self.capacity:
            means, times, n = means[:, -self.capacity :], times[-self.capacity :], self.capacity
        idx = (self._head + np.arange(n)) % self.capacity
        self._uv[:, idx] = means
        self._t[idx] = times
        self._stim[idx] = self.stimulating
        self._head = (self._head + n) % self.capacity
        self._filled = min(self.capacity, self._filled + n)

    def window(self, span_s: float) -> TraceWindow:
        points = min(self._filled, max(1, round(span_s / self.point_s)))
        idx = (self._head - points + np.arange(points)) % self.capacity
        return TraceWindow(self.labels, self._t[idx], self._uv[:, idx], self._stim[idx])


class SampleTap:
    """Decodes a copy of the device's bytes into a ``SampleBuffer`` (one per device)."""

    def __init__(self, max_span_s: float = MAX_SPAN_S) -> None:
        self.max_span_s = max_span_s
        self.buffer: SampleBuffer | None = None
        self._decoder = FrameDecoder()

    def reset(self) -> None:
        """A new link: a new byte stream (the buffer stays for the same device)."""
        self._decoder = FrameDecoder()

    def feed(self, data: bytes) -> None:
        for frame in self._decoder.feed(data):
            if frame.msg_type == MsgType.DEVICE_INFO:
                info = _parse(frame.msg_type, frame.payload, None)
                if isinstance(info, DeviceInfo) and (
                    self.buffer is None or self.buffer.info != info
                ):
                    self.buffer = SampleBuffer(info, self.max_span_s)
            elif self.buffer is None:
                continue
            elif frame.msg_type == MsgType.SAMPLES:
                samples = _parse(frame.msg_type, frame.payload, len(self.buffer.labels))
                if isinstance(samples, Samples):
                    self.buffer.push(samples.first_index, samples.counts)
            elif frame.msg_type == MsgType.STIM_STATE:
                state = _parse(frame.msg_type, frame.payload, None)
                if isinstance(state, StimState):
                    self.buffer.stimulating = state.enabled and state.amplitude_ma > 0.0

    def window(self, span_s: float) -> TraceWindow | None:
        return None if self.buffer is None else self.buffer.window(span_s)


def _parse(msg_type: int, payload: bytes, n_channels: int | None) -> object:
    try:
        return parse_payload(msg_type, payload, n_channels)
    except (MalformedPayload, ValueError):
        return None  # the session counts and reports bad frames; the display skips them


class TappedLink:
    """The device link, unchanged, with every received chunk also fed to ``tap``."""

    def __init__(self, link: Link, tap: SampleTap) -> None:
        self._link = link
        self._tap = tap
        tap.reset()

    @property
    def description(self) -> str:
        return self._link.description

    async def send(self, data: bytes) -> None:
        await self._link.send(data)

    async def receive(self) -> bytes:
        data = await self._link.receive()
        self._tap.feed(data)
        return data

    async def close(self) -> None:
        await self._link.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class TappedRegistry(TransportRegistry):
    """Opens links through ``inner`` (the process-wide registry) and taps each one."""

    def __init__(self, inner: TransportRegistry, tap: SampleTap) -> None:
        super().__init__()
        self._inner = inner
        self.tap = tap

    async def open(self, url: str | DeviceURL) -> Link:
        return TappedLink(await self._inner.open(url), self.tap)
