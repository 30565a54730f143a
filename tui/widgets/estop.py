"""The E-stop banner: always on screen, the key to press, and the latch until cleared."""

from __future__ import annotations

from rich.text import Text

from controller.observations import NodeSnapshot
from tui.widgets.panel import Panel


class EstopBanner(Panel):
    def show(self, snap: NodeSnapshot, clearing: bool) -> None:
        self.set_class(snap.estop_latched, "latched")
        self.set_class(snap.estop_hold and not snap.estop_latched, "held")
        text = Text()
        if snap.estop_latched:
            text.append(" ■ E-STOP LATCHED ", "bold white on red")
            if clearing:
                text.append(
                    "  clear the latch? press y to clear, any other key keeps it  ",
                    "bold black on yellow",
                )
            else:
                text.append(
                    "  output off; shift+r then y clears the latch (stimulation stays off until u)"
                )
        elif snap.estop_hold:
            text.append(" E-STOP CLEARED ", "bold black on yellow")
            text.append("  therapy held: u resumes the policy   e: E-STOP")
        else:
            text.append(" e: E-STOP ", "bold white on dark_red")
            text.append("  one press, no dialog (ctrl+e while typing)")
        self.draw(text)
