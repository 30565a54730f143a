"""A minimal controller process for the SIGKILL fault case: it connects, switches the output
on, prints ``STIMULATING`` once the ramp has ended, and keeps the session alive until it is
killed. It uses ``firmware_bridge`` only, like the rig.

    python -m hil.killable URL AMPLITUDE_MA PULSE_WIDTH_US FREQUENCY_HZ
"""

from __future__ import annotations

import asyncio
import sys

from firmware_bridge.clock import MonotonicClock
from firmware_bridge.connection import DeviceConnection
from firmware_bridge.events import CommandAcked, StimStateReceived
from firmware_bridge.messages import StimSetting
from firmware_bridge.transports.registry import open_link


async def _main(url: str, amplitude_ma: float, pulse_width_us: int, frequency_hz: float) -> int:
    link = await open_link(url)
    async with DeviceConnection(link, MonotonicClock()) as conn:
        await conn.connect()
        result = await conn.set_stimulation(
            StimSetting(True, amplitude_ma, pulse_width_us, frequency_hz, 0.0)
        )
        if not isinstance(result, CommandAcked):
            print(f"REFUSED {result}", flush=True)
            return 1
        while True:
            event = await conn.next_event()
            if (
                isinstance(event, StimStateReceived)
                and not event.state.ramping
                and abs(event.state.amplitude_ma - amplitude_ma) < 1e-4
            ):
                break
        print("STIMULATING", flush=True)
        while True:  # the connection's tasks send heartbeats until this process is killed
            await conn.next_event()


if __name__ == "__main__":
    url, amp, pw, freq = sys.argv[1:5]
    sys.exit(asyncio.run(_main(url, float(amp), int(pw), float(freq))))
