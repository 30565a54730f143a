"""Reconnection delays: one formula for every shell that reconnects."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Initial delay, doubling per failed attempt, capped at ``max_s``."""

    initial_s: float = 0.5
    max_s: float = 10.0

    def delay_s(self, attempt: int) -> float:
        return min(self.initial_s * 2.0 ** min(attempt, 60), self.max_s)
