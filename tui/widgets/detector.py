"""Detector: state (colour-coded), the score over the last minutes against both
thresholds, calibration progress, blanking."""

from __future__ import annotations

import numpy as np
from rich.text import Text

from tui.render import STATE_STYLE, columns, gauge
from tui.session import ConsoleView, ScorePoint
from tui.widgets.panel import Panel

#: How far back the score trace reaches.
SCORE_SPAN_S = 300.0


class DetectorPanel(Panel):
    def show(self, view: ConsoleView, width: int) -> None:
        snap = view.snapshot
        out = snap.detector
        lower, upper = snap.thresholds
        text = Text()
        state = "—" if out is None else out.state.value
        text.append(f" {state} ", STATE_STYLE.get(state, "bold") + " reverse")
        if out is not None:
            score = "—" if out.score is None else f"{out.score:+.2f}"
            text.append(f"  score {score}  (lower {lower:.3g}, upper {upper:.3g})")
            if out.blanked:
                text.append("  BLANKED", "bold yellow")
            text.append(f"\n{out.good_channels} good channels")
            if out.reason:
                text.append(f"  {out.reason}"[: max(10, width - 20)], "dim")
        else:
            text.append("  waiting for the first feature window")
        text.append("\ncalibration ")
        calibrated = snap.calibration_elapsed_s
        text.append(gauge(calibrated, snap.calibration_s, max(10, width - 34)))
        text.append(f" {calibrated:.0f}/{snap.calibration_s:.0f} s")
        text.append("\n")
        text.append(_score_trace(view.scores, lower, upper, max(10, width - 8)))
        self.draw(text)


def _score_trace(scores: tuple[ScorePoint, ...], lower: float, upper: float, width: int) -> Text:
    """Three rows: above the upper threshold, between, below the lower one; one column
    per time slice of the last ``SCORE_SPAN_S``."""
    points = [p for p in scores if p.score is not None]
    text = Text()
    if not points:
        text.append("score trace: no scores yet", "dim")
        return text
    t_end = points[-1].t_s
    recent = np.array([p.score for p in points if p.t_s >= t_end - SCORE_SPAN_S], dtype=float)
    cols = columns(recent, width)
    rows = (
        (f"> {upper:<4.2g}", lambda s: s > upper, "magenta"),
        ("  mid ", lambda s: lower <= s <= upper, "yellow"),
        (f"< {lower:<4.2g}", lambda s: s < lower, "green"),
    )
    for i, (label, inside, style) in enumerate(rows):
        if i:
            text.append("\n")
        text.append(label, "dim")
        text.append("".join("●" if inside(s) else "·" for s in cols), style)
    text.append(f"\nlast {min(SCORE_SPAN_S, t_end - points[0].t_s):.0f} s of scores", "dim")
    return text
