"""Pairwise connectivity as matrices, and the network summaries over good channels.

Summaries leave out every pair with a bad channel, so one noisy electrode does not move
the network features.  Node strength is normalised: the mean of a good channel's
connectivity to the other good channels (Rubinov & Sporns 2010 define strength as the
sum; dividing by n_good - 1 keeps it comparable when channels drop out).
"""

from __future__ import annotations

import numpy as np

from controller.features.spectra import ChannelPairs


def pairs_to_matrix(values: np.ndarray, pairs: ChannelPairs) -> np.ndarray:
    """(bands, pairs) in triu order -> symmetric (bands, channels, channels), zero diagonal."""
    n_channels = pairs.n_channels
    matrix = np.zeros((values.shape[0], n_channels, n_channels))
    matrix[:, pairs.first, pairs.second] = values
    matrix[:, pairs.second, pairs.first] = values
    return matrix


def mean_over_good_pairs(values: np.ndarray, pairs: ChannelPairs, good: np.ndarray) -> np.ndarray:
    """Mean of (bands, pairs) values over the pairs whose channels are both good (else 0)."""
    both_good = good[pairs.first] & good[pairs.second]
    n_pairs = int(np.count_nonzero(both_good))
    if n_pairs == 0:
        return np.zeros(values.shape[0])
    return values[:, both_good].sum(axis=1) / n_pairs


def node_strength(matrix: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Normalised strength (bands, channels): mean weight to the other good channels.

    0 for bad channels, and for all channels when fewer than 2 are good.
    """
    n_good = int(np.count_nonzero(good))
    if n_good < 2:
        return np.zeros(matrix.shape[:2])
    weight = good.astype(np.float64)
    return (matrix @ weight) * weight / (n_good - 1)
