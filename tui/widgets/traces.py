"""Live traces: every channel scrolling, labels from DEVICE_INFO, a µV scale per channel,
a selectable time span, and the stretches where the device reported stimulation."""

from __future__ import annotations

import math

import numpy as np
from rich.text import Text

from tui.render import any_in_columns, columns, sparkline
from tui.sample_tap import TraceWindow
from tui.widgets.panel import Panel

#: Time spans the operator steps through (seconds).
SPANS_S = (2.0, 5.0, 10.0, 30.0, 60.0)
LABEL_WIDTH = 7
SCALE_WIDTH = 9


def peaks_uv(window_uv: np.ndarray) -> np.ndarray:
    """The 98th percentile of |µV| per channel (one pass over all channels)."""
    if window_uv.shape[-1] == 0:
        return np.ones(window_uv.shape[0])
    magnitude = np.abs(window_uv)
    k = min(magnitude.shape[1] - 1, int(0.98 * magnitude.shape[1]))
    return np.partition(magnitude, k, axis=1)[:, k]


def nice_scale_uv(peak: float) -> float:
    """A round µV half-range at or above ``peak`` (1, 2, 5 × 10^n)."""
    if not peak > 0 or not math.isfinite(peak):
        return 1.0
    exponent = math.floor(math.log10(peak))
    for step in (1.0, 2.0, 5.0, 10.0):
        if step * 10**exponent >= peak:
            return step * 10**exponent
    return 10.0 ** (exponent + 1)


class TracesPanel(Panel):
    def show(self, window: TraceWindow | None, span_s: float, width: int, height: int) -> None:
        text = Text()
        if window is None or window.t_s.size == 0:
            self.draw(Text("waiting for samples…", "dim"))
            return
        plot_width = max(10, width - LABEL_WIDTH - SCALE_WIDTH - 2)
        rows = max(1, height - 2)
        n = len(window.labels)
        shown = n if n <= rows else rows - 1
        traces = columns(window.uv[:shown], plot_width)
        peaks = peaks_uv(window.uv[:shown])
        for ch in range(shown):
            trace = traces[ch]
            scale = nice_scale_uv(float(peaks[ch]))
            text.append(f"{window.labels[ch][: LABEL_WIDTH - 1]:<{LABEL_WIDTH}}", "bold")
            text.append(f"±{scale:>5g} µV ", "dim")
            text.append(sparkline(trace, -scale, scale), "green")
            text.append("\n")
        if shown < n:
            text.append(f"… {n - shown} more channels (a taller terminal shows them)\n", "dim")
        stim = any_in_columns(window.stimulating, plot_width)
        text.append(f"{'stim':<{LABEL_WIDTH + SCALE_WIDTH}}", "bold")
        text.append("".join("━" if on else " " for on in stim), "bold magenta")
        t0, t1 = float(window.t_s[0]), float(window.t_s[-1])
        text.append(f"\n{'':<{LABEL_WIDTH + SCALE_WIDTH}}{t0:.1f} s", "dim")
        right = f"{t1:.1f} s  (span {span_s:g} s, t: change)"
        pad = max(1, plot_width - len(f"{t0:.1f} s") - len(right))
        text.append(" " * pad + right, "dim")
        self.draw(text)
