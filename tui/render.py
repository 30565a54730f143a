"""Small text drawings the widgets share: gauges, sparklines, colours of states."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from rich.text import Text

LEVELS = "▁▂▃▄▅▆▇█"

#: Colour of each detector state (and of link states that mean the same).
STATE_STYLE = {
    "CALIBRATING": "bold cyan",
    "NORMAL": "bold green",
    "SUSPECT": "bold yellow",
    "PRODROME": "bold magenta",
    "UNKNOWN": "bold red",
}
LINK_STYLE = {
    "idle": "dim",
    "connecting": "yellow",
    "ready": "bold green",
    "backoff": "bold red",
    "stopping": "yellow",
    "stopped": "dim",
    "failed": "bold red reverse",
}


def gauge(used: float, limit: float | None, width: int = 20) -> Text:
    """``used`` against ``limit`` as a bar, green → yellow at 75 % → red at 100 %."""
    text = Text()
    if limit is None or not limit > 0 or not math.isfinite(limit):
        text.append("·" * width, "dim")
        return text
    frac = max(0.0, used / limit)
    filled = min(width, round(frac * width))
    style = "green" if frac < 0.75 else "yellow" if frac < 1.0 else "bold red"
    text.append("█" * filled, style)
    text.append("░" * (width - filled), "grey35")
    return text


def sparkline(values: np.ndarray, lo: float, hi: float) -> str:
    """One character per value: its level between ``lo`` and ``hi`` (clipped)."""
    if values.size == 0:
        return ""
    span = hi - lo if hi > lo else 1.0
    idx = np.clip(((values - lo) / span * (len(LEVELS) - 1)).round(), 0, len(LEVELS) - 1)
    return "".join(LEVELS[int(i)] for i in idx)


def columns(values: np.ndarray, width: int) -> np.ndarray:
    """``values`` resampled to ``width`` columns (mean of each column's points)."""
    n = values.shape[-1]
    if n == 0 or width <= 0:
        return np.zeros((*values.shape[:-1], 0))
    if n <= width:
        return values
    edges = np.linspace(0, n, width + 1).astype(int)
    return np.add.reduceat(values, edges[:-1], axis=-1) / np.diff(edges)


def any_in_columns(flags: np.ndarray, width: int) -> np.ndarray:
    """True for each of ``width`` columns that holds a True flag."""
    n = flags.shape[0]
    if n <= width:
        return flags
    edges = np.linspace(0, n, width + 1).astype(int)
    return np.add.reduceat(flags.astype(int), edges[:-1]) > 0


def fmt(value: float | None, unit: str = "", digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}{(' ' + unit) if unit else ''}"


def labelled(rows: Sequence[tuple[str, Text | str]], width: int = 11) -> Text:
    out = Text()
    for i, (label, value) in enumerate(rows):
        if i:
            out.append("\n")
        out.append(f"{label:<{width}}", "bold")
        out.append(value if isinstance(value, Text) else Text(value))
    return out
