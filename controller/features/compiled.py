"""The extractor's per-event work through the compiled kernels, with preallocated rings.

Same role as the numpy path in extractor.py (block summaries, segment spectra, window
assembly) and the same results to rounding; see kernels.py for why it exists.  Segment
and block summaries live in ring buffers indexed by ``key % slots`` instead of dicts of
small arrays, so an event allocates almost nothing and a window is one kernel call.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.fft

from controller.features.assemble import FrameContext
from controller.features.connectivity import pairs_to_matrix
from controller.features.frame import FeatureFrame, SignalQuality, WindowSpectra
from controller.features.kernels import (
    BLOCK_FIELDS,
    CH_ALPHA_PEAK,
    CH_CLIPPED_FRACTION,
    CH_FIELDS,
    CH_LINE_LENGTH,
    CH_LINE_NOISE,
    CH_STD,
    CH_THETA_ALPHA,
    FLAG_CLIPPED,
    FLAG_FIELDS,
    FLAG_FLATLINE,
    FLAG_GOOD,
    FLAG_INVALID,
    WINDOW_STATE_FIELDS,
    block_stats_into,
    event_lean,
    new_window_state,
    prepare_event,
    segment_and_window,
    segment_terms,
    taper_segment,
    window_features,
)
from firmware_bridge.frozen import build_frozen

#: What :func:`window_features` returns (see its docstring).
#: The PSD and the coherence bins are None when the frame keeps no spectra.
WindowArrays = tuple[
    np.ndarray | None,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray | None,
    np.ndarray,
    np.ndarray,
    np.ndarray,
]

RfftRows = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _rfft_rows_function() -> RfftRows:
    """``(x, out) -> scipy.fft.rfft(x, axis=1)`` for 2-D float64 ``x``, written into ``out``.

    Why: for 8 x 250 samples scipy.fft.rfft spends about half its ~13 µs in backend
    dispatch and argument checks, so when scipy's pocketfft binding (the function rfft
    ends in) is importable and reproduces rfft exactly on a probe, it is called directly.
    Otherwise (another scipy layout) rfft itself is used.  Same bits either way.
    """

    def public(x: np.ndarray, out: np.ndarray) -> np.ndarray:
        return np.asarray(scipy.fft.rfft(x, axis=1))

    try:
        from scipy.fft._pocketfft import pypocketfft  # private: checked below, else rfft

        def direct(x: np.ndarray, out: np.ndarray) -> np.ndarray:
            return np.asarray(pypocketfft.r2c(x, (1,), True, 0, out, 1))

        probe = np.random.default_rng(0).standard_normal((3, 250))
        spectrum = direct(probe, np.empty((3, 126), dtype=np.complex128))
        if np.array_equal(spectrum, public(probe, spectrum)):
            return direct
    except Exception:  # any import or call failure means: use the public function
        pass
    return public


rfft_rows = _rfft_rows_function()


def _index_ranges(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) per row of a boolean (rows, bins) mask whose True entries are contiguous.

    Bands are lo <= f < hi over increasing frequencies, so their bins are contiguous, also
    inside the sorted union of all bands' bins (the connectivity bins).
    """
    lo = np.argmax(mask, axis=1).astype(np.int64)
    hi = lo + mask.sum(axis=1).astype(np.int64)
    for row, (start, stop) in enumerate(zip(lo, hi, strict=True)):
        if not mask[row, start:stop].all():
            raise ValueError(f"band {row} does not cover contiguous bins")
    return lo, hi


def _ring_slots(first_key: int, count: int, key_step: int, n_slots: int) -> np.ndarray:
    """Ring positions of keys first_key, first_key + key_step, ... (count of them)."""
    keys = first_key + key_step * np.arange(count, dtype=np.int64)
    return np.ascontiguousarray(keys % n_slots)


class CompiledWindows:
    """Ring-buffered block and segment summaries, and window frames, via kernels.py."""

    def __init__(self, context: FrameContext, clip_level_uv: np.ndarray | None) -> None:
        self._context = context
        layout = context.layout
        config = context.config
        pairs = context.pairs
        n_channels = pairs.n_channels
        n_bands = layout.n_bands
        self._clip_level_uv = (
            np.full(n_channels, np.inf) if clip_level_uv is None else clip_level_uv
        )
        # A window needs keys spanning (window - segment) / grid + 1 segments and
        # window / block blocks; one more slot each keeps the newest from overwriting them.
        grid = layout.segment_grid_samples
        self._n_seg_slots = (layout.window_samples - layout.segment_samples) // grid + 2
        self._n_blk_slots = layout.window_samples // layout.block_samples + 1
        n_conn = layout.conn_bins.size
        n_pairs = pairs.first.size
        self._band_lo, self._band_hi = _index_ranges(layout.band_bin_mask)
        self._band_conn_lo, self._band_conn_hi = _index_ranges(layout.band_conn_mask)
        self._seg_psd = np.zeros((self._n_seg_slots, n_channels, layout.n_freqs))
        self._seg_auto = np.zeros((self._n_seg_slots, n_channels, n_conn))
        self._seg_cross = np.zeros((self._n_seg_slots, 2, n_pairs, n_conn))
        self._seg_phase = np.zeros((self._n_seg_slots, 3, n_bands, n_pairs))
        self._blocks = np.zeros((self._n_blk_slots, BLOCK_FIELDS, n_channels))
        self._tapered = np.zeros((n_channels, layout.segment_samples))
        self._spectrum = np.zeros((n_channels, layout.n_freqs), dtype=np.complex128)
        self._plv = config.phase_measure == "plv"
        self._summary_index = 0 if config.summary_measure == "coherence" else 1
        self._thresholds = np.array(
            [config.flatline_std_uv, config.clipped_fraction_max, config.line_noise_ratio_max]
        )
        self._conn_freqs_hz = layout.freqs_hz[layout.conn_bins]
        # What every frame shares, looked up once (a frame is built every hop).
        self._band_names = layout.band_names
        self._channel_names = context.channel_names
        self._phase_measure = config.phase_measure
        self._summary_measure = config.summary_measure
        # Shapes of the window outputs kernels.event_lean writes into.
        self._band_shape = (2, n_channels, n_bands)
        self._per_channel_shape = (CH_FIELDS, n_channels)
        self._flags_shape = (FLAG_FIELDS, n_channels)
        self._matrices_shape = (2, n_bands, n_channels, n_channels)
        self._means_shape = (2, n_bands)
        self._strength_shape = (n_bands, n_channels)
        #: The arguments of kernels.segment_and_window that never change (rings are
        #: updated in place).
        self._window_constants = (
            layout.psd_scale,
            layout.conn_bins,
            self._seg_psd,
            self._seg_auto,
            self._seg_cross,
            self._seg_phase,
            self._blocks,
            layout.block_samples,
            self._band_lo,
            self._band_hi,
            self._band_conn_lo,
            self._band_conn_hi,
            layout.band_conn_mean_weights,
            layout.alpha_peak_bins,
            layout.line_bins,
            layout.total_bins,
            layout.freqs_hz,
            layout.df_hz,
            layout.theta_index,
            layout.alpha_index,
            pairs.first,
            pairs.second,
            self._plv,
            self._summary_index,
            self._thresholds,
        )
        #: What kernels.event_lean reads besides each event's numbers (arrays shared).
        state = {
            "max_abs_uv": float(config.max_abs_uv),
            "clip_level_uv": self._clip_level_uv,
            "taper": layout.taper,
            "tapered": self._tapered,
            "spectrum": self._spectrum,
            "fft_axes": np.array([1], dtype=np.int64),
            "psd": np.empty((n_channels, layout.n_freqs)),
            "coherence_bins": np.empty((n_pairs, n_conn)),
            "pair_values": np.empty((2, n_bands, n_pairs)),
            "n_seg_slots": self._n_seg_slots,
            "n_blk_slots": self._n_blk_slots,
            "segment_grid_samples": grid,
            "segment_key_step": layout.segment_step_samples // grid,
            "seg_slots": np.zeros(layout.segments_per_window, dtype=np.int64),
            "blk_slots": np.zeros(layout.window_samples // layout.block_samples, dtype=np.int64),
            "psd_scale": layout.psd_scale,
            "conn_bins": layout.conn_bins,
            "seg_psd": self._seg_psd,
            "seg_auto": self._seg_auto,
            "seg_cross": self._seg_cross,
            "seg_phase": self._seg_phase,
            "blocks": self._blocks,
            "block_samples": layout.block_samples,
            "band_lo": self._band_lo,
            "band_hi": self._band_hi,
            "band_conn_lo": self._band_conn_lo,
            "band_conn_hi": self._band_conn_hi,
            "band_conn_mean_weights": layout.band_conn_mean_weights,
            "alpha_bins": layout.alpha_peak_bins,
            "line_bins": layout.line_bins,
            "total_bins": layout.total_bins,
            "freqs_hz": layout.freqs_hz,
            "df_hz": float(layout.df_hz),
            "theta_index": int(layout.theta_index),
            "alpha_index": int(layout.alpha_index),
            "first": pairs.first,
            "second": pairs.second,
            "plv": self._plv,
            "summary_index": self._summary_index,
            "thresholds": self._thresholds,
        }
        self._state = new_window_state(tuple(state[name] for name in WINDOW_STATE_FIELDS))
        #: The outputs kernels.event_lean is given at an event without a window (unused).
        self._no_window = self._window_outputs()
        self._seg_slot_cache: dict[int, np.ndarray] = {}
        self._window_slot_cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._blk_slot_cache: dict[int, np.ndarray] = {}

    def add_block(
        self, key: int, buffer: np.ndarray, start: int, has_previous: bool, invalid: np.ndarray
    ) -> None:
        """Summarise block ``key`` = buffer[:, start:start + block]; clears ``invalid``."""
        block_stats_into(
            buffer,
            start,
            self._context.layout.block_samples,
            has_previous,
            self._clip_level_uv,
            invalid,
            self._blocks[key % self._n_blk_slots],
        )

    def add_segment(self, key: int, buffer: np.ndarray, start: int) -> None:
        """Transform segment ``key`` = buffer[:, start:start + segment] once."""
        layout = self._context.layout
        taper_segment(buffer, start, layout.taper, self._tapered)
        spectrum = rfft_rows(self._tapered, self._spectrum)
        self._segment_terms(spectrum, key % self._n_seg_slots)

    def _segment_terms(self, spectrum: np.ndarray, slot: int) -> None:
        layout = self._context.layout
        pairs = self._context.pairs
        segment_terms(
            spectrum,
            layout.psd_scale,
            layout.conn_bins,
            self._band_conn_lo,
            self._band_conn_hi,
            pairs.first,
            pairs.second,
            self._plv,
            self._seg_psd[slot],
            self._seg_auto[slot],
            self._seg_cross[slot],
            self._seg_phase[slot],
        )

    def event(
        self,
        buffer: np.ndarray,
        sanitize_start: int,
        end: int,
        max_abs_uv: float,
        invalid: np.ndarray,
        block_key: int,
        has_previous: bool,
        segment_key: int,
        window_start: int,
        t_start_s: float,
        t_end_s: float,
    ) -> FeatureFrame | None:
        """One event of the stream: one kernel call (kernels.event_lean) when frames keep
        no spectra, else at most three (two kernels and the FFT).  ``max_abs_uv`` must
        be the configuration's (the one-call path reads it from there).

        ``buffer[:, sanitize_start:end]`` is checked first; then block ``block_key`` and
        segment ``segment_key`` end at ``end`` (-1: none ends there), and the window
        starting ``window_start`` samples into the stream is complete (-1: none is).  Same
        results, bit for bit, as :meth:`add_block`, :meth:`add_segment` and :meth:`frame`
        called in that order.
        """
        layout = self._context.layout
        block_start = end - layout.block_samples if block_key >= 0 else -1
        segment_start = end - layout.segment_samples if segment_key >= 0 else -1
        if not self._context.keep_spectra:
            # Fresh arrays every window: the frame keeps them.
            outputs = self._window_outputs() if window_start >= 0 else self._no_window
            band, per_channel, flags, matrices, means, strength = outputs
            event_lean(
                self._state,
                buffer,
                invalid,
                sanitize_start,
                end,
                block_start,
                has_previous,
                block_key % self._n_blk_slots,
                segment_start,
                segment_key % self._n_seg_slots,
                window_start,
                band,
                per_channel,
                flags,
                matrices,
                means,
                strength,
            )
            if window_start < 0:
                return None
            return self._frame_of(
                (None, band, per_channel, flags, None, matrices, means, strength),
                t_start_s,
                t_end_s,
            )
        prepare_event(
            buffer,
            sanitize_start,
            end,
            max_abs_uv,
            invalid,
            block_start,
            layout.block_samples,
            has_previous,
            self._clip_level_uv,
            self._blocks,
            block_key % self._n_blk_slots,
            segment_start,
            layout.taper,
            self._tapered,
        )
        if segment_key < 0:
            if window_start < 0:
                return None
            return self.frame(window_start, t_start_s, t_end_s)
        spectrum = rfft_rows(self._tapered, self._spectrum)
        slot = segment_key % self._n_seg_slots
        if window_start < 0:
            self._segment_terms(spectrum, slot)
            return None
        seg_slots, blk_slots = self._window_slots(window_start)
        arrays = segment_and_window(spectrum, slot, seg_slots, blk_slots, *self._window_constants)
        return self._frame_of(arrays, t_start_s, t_end_s)

    def _window_outputs(
        self,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """New arrays for one window's band, per-channel, flags, matrices, means and
        strength outputs (what kernels.event_lean writes)."""
        return (
            np.empty(self._band_shape),
            np.empty(self._per_channel_shape),
            np.empty(self._flags_shape, dtype=np.bool_),
            np.empty(self._matrices_shape),
            np.empty(self._means_shape),
            np.empty(self._strength_shape),
        )

    def frame(self, start: int, t_start_s: float, t_end_s: float) -> FeatureFrame:
        """The frame of the window starting ``start`` samples into the stream."""
        context = self._context
        layout = context.layout
        pairs = context.pairs
        arrays = window_features(
            self._seg_psd,
            self._seg_auto,
            self._seg_cross,
            self._seg_phase,
            self._segment_slots(start),
            self._blocks,
            self._block_slots(start),
            layout.block_samples,
            self._band_lo,
            self._band_hi,
            self._band_conn_lo,
            self._band_conn_hi,
            layout.band_conn_mean_weights,
            layout.alpha_peak_bins,
            layout.line_bins,
            layout.total_bins,
            layout.freqs_hz,
            layout.df_hz,
            layout.theta_index,
            layout.alpha_index,
            pairs.first,
            pairs.second,
            self._plv,
            self._summary_index,
            self._thresholds,
        )
        return self._frame_of(arrays, t_start_s, t_end_s)

    def _frame_of(self, arrays: WindowArrays, t_start_s: float, t_end_s: float) -> FeatureFrame:
        """The FeatureFrame around one window's kernel outputs."""
        psd, band, per_channel, flags, coherence_bins, matrices, means, strength = arrays
        spectra = None
        if self._context.keep_spectra:
            assert psd is not None and coherence_bins is not None
            spectra = WindowSpectra(
                freqs_hz=self._context.layout.freqs_hz,
                psd_uv2_per_hz=psd,
                conn_freqs_hz=self._conn_freqs_hz,
                coherence=pairs_to_matrix(coherence_bins, self._context.pairs),
            )
        quality = build_frozen(
            SignalQuality,
            {
                "flatline": flags[FLAG_FLATLINE],
                "clipped": flags[FLAG_CLIPPED],
                "line_noise_ratio": per_channel[CH_LINE_NOISE],
                "invalid": flags[FLAG_INVALID],
                "good": flags[FLAG_GOOD],
                "std_uv": per_channel[CH_STD],
                "clipped_fraction": per_channel[CH_CLIPPED_FRACTION],
            },
        )
        mean_coherence, mean_phase_sync = means[0], means[1]
        return build_frozen(
            FeatureFrame,
            {
                "t_start_s": t_start_s,
                "t_end_s": t_end_s,
                "band_names": self._band_names,
                "channel_names": self._channel_names,
                "band_power_uv2": band[0],
                "relative_power": band[1],
                "theta_alpha_ratio": per_channel[CH_THETA_ALPHA],
                "alpha_peak_hz": per_channel[CH_ALPHA_PEAK],
                "line_length_uv": per_channel[CH_LINE_LENGTH],
                "coherence": matrices[0],
                "phase_sync": matrices[1],
                "phase_measure": self._phase_measure,
                "summary_measure": self._summary_measure,
                "mean_coherence": mean_coherence,
                "mean_phase_sync": mean_phase_sync,
                "mean_connectivity": (
                    mean_coherence if self._summary_index == 0 else mean_phase_sync
                ),
                "node_strength": strength,
                "quality": quality,
                "spectra": spectra,
            },
        )

    def _window_slots(self, start: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_segment_slots` and :meth:`_block_slots` of one window, in one lookup
        (cached per pair of ring phases: a hop asks for both)."""
        layout = self._context.layout
        key = (
            (start // layout.segment_grid_samples) % self._n_seg_slots,
            (start // layout.block_samples) % self._n_blk_slots,
        )
        slots = self._window_slot_cache.get(key)
        if slots is None:
            slots = self._window_slot_cache[key] = (
                self._segment_slots(start),
                self._block_slots(start),
            )
        return slots

    def _segment_slots(self, start: int) -> np.ndarray:
        """Ring slots of the window's segments, oldest first (cached per ring phase)."""
        layout = self._context.layout
        grid = layout.segment_grid_samples
        first_key = start // grid
        phase = first_key % self._n_seg_slots
        slots = self._seg_slot_cache.get(phase)
        if slots is None:
            slots = _ring_slots(
                phase,
                layout.segments_per_window,
                layout.segment_step_samples // grid,
                self._n_seg_slots,
            )
            self._seg_slot_cache[phase] = slots
        return slots

    def _block_slots(self, start: int) -> np.ndarray:
        """Ring slots of the window's blocks, oldest first (cached per ring phase)."""
        layout = self._context.layout
        first_key = start // layout.block_samples
        phase = first_key % self._n_blk_slots
        slots = self._blk_slot_cache.get(phase)
        if slots is None:
            slots = _ring_slots(
                phase,
                layout.window_samples // layout.block_samples,
                1,
                self._n_blk_slots,
            )
            self._blk_slot_cache[phase] = slots
        return slots
