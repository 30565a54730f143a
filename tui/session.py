"""The console's hold on one device: the controller node, its async shell, the sample tap,
and the bounded histories the widgets draw (the node keeps only the present).

The shell runs on a thread of its own (``LoopThread``) with the simulated device and its
clock; the UI thread never touches the node. It asks for a ``ConsoleView`` (a frozen copy
of everything the screen shows) at its refresh rate, and every operator action is a call
on the node made on the loop's thread, so the safety envelope reviews it and the audit
log records it exactly as under ``neurostim run``. What the node queued for an action
goes out at once on the current link instead of waiting for the shell's next wake-up (an
E-stop must not wait for the next frame, nor for a paused simulated clock).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from controller.loop import ControllerLoop, LoopReport
from controller.node import ControllerNode, ManualResult, RecordingChange
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
from tui.loop_thread import LoopThread
from tui.sample_tap import SampleTap, TappedLink, TappedRegistry, TraceWindow

T = TypeVar("T")

#: Detector windows kept for the score trace (a 0.5 s hop: about 17 minutes).
SCORE_HISTORY = 2000
#: Events kept for the event list and the last clamps and refusals.
EVENT_HISTORY = 200
#: Audit records a view carries (more than any terminal shows).
AUDIT_TAIL = 200
#: How long the UI waits for the loop's thread to take an action or build a view; a loop
#: that does not answer in time is reported, the screen never waits longer.
ANSWER_TIMEOUT_S = 5.0
#: Extra virtual seconds after the calibration when fast-forwarding it.
FAST_FORWARD_MARGIN_S = 5.0
#: Further jumps while the detector still calibrates (blanked windows are not credited).
FAST_FORWARD_STEP_S = 30.0
FAST_FORWARD_EXTENSIONS = 120
#: Small jumps until the device has described itself and the detector exists.
FAST_FORWARD_CONNECT_STEP_S = 0.5
FAST_FORWARD_CONNECT_STEPS = 60


@dataclass(frozen=True)
class ScorePoint:
    t_s: float
    score: float | None
    state: str
    blanked: bool


@dataclass(frozen=True)
class Pace:
    """A simulated device's pace as the status line shows it."""

    rate: float
    paused: bool
    jumping: bool


@dataclass(frozen=True)
class ConsoleView:
    """Everything one redraw shows, copied on the loop's thread at one instant."""

    snapshot: NodeSnapshot
    traces: TraceWindow | None
    scores: tuple[ScorePoint, ...]
    audit_tail: tuple[dict[str, Any], ...]
    last_clamp: Clamped | None
    last_refusal: Refused | None
    status: DeviceStatus | None
    pace: Pace | None  # None: a real device on the wall clock
    url: str
    impedance_window_ohm: tuple[float, float]


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
        self.thread = LoopThread()
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

    # -- running (the loop's thread) -------------------------------------------------------

    def start(self) -> concurrent.futures.Future[LoopReport]:
        """Start the loop's thread and the closed loop on it, until the node has stopped
        (``quit``) or failed; the future holds the report or the failure."""
        self.thread.start()
        return self.thread.submit(self.run())

    async def run(self) -> LoopReport:
        """The closed loop, on the running event loop (the loop's thread under ``start``)."""
        self.report = await self.loop.run(None, self.stop_event)
        return self.report

    def shutdown(self) -> None:
        """Close the node's files and end the loop's thread (idempotent): what the console
        does on its way out, whether or not the loop has finished."""
        if self.thread.running:
            with contextlib.suppress(Exception):
                self.thread.call(self._close).result(ANSWER_TIMEOUT_S)
            self.thread.stop()
        else:
            self._close()

    def _close(self) -> None:
        self.node.close(self.clock.now())

    def now(self) -> float:
        return self.clock.now()

    def snapshot(self) -> NodeSnapshot:
        """The node's snapshot, taken on the loop's thread (waits for it when called from
        another thread: for tests and tools; the screen draws ``view``s)."""
        if self.thread.running and not self.thread.on_loop_thread():
            return self.thread.call(self._snapshot_now).result(ANSWER_TIMEOUT_S)
        return self._snapshot_now()

    async def fresh_snapshot(self) -> NodeSnapshot:
        """The node's snapshot now, for an action that must not act on a stale view."""
        return await self._answer(self.thread.call(self._snapshot_now))

    def _snapshot_now(self) -> NodeSnapshot:
        return self.node.snapshot(self.now())

    async def view(self, span_s: float) -> ConsoleView:
        """A frozen copy of what the screen shows, traces over the last ``span_s``."""
        return await self._answer(self.thread.call(self._view_now, span_s))

    def _view_now(self, span_s: float) -> ConsoleView:
        clock = self.sim_clock
        pace = None if clock is None else Pace(clock.rate, clock.paused, clock.jumping)
        records = self.node.audit.records
        return ConsoleView(
            snapshot=self._snapshot_now(),
            traces=self.tap.window(span_s),
            scores=tuple(self.scores),
            audit_tail=records[-AUDIT_TAIL:],
            last_clamp=self.last_clamp,
            last_refusal=self.last_refusal,
            status=self.status,
            pace=pace,
            url=self.url,
            impedance_window_ohm=self.impedance_window_ohm,
        )

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

    # -- operator actions (each one a call on the node, on the loop's thread) ---------------

    async def estop(self) -> None:
        await self._act(self.node.estop)

    async def clear_estop(self) -> None:
        """The latch only: stimulation stays off until ``resume``."""
        await self._act(self.node.clear_estop)

    async def resume(self) -> None:
        await self._act(self.node.resume)

    async def manual_setting(self, setting: StimSetting) -> ManualResult:
        return await self._act(lambda now: self.node.manual_setting(setting, now))

    async def stop_therapy(self) -> ManualResult:
        """Stimulation off, ramped down as the envelope allows; the policy stays suspended
        until ``resume`` like after any manual setting."""

        def off(now: float) -> ManualResult:
            limits = self._limits()
            ramp = ramp_limit(self.ramp_down_ma_per_s, limits)
            return self.node.manual_setting(StimSetting.off(ramp, limits), now)

        return await self._act(off)

    def _limits(self) -> DeviceLimits | None:
        device = self.node.core.info
        return None if device is None else device.limits

    async def marker(self, text: str) -> None:
        await self._act(lambda now: self.node.marker(text, now))

    async def set_policy(self, name: str) -> None:
        """Raises ValueError naming the choices for an unknown policy."""
        await self._act(lambda now: self.node.set_policy(name, now))

    async def start_recording(self, path: Path) -> RecordingChange:
        return await self._act(lambda now: self.node.start_recording(path, now))

    async def stop_recording(self) -> RecordingChange:
        return await self._act(self.node.stop_recording)

    async def quit(self) -> None:
        """The ramped stop confirmed by the device, as SIGINT does under ``neurostim run``;
        a paused simulated device is let run so that it can confirm."""

        def stop(now: float) -> None:
            if self.sim_clock is not None and self.sim_clock.paused:
                self.sim_clock.resume()
            self.node.request_stop(self.now(), "operator")
            self.stop_event.set()

        await self._act(stop)

    async def _act(self, action: Callable[[float], T]) -> T:
        return await self._answer(self.thread.submit(self._act_now(action)))

    async def _act_now(self, action: Callable[[float], T]) -> T:
        result = action(self.now())
        await self._flush()
        return result

    async def _flush(self) -> None:
        link = self._registry.current
        data = self.node.data_to_send()
        if link is None or not data:
            return
        with contextlib.suppress(LinkClosed):  # the shell sees the loss on its next receive
            await link.send(data)

    async def _answer(self, future: concurrent.futures.Future[T]) -> T:
        """Wait on the UI's event loop, never longer than ``ANSWER_TIMEOUT_S``."""
        return await asyncio.wait_for(asyncio.wrap_future(future), ANSWER_TIMEOUT_S)

    # -- a simulated device's pace (the clock lives on the loop's thread too) --------------

    async def pause(self) -> None:
        await self._pace(lambda clock: clock.pause())

    async def run_on(self) -> None:
        await self._pace(lambda clock: clock.resume())

    async def set_rate(self, rate: float) -> None:
        def set_it(clock: ScaledClock) -> None:
            clock.rate = rate

        await self._pace(set_it)

    async def _pace(self, change: Callable[[ScaledClock], None]) -> None:
        clock = self.sim_clock
        if clock is not None:
            await self._answer(self.thread.call(change, clock))

    async def jump_to(self, target_s: float) -> None:
        """Run the simulated device and the controller ahead to ``target_s`` as fast as the
        work allows; returns once there (no timeout: a jump takes as long as it takes)."""
        clock = self.sim_clock
        assert clock is not None, "only a simulated device's clock can jump"
        await asyncio.wrap_future(self.thread.submit(_jump(clock, target_s)))

    async def jump_by(self, seconds: float) -> None:
        clock = self.sim_clock
        assert clock is not None, "only a simulated device's clock can jump"
        await asyncio.wrap_future(self.thread.submit(_jump(clock, None, seconds)))

    async def fast_forward_calibration(self, then_s: float = 0.0) -> None:
        """Jump through the detector's calibration (its credited seconds, which blanking
        can stretch beyond the configured time), then ``then_s`` more, then hand over to
        the clock's rate."""
        await asyncio.wrap_future(self.thread.submit(self._fast_forward(then_s)))

    async def _fast_forward(self, then_s: float) -> None:
        clock = self.sim_clock
        assert clock is not None
        for _ in range(FAST_FORWARD_CONNECT_STEPS):
            if self.node.core.detector is not None:
                break  # built from the device's description (calibrated, with a file)
            await clock.jump_to(clock.now() + FAST_FORWARD_CONNECT_STEP_S)
        snap = self._snapshot_now()
        left_s = snap.calibration_s - snap.calibration_elapsed_s
        if left_s > 0:
            await clock.jump_to(clock.now() + left_s + FAST_FORWARD_MARGIN_S)
        for _ in range(FAST_FORWARD_EXTENSIONS):
            out = self.node.snapshot().detector
            if out is not None and out.state.value != "CALIBRATING":
                break
            await clock.jump_to(clock.now() + FAST_FORWARD_STEP_S)
        if then_s > 0:
            await clock.jump_to(clock.now() + then_s)


def ramp_limit(configured_ma_per_s: float, limits: DeviceLimits | None) -> float:
    """A configured ramp, no faster than the device allows."""
    if limits is None:
        return configured_ma_per_s
    return min(configured_ma_per_s, limits.max_ramp_rate_ma_per_s)


async def _jump(clock: ScaledClock, target_s: float | None, by_s: float = 0.0) -> None:
    await clock.jump_to(clock.now() + by_s if target_s is None else target_s)


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
