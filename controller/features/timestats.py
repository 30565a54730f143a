"""Time-domain statistics kept per block, combined per window without revisiting samples.

A window is a whole number of blocks (block = gcd(window, hop) samples), so each block is
summarised once when it completes and every window that contains it reuses the summary:
mean and sum of squared deviations (combined exactly, Chan et al. 1979 pairwise update),
counts of samples at the rail and of invalid samples, and line length (Esteller 2001,
LL = sum |x[k] - x[k-1]|) as a running sum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BlockStats:
    """Summary of one block of ``n_samples`` per channel.

    ``line_length_uv`` sums |x[k] - x[k-1]| over the block's samples k, including the step
    from the previous block's last sample, which is also kept alone as ``first_step_uv``
    so a window starting at this block can leave it out.
    """

    n_samples: int
    mean_uv: np.ndarray
    sq_dev_uv2: np.ndarray
    clipped_count: np.ndarray
    invalid_count: np.ndarray
    line_length_uv: np.ndarray
    first_step_uv: np.ndarray


@dataclass(frozen=True)
class WindowTimeStats:
    """Per-channel time-domain results of one window."""

    std_uv: np.ndarray
    clipped_fraction: np.ndarray
    invalid: np.ndarray
    line_length_uv: np.ndarray


def block_stats(
    x_uv: np.ndarray,
    previous_uv: np.ndarray | None,
    clip_level_uv: np.ndarray | None,
    invalid_count: np.ndarray,
) -> BlockStats:
    """Summarise ``x_uv`` (channels, samples); ``previous_uv`` is the sample before it."""
    mean = x_uv.mean(axis=1)
    deviation = x_uv - mean[:, None]
    steps = np.abs(np.diff(x_uv, axis=1)).sum(axis=1)
    if previous_uv is None:
        first_step = np.zeros(x_uv.shape[0])
    else:
        first_step = np.abs(x_uv[:, 0] - previous_uv)
    if clip_level_uv is None:
        clipped = np.zeros(x_uv.shape[0], dtype=np.int64)
    else:
        clipped = np.count_nonzero(np.abs(x_uv) >= clip_level_uv[:, None], axis=1)
    return BlockStats(
        n_samples=x_uv.shape[1],
        mean_uv=mean,
        sq_dev_uv2=np.einsum("ij,ij->i", deviation, deviation),
        clipped_count=clipped,
        invalid_count=invalid_count.copy(),
        line_length_uv=steps + first_step,
        first_step_uv=first_step,
    )


def window_time_stats(blocks: Sequence[BlockStats]) -> WindowTimeStats:
    """Combine a window's blocks (oldest first, all the same length)."""
    n_block = blocks[0].n_samples
    n_total = n_block * len(blocks)
    stacked = np.array(
        [
            (b.mean_uv, b.sq_dev_uv2, b.clipped_count, b.invalid_count, b.line_length_uv)
            for b in blocks
        ],
        dtype=np.float64,
    )  # (blocks, 5, channels); counts stay exact in float64
    means = stacked[:, 0]
    mean = means.mean(axis=0)
    totals = stacked.sum(axis=0)
    sq_dev = totals[1] + n_block * ((means - mean) ** 2).sum(axis=0)
    line_length = np.maximum(totals[4] - blocks[0].first_step_uv, 0.0)
    return WindowTimeStats(
        std_uv=np.sqrt(np.maximum(sq_dev, 0.0) / n_total),
        clipped_fraction=totals[2] / n_total,
        invalid=totals[3] > 0,
        line_length_uv=line_length,
    )
