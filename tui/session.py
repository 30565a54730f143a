"""The console's hold on one device: the controller node, its async shell, the sample tap,
and the bounded histories the widgets draw (the node keeps only the present).

Every operator action is a call on the node, so the safety envelope reviews it and the
audit log records it exactly as under ``neurostim run``; what the node queued goes out
at once on the current link instead of waiting for the shell's next wake-up (an E-stop
must not wait for the next frame, nor for a paused simulated clock).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass

from controller.loop import ControllerLoop, LoopReport
from controller.node import ControllerNode, ManualResult
from controller.observations import (
    Clamped,
    DetectorUpdated,
    DeviceStatus,
    NodeEvent,
    NodeSnapshot,
    Refused,
)
from firmware_bridge.clock import Clock, ScaledClock
from firmware_bridge.errors import LinkClosed
from firmware_bridge.messages import DeviceLimits, StimSetting
from firmware_bridge.transports.base import Link
from firmware_bridge.transports.registry import TransportRegistry
from firmware_bridge.url import DeviceURL
from tui.sample_tap import SampleTap, TappedLink, TappedRegistry

#: Detector windows kept for the score trace (a 0.5 s hop: about 17 minutes).
SCORE_HISTORY = 2000
#: Events kept for the event list and the last clamps and refusals.
EVENT_HISTORY = 200


@dataclass(frozen=True)
class ScorePoint:
    t_s: float
    score: float | None
    state: str
    blanked: bool


class ConsoleSession:
    """Runs ``node`` against ``url`` and keeps what the display needs, all of it bounded.

    ``sim_clock``: the clock a simulated device shares with the node (speed, pause and the
    calibration fast-forward act on it); None for a real device on the wall clock.
    """

    def __init__(
        self,
        url: str,
        node: ControllerNode,
        clock: Clock,
        registry: TransportRegistry,
        sim_clock: ScaledClock | None = None,
        *,
        ramp_up_ma_per_s: float = 0.03,
        ramp_down_ma_per_s: float = 0.12,
        impedance_window_ohm: tuple[float, float] = (250.0, 3000.0),
    ) -> None:
        """The ramps and the impedance window are the configured envelope's (an operator's
        setting must name a ramp within it; the device's own maximum applies as well)."""
        self.impedance_window_ohm = impedance_window_ohm
        self.url = url
        self.ramp_up_ma_per_s = ramp_up_ma_per_s
        self.ramp_down_ma_per_s = ramp_down_ma_per_s
        self.node = node
        self.clock = clock
        self.sim_clock = sim_clock
        self.tap = SampleTap()
        self._registry = _LinkKeeper(registry, self.tap)
        self.loop = ControllerLoop(url, node, clock, self._registry)
        self.stop_event = asyncio.Event()
        self.scores: deque[ScorePoint] = deque(maxlen=SCORE_HISTORY)
        self.events: deque[NodeEvent] = deque(maxlen=EVENT_HISTORY)
        self.last_clamp: Clamped | None = None
        self.last_refusal: Refused | None = None
        self.status: DeviceStatus | None = None
        self.report: LoopReport | None = None
        node.subscribe(self._on_event)

    # -- running -------------------------------------------------------------------------

    async def run(self) -> LoopReport:
        """The closed loop until the node has stopped (``quit``) or failed."""
        self.report = await self.loop.run(None, self.stop_event)
        return self.report

    def now(self) -> float:
        return self.clock.now()

    def snapshot(self) -> NodeSnapshot:
        return self.node.snapshot(self.now())

    def _on_event(self, event: NodeEvent) -> None:
        if isinstance(event, DetectorUpdated):
            out = event.output
            self.scores.append(ScorePoint(out.t_s, out.score, out.state.value, out.blanked))
            return  # one per window: the score trace shows them, the event list would drown
        self.events.append(event)
        if isinstance(event, Clamped):
            self.last_clamp = event
        elif isinstance(event, Refused):
            self.last_refusal = event
        elif isinstance(event, DeviceStatus):
            self.status = event

    # -- operator actions (each one a call on the node) ------------------------------------

    async def estop(self) -> None:
        self.node.estop(self.now())
        await self._flush()

    async def clear_estop(self) -> None:
        """The latch only: stimulation stays off until ``resume``."""
        self.node.clear_estop(self.now())
        await self._flush()

    async def resume(self) -> None:
        self.node.resume(self.now())
        await self._flush()

    async def manual_setting(self, setting: StimSetting) -> ManualResult:
        result = self.node.manual_setting(setting, self.now())
        await self._flush()
        return result

    async def stop_therapy(self) -> ManualResult:
        """Stimulation off, ramped down as the envelope allows; the policy stays suspended
        until ``resume`` like after any manual setting."""
        return await self.manual_setting(
            StimSetting.off(self.ramp_limit(self.ramp_down_ma_per_s), self._limits())
        )

    def ramp_limit(self, configured_ma_per_s: float) -> float:
        """A configured ramp, no faster than the device allows."""
        limits = self._limits()
        if limits is None:
            return configured_ma_per_s
        return min(configured_ma_per_s, limits.max_ramp_rate_ma_per_s)

    def _limits(self) -> DeviceLimits | None:
        device = self.node.snapshot().device
        return None if device is None else device.limits

    async def marker(self, text: str) -> None:
        self.node.marker(text, self.now())
        await self._flush()

    async def set_policy(self, name: str) -> None:
        self.node.set_policy(name, self.now())
        await self._flush()

    async def quit(self) -> None:
        """The ramped stop confirmed by the device, as SIGINT does under ``neurostim run``;
        a paused simulated device is let run so that it can confirm."""
        if self.sim_clock is not None and self.sim_clock.paused:
            self.sim_clock.resume()
        self.node.request_stop(self.now(), "operator")
        await self._flush()
        self.stop_event.set()

    async def _flush(self) -> None:
        link = self._registry.current
        data = self.node.data_to_send()
        if link is None or not data:
            return
        with contextlib.suppress(LinkClosed):  # the shell sees the loss on its next receive
            await link.send(data)


class _LinkKeeper(TappedRegistry):
    """Taps every link it opens and remembers the newest, for the operator's sends."""

    def __init__(self, inner: TransportRegistry, tap: SampleTap) -> None:
        super().__init__(inner, tap)
        self.current: Link | None = None

    async def open(self, url: str | DeviceURL) -> Link:
        link = await super().open(url)
        assert isinstance(link, TappedLink)
        self.current = link
        return link
