"""Compiled per-hop kernels of the streaming features (numba), one call per event.

Why: with the default 8 channels and a 0.5 s hop, the arrays of one hop are tiny (8 x 125
samples, 44 connectivity bins x 28 pairs), so the numpy formulation in spectra.py,
timestats.py and connectivity.py spends almost all its time in the overhead of ~300 small
numpy calls.  These kernels compute the same quantities with explicit loops, one compiled
call per event (block, segment, window), and write into preallocated ring buffers
(controller/features/compiled.py).  The FFT is pocketfft, scipy.fft's own transform,
called inside the kernel through rocket-fft (its numba binding).

The numpy functions remain the reference and the fallback when numba is missing;
tests/test_features_compiled.py checks that both give the same frames (to rounding: the
only differences are summation orders).  Conventions are those documented in the numpy
modules and docs/features.md; the comments below only say how each loop maps onto them.

Array layouts shared with compiled.py:

- block ring ``blocks`` (slots, BLOCK_FIELDS, channels): mean, sum of squared deviations,
  clipped count, invalid count, line length (incl. the step into the block), first step;
- segment rings ``seg_psd`` (slots, channels, freqs); at the connectivity bins
  ``seg_auto`` (slots, channels, conn bins) = |X|² and ``seg_cross`` (slots, 2, pairs,
  conn bins) = real and imaginary part of conj(X_i) X_j; ``seg_phase`` (slots, 3, bands,
  pairs): phase numerator real part, imaginary part (PLV only) and denominator.  The
  connectivity bins are the last axis so that the loops over them run along contiguous
  rows, which the loop vectoriser takes (each value still sums its terms in the same
  order, so the layout does not change a bit).

Bands are contiguous runs of bins (lo <= f < hi), also within the connectivity bins, so
the kernels take them as index ranges ``lo[b]:hi[b]`` rather than masks.
"""

from __future__ import annotations

import math

import numpy as np

from controller.jit import NUMBA_AVAILABLE as NUMBA_AVAILABLE
from controller.jit import StructProxy, StructType, compiled_struct
from controller.jit import jit as _jit

try:
    from rocket_fft import r2c as _r2c
except ImportError:  # pragma: no cover - only where numba (and so rocket-fft) is missing
    _r2c = None  # type: ignore[assignment]

BLOCK_FIELDS = 6
(
    BLOCK_MEAN,
    BLOCK_SQ_DEV,
    BLOCK_CLIPPED,
    BLOCK_INVALID,
    BLOCK_LINE_LENGTH,
    BLOCK_FIRST_STEP,
) = range(BLOCK_FIELDS)

#: Rows of the per-channel float output of :func:`window_features`.
(
    CH_THETA_ALPHA,
    CH_ALPHA_PEAK,
    CH_LINE_LENGTH,
    CH_LINE_NOISE,
    CH_STD,
    CH_CLIPPED_FRACTION,
) = range(6)
CH_FIELDS = 6
#: Rows of the per-channel flag output of :func:`window_features`.
FLAG_FLATLINE, FLAG_CLIPPED, FLAG_INVALID, FLAG_GOOD = range(4)
FLAG_FIELDS = 4


# -- samples in ------------------------------------------------------------------------


@_jit
def _fill(values: np.ndarray, value: float) -> None:
    """``values[:] = value`` for a 1-d array (a contiguous array's ``reshape(-1)`` view), as
    a loop.

    Why the kernels write their array operations out as loops: numba compiles a slice
    assignment or an in-place array operator through its broadcasting machinery, which
    took several seconds of every cold start (the disk cache is empty in a fresh checkout
    or on a new worker), for arrays a loop fills in nanoseconds.
    """
    for k in range(values.shape[0]):
        values[k] = value


@_jit
def sanitize(
    buffer: np.ndarray,
    start: int,
    stop: int,
    max_abs_uv: float,
    invalid_count: np.ndarray,
) -> None:
    """Zero-fill and count per channel the invalid samples of ``buffer[:, start:stop]``.

    Invalid = not |x| <= max_abs_uv, which is also true of NaN and inf.  Why each row is
    counted first: the count is a branch-free loop the vectoriser takes, and a row
    without invalid samples (nearly every row) needs no second, branching pass.
    """
    for c in range(buffer.shape[0]):
        row = buffer[c]
        n_valid = 0
        for k in range(start, stop):
            n_valid += abs(row[k]) <= max_abs_uv
        if n_valid == stop - start:
            continue
        for k in range(start, stop):
            if not abs(row[k]) <= max_abs_uv:
                row[k] = 0.0
                invalid_count[c] += 1


@_jit
def write_scaled(buffer: np.ndarray, start: int, counts: np.ndarray, scale: np.ndarray) -> None:
    """``buffer[:, start:start + n] = counts * scale[:, None]`` (the same products as numpy's
    int-to-float64 multiply), without the intermediate block."""
    width = counts.shape[1]
    for c in range(counts.shape[0]):
        factor = scale[c]
        # one row's views: the loop vectorises (2-d indexing kept it 1.5-4x slower)
        row = buffer[c, start : start + width]
        channel_counts = counts[c]
        for k in range(width):
            row[k] = channel_counts[k] * factor


@_jit
def _row_sums(buffer: np.ndarray, start: int, stop: int, out: np.ndarray) -> None:
    """``out[c]`` = buffer[c, start] + buffer[c, start + 1] + ... + buffer[c, stop - 1].

    Why eight (then four) channels at a time: each channel's sum is one chain of
    dependent additions (in sample order, as numpy's reference sums); chains held in
    registers side by side overlap instead of each waiting on its own last add.
    """
    n_channels = buffer.shape[0]
    c = 0
    # eight chains for the default eight channels: two adds can issue per cycle, and four
    # chains of four-cycle adds kept one of them idle
    while c + 8 <= n_channels:
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
        for k in range(start, stop):
            s0 += buffer[c, k]
            s1 += buffer[c + 1, k]
            s2 += buffer[c + 2, k]
            s3 += buffer[c + 3, k]
            s4 += buffer[c + 4, k]
            s5 += buffer[c + 5, k]
            s6 += buffer[c + 6, k]
            s7 += buffer[c + 7, k]
        out[c], out[c + 1], out[c + 2], out[c + 3] = s0, s1, s2, s3
        out[c + 4], out[c + 5], out[c + 6], out[c + 7] = s4, s5, s6, s7
        c += 8
    while c + 4 <= n_channels:
        s0 = s1 = s2 = s3 = 0.0
        for k in range(start, stop):
            s0 += buffer[c, k]
            s1 += buffer[c + 1, k]
            s2 += buffer[c + 2, k]
            s3 += buffer[c + 3, k]
        out[c], out[c + 1], out[c + 2], out[c + 3] = s0, s1, s2, s3
        c += 4
    while c < n_channels:
        total = 0.0
        for k in range(start, stop):
            total += buffer[c, k]
        out[c] = total
        c += 1


@_jit
def _deviations_4(
    buffer: np.ndarray,
    c: int,
    start: int,
    stop: int,
    means: np.ndarray,
    clip_level_uv: np.ndarray,
    sq_dev: np.ndarray,
    clipped: np.ndarray,
    steps: np.ndarray,
) -> None:
    """Channels c..c+3 of :func:`block_stats_into`: squared deviations from ``means``,
    clipped samples and the steps inside ``buffer[:, start:stop]``, each summed in sample
    order.

    Why four channels side by side in scalars: each sum is a chain of dependent adds;
    four chains in registers overlap, where the channels' sums kept in arrays (one
    channel after the other within each sample) ran about twice as slow.
    """
    r0, r1, r2, r3 = buffer[c], buffer[c + 1], buffer[c + 2], buffer[c + 3]
    m0, m1, m2, m3 = means[c], means[c + 1], means[c + 2], means[c + 3]
    v0, v1, v2, v3 = (
        clip_level_uv[c],
        clip_level_uv[c + 1],
        clip_level_uv[c + 2],
        clip_level_uv[c + 3],
    )
    q0 = q1 = q2 = q3 = 0.0
    n0 = n1 = n2 = n3 = 0
    for k in range(start, stop):
        x0, x1, x2, x3 = r0[k], r1[k], r2[k], r3[k]
        d0, d1, d2, d3 = x0 - m0, x1 - m1, x2 - m2, x3 - m3
        q0 += d0 * d0
        q1 += d1 * d1
        q2 += d2 * d2
        q3 += d3 * d3
        n0 += abs(x0) >= v0
        n1 += abs(x1) >= v1
        n2 += abs(x2) >= v2
        n3 += abs(x3) >= v3
    s0 = s1 = s2 = s3 = 0.0
    p0, p1, p2, p3 = r0[start], r1[start], r2[start], r3[start]
    for k in range(start + 1, stop):
        x0, x1, x2, x3 = r0[k], r1[k], r2[k], r3[k]
        s0 += abs(x0 - p0)
        s1 += abs(x1 - p1)
        s2 += abs(x2 - p2)
        s3 += abs(x3 - p3)
        p0, p1, p2, p3 = x0, x1, x2, x3
    sq_dev[c], sq_dev[c + 1], sq_dev[c + 2], sq_dev[c + 3] = q0, q1, q2, q3
    clipped[c], clipped[c + 1], clipped[c + 2], clipped[c + 3] = n0, n1, n2, n3
    steps[c], steps[c + 1], steps[c + 2], steps[c + 3] = s0, s1, s2, s3


@_jit
def _deviations_1(
    buffer: np.ndarray,
    c: int,
    start: int,
    stop: int,
    means: np.ndarray,
    clip_level_uv: np.ndarray,
    sq_dev: np.ndarray,
    clipped: np.ndarray,
    steps: np.ndarray,
) -> None:
    """:func:`_deviations_4` for channel ``c`` alone (the channels left over)."""
    row = buffer[c]
    mean = means[c]
    level = clip_level_uv[c]
    squares = 0.0
    n_clipped = 0
    for k in range(start, stop):
        d = row[k] - mean
        squares += d * d
        n_clipped += abs(row[k]) >= level
    line_length = 0.0
    for k in range(start + 1, stop):
        line_length += abs(row[k] - row[k - 1])
    sq_dev[c] = squares
    clipped[c] = n_clipped
    steps[c] = line_length


@_jit
def block_stats_into(
    buffer: np.ndarray,
    start: int,
    length: int,
    has_previous: bool,
    clip_level_uv: np.ndarray,
    invalid_count: np.ndarray,
    out: np.ndarray,
) -> None:
    """timestats.block_stats of ``buffer[:, start:start+length]`` into ``out`` (FIELDS, ch).

    The previous sample (for the first step of the line length) is ``buffer[:, start-1]``.
    Each channel's sums run in sample order; the channels run side by side (see
    :func:`_row_sums`).
    """
    n_channels = buffer.shape[0]
    stop = start + length
    means = out[BLOCK_MEAN]
    _row_sums(buffer, start, stop, means)
    for c in range(n_channels):
        means[c] = means[c] / length
    sq_dev = out[BLOCK_SQ_DEV]
    clipped = out[BLOCK_CLIPPED]
    steps = out[BLOCK_LINE_LENGTH]
    c = 0
    while c + 4 <= n_channels:
        _deviations_4(buffer, c, start, stop, means, clip_level_uv, sq_dev, clipped, steps)
        c += 4
    while c < n_channels:
        _deviations_1(buffer, c, start, stop, means, clip_level_uv, sq_dev, clipped, steps)
        c += 1
    for c in range(n_channels):
        first = abs(buffer[c, start] - buffer[c, start - 1]) if has_previous else 0.0
        out[BLOCK_INVALID, c] = invalid_count[c]
        steps[c] = steps[c] + first
        out[BLOCK_FIRST_STEP, c] = first
        invalid_count[c] = 0


# -- one Welch segment -------------------------------------------------------------------


@_jit
def taper_segment(buffer: np.ndarray, start: int, taper: np.ndarray, out: np.ndarray) -> None:
    """Constant detrend and taper of ``buffer[:, start:start+len(taper)]`` into ``out``.

    ``out[:, 0]`` holds the channels' sums while they are taken (see :func:`_row_sums`).
    """
    n_channels = buffer.shape[0]
    length = taper.shape[0]
    totals = out[:, 0]
    _row_sums(buffer, start, start + length, totals)
    for c in range(n_channels):
        mean = totals[c] / length
        # one row's contiguous views: the loop vectorises (2-d indexing kept it ~2x slower)
        samples = buffer[c, start : start + length]
        tapered = out[c]
        for k in range(length):
            tapered[k] = (samples[k] - mean) * taper[k]


@_jit
def segment_terms(
    spectrum: np.ndarray,
    psd_scale: np.ndarray,
    conn_bins: np.ndarray,
    band_conn_lo: np.ndarray,
    band_conn_hi: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    plv: bool,
    psd_out: np.ndarray,
    auto_out: np.ndarray,
    cross_out: np.ndarray,
    phase_out: np.ndarray,
) -> None:
    """What windows need of one segment's FFT ``spectrum`` (channels, freqs).

    ``psd_out`` (channels, freqs) as spectra.segment_spectra; at the connectivity bins,
    ``auto_out`` (channels, conn bins) = |X|² and ``cross_out`` (2, pairs, conn bins) =
    real and imaginary parts of Sxy = conj(X_i) X_j; ``phase_out`` (3, bands, pairs) = the
    band sums of spectra._phase_sums: sum Im Sxy, 0, sum |Im Sxy| (wPLI) or the real and
    imaginary sums of Sxy/|Sxy| and the bin count (PLV).  Band b's connectivity bins are
    ``band_conn_lo[b]:band_conn_hi[b]``.
    """
    n_channels, n_freqs = spectrum.shape
    for c in range(n_channels):
        for f in range(n_freqs):
            z = spectrum[c, f]
            psd_out[c, f] = (z.real * z.real + z.imag * z.imag) * psd_scale[f]
    n_conn = conn_bins.shape[0]
    # the connectivity bins' columns copied to real and imaginary rows first: the pair
    # loop then runs along contiguous rows (same products)
    real = np.empty((n_channels, n_conn))
    imag = np.empty((n_channels, n_conn))
    for c in range(n_channels):
        for q in range(n_conn):
            z = spectrum[c, conn_bins[q]]
            real[c, q] = z.real
            imag[c, q] = z.imag
            auto_out[c, q] = z.real * z.real + z.imag * z.imag
    for p in range(first.shape[0]):
        x_re, x_im = real[first[p]], imag[first[p]]
        y_re, y_im = real[second[p]], imag[second[p]]
        real_out = cross_out[0, p]
        imag_out = cross_out[1, p]
        for q in range(n_conn):
            real_out[q] = x_re[q] * y_re[q] + x_im[q] * y_im[q]
            imag_out[q] = x_re[q] * y_im[q] - x_im[q] * y_re[q]
    _phase_sums(cross_out, band_conn_lo, band_conn_hi, plv, phase_out)


@_jit
def _phase_sums(
    cross: np.ndarray,
    band_conn_lo: np.ndarray,
    band_conn_hi: np.ndarray,
    plv: bool,
    out: np.ndarray,
) -> None:
    """:func:`segment_terms`'s band sums ``out`` (3, bands, pairs) of one segment's cross
    spectra ``cross`` (2, pairs, conn bins), each summed over the band's bins in order."""
    if not plv:
        _wpli_sums(cross[1], band_conn_lo, band_conn_hi, out)
        return
    for b in range(band_conn_lo.shape[0]):
        for p in range(cross.shape[1]):
            cross_real = cross[0, p]
            cross_imag = cross[1, p]
            num_real = num_imag = den = 0.0
            for q in range(band_conn_lo[b], band_conn_hi[b]):
                magnitude = math.hypot(cross_real[q], cross_imag[q])
                if magnitude > 0:
                    num_real += cross_real[q] / magnitude
                    num_imag += cross_imag[q] / magnitude
                den += 1.0
            out[0, b, p] = num_real
            out[1, b, p] = num_imag
            out[2, b, p] = den


@_jit
def _wpli_sums(
    imag: np.ndarray, band_conn_lo: np.ndarray, band_conn_hi: np.ndarray, out: np.ndarray
) -> None:
    """:func:`_phase_sums` for wPLI from the cross spectra's imaginary parts (pairs, conn
    bins): sum Im Sxy, 0 and sum |Im Sxy| per band and pair.

    Why four pairs side by side: each sum is a chain of dependent adds along the band's
    bins (see :func:`_row_sums`).
    """
    n_pairs = imag.shape[0]
    for b in range(band_conn_lo.shape[0]):
        lo, hi = band_conn_lo[b], band_conn_hi[b]
        num, den = out[0, b], out[2, b]
        _fill(out[1, b], 0.0)
        p = 0
        while p + 4 <= n_pairs:
            x0, x1, x2, x3 = imag[p], imag[p + 1], imag[p + 2], imag[p + 3]
            n0 = n1 = n2 = n3 = 0.0
            d0 = d1 = d2 = d3 = 0.0
            for q in range(lo, hi):
                n0 += x0[q]
                n1 += x1[q]
                n2 += x2[q]
                n3 += x3[q]
                d0 += abs(x0[q])
                d1 += abs(x1[q])
                d2 += abs(x2[q])
                d3 += abs(x3[q])
            num[p], num[p + 1], num[p + 2], num[p + 3] = n0, n1, n2, n3
            den[p], den[p + 1], den[p + 2], den[p + 3] = d0, d1, d2, d3
            p += 4
        while p < n_pairs:
            row = imag[p]
            total = magnitude = 0.0
            for q in range(lo, hi):
                total += row[q]
                magnitude += abs(row[q])
            num[p], den[p] = total, magnitude
            p += 1


# -- one window ----------------------------------------------------------------------------


@_jit
def _window_psd(seg_psd: np.ndarray, seg_slots: np.ndarray, psd: np.ndarray) -> None:
    """Welch PSD into ``psd``: the mean over the window's segments (summed oldest first,
    as _sum).

    Why the segments are the outer loop: summed along the segments, each bin was a short
    chain of dependent adds and the bins ran scalar; along the bins, each pass is a
    contiguous row the loop vectoriser takes, and every bin still adds its segments in the
    same order (then divides), so the same bits.
    """
    n_seg = seg_slots.shape[0]
    n_freqs = psd.shape[1]
    for c in range(psd.shape[0]):
        row = psd[c]
        first = seg_psd[seg_slots[0], c]
        for f in range(n_freqs):
            row[f] = first[f]
        for s in range(1, n_seg):
            other = seg_psd[seg_slots[s], c]
            for f in range(n_freqs):
                row[f] += other[f]
        for f in range(n_freqs):
            row[f] = row[f] / n_seg


@_jit
def _band_powers(
    psd: np.ndarray, band_lo: np.ndarray, band_hi: np.ndarray, df_hz: float, out: np.ndarray
) -> None:
    """Band power (sum of bins band_lo[b]:band_hi[b], times df) and relative power.

    ``out`` is (2, channels, bands).
    """
    n_bands = band_lo.shape[0]
    for c in range(psd.shape[0]):
        total = 0.0
        for b in range(n_bands):
            acc = 0.0
            for f in range(band_lo[b], band_hi[b]):
                acc += psd[c, f]
            power = acc * df_hz
            out[0, c, b] = power
            total += power
        for b in range(n_bands):
            out[1, c, b] = out[0, c, b] / total if total > 0 else 0.0


@_jit
def _alpha_peak(
    psd: np.ndarray, c: int, bins: np.ndarray, freqs_hz: np.ndarray, df_hz: float
) -> float:
    """spectra.alpha_peak_hz for channel ``c`` (first maximum, parabolic refinement)."""
    n_freqs = psd.shape[1]
    peak = bins[0]
    for k in range(1, bins.shape[0]):
        if psd[c, bins[k]] > psd[c, peak]:
            peak = bins[k]
    centre = psd[c, peak]
    left = psd[c, max(peak - 1, 0)]
    right = psd[c, min(peak + 1, n_freqs - 1)]
    curvature = left - 2.0 * centre + right
    offset = 0.0
    if peak > 0 and peak < n_freqs - 1 and curvature < 0:
        offset = min(max(0.5 * (left - right) / curvature, -0.5), 0.5)
    peak_hz = min(max(freqs_hz[peak] + offset * df_hz, freqs_hz[bins[0]]), freqs_hz[bins[-1]])
    return peak_hz if centre > 0 else 0.0


@_jit
def _channel_features(
    psd: np.ndarray,
    band_power: np.ndarray,
    theta_index: int,
    alpha_index: int,
    alpha_bins: np.ndarray,
    line_bins: np.ndarray,
    total_bins: np.ndarray,
    freqs_hz: np.ndarray,
    df_hz: float,
    out: np.ndarray,
) -> None:
    """theta/alpha ratio, alpha peak and line-noise ratio per channel into ``out`` rows."""
    n_channels = psd.shape[0]
    line = np.empty(n_channels)
    total = np.empty(n_channels)
    if line_bins.shape[0] > 0:
        _bin_sums(psd, line_bins, line)
        _bin_sums(psd, total_bins, total)
    for c in range(n_channels):
        alpha = band_power[c, alpha_index]
        out[CH_THETA_ALPHA, c] = band_power[c, theta_index] / alpha if alpha > 0 else 0.0
        out[CH_ALPHA_PEAK, c] = _alpha_peak(psd, c, alpha_bins, freqs_hz, df_hz)
        ratio = 0.0
        if line_bins.shape[0] > 0:
            ratio = min(line[c] / total[c], 1.0) if total[c] > 0 else 0.0
        out[CH_LINE_NOISE, c] = ratio


@_jit
def _bin_sums(psd: np.ndarray, bins: np.ndarray, out: np.ndarray) -> None:
    """``out[c]`` = psd[c, bins[0]] + psd[c, bins[1]] + ... (in that order) per channel,
    four channels side by side (each sum is a chain of dependent adds; see
    :func:`_row_sums`)."""
    n_channels = psd.shape[0]
    c = 0
    while c + 4 <= n_channels:
        r0, r1, r2, r3 = psd[c], psd[c + 1], psd[c + 2], psd[c + 3]
        s0 = s1 = s2 = s3 = 0.0
        for f in bins:
            s0 += r0[f]
            s1 += r1[f]
            s2 += r2[f]
            s3 += r3[f]
        out[c], out[c + 1], out[c + 2], out[c + 3] = s0, s1, s2, s3
        c += 4
    while c < n_channels:
        row = psd[c]
        acc = 0.0
        for f in bins:
            acc += row[f]
        out[c] = acc
        c += 1


@_jit
def _time_stats_and_quality(
    blocks: np.ndarray,
    blk_slots: np.ndarray,
    block_samples: int,
    thresholds: np.ndarray,
    out: np.ndarray,
    flags: np.ndarray,
) -> None:
    """timestats.window_time_stats and quality.assess_quality for the window's blocks.

    ``thresholds`` = (flatline_std_uv, clipped_fraction_max, line_noise_ratio_max);
    ``out`` must already hold the line-noise ratio.
    """
    n_blocks = blk_slots.shape[0]
    n_total = block_samples * n_blocks
    for c in range(blocks.shape[2]):
        mean = 0.0
        for s in blk_slots:
            mean += blocks[s, BLOCK_MEAN, c]
        mean /= n_blocks
        sq_dev = 0.0
        spread = 0.0
        clipped = 0.0
        invalid = 0.0
        line_length = 0.0
        for s in blk_slots:
            sq_dev += blocks[s, BLOCK_SQ_DEV, c]
            d = blocks[s, BLOCK_MEAN, c] - mean
            spread += d * d
            clipped += blocks[s, BLOCK_CLIPPED, c]
            invalid += blocks[s, BLOCK_INVALID, c]
            line_length += blocks[s, BLOCK_LINE_LENGTH, c]
        sq_dev += block_samples * spread
        std = math.sqrt(max(sq_dev, 0.0) / n_total)
        clipped_fraction = clipped / n_total
        out[CH_STD, c] = std
        out[CH_CLIPPED_FRACTION, c] = clipped_fraction
        out[CH_LINE_LENGTH, c] = max(line_length - blocks[blk_slots[0], BLOCK_FIRST_STEP, c], 0.0)
        flatline = std < thresholds[0]
        is_clipped = clipped_fraction > thresholds[1]
        noisy = out[CH_LINE_NOISE, c] > thresholds[2]
        is_invalid = invalid > 0
        flags[FLAG_FLATLINE, c] = flatline
        flags[FLAG_CLIPPED, c] = is_clipped
        flags[FLAG_INVALID, c] = is_invalid
        flags[FLAG_GOOD, c] = not (flatline or is_clipped or noisy or is_invalid)


@_jit
def _coherence_bins(
    seg_auto: np.ndarray,
    seg_cross: np.ndarray,
    seg_slots: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    out: np.ndarray,
) -> None:
    """Magnitude-squared coherence (pairs, conn bins) over the window's segments, into
    ``out``.

    |sum_s Sxy|² / (sum_s Sxx * sum_s Syy), evaluated as |sum_s Sxy * r_x * r_y|² with
    r = 1 / sqrt(sum_s |X|²) (0 where that sum is 0), the scaling of
    spectra.window_spectra, so nothing overflows or underflows more than there.
    """
    inv_root = _segment_sum(seg_auto, seg_slots)  # (channels, conn bins)
    cross = _segment_sum(seg_cross, seg_slots)  # (2, pairs, conn bins)
    flat = inv_root.reshape(-1)
    # two passes the vectoriser takes (a square root only where the sum is > 0, in one
    # pass, kept it scalar); sqrt(a) > 0 exactly when a > 0, so the same values
    for k in range(flat.shape[0]):
        flat[k] = math.sqrt(flat[k])
    for k in range(flat.shape[0]):
        root = flat[k]
        flat[k] = 1.0 / root if root > 0 else 0.0
    for p in range(first.shape[0]):
        r_x, r_y = inv_root[first[p]], inv_root[second[p]]
        real, imag = cross[0, p], cross[1, p]
        row = out[p]
        for q in range(row.shape[0]):
            re = real[q] * r_x[q] * r_y[q]
            im = imag[q] * r_x[q] * r_y[q]
            coherence = re * re + im * im
            row[q] = coherence if coherence < 1.0 else 1.0


@_jit
def _segment_sum(ring: np.ndarray, seg_slots: np.ndarray) -> np.ndarray:
    """A new array: the sum of ring slots ``seg_slots``, oldest first, element by element
    (a pass per segment along the whole contiguous slot)."""
    total = ring[seg_slots[0]].copy()
    flat = total.reshape(-1)
    for s in range(1, seg_slots.shape[0]):
        other = ring[seg_slots[s]].reshape(-1)
        for k in range(flat.shape[0]):
            flat[k] += other[k]
    return total


@_jit
def _band_connectivity(
    coherence_bins: np.ndarray,
    band_conn_mean_weights: np.ndarray,
    band_conn_lo: np.ndarray,
    band_conn_hi: np.ndarray,
    seg_phase: np.ndarray,
    seg_slots: np.ndarray,
    plv: bool,
    out: np.ndarray,
) -> None:
    """Band coherence (mean over the band's bins) and phase synchrony, (2, bands, pairs)."""
    n_bands = band_conn_lo.shape[0]
    n_pairs = coherence_bins.shape[0]
    n_seg = seg_slots.shape[0]
    num_real = np.empty(n_pairs)
    num_imag = np.empty(n_pairs)
    den = np.empty(n_pairs)
    for b in range(n_bands):
        coherence = out[0, b]
        _fill(coherence, 0.0)
        # bins outer, pairs inner: the pairs' sums are independent (a sum along each
        # pair's contiguous bins is one chain of dependent adds, twice as slow)
        for q in range(band_conn_lo[b], band_conn_hi[b]):
            w = band_conn_mean_weights[b, q]
            for p in range(n_pairs):
                coherence[p] += w * coherence_bins[p, q]
        first_slot = seg_slots[0]
        for p in range(n_pairs):
            num_real[p] = seg_phase[first_slot, 0, b, p]
            num_imag[p] = seg_phase[first_slot, 1, b, p]
            den[p] = seg_phase[first_slot, 2, b, p]
        for s in range(1, n_seg):
            slot = seg_slots[s]
            for p in range(n_pairs):
                num_real[p] += seg_phase[slot, 0, b, p]
                num_imag[p] += seg_phase[slot, 1, b, p]
                den[p] += seg_phase[slot, 2, b, p]
        for p in range(n_pairs):
            num = math.hypot(num_real[p], num_imag[p]) if plv else abs(num_real[p])
            out[1, b, p] = min(num / den[p], 1.0) if den[p] > 0 else 0.0


@_jit
def _network_summaries(
    pair_values: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    good: np.ndarray,
    summary_index: int,
    matrices: np.ndarray,
    means: np.ndarray,
    strength: np.ndarray,
) -> None:
    """connectivity.pairs_to_matrix, mean_over_good_pairs and node_strength.

    ``pair_values`` (2, bands, pairs) -> ``matrices`` (2, bands, ch, ch), ``means``
    (2, bands) over good pairs, ``strength`` (bands, ch) of measure ``summary_index``.
    """
    n_measures, n_bands, n_pairs = pair_values.shape
    n_channels = good.shape[0]
    _fill(matrices.reshape(-1), 0.0)
    n_good_pairs = 0
    for p in range(n_pairs):
        if good[first[p]] and good[second[p]]:
            n_good_pairs += 1
    for m in range(n_measures):
        for b in range(n_bands):
            total = 0.0
            for p in range(n_pairs):
                value = pair_values[m, b, p]
                matrices[m, b, first[p], second[p]] = value
                matrices[m, b, second[p], first[p]] = value
                if good[first[p]] and good[second[p]]:
                    total += value
            means[m, b] = total / n_good_pairs if n_good_pairs > 0 else 0.0
    n_good = 0
    for c in range(n_channels):
        if good[c]:
            n_good += 1
    _fill(strength.reshape(-1), 0.0)
    if n_good < 2:
        return
    for b in range(n_bands):
        for i in range(n_channels):
            if not good[i]:
                continue
            acc = 0.0
            for j in range(n_channels):
                if good[j]:
                    acc += matrices[summary_index, b, i, j]
            strength[b, i] = acc / (n_good - 1)


@_jit
def window_features(
    seg_psd: np.ndarray,
    seg_auto: np.ndarray,
    seg_cross: np.ndarray,
    seg_phase: np.ndarray,
    seg_slots: np.ndarray,
    blocks: np.ndarray,
    blk_slots: np.ndarray,
    block_samples: int,
    band_lo: np.ndarray,
    band_hi: np.ndarray,
    band_conn_lo: np.ndarray,
    band_conn_hi: np.ndarray,
    band_conn_mean_weights: np.ndarray,
    alpha_bins: np.ndarray,
    line_bins: np.ndarray,
    total_bins: np.ndarray,
    freqs_hz: np.ndarray,
    df_hz: float,
    theta_index: int,
    alpha_index: int,
    first: np.ndarray,
    second: np.ndarray,
    plv: bool,
    summary_index: int,
    thresholds: np.ndarray,
) -> tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray
]:
    """All of one window's features from the stored segment and block summaries.

    Returns (psd, band (2, ch, bands): power and relative power, per-channel floats
    (CH_FIELDS, ch), flags (FLAG_FIELDS, ch), coherence bins (conn bins, pairs), matrices
    (2, bands, ch, ch): coherence and phase synchrony, good-pair means (2, bands), node
    strength (bands, ch)).
    """
    n_channels = seg_psd.shape[1]
    n_bands = band_lo.shape[0]
    band = np.empty((2, n_channels, n_bands))
    per_channel = np.empty((CH_FIELDS, n_channels))
    flags = np.empty((FLAG_FIELDS, n_channels), dtype=np.bool_)
    matrices = np.empty((2, n_bands, n_channels, n_channels))
    means = np.empty((2, n_bands))
    strength = np.empty((n_bands, n_channels))
    psd = np.empty(seg_psd.shape[1:])
    coherence_bins = np.empty((first.shape[0], seg_auto.shape[2]))
    window_features_into(
        seg_psd,
        seg_auto,
        seg_cross,
        seg_phase,
        seg_slots,
        blocks,
        blk_slots,
        block_samples,
        band_lo,
        band_hi,
        band_conn_lo,
        band_conn_hi,
        band_conn_mean_weights,
        alpha_bins,
        line_bins,
        total_bins,
        freqs_hz,
        df_hz,
        theta_index,
        alpha_index,
        first,
        second,
        plv,
        summary_index,
        thresholds,
        band,
        per_channel,
        flags,
        matrices,
        means,
        strength,
        psd,
        coherence_bins,
        np.empty((2, n_bands, first.shape[0])),
    )
    return psd, band, per_channel, flags, coherence_bins.T, matrices, means, strength


@_jit
def window_features_into(
    seg_psd: np.ndarray,
    seg_auto: np.ndarray,
    seg_cross: np.ndarray,
    seg_phase: np.ndarray,
    seg_slots: np.ndarray,
    blocks: np.ndarray,
    blk_slots: np.ndarray,
    block_samples: int,
    band_lo: np.ndarray,
    band_hi: np.ndarray,
    band_conn_lo: np.ndarray,
    band_conn_hi: np.ndarray,
    band_conn_mean_weights: np.ndarray,
    alpha_bins: np.ndarray,
    line_bins: np.ndarray,
    total_bins: np.ndarray,
    freqs_hz: np.ndarray,
    df_hz: float,
    theta_index: int,
    alpha_index: int,
    first: np.ndarray,
    second: np.ndarray,
    plv: bool,
    summary_index: int,
    thresholds: np.ndarray,
    band: np.ndarray,
    per_channel: np.ndarray,
    flags: np.ndarray,
    matrices: np.ndarray,
    means: np.ndarray,
    strength: np.ndarray,
    psd: np.ndarray,
    coherence_bins: np.ndarray,
    pair_values: np.ndarray,
) -> None:
    """:func:`window_features` into the given band, per-channel, flags, matrices, means,
    strength, psd (channels, freqs) and coherence bins (pairs, conn bins) arrays (shaped
    as it documents); ``pair_values`` (2, bands, pairs) is scratch.

    Why everything comes in: an array allocated in the loop's every hop costs more there
    (its memory is cold) than on a quiet bench, and varies far more."""
    _window_psd(seg_psd, seg_slots, psd)
    _band_powers(psd, band_lo, band_hi, df_hz, band)
    _channel_features(
        psd,
        band[0],
        theta_index,
        alpha_index,
        alpha_bins,
        line_bins,
        total_bins,
        freqs_hz,
        df_hz,
        per_channel,
    )
    _time_stats_and_quality(blocks, blk_slots, block_samples, thresholds, per_channel, flags)
    _coherence_bins(seg_auto, seg_cross, seg_slots, first, second, coherence_bins)
    _band_connectivity(
        coherence_bins,
        band_conn_mean_weights,
        band_conn_lo,
        band_conn_hi,
        seg_phase,
        seg_slots,
        plv,
        pair_values,
    )
    _network_summaries(
        pair_values, first, second, flags[FLAG_GOOD], summary_index, matrices, means, strength
    )


# -- one event, fused --------------------------------------------------------------------


@_jit
def prepare_event(
    buffer: np.ndarray,
    sanitize_start: int,
    end: int,
    max_abs_uv: float,
    invalid_count: np.ndarray,
    block_start: int,
    block_samples: int,
    has_previous: bool,
    clip_level_uv: np.ndarray,
    blocks: np.ndarray,
    block_slot: int,
    segment_start: int,
    taper: np.ndarray,
    tapered: np.ndarray,
) -> None:
    """:func:`sanitize`, then :func:`block_stats_into` (if ``block_start`` >= 0) into ring
    slot ``block_slot``, then :func:`taper_segment` (if ``segment_start`` >= 0): the
    sample-side work of one event in one call, with the same arithmetic as the three."""
    sanitize(buffer, sanitize_start, end, max_abs_uv, invalid_count)
    if block_start >= 0:
        block_stats_into(
            buffer,
            block_start,
            block_samples,
            has_previous,
            clip_level_uv,
            invalid_count,
            blocks[block_slot],
        )
    if segment_start >= 0:
        taper_segment(buffer, segment_start, taper, tapered)


@_jit
def segment_and_window(
    spectrum: np.ndarray,
    segment_slot: int,
    seg_slots: np.ndarray,
    blk_slots: np.ndarray,
    # -- from here on the same objects every event (CompiledWindows passes them as a tuple)
    psd_scale: np.ndarray,
    conn_bins: np.ndarray,
    seg_psd: np.ndarray,
    seg_auto: np.ndarray,
    seg_cross: np.ndarray,
    seg_phase: np.ndarray,
    blocks: np.ndarray,
    block_samples: int,
    band_lo: np.ndarray,
    band_hi: np.ndarray,
    band_conn_lo: np.ndarray,
    band_conn_hi: np.ndarray,
    band_conn_mean_weights: np.ndarray,
    alpha_bins: np.ndarray,
    line_bins: np.ndarray,
    total_bins: np.ndarray,
    freqs_hz: np.ndarray,
    df_hz: float,
    theta_index: int,
    alpha_index: int,
    first: np.ndarray,
    second: np.ndarray,
    plv: bool,
    summary_index: int,
    thresholds: np.ndarray,
) -> tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray
]:
    """:func:`segment_terms` of the newest segment into ring slot ``segment_slot``, then
    :func:`window_features` of the window it completes: one call when a segment and a
    window end together (every hop with the default layout)."""
    segment_terms(
        spectrum,
        psd_scale,
        conn_bins,
        band_conn_lo,
        band_conn_hi,
        first,
        second,
        plv,
        seg_psd[segment_slot],
        seg_auto[segment_slot],
        seg_cross[segment_slot],
        seg_phase[segment_slot],
    )
    return window_features(
        seg_psd,
        seg_auto,
        seg_cross,
        seg_phase,
        seg_slots,
        blocks,
        blk_slots,
        block_samples,
        band_lo,
        band_hi,
        band_conn_lo,
        band_conn_hi,
        band_conn_mean_weights,
        alpha_bins,
        line_bins,
        total_bins,
        freqs_hz,
        df_hz,
        theta_index,
        alpha_index,
        first,
        second,
        plv,
        summary_index,
        thresholds,
    )


class WindowStateType(StructType):
    """numba's type of a :class:`WindowState`."""


class WindowState(StructProxy):
    """What :func:`event_lean` reads of a stream besides each event's own numbers, as one
    numba structref: the rings, the layout's constants and two scratch arrays for the
    window's ring slots (arrays are shared with CompiledWindows, not copied).  Built with
    the fields in the order annotated here."""

    max_abs_uv: float
    clip_level_uv: np.ndarray
    taper: np.ndarray
    tapered: np.ndarray
    spectrum: np.ndarray
    fft_axes: np.ndarray
    psd: np.ndarray
    coherence_bins: np.ndarray
    pair_values: np.ndarray
    n_seg_slots: int
    n_blk_slots: int
    segment_grid_samples: int
    segment_key_step: int
    seg_slots: np.ndarray
    blk_slots: np.ndarray
    psd_scale: np.ndarray
    conn_bins: np.ndarray
    seg_psd: np.ndarray
    seg_auto: np.ndarray
    seg_cross: np.ndarray
    seg_phase: np.ndarray
    blocks: np.ndarray
    block_samples: int
    band_lo: np.ndarray
    band_hi: np.ndarray
    band_conn_lo: np.ndarray
    band_conn_hi: np.ndarray
    band_conn_mean_weights: np.ndarray
    alpha_bins: np.ndarray
    line_bins: np.ndarray
    total_bins: np.ndarray
    freqs_hz: np.ndarray
    df_hz: float
    theta_index: int
    alpha_index: int
    first: np.ndarray
    second: np.ndarray
    plv: bool
    summary_index: int
    thresholds: np.ndarray


#: The fields of a WindowState, in constructor order.
WINDOW_STATE_FIELDS = tuple(WindowState.__annotations__)
compiled_struct(WindowState, WindowStateType, WINDOW_STATE_FIELDS)


@_jit
def new_window_state(values: tuple[object, ...]) -> WindowState:
    """A WindowState of ``values`` (in WINDOW_STATE_FIELDS order).

    Why not ``WindowState(*values)``: the proxy's own constructor is compiled afresh in
    every process (~0.3 s); this one is cached like the kernels.
    """
    return WindowState(*values)


@_jit
def event_lean(
    state: WindowState,
    buffer: np.ndarray,
    invalid_count: np.ndarray,
    sanitize_start: int,
    end: int,
    block_start: int,
    has_previous: bool,
    block_slot: int,
    segment_start: int,
    segment_slot: int,
    window_start: int,
    band: np.ndarray,
    per_channel: np.ndarray,
    flags: np.ndarray,
    matrices: np.ndarray,
    means: np.ndarray,
    strength: np.ndarray,
) -> None:
    """One whole event of a stream whose frames keep no spectra, in one call.

    :func:`prepare_event` (sanitise; block ``block_slot`` if ``block_start`` >= 0; taper
    if ``segment_start`` >= 0), the segment's FFT (``scipy.fft.rfft``'s pocketfft r2c,
    compiled through rocket-fft: the same transform, bit for bit) and :func:`segment_terms` into
    ring slot ``segment_slot``, then, if ``window_start`` >= 0, :func:`window_features_into`
    of the window starting there (its ring slots as compiled._ring_slots gives them) into
    ``band`` ... ``strength`` (shaped as window_features documents).  The same steps in
    the same order as those calls, so the same bits.

    Why one call with the stream's state in one struct: a hop was three calls (two
    kernels and the FFT between them) with ~50 arguments, each checked and unboxed by
    numba, and the FFT's Python dispatch.  Why the outputs come in: every array a kernel
    hands back to Python is boxed, and numba's boxing unpickles the array's type each
    time.
    """
    s = state
    prepare_event(
        buffer,
        sanitize_start,
        end,
        s.max_abs_uv,
        invalid_count,
        block_start,
        s.block_samples,
        has_previous,
        s.clip_level_uv,
        s.blocks,
        block_slot,
        segment_start,
        s.taper,
        s.tapered,
    )
    if segment_start >= 0:
        # scipy.fft.rfft(tapered, axis=1) into the preallocated spectrum: the same
        # pocketfft call (forward, factor 1, one thread), compiled through rocket-fft
        _r2c(s.tapered, s.spectrum, s.fft_axes, True, 1.0, 1)
        segment_terms(
            s.spectrum,
            s.psd_scale,
            s.conn_bins,
            s.band_conn_lo,
            s.band_conn_hi,
            s.first,
            s.second,
            s.plv,
            s.seg_psd[segment_slot],
            s.seg_auto[segment_slot],
            s.seg_cross[segment_slot],
            s.seg_phase[segment_slot],
        )
    if window_start < 0:
        return
    seg_slots, blk_slots = s.seg_slots, s.blk_slots
    first_segment = window_start // s.segment_grid_samples
    for k in range(seg_slots.shape[0]):
        seg_slots[k] = (first_segment + s.segment_key_step * k) % s.n_seg_slots
    first_block = window_start // s.block_samples
    for k in range(blk_slots.shape[0]):
        blk_slots[k] = (first_block + k) % s.n_blk_slots
    window_features_into(
        s.seg_psd,
        s.seg_auto,
        s.seg_cross,
        s.seg_phase,
        seg_slots,
        s.blocks,
        blk_slots,
        s.block_samples,
        s.band_lo,
        s.band_hi,
        s.band_conn_lo,
        s.band_conn_hi,
        s.band_conn_mean_weights,
        s.alpha_bins,
        s.line_bins,
        s.total_bins,
        s.freqs_hz,
        s.df_hz,
        s.theta_index,
        s.alpha_index,
        s.first,
        s.second,
        s.plv,
        s.summary_index,
        s.thresholds,
        band,
        per_channel,
        flags,
        matrices,
        means,
        strength,
        s.psd,
        s.coherence_bins,
        s.pair_values,
    )
