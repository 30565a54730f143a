"""Lockstep pumping of two sans-IO peers in virtual time (PX4-SITL style).

Both peers expose ``receive_data(data, now)``, ``data_to_send()`` and
``next_deadline()``; time only moves to the earliest deadline of either, and
every byte crosses through the real codec and sessions, synchronously, with no
event loop. Used by tests, the HIL rig's self-test and the headless simulator.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any, Protocol, cast

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


class Outbox(Protocol):
    #: Wire bytes queued and not yet taken by ``data_to_send`` (a firmware_bridge session).
    outbox: list[bytes]


class SessionPeer(LockstepPeer, Protocol):
    """A peer that sends its session's bytes and nothing else: its ``data_to_send`` returns
    ``b""`` exactly when ``session.outbox`` is empty."""

    @property
    def session(self) -> Outbox: ...


class LockstepPump:
    """Moves bytes between two peers and time to the next deadline."""

    def __init__(
        self,
        a: LockstepPeer,
        b: LockstepPeer,
        clock: VirtualClock,
        a_to_b: Wire | None = None,
        b_to_a: Wire | None = None,
        session_peers: bool = False,
    ) -> None:
        """``session_peers``: both peers are ``SessionPeer``s (what ``data_to_send`` returns
        is their session's outbox). On a clean link the pump then asks a peer for bytes
        only when its session's outbox holds some, instead of every round."""
        self.a, self.b, self.clock = a, b, clock
        self._session_peers: tuple[SessionPeer, SessionPeer] | None = (
            (cast(SessionPeer, a), cast(SessionPeer, b)) if session_peers else None
        )
        self._id_a, self._id_b = id(a), id(b)
        # Read at every run_until and step: tests swap wires between runs.
        self._wires = {id(a): a_to_b, id(b): b_to_a}
        #: Chunks waiting for delivery, a heap ordered by (deliver_at, posting order).
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
        self._queue(self._wires[id(sender)], receiver, data, now)
        return True

    def _queue(self, wire: Wire | None, receiver: LockstepPeer, data: bytes, now: float) -> None:
        in_flight = self._in_flight
        if wire is None:
            self._order += 1
            heappush(in_flight, (now, self._order, receiver, data))
            return
        for at, chunk in wire(data, now):
            self._order += 1
            heappush(in_flight, (at, self._order, receiver, chunk))

    def _exchange(self, now: float) -> None:
        """Deliver everything due at ``now`` until both peers are quiet.

        Each round takes what both peers have to send (``a`` first), then delivers every
        chunk due by ``now`` in (deliver_at, posting order).
        """
        in_flight = self._in_flight
        for _ in _ROUNDS:
            if not in_flight and self._clean_wires():
                self._exchange_clean(now)
                return
            moved = self._post(self.a, self.b, now) | self._post(self.b, self.a, now)
            if not in_flight or in_flight[0][0] > now:
                if not moved:
                    return
                continue
            due = []
            while in_flight and in_flight[0][0] <= now:
                due.append(heappop(in_flight))
            for _, _, receiver, chunk in due:
                receiver.receive_data(chunk, now)
        raise RuntimeError(f"peers kept talking at one instant for {_MAX_ROUNDS} rounds")

    def _exchange_clean(self, now: float) -> None:
        """``_exchange`` on a clean link (no wire either way, nothing in flight): the same
        rounds (``a``'s chunk delivered first) with nothing to queue; a quiet round is two
        ``data_to_send`` calls (two looks at the outboxes for session peers)."""
        a, b = self.a, self.b
        session_peers = self._session_peers
        for _ in _ROUNDS:
            if session_peers is None:
                a_data = a.data_to_send()
                b_data = b.data_to_send()
            else:
                a_data = a.data_to_send() if session_peers[0].session.outbox else b""
                b_data = b.data_to_send() if session_peers[1].session.outbox else b""
            if a_data:
                self.bytes_a_to_b += len(a_data)
                if b_data:
                    self.bytes_b_to_a += len(b_data)
                b.receive_data(a_data, now)
                if b_data:
                    a.receive_data(b_data, now)
            elif b_data:
                self.bytes_b_to_a += len(b_data)
                a.receive_data(b_data, now)
            else:
                return
        raise RuntimeError(f"peers kept talking at one instant for {_MAX_ROUNDS} rounds")

    def step(self, limit_s: float) -> float:
        """Advance to the next event (not past ``limit_s``); returns the new time."""
        return self._run(self.clock.now(), limit_s, None, True)

    def _clean_wires(self) -> bool:
        """No wire either way: chunks arrive at once."""
        wires = self._wires
        return wires[self._id_a] is None and wires[self._id_b] is None

    def run_until(self, t_s: float, stop: Callable[[], bool] | None = None) -> None:
        """Run to virtual time ``t_s`` (or until ``stop()`` is true after a step).

        The wires are read once per call: swap them between calls, not during one."""
        clock = self.clock
        self._exchange(clock.now())
        now = clock.now()
        if now < t_s:
            self._run(now, t_s, stop, False)

    def _run(
        self, now: float, limit_s: float, stop: Callable[[], bool] | None, once: bool
    ) -> float:
        """Step from ``now`` to the next event until ``limit_s`` (after one step if ``once``,
        or when ``stop()`` is true after a step); returns the clock's new time.

        One loop for ``step`` and ``run_until``, with the peers' methods looked up once per
        call instead of once per step (four steps a virtual second)."""
        a, b = self.a, self.b
        a_deadline, b_deadline = a.next_deadline, b.next_deadline
        a_on_time, b_on_time = a.on_time, b.on_time
        advance_to = self.clock.advance_to
        in_flight = self._in_flight
        clean_wires = self._clean_wires()
        exchange_clean, exchange = self._exchange_clean, self._exchange
        stalled = 0
        while True:
            # The earliest deadline of either peer and of the chunks in flight.
            nxt = a_deadline()
            t = b_deadline()
            if t is not None and (nxt is None or t < nxt):
                nxt = t
            if in_flight:
                t = in_flight[0][0]
                if nxt is None or t < nxt:
                    nxt = t
            # min(max(nxt, now), limit_s), without the two builtin calls.
            if nxt is None:
                target = limit_s
            else:
                target = now if now > nxt else nxt
                if limit_s < target:
                    target = limit_s
            advance_to(target)
            a_on_time(target)
            b_on_time(target)
            if clean_wires and not in_flight:
                exchange_clean(target)  # what _exchange would choose, one call sooner
            else:
                exchange(target)
            if once or (stop is not None and stop()):
                return target
            if target != now:
                stalled = 0
            else:
                stalled += 1
                if stalled > 10_000:
                    raise RuntimeError(
                        f"virtual time stuck at {now} s: a peer's deadline does not move"
                    )
            now = target
            if now >= limit_s:
                return now


#: Rounds of exchange at one instant before the peers are declared stuck in a loop.
_MAX_ROUNDS = 1000
_ROUNDS = range(_MAX_ROUNDS)  # made once: iterating it needs no call to range per exchange


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
