"""An asyncio event loop on a thread of its own, for the controller loop and the simulated
device, so that drawing the screen never delays a frame.

The console's UI runs on Textual's event loop; everything that touches the node, the link
or the simulated device's clock runs here. The UI hands work over with ``submit`` (a
coroutine) or ``call`` (a function), both through ``call_soon_threadsafe``, which wakes
this loop at once: an E-stop waits for no frame and no redraw.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: How long ``stop`` lets the tasks left on the loop finish their cancellation.
STOP_TIMEOUT_S = 5.0


class LoopThread:
    def __init__(self, name: str = "controller-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def on_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on this loop; its result or error arrives in the future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, fn: Callable[..., T], *args: object) -> concurrent.futures.Future[T]:
        """Run ``fn(*args)`` on this loop as soon as it is free."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to whoever waits for the future
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future

    def stop(self) -> None:
        """Cancel what still runs on the loop (a simulated device, a pending receive),
        then end the thread (idempotent)."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            self.submit(_cancel_others()).result(STOP_TIMEOUT_S)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(STOP_TIMEOUT_S)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()


async def _cancel_others() -> None:
    me = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not me]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
