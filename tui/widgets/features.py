"""Features: band powers per channel as a heat map, coherence per band."""

from __future__ import annotations

import numpy as np
from rich.text import Text

from controller.observations import NodeSnapshot
from tui.render import LEVELS
from tui.widgets.panel import Panel


class FeaturesPanel(Panel):
    def show(self, snap: NodeSnapshot, max_rows: int) -> None:
        frame = snap.features
        text = Text()
        if frame is None:
            self.draw(Text("no feature window yet", "dim"))
            return
        bands = frame.band_names
        rel = np.asarray(frame.relative_power, dtype=float)  # (channels, bands)
        text.append(
            f"relative band power, window {frame.t_start_s:.0f}-{frame.t_end_s:.0f} s\n", "bold"
        )
        text.append(" " * 7 + "".join(f"{b[:5]:>6}" for b in bands))
        shown = min(len(frame.channel_names), max(1, max_rows - 3))
        for ch in range(shown):
            text.append(f"\n{frame.channel_names[ch][:6]:<6} ")
            for b in range(len(bands)):
                value = float(rel[ch, b]) if np.isfinite(rel[ch, b]) else 0.0
                level = LEVELS[min(len(LEVELS) - 1, int(value * len(LEVELS)))]
                text.append(f"{level}{value:4.2f} ", _heat(value))
        if shown < len(frame.channel_names):
            text.append(f"\n… {len(frame.channel_names) - shown} more channels", "dim")
        coh = np.asarray(frame.mean_coherence, dtype=float)
        text.append(f"\n{'coher.':<7}", "bold")
        text.append("".join(f"{c:5.2f} " for c in coh))
        text.append(" mean pairwise coherence per band", "dim")
        self.draw(text)


def _heat(value: float) -> str:
    if value < 0.1:
        return "grey50"
    if value < 0.25:
        return "cyan"
    if value < 0.4:
        return "yellow"
    return "bold red"
