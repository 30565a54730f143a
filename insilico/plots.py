"""PNG figures for ``neurostim sim --plot`` and ``neurostim trial --plot``.

Only the object API is used (``Figure`` + ``FigureCanvasAgg``): importing or calling
this module never selects a global backend or opens a window, so it is safe in
headless runs, in worker processes and next to a TUI that uses pyplot elsewhere.

Every panel tolerates degenerate reports (no attacks, no detections, scores that
are all None, a single patient or policy, zero energy): a plot of an uneventful run
is still a valid, readable figure rather than an exception.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from insilico.report import (
    MeanCI,
    Scores,
    SimReport,
    Timeline,
    TrialAggregate,
    TrialEntry,
    TrialReport,
)

__all__ = ["plot_sim", "plot_trial"]

_DPI = 110
_S_PER_H = 3600.0

# Ground-truth phases. Interictal stays white so that only the eventful parts of the
# cycle draw the eye; unknown phase names fall back to a neutral grey.
PHASE_COLOURS: dict[str, str] = {
    "interictal": "#ffffff",
    "prodrome": "#f6c85f",
    "attack": "#d62728",
    "postdrome": "#9ecae1",
    "refractory": "#e5e5e5",
}
_OTHER_PHASE_COLOUR = "#bdbdbd"

# Detector states, in the order of escalation (the legend follows this order).
STATE_COLOURS: dict[str, str] = {
    "CALIBRATING": "#bdbdbd",
    "NORMAL": "#74c476",
    "SUSPECT": "#fd8d3c",
    "PRODROME": "#cb181d",
    "UNKNOWN": "#6a51a3",
}
_OTHER_STATE_COLOUR = "#525252"

_ATTACK_COLOUR = "#000000"  # black: visible on the red attack span
_AURA_COLOUR = "#54278f"
_SCORE_COLOUR = "#1f4e79"
_DETECTION_COLOUR = "#e6550d"
_NA = "n/a"


# --------------------------------------------------------------------------- helpers


def _save(fig: Figure, path: str | Path) -> None:
    """Render with the Agg canvas explicitly (no pyplot, no global backend)."""
    FigureCanvasAgg(fig)
    fig.savefig(Path(path), dpi=_DPI, format="png")


def _fmt(value: float | None, spec: str = ".2f", unit: str = "") -> str:
    """Format a possibly missing (None or non-finite) number; missing -> "n/a"."""
    if value is None or not math.isfinite(value):
        return _NA
    return f"{value:{spec}}{unit}"


def _count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"


def _hours(seconds: Iterable[float]) -> np.ndarray:
    return np.asarray(list(seconds), dtype=float) / _S_PER_H


def _runs(labels: Sequence[str]) -> list[tuple[int, int, str]]:
    """Maximal runs of equal labels as (first index, last index, label)."""
    runs: list[tuple[int, int, str]] = []
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            runs.append((start, i - 1, labels[start]))
            start = i
    return runs


def _ordered(names: Sequence[str], canonical: dict[str, str]) -> list[str]:
    """``names`` in the canonical (dict) order first, then unknown names as seen."""
    return [n for n in canonical if n in names] + [n for n in names if n not in canonical]


def _note(ax: Axes, text: str) -> None:
    """A grey centred note in an axes that has nothing to show (instead of a blank box)."""
    ax.text(
        0.5,
        0.5,
        text,
        transform=ax.transAxes,
        ha="center",
        va="center",
        color="grey",
        fontsize=9,
        style="italic",
        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8},
        zorder=10,
    )


def _x_limits_h(report: SimReport) -> tuple[float, float]:
    """The run's extent in hours; falls back to the data, then to one hour."""
    ends = [report.virtual_s, *report.timeline.t_s[-1:], *(p.end_s for p in report.phases)]
    end_h = max((e for e in ends if math.isfinite(e)), default=0.0) / _S_PER_H
    return 0.0, end_h if end_h > 0.0 else 1.0


def _mark_attack_onsets(ax: Axes, report: SimReport) -> None:
    """Vertical lines at every attack onset, so all stacked panels line up on them.

    Aura attacks are dashed and purple, attacks without aura solid and black.
    """
    for attack in report.attacks:
        ax.axvline(
            attack.t_s / _S_PER_H,
            color=_AURA_COLOUR if attack.aura else _ATTACK_COLOUR,
            linestyle="--" if attack.aura else "-",
            linewidth=1.0,
            alpha=0.8,
            zorder=3,
        )


def _outside_legend(ax: Axes, handles: Sequence[Artist], title: str | None = None) -> None:
    """A small legend right of the axes (keeps the traces uncovered)."""
    if handles:
        ax.legend(
            handles=list(handles),
            loc="center left",
            bbox_to_anchor=(1.01, 0.5),
            fontsize=7,
            title=title,
            title_fontsize=7,
            frameon=False,
        )


# ------------------------------------------------------------------------ sim panels


def _phase_panel(ax: Axes, report: SimReport) -> None:
    """Ground truth: phase spans, attack onsets and CSD (aura) onsets."""
    seen: list[str] = []
    for span in report.phases:
        name = span.phase.lower()
        if name not in seen:
            seen.append(name)
        if name == "interictal":
            continue  # white: nothing to draw
        ax.axvspan(
            span.start_s / _S_PER_H,
            span.end_s / _S_PER_H,
            color=PHASE_COLOURS.get(name, _OTHER_PHASE_COLOUR),
            linewidth=0,
            zorder=1,
        )
    _mark_attack_onsets(ax, report)
    aura_h = _hours(g.t_s for g in report.ground_truth if g.kind == "aura_onset")
    if aura_h.size:
        ax.plot(
            aura_h,
            np.full(aura_h.size, 0.5),
            linestyle="none",
            marker="*",
            markersize=10,
            color=_AURA_COLOUR,
            zorder=4,
        )
    ax.set_yticks([])
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("ground\ntruth", fontsize=8)

    handles: list[Artist] = [
        Patch(
            facecolor=PHASE_COLOURS.get(name, _OTHER_PHASE_COLOUR),
            edgecolor="grey",
            linewidth=0.5,
            label=name,
        )
        for name in _ordered(seen, PHASE_COLOURS)
    ]
    if any(not a.aura for a in report.attacks):
        handles.append(Line2D([], [], color=_ATTACK_COLOUR, label="attack onset"))
    if any(a.aura for a in report.attacks):
        handles.append(
            Line2D([], [], color=_AURA_COLOUR, linestyle="--", label="attack onset (aura)")
        )
    if aura_h.size:
        handles.append(
            Line2D([], [], color=_AURA_COLOUR, marker="*", linestyle="none", label="CSD onset")
        )
    if not report.phases and not report.attacks:
        _note(ax, "no ground-truth phases")
    _outside_legend(ax, handles)


def _score_panel(ax: Axes, report: SimReport) -> None:
    """Detector score with its hysteresis thresholds and the PRODROME detections."""
    timeline = report.timeline
    t_h = _hours(timeline.t_s)
    score = np.array([np.nan if s is None else s for s in timeline.score], dtype=float)
    n = min(t_h.size, score.size)
    handles: list[Artist] = []
    if n and np.isfinite(score[:n]).any():
        # NaN (None: calibrating, UNKNOWN, blanked) breaks the line into gaps.
        (line,) = ax.plot(t_h[:n], score[:n], color=_SCORE_COLOUR, linewidth=0.9, label="score")
        handles.append(line)
    else:
        _note(ax, "no detector score")
    handles.append(
        ax.axhline(
            timeline.upper_threshold,
            color="#cb181d",
            linestyle="--",
            linewidth=0.9,
            label=f"upper {timeline.upper_threshold:g}",
        )
    )
    handles.append(
        ax.axhline(
            timeline.lower_threshold,
            color="#238b45",
            linestyle="--",
            linewidth=0.9,
            label=f"lower {timeline.lower_threshold:g}",
        )
    )
    _mark_attack_onsets(ax, report)
    det_h = _hours(d.t_s for d in report.detections)
    if det_h.size:
        # x in data, y in axes coordinates: the markers sit on top whatever the score
        # scale. They stay clipped: an unclipped artist outside the x range would
        # stretch the constrained layout.
        (marks,) = ax.plot(
            det_h,
            np.full(det_h.size, 0.95),
            transform=ax.get_xaxis_transform(),
            linestyle="none",
            marker="v",
            markersize=7,
            color=_DETECTION_COLOUR,
            label="detection",
            zorder=5,
        )
        handles.append(marks)
    ax.margins(y=0.15)  # headroom for the detection markers
    ax.set_ylabel("score", fontsize=8)
    _outside_legend(ax, handles)


def _state_panel(ax: Axes, timeline: Timeline) -> None:
    """Detector state as a coloured strip.

    Each timeline point holds the last value of the step ending at ``t_s``, so a point
    colours the interval (t_s - step_s, t_s].
    """
    states = timeline.state[: len(timeline.t_s)]
    t_h = _hours(timeline.t_s[: len(states)])
    step_h = timeline.step_s / _S_PER_H
    for first, last, state in _runs(states):
        start = t_h[first] - step_h
        ax.broken_barh(
            [(start, t_h[last] - start)],
            (0.0, 1.0),
            facecolors=STATE_COLOURS.get(state, _OTHER_STATE_COLOUR),
            linewidth=0,
        )
    ax.set_yticks([])
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("state", fontsize=8)
    if not states:
        _note(ax, "no detector states")
    handles: list[Artist] = [
        Patch(facecolor=STATE_COLOURS.get(s, _OTHER_STATE_COLOUR), label=s)
        for s in _ordered(list(dict.fromkeys(states)), STATE_COLOURS)
    ]
    _outside_legend(ax, handles)


def _amplitude_panel(ax: Axes, report: SimReport) -> None:
    """Device-reported stimulation amplitude (a step trace: the value held in each step)."""
    timeline = report.timeline
    n = min(len(timeline.t_s), len(timeline.amplitude_ma))
    if n:
        t_h = _hours(timeline.t_s[:n])
        amp = np.asarray(timeline.amplitude_ma[:n], dtype=float)
        ax.step(t_h, amp, where="pre", color="#08519c", linewidth=0.9)
        ax.fill_between(t_h, amp, step="pre", color="#6baed6", alpha=0.4, linewidth=0)
        top = float(np.nanmax(amp)) if np.isfinite(amp).any() else 0.0
        ax.set_ylim(0.0, top * 1.1 if top > 0.0 else 1.0)
    else:
        ax.set_ylim(0.0, 1.0)
        _note(ax, "no stimulation trace")
    _mark_attack_onsets(ax, report)
    ax.set_ylabel("amplitude\n(mA)", fontsize=8)
    ax.set_xlabel("virtual time (h)")


def _scores_text(scores: Scores) -> str:
    """One line of the key outcomes; missing values read "n/a"."""
    pred, ther = scores.prediction, scores.therapy
    return (
        f"sensitivity {_fmt(pred.sensitivity)} (chance {_fmt(pred.chance_sensitivity)})"
        f"  ·  false alarms {_fmt(pred.false_alarms_per_day, unit='/day')}"
        f"  ·  {_fmt(ther.attacks_per_30d, '.1f')} attacks/30 d"
        f"  ·  TEED {_fmt(ther.teed_j, '.3g')} J"
    )


def plot_sim(report: SimReport, path: str | Path) -> None:
    """Write the timeline of one closed-loop run as a PNG.

    Four panels share the x axis (hours of virtual time): ground-truth phases with
    attack and CSD onsets, the detector score with thresholds and detections, the
    detector state strip, and the stimulation amplitude.
    """
    fig = Figure(figsize=(12.0, 7.5), layout="constrained")
    axes = fig.subplots(4, 1, sharex=True, gridspec_kw={"height_ratios": [0.8, 2.5, 0.45, 1.4]})
    ax_phase, ax_score, ax_state, ax_amp = axes
    _phase_panel(ax_phase, report)
    _score_panel(ax_score, report)
    _state_panel(ax_state, report.timeline)
    _amplitude_panel(ax_amp, report)
    ax_amp.set_xlim(*_x_limits_h(report))

    fig.suptitle(
        f"scenario {report.scenario}  ·  policy {report.policy}  ·  model {report.model}"
        f"  ·  seed {report.seed}",
        fontsize=11,
    )
    ax_phase.set_title(
        _scores_text(report.scores),
        fontsize=8,
        family="monospace",
        bbox={"boxstyle": "round,pad=0.3", "facecolor": "#f7f7f7", "edgecolor": "#bdbdbd"},
    )
    _save(fig, path)


# ---------------------------------------------------------------------- trial panels


def _policy_order(report: TrialReport) -> list[str]:
    """``report.policies`` first, then any policy that appears only in the entries."""
    extra = [e.policy for e in report.entries if e.policy not in report.policies]
    return list(dict.fromkeys([*report.policies, *extra]))


def _phenotype_order(report: TrialReport) -> list[str]:
    extra = [e.phenotype for e in report.entries if e.phenotype not in report.phenotypes]
    return [p for p in dict.fromkeys([*report.phenotypes, *extra]) if p != "all"]


def _phenotype_colours(phenotypes: Sequence[str]) -> dict[str, str]:
    """tab10 by phenotype; a single phenotype stays grey (colour would carry no meaning)."""
    if len(phenotypes) <= 1:
        return {p: "grey" for p in phenotypes}
    palette = [f"C{i}" for i in range(10)]
    return {p: palette[i % len(palette)] for i, p in enumerate(phenotypes)}


def _patient_series(
    entries: Sequence[TrialEntry], policies: Sequence[str], value: str
) -> dict[tuple[int, str], np.ndarray]:
    """Per (patient, phenotype): the ``value`` field by policy index (NaN where missing)."""
    index = {p: i for i, p in enumerate(policies)}
    series: dict[tuple[int, str], np.ndarray] = {}
    for entry in entries:
        row = series.setdefault((entry.patient, entry.phenotype), np.full(len(policies), np.nan))
        row[index[entry.policy]] = float(getattr(entry, value))
    return series


def _paired_lines(
    ax: Axes, series: dict[tuple[int, str], np.ndarray], colours: dict[str, str]
) -> None:
    """One thin line per patient across policies (markers so a lone point still shows)."""
    for (_, phenotype), row in sorted(series.items()):
        x = np.arange(row.size, dtype=float)
        ax.plot(
            x,
            row,
            color=colours.get(phenotype, "grey"),
            linewidth=0.7,
            alpha=0.45,
            marker="o",
            markersize=2.5,
            zorder=2,
        )


def _ci_errorbar(ax: Axes, x: float, ci: MeanCI, colour: str, marker: str) -> None:
    """Mean with its 95 % CI; a non-finite CI (e.g. n = 1) is drawn without a bar."""
    if not math.isfinite(ci.mean):
        return
    low = ci.mean - ci.ci95_low if math.isfinite(ci.ci95_low) else 0.0
    high = ci.ci95_high - ci.mean if math.isfinite(ci.ci95_high) else 0.0
    ax.errorbar(
        [x],
        [ci.mean],
        yerr=[[max(low, 0.0)], [max(high, 0.0)]],
        color=colour,
        marker=marker,
        markersize=6,
        capsize=4,
        linewidth=1.6,
        zorder=5,
    )


def _aggregate(
    aggregates: Sequence[TrialAggregate], policy: str, phenotype: str
) -> TrialAggregate | None:
    return next((a for a in aggregates if a.policy == policy and a.phenotype == phenotype), None)


def _policy_axis(ax: Axes, policies: Sequence[str], labels: Sequence[str] | None = None) -> None:
    ax.set_xticks(range(len(policies)), list(labels if labels is not None else policies))
    ax.set_xlim(-0.5, max(len(policies), 1) - 0.5)
    ax.set_xlabel("policy")
    ax.grid(axis="y", linewidth=0.4, alpha=0.5)


def _attacks_panel(
    ax: Axes, report: TrialReport, policies: Sequence[str], phenotypes: Sequence[str]
) -> list[Artist]:
    """Attacks per 30 d: per-patient paired lines, plus mean ± 95 % CI from the aggregates.

    The black mean is over all patients; with several phenotypes their means are
    drawn beside it, offset and in the phenotype colour. Returns legend handles.
    """
    colours = _phenotype_colours(phenotypes)
    _paired_lines(ax, _patient_series(report.entries, policies, "attacks_per_30d"), colours)
    handles: list[Artist] = []
    shown = ["all", *phenotypes] if len(phenotypes) > 1 else ["all"]
    step = min(0.12, 0.4 / len(shown))  # phenotype means sit right of the overall mean
    for k, phenotype in enumerate(shown):
        offset = k * step
        colour = "black" if phenotype == "all" else colours[phenotype]
        drawn = False
        for i, policy in enumerate(policies):
            agg = _aggregate(report.aggregates, policy, phenotype)
            if agg is not None:
                _ci_errorbar(ax, i + offset, agg.attacks_per_30d, colour, "D" if k == 0 else "o")
                drawn = True
        if drawn:
            label = "mean ± 95 % CI" if phenotype == "all" else f"mean {phenotype}"
            handles.append(Line2D([], [], color=colour, marker="D" if k == 0 else "o", label=label))
    if not report.entries:
        _note(ax, "no trial entries")
    _policy_axis(ax, policies)
    ax.set_ylabel("attacks per 30 days")
    ax.set_ylim(bottom=0.0)
    ax.set_title("attack frequency", fontsize=10)
    return handles


def _use_log_scale(values: np.ndarray) -> bool:
    """Log-like scale only when the positive values span at least two decades."""
    positive = values[np.isfinite(values) & (values > 0.0)]
    return positive.size >= 2 and float(positive.max() / positive.min()) >= 100.0


def _energy_panel(
    ax: Axes, report: TrialReport, policies: Sequence[str], phenotypes: Sequence[str]
) -> None:
    """Total electrical energy delivered (TEED, J) per patient and policy, with the mean.

    When values span decades the axis is symlog with the linear region below the
    smallest positive value, so the zeros of ``off`` and idle closed-loop runs stay
    on the plot instead of breaking a log axis. Tick labels carry the pooled TEED
    relative to open loop where the trial computed it.
    """
    series = _patient_series(report.entries, policies, "teed_j")
    _paired_lines(ax, series, _phenotype_colours(phenotypes))
    values = np.vstack(list(series.values())) if series else np.empty((0, len(policies)))
    for i in range(len(policies)):
        column = values[:, i] if values.size else np.empty(0)
        column = column[np.isfinite(column)]
        if column.size:
            ax.plot(
                [i],
                [float(column.mean())],
                color="black",
                marker="D",
                markersize=6,
                linestyle="none",
                zorder=5,
            )
    if _use_log_scale(values):
        positive = values[np.isfinite(values) & (values > 0.0)]
        ax.set_yscale("symlog", linthresh=float(positive.min()))
        ax.set_ylim(bottom=0.0)
    else:
        top = float(np.nanmax(values)) if np.isfinite(values).any() else 0.0
        ax.set_ylim(0.0, top * 1.1 if top > 0.0 else 1.0)
    labels = []
    for policy in policies:
        agg = _aggregate(report.aggregates, policy, "all")
        ratio = agg.teed_vs_open_loop if agg is not None else None
        show = ratio is not None and math.isfinite(ratio) and policy != "open_loop"
        labels.append(f"{policy}\n(×{ratio:.2g} open loop)" if show else policy)
    if not report.entries:
        _note(ax, "no trial entries")
    _policy_axis(ax, policies, labels)
    ax.set_ylabel("TEED (J)")
    ax.set_title("stimulation energy (mean: ◆)", fontsize=10)


def plot_trial(report: TrialReport, path: str | Path) -> None:
    """Write the outcome of an in-silico trial as a PNG.

    Left: attacks per 30 days by policy (paired per-patient lines and mean ± 95 % CI);
    right: delivered energy (TEED) by policy. Patients are coloured by phenotype when
    the trial has more than one.
    """
    policies = _policy_order(report)
    phenotypes = _phenotype_order(report)
    fig = Figure(figsize=(11.0, 4.8), layout="constrained")
    ax_attacks, ax_energy = fig.subplots(1, 2)
    handles = _attacks_panel(ax_attacks, report, policies, phenotypes)
    _energy_panel(ax_energy, report, policies, phenotypes)
    if len(phenotypes) > 1:
        colours = _phenotype_colours(phenotypes)
        handles += [Line2D([], [], color=colours[p], linewidth=1.0, label=p) for p in phenotypes]
    if handles:
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncol=min(len(handles), 6),
            fontsize=8,
            frameon=False,
        )
    fig.suptitle(
        f"in-silico trial: {_count(report.patients, 'patient')} × {report.days:g} days"
        f"  ·  {_count(len(policies), 'policy', 'policies')}  ·  seed {report.seed}",
        fontsize=11,
    )
    _save(fig, path)
