"""Example messages of every type, shared by protocol tests."""

from __future__ import annotations

import numpy as np

from firmware_bridge.messages import (
    Ack,
    Bye,
    ChannelInfo,
    DeviceInfo,
    DeviceLimits,
    Estop,
    EstopClear,
    Fault,
    Heartbeat,
    Hello,
    HelloReject,
    Marker,
    Nack,
    Samples,
    Status,
    StimSet,
    StimSetting,
    StimState,
)

LIMITS = DeviceLimits(12.5, 10, 450, 2.0, 255.0, 5.0, 3.0, 30.0)

INFO = DeviceInfo(
    major=1,
    minor=0,
    device_id="TEST-42",
    firmware_version="t-1.2.3",
    sampling_rate_hz=250,
    samples_per_frame=10,
    heartbeat_interval_ms=250,
    watchdog_ms=1000,
    channels=(
        ChannelInfo("Fp1", 0.5, -20.0, 80.0),
        ChannelInfo("Oz-µ", 0.25, 0.0, -90.0),
        ChannelInfo("C3", 1.0, -60.0, 0.0),
    ),
    stim_channels=(0, 2),
    n_electrodes=3,
    electrode_area_cm2=0.0625,
    limits=LIMITS,
)

EXAMPLES = [
    Hello(1, 0, "neurostim test"),
    HelloReject(1, 0, 1, "unsupported"),
    INFO,
    StimSet(7, StimSetting(True, 2.5, 120, 130.0, 0.5)),
    StimSet(8, StimSetting(False, 0.0, 0, 0.0, 0.0)),
    Ack(7, 0x10),
    Nack(9, 0x10, 5),
    StimState(True, True, False, False, 1.25, 2.5, 120, 130.0, 1234.5, 7),
    Heartbeat(123456, 2),
    Status(87, 0b1010, (800, 1200, 65000)),
    Fault(1, True, "watchdog"),
    Estop(11),
    Marker(3, "button"),
    EstopClear(12),
    Bye(13),
]


def samples_example(n_channels: int = 3, n_samples: int = 10, seed: int = 0) -> Samples:
    rng = np.random.default_rng(seed)
    counts = rng.integers(-32768, 32768, (n_channels, n_samples), dtype=np.int16)
    return Samples(4_000_000_000, counts)
