"""Time ``Detector.update`` on real feature frames (used by ``neurostim bench controller``).

The detector's per-window cost only matters once it is calibrated (every window then
computes z-scores, the score, the state machine and the baseline adaptation), and the
default calibration needs 30 min of frames.  So the frames of a short recording are
replayed with continuing times (``dataclasses.replace``, outside the timing) until the
default detector is calibrated, and the following updates are timed.  Wall-clock timing
with ``time.perf_counter`` (injectable): this module measures, it controls nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from itertools import count
from time import perf_counter

from controller.detector.config import DetectorConfig
from controller.detector.detector import Detector
from controller.features.frame import FeatureFrame


def replayed_frames(frames: Sequence[FeatureFrame]) -> Iterator[FeatureFrame]:
    """``frames`` over and over, shifted so that window end times keep increasing by a hop."""
    if len(frames) < 2:
        raise ValueError("need at least two frames to know the hop")
    hop_s = frames[1].t_end_s - frames[0].t_end_s
    span_s = frames[-1].t_end_s - frames[0].t_end_s + hop_s
    for lap in count():
        shift_s = lap * span_s
        for frame in frames:
            yield dataclasses.replace(
                frame, t_start_s=frame.t_start_s + shift_s, t_end_s=frame.t_end_s + shift_s
            )


def detector_ms_per_update(
    frames: Sequence[FeatureFrame],
    config: DetectorConfig | None = None,
    n_timed: int = 500,
    repeats: int = 3,
    timer: Callable[[], float] = perf_counter,
) -> float:
    """Best of ``repeats`` mean times (ms) of ``Detector.update`` once calibrated."""
    config = config if config is not None else DetectorConfig()
    detector = Detector(config, frames[0].channel_names)
    stream = replayed_frames(frames)
    while not detector.baseline.ready:
        detector.update(next(stream))
    best_s = float("inf")
    for _ in range(repeats):
        batch = [next(stream) for _ in range(n_timed)]
        started = timer()
        for frame in batch:
            detector.update(frame)
        best_s = min(best_s, timer() - started)
    return 1e3 * best_s / n_timed
