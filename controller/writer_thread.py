"""File writes off the event loop: one worker thread runs submitted calls in order.

An fsync takes milliseconds and an EDF+ data record is written every second; on the
event-loop thread either delays the next frame. The queue is bounded so a stalled disk
cannot eat memory; when it is full the caller waits for room (nothing is ever dropped)
and the overflow is counted, so a slow disk shows in the counters instead of silently.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

_STOP = object()


class WriterThread:
    """Runs ``submit``-ted calls on one daemon thread, first in first out."""

    def __init__(self, name: str, max_pending: int = 4096) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._error: BaseException | None = None
        self.overflows = 0
        self._thread.start()

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        """Queue ``fn(*args)``; raises the first error a previous call raised."""
        if self._error is not None:
            raise RuntimeError(f"writer thread failed: {self._error!r}") from self._error
        item = (fn, args)
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.overflows += 1
            self._queue.put(item)

    def close(self) -> None:
        """Run everything queued, then stop the thread; re-raises a writer error."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        if self._error is not None:
            raise RuntimeError(f"writer thread failed: {self._error!r}") from self._error

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            fn, args = item
            if self._error is not None:
                continue  # keep draining so close() never blocks; the error is reported
            try:
                fn(*args)
            except BaseException as exc:  # reported to the caller at the next submit/close
                self._error = exc
