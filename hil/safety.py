"""Leave the device with stimulation off, whatever happened: the off command first, ESTOP as
the last resort, each bounded by a timeout (OpenHTF's guaranteed plug teardown)."""

from __future__ import annotations

import asyncio
import contextlib

from firmware_bridge.errors import LinkClosed
from firmware_bridge.messages import MsgType, StimSetting, StimState
from hil.probe import Probe, answers

#: How long teardown waits beyond the ramp time the device needs.
SETTLE_MARGIN_S = 0.5


def _is_off(s: StimState) -> bool:
    return s.amplitude_ma == 0.0 and not s.enabled


async def make_safe(probe: Probe, timeout_s: float = 5.0) -> str:
    """Stop the output; returns how ("off", "estop", or "unconfirmed: ..."). Never raises
    for a misbehaving device: teardown must always finish."""
    try:
        return await asyncio.wait_for(_make_safe(probe), timeout_s)
    except (TimeoutError, LinkClosed, OSError) as exc:
        with contextlib.suppress(LinkClosed, OSError):
            await probe.send_estop()
        return f"unconfirmed: {type(exc).__name__} {exc}"


async def _make_safe(probe: Probe) -> str:
    probe.keepalive = True
    info, state = await probe.handshake()
    if state is not None and _is_off(state):
        return "off"
    lim = info.limits
    amplitude = state.amplitude_ma if state is not None else lim.max_amplitude_ma
    mark = probe.mark()
    await probe.send_stim_set(StimSetting.off(0.0, lim))
    wait_s = amplitude / lim.max_ramp_rate_ma_per_s + SETTLE_MARGIN_S
    if await probe.wait_state(_is_off, wait_s, mark) is not None:
        return "off"
    for _ in range(3):  # last resort: ESTOP (never gated), repeated
        mark = probe.mark()
        cid, _ = await probe.send_estop()
        await probe.wait_for(answers(cid, MsgType.ESTOP), 0.2, mark)
        if await probe.wait_state(lambda s: s.amplitude_ma == 0.0, 0.3, mark) is not None:
            return "estop"
    return "unconfirmed: the device reports output after off and ESTOP"


async def fresh_session(probe: Probe) -> None:
    """Start a case from a known state: a new session, ESTOP latch cleared, output off."""
    probe.keepalive = True
    _, state = await probe.handshake()
    if state is not None and state.estop_latched:
        await probe.estop_clear()
    if state is None or not _is_off(state):
        await make_safe(probe)
