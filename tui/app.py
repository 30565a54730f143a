"""``ConsoleApp``: the bench console for one device.

The controller loop runs on a thread of its own (``ConsoleSession.start``); the screen is
redrawn from a frozen ``ConsoleView`` of the node's snapshot and the session's bounded
histories ``REFRESH_HZ`` times a second, never per sample or per event, so drawing never
delays a frame. Every key is an operator input to the node, handed to the loop's thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path
from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.events import Key
from textual.widgets import Footer, Input

from controller.loop import LoopReport
from controller.policy import POLICY_NAMES
from firmware_bridge.errors import BridgeError
from firmware_bridge.messages import StimSetting
from tui.forms import PolicyForm, SettingForm, SettingInput, marker_form, recording_form
from tui.session import ConsoleSession, ConsoleView, ramp_limit
from tui.widgets import (
    AuditTail,
    DetectorPanel,
    DevicePanel,
    EstopBanner,
    FeaturesPanel,
    StatusLine,
    StimulationPanel,
    TracesPanel,
)
from tui.widgets.traces import SPANS_S

#: Redraws per second: smooth enough to watch, far below the sample rate.
REFRESH_HZ = 10.0
#: Redraws per second while the simulated device fast-forwards: the loop's thread then
#: runs flat out, and every redraw takes the interpreter from it for a while.
FAST_FORWARD_REFRESH_HZ = 1.0
#: Simulated-device speeds the operator steps through.
SPEEDS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
_CLEAR_KEYS = frozenset({"y", "R", "shift+r"})


class ConsoleApp(App[int]):
    CSS_PATH = "console.tcss"
    TITLE = "neurostim console"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        # The E-stop comes first and has priority: one key, no dialog, in every screen.
        Binding("e", "estop", "E-STOP", priority=True),
        Binding("ctrl+e", "estop_anywhere", "E-STOP (typing)", show=False, priority=True),
        Binding("R", "clear_estop", "clear latch (R y)"),
        Binding("y", "confirm_clear", "confirm", show=False),
        Binding("u", "resume", "resume"),
        Binding("s", "stop_therapy", "stop therapy"),
        Binding("a", "manual", "manual"),
        Binding("p", "policy", "policy"),
        Binding("m", "marker", "marker"),
        Binding("r", "record", "EDF+ rec"),
        Binding("t", "span", "span"),
        Binding("space", "pause", "pause"),
        Binding("plus", "faster", "faster"),
        Binding("minus", "slower", "slower"),
        Binding("q", "quit_console", "quit"),
    ]

    def __init__(
        self,
        session: ConsoleSession,
        *,
        fast_forward_calibration: bool = True,
        refresh_hz: float | None = REFRESH_HZ,
        fast_forward_after_s: float = 0.0,
    ) -> None:
        """``refresh_hz`` None: redraw only after operator actions and ``redraw`` calls
        (tests that move time themselves). ``fast_forward_after_s``: virtual seconds the
        fast-forward goes on after the calibration (the demo's prodrome build-up)."""
        super().__init__()
        self.refresh_hz = refresh_hz
        self.session = session
        self.fast_forward_calibration = fast_forward_calibration
        self.fast_forward_after_s = fast_forward_after_s
        self.span_s = 10.0
        self.clearing = False  # first step of clearing the E-stop latch taken
        self.note = ""
        self.failure: BaseException | None = None
        self.report: LoopReport | None = None
        self.quitting = False
        self.view: ConsoleView | None = None
        self._drawing = False
        self._ticks = 0
        self._recordings_started = 0
        self.estop_banner = EstopBanner(id="estop")
        self.device_panel = DevicePanel(id="device")
        self.detector_panel = DetectorPanel(id="detector")
        self.stim_panel = StimulationPanel(id="stim")
        self.traces_panel = TracesPanel(id="traces")
        self.features_panel = FeaturesPanel(id="features")
        self.audit_tail = AuditTail(id="audit")
        self.status_line = StatusLine(id="status")

    def compose(self) -> ComposeResult:
        yield self.estop_banner
        with Horizontal(id="top"):
            yield self.device_panel
            yield self.detector_panel
            yield self.stim_panel
        yield self.traces_panel
        with Horizontal(id="bottom"):
            yield self.features_panel
            yield self.audit_tail
        yield self.status_line
        yield Footer()

    def on_mount(self) -> None:
        for panel, title in (
            (self.device_panel, "Device & link"),
            (self.detector_panel, "Detector"),
            (self.stim_panel, "Stimulation & envelope"),
            (self.traces_panel, "Traces"),
            (self.features_panel, "Features"),
            (self.audit_tail, "Audit log"),
        ):
            panel.border_title = title
        loop_done = self.session.start()
        self.run_worker(self._run_loop(loop_done), name="controller loop", exit_on_error=False)
        if self.fast_forward_calibration and self.session.sim_clock is not None:
            self.run_worker(
                self.session.fast_forward_calibration(self.fast_forward_after_s),
                name="fast-forward",
            )
        if self.refresh_hz is not None:
            self.set_interval(1.0 / self.refresh_hz, self._tick)

    async def _run_loop(self, done: concurrent.futures.Future[LoopReport]) -> None:
        try:
            self.report = await asyncio.wrap_future(done)
        except (BridgeError, ValueError) as exc:  # unreachable, version, envelope conflict
            self.failure = exc
        if self.quitting or self.failure is not None:
            code = 0 if self.failure is None else 1
            self.exit(code, return_code=code)
        else:
            self.say("the loop has stopped; q quits")

    # -- drawing ---------------------------------------------------------------------------

    def _tick(self) -> None:
        """The refresh timer: one view at a time; a busy loop skips a frame, never the UI."""
        self._ticks += 1
        if self._drawing or (self._fast_forwarding() and self._ticks % self._ticks_per_ff_redraw):
            return
        self.run_worker(self.redraw(), name="redraw", group="redraw")

    def _fast_forwarding(self) -> bool:
        pace = None if self.view is None else self.view.pace
        return pace is not None and pace.jumping

    @property
    def _ticks_per_ff_redraw(self) -> int:
        hz = self.refresh_hz or FAST_FORWARD_REFRESH_HZ
        return max(1, round(hz / FAST_FORWARD_REFRESH_HZ))

    async def redraw(self) -> None:
        """Ask the loop's thread for a view, then draw it."""
        if self._drawing:
            return
        self._drawing = True
        try:
            self.view = await self.session.view(self.span_s)
        except TimeoutError:
            self.note = "the controller loop does not answer"
        finally:
            self._drawing = False
        self.draw()

    def draw(self) -> None:
        """Draw the last view (the note and the clearing prompt may be newer)."""
        view = self.view
        if view is None or not self.estop_banner.is_mounted:
            return  # before the first view or layout, or while leaving
        snap = view.snapshot
        self.estop_banner.show(snap, self.clearing)
        self.device_panel.show(view)
        self.detector_panel.show(view, self.detector_panel.content_size.width)
        self.stim_panel.show(view, self.stim_panel.content_size.width)
        traces = self.traces_panel
        traces.show(view.traces, self.span_s, traces.content_size.width, traces.content_size.height)
        self.features_panel.show(snap, self.features_panel.content_size.height)
        audit = self.audit_tail
        audit.show(view.audit_tail, audit.content_size.height, audit.content_size.width)
        self.status_line.show(view, self._status_note())

    def _status_note(self) -> str:
        if self.failure is not None:
            return f"FAILED: {self.failure}"
        return self.note

    def say(self, note: str) -> None:
        self.note = note
        self.draw()

    # -- keys ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "estop" and isinstance(self.focused, Input):
            return False  # typing an "e": ctrl+e is the E-stop while a field has the focus
        if action in ("pause", "faster", "slower") and self.session.sim_clock is None:
            return None  # shown disabled: only a simulated device has a pace
        return True

    def on_key(self, event: Key) -> None:
        if self.clearing and event.key not in _CLEAR_KEYS:
            self.clearing = False
            self.say("E-stop latch kept")

    async def action_estop(self) -> None:
        self.clearing = False
        try:
            await self.session.estop()
        except TimeoutError:
            self.say("E-STOP NOT CONFIRMED: the controller loop does not answer")
            return
        self.say("E-STOP sent")
        await self.redraw()

    async def action_estop_anywhere(self) -> None:
        await self.action_estop()

    async def action_clear_estop(self) -> None:
        if not (await self.session.fresh_snapshot()).estop_latched:
            self.say("no E-stop latch to clear")
            return
        self.clearing = True
        self.say("clear the E-stop latch? y clears, any other key keeps it")

    async def action_confirm_clear(self) -> None:
        if not self.clearing:
            return
        self.clearing = False
        await self.session.clear_estop()
        self.say("E-stop latch cleared; stimulation stays off until u resumes the policy")

    async def action_resume(self) -> None:
        await self.session.resume()
        self.say("policy resumed")

    async def action_stop_therapy(self) -> None:
        result = await self.session.stop_therapy()
        self.say(
            "stimulation off (ramped); u resumes the policy"
            if result.refused_rule is None
            else f"stop refused by {result.refused_rule}: {result.detail}"
        )

    async def action_manual(self) -> None:
        snap = await self.session.fresh_snapshot()
        current = snap.requested if snap.requested is not None and snap.requested.enabled else None
        limits = None if snap.device is None else snap.device.limits
        form = SettingForm(
            current.amplitude_ma if current else 0.5,
            current.pulse_width_us if current else 200,
            current.frequency_hz if current else 10.0,
            ramp_limit(self.session.ramp_up_ma_per_s, limits),
        )
        self.push_screen(form, self._manual_submitted)

    async def _manual_submitted(self, value: SettingInput | None) -> None:
        if value is None:
            return
        await self.send_manual(value)

    async def send_manual(self, value: SettingInput) -> None:
        setting = StimSetting(
            value.amplitude_ma > 0.0,
            value.amplitude_ma,
            value.pulse_width_us,
            value.frequency_hz,
            value.ramp_rate_ma_per_s,
        )
        result = await self.session.manual_setting(setting)
        if result.refused_rule is not None:
            self.say(f"REFUSED by {result.refused_rule}: {result.detail}")
        elif result.clamped_rules:
            self.say(f"sent, clamped by {', '.join(result.clamped_rules)}")
        else:
            self.say("manual setting sent; u resumes the policy")

    async def action_policy(self) -> None:
        current = (await self.session.fresh_snapshot()).policy
        self.push_screen(PolicyForm(POLICY_NAMES, current), self._policy_chosen)

    async def _policy_chosen(self, name: str | None) -> None:
        if name is None:
            return
        try:
            await self.session.set_policy(name)
        except ValueError as exc:
            self.say(str(exc))
            return
        self.say(f"policy {name}")

    def action_marker(self) -> None:
        self.push_screen(marker_form(), self._marker_written)

    async def _marker_written(self, text: str | None) -> None:
        if text:
            await self.session.marker(text)
            self.say(f"marker: {text}")

    async def action_record(self) -> None:
        """Stop the running recording, or ask for a file and start one."""
        snap = await self.session.fresh_snapshot()
        if snap.recording:
            change = await self.session.stop_recording()
            self.say(f"recording stopped: {change.path}" if change.done else change.reason)
            return
        self.push_screen(recording_form(self._suggested_recording()), self._recording_named)

    def _suggested_recording(self) -> str:
        """A file name that does not exist yet in the working directory."""
        while True:
            self._recordings_started += 1
            name = f"console-recording-{self._recordings_started}.edf"
            if not Path(name).exists():
                return name

    async def _recording_named(self, path: str | None) -> None:
        if not path:
            return
        change = await self.session.start_recording(Path(path))
        self.say(
            f"recording into {change.path}" if change.done else f"not recording: {change.reason}"
        )
        await self.redraw()

    def action_span(self) -> None:
        i = SPANS_S.index(self.span_s) if self.span_s in SPANS_S else 0
        self.span_s = SPANS_S[(i + 1) % len(SPANS_S)]
        self._tick()

    async def action_pause(self) -> None:
        clock = self.session.sim_clock
        if clock is None:
            return
        if clock.paused:
            await self.session.run_on()
            self.say("simulated device running")
        else:
            await self.session.pause()
            self.say("simulated device paused (the controller waits with it)")

    async def action_faster(self) -> None:
        await self._step_speed(+1)

    async def action_slower(self) -> None:
        await self._step_speed(-1)

    async def _step_speed(self, step: int) -> None:
        clock = self.session.sim_clock
        if clock is None:
            return
        faster = [s for s in SPEEDS if s > clock.rate]
        slower = [s for s in SPEEDS if s < clock.rate]
        if step > 0 and faster:
            await self.session.set_rate(faster[0])
        elif step < 0 and slower:
            await self.session.set_rate(slower[-1])
        self.say(f"simulated device at ×{clock.rate:g}")

    async def action_quit_console(self) -> None:
        if self.quitting:
            return
        self.quitting = True
        self.say("ramping stimulation down; waiting for the device to confirm…")
        if self.session.node.finished:
            self.exit(0)
            return
        await self.session.quit()

    async def action_quit(self) -> None:
        """Textual's own quit (ctrl+q) takes the same ramped stop as ``q``."""
        await self.action_quit_console()

    def on_unmount(self) -> None:
        self.session.shutdown()
