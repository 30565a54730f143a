"""The audit log's tail: decisions, commands, ACK/NACK, faults, as the node recorded them."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from tui.widgets.panel import Panel

#: Records too frequent to be worth a line (the score trace and the panels show them).
_QUIET = frozenset({"stim_state", "status", "heartbeat"})
_STYLE = {
    "estop": "bold red",
    "nack": "red",
    "timeout": "red",
    "refusal": "yellow",
    "clamp": "yellow",
    "fault": "red",
    "command": "cyan",
    "ack": "green",
    "detector_state": "magenta",
}
_SKIP_FIELDS = frozenset({"kind", "t", "seq", "prev", "hash"})


def describe_record(record: dict[str, Any]) -> str:
    fields = " ".join(f"{k}={_short(v)}" for k, v in record.items() if k not in _SKIP_FIELDS)
    return f"{record.get('t', 0.0):9.1f} {record.get('kind', '?'):<15} {fields}"


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    text = str(value)
    return text if len(text) <= 40 else text[:39] + "…"


class AuditTail(Panel):
    def show(self, tail: tuple[dict[str, Any], ...], lines: int, width: int) -> None:
        records = [r for r in tail if r.get("kind") not in _QUIET]
        text = Text()
        for i, record in enumerate(records[-max(1, lines) :]):
            if i:
                text.append("\n")
            text.append(
                describe_record(record)[: max(20, width)], _STYLE.get(str(record.get("kind")), "")
            )
        self.draw(text if records else Text("no records yet", "dim"))
