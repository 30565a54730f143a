"""The base of every console widget: it keeps what it last drew (for tests and exports)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class Panel(Static):
    text: Text = Text()

    def draw(self, text: Text) -> None:
        if text == self.text:
            return  # unchanged: no new layout, no repaint
        self.text = text
        self.update(text)

    @property
    def plain(self) -> str:
        return self.text.plain
