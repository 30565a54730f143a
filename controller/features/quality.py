"""Per-channel signal quality of one window: the ``good`` mask the detector gates on.

A channel is bad in a window when any of these holds (thresholds in FeaturesConfig):
flat (std below ``flatline_std_uv``), clipped (more than ``clipped_fraction_max`` of its
samples at the rail), line noise (``line_noise_ratio`` above ``line_noise_ratio_max``),
or invalid (any NaN, inf or |x| > ``max_abs_uv`` sample, which the extractor zero-fills
before the spectra so no NaN spreads).
"""

from __future__ import annotations

import numpy as np

from controller.features.config import FeaturesConfig
from controller.features.frame import SignalQuality
from controller.features.timestats import WindowTimeStats


def assess_quality(
    time_stats: WindowTimeStats, line_noise_ratio: np.ndarray, config: FeaturesConfig
) -> SignalQuality:
    """Flags and ``good`` mask from the window's time statistics and line-noise ratio."""
    flatline = time_stats.std_uv < config.flatline_std_uv
    clipped = time_stats.clipped_fraction > config.clipped_fraction_max
    noisy = line_noise_ratio > config.line_noise_ratio_max
    invalid = time_stats.invalid
    return SignalQuality(
        flatline=flatline,
        clipped=clipped,
        line_noise_ratio=line_noise_ratio,
        invalid=invalid,
        good=~(flatline | clipped | noisy | invalid),
        std_uv=time_stats.std_uv,
        clipped_fraction=time_stats.clipped_fraction,
    )
