"""The console's sample tap: a bounded ring of block means, whatever the frame sizes,
and the display helpers that read it."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.messages import ChannelInfo, DeviceInfo, DeviceLimits
from tui.sample_tap import SampleBuffer
from tui.widgets.device import _impedances
from tui.widgets.traces import nice_scale_uv, peaks_uv


def info(n_channels: int = 2, rate_hz: int = 250) -> DeviceInfo:
    return DeviceInfo(
        major=1,
        minor=1,
        device_id="T",
        firmware_version="t",
        sampling_rate_hz=rate_hz,
        samples_per_frame=10,
        heartbeat_interval_ms=250,
        watchdog_ms=1000,
        channels=tuple(ChannelInfo(f"c{i}", 0.5, 0.0, 0.0) for i in range(n_channels)),
        stim_channels=(0,),
        n_electrodes=n_channels,
        electrode_area_cm2=0.06,
        limits=DeviceLimits(12.7, 10, 450, 2.0, 255.0, 5.0, 3.0, 30.0),
    )


@settings(max_examples=60)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=60), st.integers(0, 10_000))
def test_the_ring_holds_the_block_means_of_the_stream_whatever_the_frames(
    frame_sizes: list[int], seed: int
) -> None:
    buffer = SampleBuffer(info(), max_span_s=1.0)  # 250 Hz -> factor 3, capacity 84 points
    rng = np.random.default_rng(seed)
    counts = rng.integers(-1000, 1000, (2, sum(frame_sizes))).astype(np.int16)
    index = 0
    for size in frame_sizes:
        buffer.push(index, counts[:, index : index + size])
        index += size
    whole = counts.shape[1] // buffer.factor
    expected = (counts[:, : whole * buffer.factor] * 0.5).reshape(2, whole, buffer.factor)
    expected = expected.mean(axis=2)[:, -buffer.capacity :]
    window = buffer.window(span_s=10.0)  # longer than the ring: everything it holds
    assert window.uv.shape == expected.shape
    np.testing.assert_allclose(window.uv, expected, rtol=1e-5, atol=1e-3)
    assert np.all(np.diff(window.t_s) > 0)  # oldest first
    assert buffer.samples_seen == counts.shape[1]


def test_points_are_marked_while_the_device_reports_stimulation() -> None:
    buffer = SampleBuffer(info(rate_hz=100), max_span_s=10.0)  # factor 1
    buffer.push(0, np.zeros((2, 5), dtype=np.int16))
    buffer.stimulating = True
    buffer.push(5, np.zeros((2, 3), dtype=np.int16))
    window = buffer.window(span_s=10.0)
    assert window.stimulating.tolist() == [False] * 5 + [True] * 3


def test_scales_are_round_and_hold_the_window() -> None:
    assert nice_scale_uv(37.0) == 50.0
    assert nice_scale_uv(100.0) == 100.0
    assert nice_scale_uv(0.0) == 1.0
    window = np.vstack([np.linspace(-30, 30, 100), np.full(100, 3.0)])
    peaks = peaks_uv(window)
    assert peaks[1] == 3.0 and 28.0 < peaks[0] <= 30.0


def test_impedances_outside_the_window_are_red() -> None:
    text = _impedances((1000, 5000, 100), (250.0, 3000.0))
    styles = {text.plain[span.start : span.end].strip(): str(span.style) for span in text.spans}
    assert styles.get("5.0") == "bold red" and styles.get("0.1") == "bold red"
    assert "1.0" not in styles  # in the window: plain
