"""The device's analogue-to-digital step: µV blocks to int16 counts in SAMPLES wire order.

The firmware turns each signal block (channels x samples, µV) into counts (divide by the
channel scale, round half to even, clip to the int16 range) and sends them sample-major,
little-endian (docs/protocol.md, SAMPLES). The numpy reference does that in five array
passes and three temporaries; the compiled kernel does the same per value in one pass,
writing the wire bytes directly. Division, rounding and clipping are exact operations, so
both give the same bytes (tested against each other). A block holding NaN (never produced
by the signal models) is left to the numpy path, whose conversion of NaN is its own.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from simulator.jit import NUMBA_AVAILABLE, jit

_INT16_MIN = -32768.0
_INT16_MAX = 32767.0


def wire_counts_numpy(uv: np.ndarray, scale_uv_per_count: float) -> bytes:
    """Counts of ``uv`` (n_channels, n_samples) as SAMPLES carries them (the reference)."""
    counts = uv / scale_uv_per_count
    np.rint(counts, out=counts)
    np.clip(counts, _INT16_MIN, _INT16_MAX, out=counts)
    return counts.astype("<i2").T.tobytes()


def _wire_counts_loops(uv: np.ndarray, scale_uv_per_count: float, out: np.ndarray) -> bool:
    """Fill ``out`` (n_samples, n_channels) int16 with the counts of ``uv`` (numba target);
    False (``out`` not to be used) when ``uv`` holds a NaN.

    Two passes: counts channel by channel along the block's rows (contiguous, so the
    compiler vectorises it), then the transpose into wire order."""
    n_channels, n_samples = uv.shape
    counts = np.empty((n_channels, n_samples), dtype=np.int16)
    nan_seen = False
    for i in range(n_channels):
        for j in range(n_samples):
            c = np.rint(uv[i, j] / scale_uv_per_count)
            nan_seen |= c != c
            counts[i, j] = np.int16(min(max(c, _INT16_MIN), _INT16_MAX))
    for j in range(n_samples):
        for i in range(n_channels):
            out[j, i] = counts[i, j]
    return not nan_seen


_wire_counts_numba: Callable[[np.ndarray, float, np.ndarray], bool] | None = (
    jit(_wire_counts_loops) if NUMBA_AVAILABLE else None
)


def wire_counts(uv: np.ndarray, scale_uv_per_count: float) -> bytes:
    """``wire_counts_numpy`` in one compiled pass when numba is there (same bytes)."""
    kernel = _wire_counts_numba
    if kernel is None or uv.dtype != np.float64 or uv.ndim != 2:
        return wire_counts_numpy(uv, scale_uv_per_count)
    out = np.empty((uv.shape[1], uv.shape[0]), dtype="<i2")
    if not kernel(uv, float(scale_uv_per_count), out):
        return wire_counts_numpy(uv, scale_uv_per_count)
    return out.tobytes()
