"""Shared time constants, defined once for every package."""

from __future__ import annotations

SECONDS_PER_HOUR = 3600.0
SECONDS_PER_DAY = 86_400.0
