"""Rolling 24 h accounting of what the device reports it delivered: on-time, charge, sessions.

Everything is counted from OBSERVED device state (STIM_STATE), never from what the
controller asked for (DESIGN principle 4). Sums are kept in one-minute buckets so memory
stays bounded over days; a bucket counts while any part of it lies in the window, so the
totals can only over-estimate (the safe side).
"""

from __future__ import annotations

import math
from collections import deque

from firmware_bridge.messages import StimState
from firmware_bridge.units import SECONDS_PER_DAY

BUCKET_S = 60.0


class RollingSum:
    """Sum of amounts added in the last ``window_s`` seconds, in ``bucket_s`` buckets.

    The exact sum (``math.fsum``) of the buckets is kept until a bucket is added to or
    dropped: the envelope asks for it at every detector window, and it changes at most
    once a minute.
    """

    def __init__(self, window_s: float = SECONDS_PER_DAY, bucket_s: float = BUCKET_S) -> None:
        self.window_s = window_s
        self.bucket_s = bucket_s
        self._buckets: deque[list[float]] = deque()  # [bucket start s, amount]
        self._total: float | None = 0.0  # fsum of the buckets; None: to be summed again

    def add(self, t_s: float, amount: float) -> None:
        if amount <= 0.0:
            return
        start = math.floor(t_s / self.bucket_s) * self.bucket_s
        if self._buckets and self._buckets[-1][0] >= start:
            self._buckets[-1][1] += amount  # same bucket (or time went back: keep it counted)
        else:
            self._buckets.append([start, amount])
        self._total = None

    def total(self, t_s: float) -> float:
        horizon = t_s - self.window_s
        buckets = self._buckets
        while buckets and buckets[0][0] + self.bucket_s <= horizon:
            buckets.popleft()
            self._total = None
        if self._total is None:
            self._total = math.fsum(amount for _, amount in buckets)
        return self._total


class RollingCount:
    """Number of events in the last ``window_s`` seconds (exact times, pruned on query)."""

    def __init__(self, window_s: float = SECONDS_PER_DAY) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()

    def add(self, t_s: float) -> None:
        self._times.append(t_s)

    def count(self, t_s: float) -> int:
        horizon = t_s - self.window_s
        while self._times and self._times[0] <= horizon:
            self._times.popleft()
        return len(self._times)


def is_delivering(state: StimState) -> bool:
    """Current flows: amplitude above zero (a non-number counts as delivering: safe side)."""
    amplitude = state.amplitude_ma
    return not math.isfinite(amplitude) or amplitude > 0.0


def is_active(state: StimState) -> bool:
    """Part of a stimulation session: enabled, or still delivering while ramping down."""
    return state.enabled or is_delivering(state)


class DeliveryAccounting:
    """On-time and charge delivered in the rolling 24 h window, from STIM_STATE reports.

    ``stale_cap_s`` bounds how long one report is trusted: a device reports at least
    once a second while enabled (docs/protocol.md STIM_STATE) and stops on its watchdog
    when the controller is silent, so a longer gap (link loss) cannot be stimulation time.
    The cumulative charge counter stays exact across any gap.
    """

    def __init__(self, stale_cap_s: float, window_s: float = SECONDS_PER_DAY) -> None:
        self.stale_cap_s = stale_cap_s
        self._on_time = RollingSum(window_s)
        self._charge = RollingSum(window_s)
        self._last_state: StimState | None = None
        self._last_t_s: float | None = None
        self._last_charge_uc: float | None = None

    def observe(self, state: StimState, t_s: float) -> None:
        last_t_s = self._last_t_s
        if (
            self._last_state is not None
            and last_t_s is not None
            and is_delivering(self._last_state)
        ):
            self._on_time.add(t_s, min(t_s - last_t_s, self.stale_cap_s))
        charge = state.delivered_charge_uc
        if math.isfinite(charge) and charge >= 0.0:
            if self._last_charge_uc is not None:
                # The counter is cumulative since power-up; a smaller value means the
                # device restarted, and everything it reports was delivered since then.
                delta = charge - self._last_charge_uc if charge >= self._last_charge_uc else charge
                self._charge.add(t_s, delta)
            self._last_charge_uc = charge
        self._last_state = state
        self._last_t_s = t_s

    @property
    def delivering(self) -> bool:
        """The last report said current flows (on-time grows until the next report)."""
        return self._last_state is not None and is_delivering(self._last_state)

    def on_time_s(self, t_s: float) -> float:
        """Counted on-time plus the time since the last report if it said delivering."""
        projected = 0.0
        last_t_s = self._last_t_s
        if (
            self._last_state is not None
            and last_t_s is not None
            and is_delivering(self._last_state)
            and t_s > last_t_s
        ):
            projected = min(t_s - last_t_s, self.stale_cap_s)
        return self._on_time.total(t_s) + projected

    def charge_uc(self, t_s: float) -> float:
        return self._charge.total(t_s)
