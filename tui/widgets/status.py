"""The status line: time, the simulated device's pace, recording and audit files."""

from __future__ import annotations

from rich.text import Text

from tui.session import ConsoleView
from tui.widgets.panel import Panel


class StatusLine(Panel):
    def show(self, view: ConsoleView, note: str) -> None:
        snap = view.snapshot
        text = Text()
        text.append(f" t {snap.t_s:9.1f} s ", "bold")
        clock = view.pace
        if clock is not None:
            if clock.jumping:
                pace = "fast-forward"
            elif clock.paused:
                pace = "PAUSED"
            else:
                pace = f"×{clock.rate:g}"
            text.append(f" sim {pace} ", "reverse")
        text.append(f"  policy {snap.policy}{' (manual)' if snap.manual else ''}")
        audit = snap.audit_path or "off"
        text.append(f"  audit {audit} ({snap.audit_records} records")
        text.append(f", {snap.audit_overflows} waits)" if snap.audit_overflows else ")")
        if snap.record_path:
            text.append(f"  EDF+ {snap.record_path}{' ● REC' if snap.recording else ' (closed)'}")
        else:
            text.append("  EDF+ off (r records)")
        if note:
            text.append(f"  │ {note}", "italic")
        self.draw(text)
