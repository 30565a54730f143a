"""The streaming feature extractor: blocks of samples in, one FeatureFrame per hop out.

Blocks of any length are cut at three kinds of events, in sample counts since the stream
started: a time-statistics block ends (every gcd(window, hop) samples), a Welch segment
ends (every gcd(hop, segment step) samples once the first segment is full), a window
ends (first at window_samples, then every hop).  Each segment is transformed and each
block summarised exactly once; a window only combines stored summaries.  The result
therefore does not depend on how the stream was chunked.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from controller.features.assemble import FrameContext, assemble_frame
from controller.features.compiled import CompiledWindows
from controller.features.config import FeaturesConfig
from controller.features.frame import FeatureFrame
from controller.features.kernels import write_scaled
from controller.features.layout import FeatureLayout
from controller.features.spectra import ChannelPairs, SegmentSpectra, segment_spectra
from controller.features.timestats import BlockStats, block_stats
from controller.jit import numba_enabled

#: Hops of samples the buffer holds beyond what a window needs (see FeatureExtractor).
COMPACTION_HOPS = 16

#: No scale checked yet: an array of its own, which no caller holds.
_NO_SCALE = np.empty(0)


def _clip_levels(
    clip_level_uv: float | Sequence[float] | np.ndarray | None, n_channels: int
) -> np.ndarray | None:
    if clip_level_uv is None:
        return None
    levels = np.broadcast_to(np.asarray(clip_level_uv, dtype=np.float64), (n_channels,)).copy()
    if not np.all(np.isfinite(levels) & (levels > 0)):
        raise ValueError(f"clip_level_uv must be finite and > 0 per channel, got {levels}")
    return levels


class FeatureExtractor:
    """Sliding-window features over a multichannel µV stream, kept up to date per push.

    ``clip_level_uv`` is the rail per channel (scalar or one per channel), usually
    ``32767 * scale_uv_per_count`` for int16 samples; a sample with |x| >= it counts as
    clipped.  None disables the clipping check.  Frame times are ``t0_s`` plus the count
    of samples pushed divided by the sampling rate.

    ``use_numba`` (default) runs each event through the compiled kernels of kernels.py
    when numba is importable: the same frames to rounding, several times faster per hop.
    False forces the numpy path (the reference the compiled one is tested against).
    """

    def __init__(
        self,
        n_channels: int,
        sampling_rate_hz: float,
        config: FeaturesConfig | None = None,
        clip_level_uv: float | Sequence[float] | np.ndarray | None = None,
        *,
        channel_names: Sequence[str] | None = None,
        t0_s: float = 0.0,
        keep_spectra: bool = False,
        use_numba: bool = True,
    ) -> None:
        if n_channels < 1:
            raise ValueError(f"n_channels={n_channels} must be >= 1")
        self._config = config if config is not None else FeaturesConfig()
        self._layout = self._config.layout(sampling_rate_hz)
        names = (
            tuple(channel_names)
            if channel_names is not None
            else tuple(f"ch{i}" for i in range(n_channels))
        )
        if len(names) != n_channels or len(set(names)) != n_channels:
            raise ValueError(f"channel_names must be {n_channels} distinct names, got {names}")
        self._n_channels = n_channels
        self._clip_level_uv = _clip_levels(clip_level_uv, n_channels)
        self._pairs = ChannelPairs.of(n_channels)
        self._context = FrameContext(
            config=self._config,
            layout=self._layout,
            pairs=self._pairs,
            channel_names=names,
            keep_spectra=keep_spectra,
        )
        layout = self._layout
        self._keep_samples = max(layout.segment_samples, layout.block_samples + 1)
        # Room for COMPACTION_HOPS hops beyond what must be kept: the buffer is compacted
        # (the kept samples copied to its start) once every so many hops, not every few.
        capacity = (
            2 * self._keep_samples + layout.block_samples + COMPACTION_HOPS * layout.hop_samples
        )
        self._buffer = np.zeros((n_channels, capacity))
        self._compiled = (
            CompiledWindows(self._context, self._clip_level_uv)
            if numba_enabled(use_numba)
            else None
        )
        #: The scale array push_counts last checked (compiled path only).
        self._checked_scale = _NO_SCALE
        self.reset(t0_s)

    @property
    def config(self) -> FeaturesConfig:
        """The configuration the extractor was built with."""
        return self._config

    @property
    def layout(self) -> FeatureLayout:
        """Sample counts and bins resolved for this sampling rate."""
        return self._layout

    @property
    def n_channels(self) -> int:
        """Number of channels each pushed block must have."""
        return self._n_channels

    @property
    def channel_names(self) -> tuple[str, ...]:
        """Channel names used in frames and flat feature names."""
        return self._context.channel_names

    @property
    def uses_numba(self) -> bool:
        """True when events go through the compiled kernels (see the class docstring)."""
        return self._compiled is not None

    @property
    def samples_pushed(self) -> int:
        """Samples per channel pushed since construction or the last reset."""
        return self._n_samples

    def reset(self, t0_s: float = 0.0) -> None:
        """Forget all samples (e.g. after a gap in the stream); times restart at ``t0_s``."""
        self._t0_s = float(t0_s)
        self._n_samples = 0
        self._buffer_origin = 0
        self._next_event_n = self._next_event()
        self._sanitized_n = 0  # compiled path: samples before this are checked and zero-filled
        self._block_invalid = np.zeros(self._n_channels, dtype=np.int64)
        self._segments: dict[int, SegmentSpectra] = {}
        self._blocks: dict[int, BlockStats] = {}

    def push(self, block_uv: np.ndarray) -> list[FeatureFrame]:
        """Add (channels, samples) µV; return the frames of the windows completed by it."""
        block = np.asarray(block_uv, dtype=np.float64)
        self._check_block(block)
        return self._push(block, None)

    def push_counts(self, counts: np.ndarray, scale_uv_per_count: np.ndarray) -> list[FeatureFrame]:
        """:meth:`push` of ``counts * scale_uv_per_count[:, None]`` (integer ADC counts, one
        scale per channel), the same frames bit for bit.

        Why: on the compiled path the products are written straight into the sample
        buffer, so a SAMPLES frame costs no intermediate µV block.
        """
        if scale_uv_per_count is self._checked_scale:  # the same array as last time
            scale = scale_uv_per_count
        else:
            scale = np.asarray(scale_uv_per_count, dtype=np.float64)
            if self._compiled is None:
                return self.push(counts * scale[:, None])
            if scale.shape != (self._n_channels,):
                raise ValueError(f"scale_uv_per_count must have {self._n_channels} entries")
            # A float64 array is its own asarray: recognised by identity next time.
            self._checked_scale = scale if scale is scale_uv_per_count else _NO_SCALE
        self._check_block(counts)
        return self._push(counts, scale)

    def _check_block(self, block: np.ndarray) -> None:
        if block.ndim != 2 or block.shape[0] != self._n_channels:
            raise ValueError(
                f"block must be shaped ({self._n_channels}, n_samples), got {block.shape}"
            )

    def _push(self, block: np.ndarray, scale: np.ndarray | None) -> list[FeatureFrame]:
        """The event loop of :meth:`push`; ``scale``: ``block`` holds counts to scale."""
        frames: list[FeatureFrame] = []
        position = 0
        total = block.shape[1]
        while position < total:
            take = min(total - position, self._next_event_n - self._n_samples)
            self._write(block if take == total else block[:, position : position + take], scale)
            position += take
            if self._n_samples == self._next_event_n:
                if self._compiled is not None:
                    self._handle_events_compiled(self._compiled, frames)
                else:
                    self._handle_events(frames)
                self._next_event_n = self._next_event()
        return frames

    # -- internals -------------------------------------------------------------------

    def _next_event(self) -> int:
        """Sample count of the next event (block, segment or window end) after now."""
        layout = self._layout
        n = self._n_samples
        block_end = (n // layout.block_samples + 1) * layout.block_samples
        seg_n, grid = layout.segment_samples, layout.segment_grid_samples
        segment_end = seg_n if n < seg_n else seg_n + ((n - seg_n) // grid + 1) * grid
        win_n, hop = layout.window_samples, layout.hop_samples
        window_end = win_n if n < win_n else win_n + ((n - win_n) // hop + 1) * hop
        return min(block_end, segment_end, window_end)

    def _write(self, piece: np.ndarray, scale: np.ndarray | None = None) -> None:
        """Append a piece that never crosses an event, zero-filling invalid samples.

        On the compiled path the piece is copied as is (counts times ``scale`` when given)
        and checked in one kernel call at the next event (:meth:`_handle_events_compiled`):
        with 10-sample SAMPLES frames that saves a call per frame.  Unchecked samples never
        reach a summary, and they are fewer than a block, so compaction always keeps them.
        """
        used = self._n_samples - self._buffer_origin
        width = piece.shape[1]
        if used + width > self._buffer.shape[1]:
            keep = min(self._keep_samples, used)
            self._buffer[:, :keep] = self._buffer[:, used - keep : used]
            self._buffer_origin = self._n_samples - keep
            used = keep
        if scale is not None:  # counts, compiled path only
            write_scaled(self._buffer, used, piece, scale)
        elif self._compiled is not None:
            self._buffer[:, used : used + width] = piece
        else:
            valid = np.abs(piece) <= self._config.max_abs_uv  # False for NaN and inf too
            if not valid.all():
                self._block_invalid += piece.shape[1] - np.count_nonzero(valid, axis=1)
                piece = np.where(valid, piece, 0.0)
            self._buffer[:, used : used + width] = piece
        self._n_samples += width

    def _recent(self, n_back: int, length: int) -> np.ndarray:
        """Samples [n - n_back, n - n_back + length) from the buffer (a view)."""
        start = self._n_samples - n_back - self._buffer_origin
        return self._buffer[:, start : start + length]

    def _handle_events(self, frames: list[FeatureFrame]) -> None:
        """The numpy path's events (the compiled path: :meth:`_handle_events_compiled`)."""
        layout = self._layout
        n = self._n_samples
        block_n = layout.block_samples
        if n % block_n == 0:
            previous = self._recent(block_n + 1, 1)[:, 0] if n > block_n else None
            self._blocks[n // block_n - 1] = block_stats(
                self._recent(block_n, block_n),
                previous,
                self._clip_level_uv,
                self._block_invalid,
            )
            self._block_invalid[:] = 0
        seg_n, grid = layout.segment_samples, layout.segment_grid_samples
        if n >= seg_n and (n - seg_n) % grid == 0:
            self._segments[(n - seg_n) // grid] = segment_spectra(
                self._recent(seg_n, seg_n), layout, self._pairs, self._config.phase_measure
            )
        win_n, hop = layout.window_samples, layout.hop_samples
        if n >= win_n and (n - win_n) % hop == 0:
            frames.append(self._emit(n - win_n))

    def _handle_events_compiled(
        self, compiled: CompiledWindows, frames: list[FeatureFrame]
    ) -> None:
        """_handle_events through the kernels: same events, summaries kept in rings.

        First the samples written since the last event are checked (see :meth:`_write`).
        """
        layout = self._layout
        n = self._n_samples
        end = n - self._buffer_origin  # buffer column just after the newest sample
        block_n = layout.block_samples
        seg_n, grid = layout.segment_samples, layout.segment_grid_samples
        win_n, hop = layout.window_samples, layout.hop_samples
        window_start = n - win_n if n >= win_n and (n - win_n) % hop == 0 else -1
        fs = layout.sampling_rate_hz
        frame = compiled.event(
            self._buffer,
            self._sanitized_n - self._buffer_origin,
            end,
            self._config.max_abs_uv,
            self._block_invalid,
            n // block_n - 1 if n % block_n == 0 else -1,
            n > block_n,
            (n - seg_n) // grid if n >= seg_n and (n - seg_n) % grid == 0 else -1,
            window_start,
            self._t0_s + window_start / fs,
            self._t0_s + n / fs,
        )
        self._sanitized_n = n
        if frame is not None:
            frames.append(frame)

    def _emit(self, start: int) -> FeatureFrame:
        layout = self._layout
        grid, block_n = layout.segment_grid_samples, layout.block_samples
        segment_keys = [
            (start + k * layout.segment_step_samples) // grid
            for k in range(layout.segments_per_window)
        ]
        block_keys = range(start // block_n, (start + layout.window_samples) // block_n)
        fs = layout.sampling_rate_hz
        frame = assemble_frame(
            self._context,
            [self._segments[key] for key in segment_keys],
            [self._blocks[key] for key in block_keys],
            t_start_s=self._t0_s + start / fs,
            t_end_s=self._t0_s + (start + layout.window_samples) / fs,
        )
        next_start = start + layout.hop_samples
        self._segments = {k: v for k, v in self._segments.items() if k * grid >= next_start}
        self._blocks = {k: v for k, v in self._blocks.items() if k * block_n >= next_start}
        return frame
