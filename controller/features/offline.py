"""Features of a whole recording, through the same streaming extractor as the online loop.

``neurostim analyze`` uses this so offline results are those the controller would have
seen live: the recording is pushed in chunks, exactly as SAMPLES frames arrive.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from controller.features.config import FeaturesConfig
from controller.features.extractor import FeatureExtractor
from controller.features.frame import FeatureFrame

DEFAULT_CHUNK_SAMPLES = 4096


def extract_features(
    data_uv: np.ndarray,
    sampling_rate_hz: float,
    config: FeaturesConfig | None = None,
    chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
    *,
    clip_level_uv: float | Sequence[float] | np.ndarray | None = None,
    channel_names: Sequence[str] | None = None,
    t0_s: float = 0.0,
) -> list[FeatureFrame]:
    """Frames for every complete window of ``data_uv`` (channels, samples), in time order."""
    data = np.asarray(data_uv)
    if data.ndim != 2:
        raise ValueError(f"data_uv must be shaped (channels, samples), got {data.shape}")
    if chunk_samples < 1:
        raise ValueError(f"chunk_samples={chunk_samples} must be >= 1")
    extractor = FeatureExtractor(
        data.shape[0],
        sampling_rate_hz,
        config,
        clip_level_uv,
        channel_names=channel_names,
        t0_s=t0_s,
    )
    frames: list[FeatureFrame] = []
    for start in range(0, data.shape[1], chunk_samples):
        frames.extend(extractor.push(data[:, start : start + chunk_samples]))
    return frames
