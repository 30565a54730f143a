"""Lockstep pumping of two sans-IO peers in virtual time (PX4-SITL style).

Both peers expose ``receive_data(data, now)``, ``data_to_send()`` and
``next_deadline()``; time only moves to the earliest deadline of either, and
every byte crosses through the real codec and sessions, synchronously, with no
event loop. Used by tests, the HIL rig's self-test and the headless simulator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from firmware_bridge.clock import VirtualClock

#: Transform applied to bytes in flight: (data, now) -> list of (deliver_at, chunk).
Wire = Callable[[bytes, float], list[tuple[float, bytes]]]


class LockstepPeer(Protocol):
    def receive_data(self, data: bytes, now: float) -> object: ...

    def data_to_send(self) -> bytes: ...

    def next_deadline(self) -> float | None: ...

    def on_time(self, now: float) -> object:
        """Run timers due at ``now`` (``handle_timeout`` or ``advance_to``)."""
        ...


class LockstepPump:
    """Moves bytes between two peers and time to the next deadline."""

    def __init__(
        self,
        a: LockstepPeer,
        b: LockstepPeer,
        clock: VirtualClock,
        a_to_b: Wire | None = None,
        b_to_a: Wire | None = None,
    ) -> None:
        self.a, self.b, self.clock = a, b, clock
        self._wires = {id(a): a_to_b, id(b): b_to_a}
        self._in_flight: list[tuple[float, int, LockstepPeer, bytes]] = []
        self._order = 0
        self.bytes_a_to_b = 0
        self.bytes_b_to_a = 0

    def _post(self, sender: LockstepPeer, receiver: LockstepPeer, now: float) -> bool:
        data = sender.data_to_send()
        if not data:
            return False
        if sender is self.a:
            self.bytes_a_to_b += len(data)
        else:
            self.bytes_b_to_a += len(data)
        wire = self._wires[id(sender)]
        chunks = [(now, data)] if wire is None else wire(data, now)
        for at, chunk in chunks:
            self._order += 1
            self._in_flight.append((at, self._order, receiver, chunk))
        return True

    def _exchange(self, now: float) -> None:
        """Deliver everything due at ``now`` until both peers are quiet."""
        for _ in range(1000):
            moved = self._post(self.a, self.b, now) | self._post(self.b, self.a, now)
            due = sorted(m for m in self._in_flight if m[0] <= now)
            if not due and not moved:
                return
            self._in_flight = [m for m in self._in_flight if m[0] > now]
            for _, _, receiver, chunk in due:
                receiver.receive_data(chunk, now)
        raise RuntimeError("peers kept talking at one instant for 1000 rounds")

    def next_time(self) -> float | None:
        times = [t for t in (self.a.next_deadline(), self.b.next_deadline()) if t is not None]
        times.extend(m[0] for m in self._in_flight)
        return min(times) if times else None

    def step(self, limit_s: float) -> float:
        """Advance to the next event (not past ``limit_s``); returns the new time."""
        now = self.clock.now()
        nxt = self.next_time()
        target = limit_s if nxt is None else min(max(nxt, now), limit_s)
        self.clock.advance_to(target)
        self.a.on_time(target)
        self.b.on_time(target)
        self._exchange(target)
        return target

    def run_until(self, t_s: float, stop: Callable[[], bool] | None = None) -> None:
        """Run to virtual time ``t_s`` (or until ``stop()`` is true after a step)."""
        self._exchange(self.clock.now())
        stalled = 0
        while self.clock.now() < t_s:
            before = self.clock.now()
            self.step(t_s)
            if stop is not None and stop():
                return
            stalled = stalled + 1 if self.clock.now() == before else 0
            if stalled > 10_000:
                raise RuntimeError(
                    f"virtual time stuck at {before} s: a peer's deadline does not move"
                )


class RecordingPeer:
    """Adapts a sans-IO session (``handle_timeout`` returning events) to the pump and
    keeps every event it produced, in order."""

    def __init__(self, session: _EventSession) -> None:
        self.session = session
        self.events: list[object] = []

    def receive_data(self, data: bytes, now: float) -> None:
        self.events.extend(self.session.receive_data(data, now))

    def data_to_send(self) -> bytes:
        return self.session.data_to_send()

    def next_deadline(self) -> float | None:
        return self.session.next_deadline()

    def on_time(self, now: float) -> None:
        self.events.extend(self.session.handle_timeout(now))

    def of_type(self, kind: type) -> list[object]:
        return [e for e in self.events if isinstance(e, kind)]


class _EventSession(Protocol):
    def receive_data(self, data: bytes, now: float) -> list[Any]: ...

    def data_to_send(self) -> bytes: ...

    def next_deadline(self) -> float | None: ...

    def handle_timeout(self, now: float) -> list[Any]: ...
