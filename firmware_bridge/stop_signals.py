"""SIGINT and SIGTERM as a request to stop: the long-running commands (a served device,
a controller run, a presence watch) then finish their own way, a ramped stop or an
offline record, and exit 0, instead of being cut off by KeyboardInterrupt."""

from __future__ import annotations

import asyncio
import signal


def stop_on_signals() -> asyncio.Event:
    """An event that SIGINT or SIGTERM sets; call it inside the running event loop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
