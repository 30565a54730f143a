"""Turn one window's segment spectra and block statistics into a FeatureFrame."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from controller.features.config import FeaturesConfig
from controller.features.connectivity import (
    mean_over_good_pairs,
    node_strength,
    pairs_to_matrix,
)
from controller.features.frame import FeatureFrame, WindowSpectra
from controller.features.layout import FeatureLayout
from controller.features.quality import assess_quality
from controller.features.spectra import (
    ChannelPairs,
    SegmentSpectra,
    psd_features,
    window_spectra,
)
from controller.features.timestats import BlockStats, window_time_stats


@dataclass(frozen=True)
class FrameContext:
    """What stays fixed across a stream's frames."""

    config: FeaturesConfig
    layout: FeatureLayout
    pairs: ChannelPairs
    channel_names: tuple[str, ...]
    keep_spectra: bool


def assemble_frame(
    context: FrameContext,
    segments: Sequence[SegmentSpectra],
    blocks: Sequence[BlockStats],
    t_start_s: float,
    t_end_s: float,
) -> FeatureFrame:
    """Features of the window made of ``segments`` (Welch) and ``blocks`` (time domain)."""
    layout = context.layout
    spectral = window_spectra(segments, layout, context.pairs)
    per_channel = psd_features(spectral.psd, layout)
    time_stats = window_time_stats(blocks)
    quality = assess_quality(time_stats, per_channel.line_noise_ratio, context.config)

    coherence = pairs_to_matrix(spectral.band_coherence, context.pairs)
    phase_sync = pairs_to_matrix(spectral.band_phase_sync, context.pairs)
    good = quality.good
    mean_coherence = mean_over_good_pairs(spectral.band_coherence, context.pairs, good)
    mean_phase_sync = mean_over_good_pairs(spectral.band_phase_sync, context.pairs, good)
    if context.config.summary_measure == "coherence":
        mean_connectivity, summary_matrix = mean_coherence, coherence
    else:
        mean_connectivity, summary_matrix = mean_phase_sync, phase_sync

    spectra = None
    if context.keep_spectra:
        spectra = WindowSpectra(
            freqs_hz=layout.freqs_hz,
            psd_uv2_per_hz=spectral.psd,
            conn_freqs_hz=layout.freqs_hz[layout.conn_bins],
            coherence=pairs_to_matrix(spectral.coherence_bins, context.pairs),
        )
    return FeatureFrame(
        t_start_s=t_start_s,
        t_end_s=t_end_s,
        band_names=layout.band_names,
        channel_names=context.channel_names,
        band_power_uv2=per_channel.band_power_uv2,
        relative_power=per_channel.relative_power,
        theta_alpha_ratio=per_channel.theta_alpha_ratio,
        alpha_peak_hz=per_channel.alpha_peak_hz,
        line_length_uv=time_stats.line_length_uv,
        coherence=coherence,
        phase_sync=phase_sync,
        phase_measure=context.config.phase_measure,
        summary_measure=context.config.summary_measure,
        mean_coherence=mean_coherence,
        mean_phase_sync=mean_phase_sync,
        mean_connectivity=mean_connectivity,
        node_strength=node_strength(summary_matrix, good),
        quality=quality,
        spectra=spectra,
    )
