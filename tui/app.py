"""``ConsoleApp``: the bench console for one device.

The controller loop runs as a worker in the app's own event loop; the screen is redrawn
from the node's snapshot and the session's bounded histories ``REFRESH_HZ`` times a
second, never per sample or per event. Every key is an operator input to the node.
"""

from __future__ import annotations

import contextlib
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
from tui.forms import MarkerForm, PolicyForm, SettingForm, SettingInput
from tui.session import ConsoleSession
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
#: Simulated-device speeds the operator steps through.
SPEEDS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
#: Extra virtual seconds after the calibration when fast-forwarding it.
FAST_FORWARD_MARGIN_S = 5.0
_CLEAR_KEYS = frozenset({"y", "R", "shift+r"})


class ConsoleApp(App[int]):
    CSS_PATH = "console.tcss"
    TITLE = "neurostim console"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        # The E-stop comes first and has priority: one key, no dialog, in every screen.
        Binding("e", "estop", "E-STOP", priority=True),
        Binding("ctrl+e", "estop_anywhere", "E-STOP (typing)", show=False, priority=True),
        Binding("R", "clear_estop", "clear latch (R, y)"),
        Binding("y", "confirm_clear", "confirm", show=False),
        Binding("u", "resume", "resume policy"),
        Binding("s", "stop_therapy", "stop therapy"),
        Binding("a", "manual", "manual setting"),
        Binding("p", "policy", "policy"),
        Binding("m", "marker", "marker"),
        Binding("t", "span", "time span"),
        Binding("space", "pause", "pause sim"),
        Binding("plus", "faster", "faster"),
        Binding("minus", "slower", "slower"),
        Binding("q", "quit_console", "quit (ramped stop)"),
    ]

    def __init__(
        self,
        session: ConsoleSession,
        *,
        fast_forward_calibration: bool = True,
    ) -> None:
        super().__init__()
        self.session = session
        self.fast_forward_calibration = fast_forward_calibration
        self.span_s = 10.0
        self.clearing = False  # first step of clearing the E-stop latch taken
        self.note = ""
        self.failure: BaseException | None = None
        self.report: LoopReport | None = None
        self.quitting = False

    def compose(self) -> ComposeResult:
        yield EstopBanner(id="estop")
        with Horizontal(id="top"):
            yield DevicePanel(id="device")
            yield DetectorPanel(id="detector")
            yield StimulationPanel(id="stim")
        yield TracesPanel(id="traces")
        with Horizontal(id="bottom"):
            yield FeaturesPanel(id="features")
            yield AuditTail(id="audit")
        yield StatusLine(id="status")
        yield Footer()

    def on_mount(self) -> None:
        for widget_id, title in (
            ("device", "Device & link"),
            ("detector", "Detector"),
            ("stim", "Stimulation & envelope"),
            ("traces", "Traces"),
            ("features", "Features"),
            ("audit", "Audit log"),
        ):
            self.query_one(f"#{widget_id}").border_title = title
        clock = self.session.sim_clock
        if self.fast_forward_calibration and clock is not None:
            calibration_s = self.session.node.snapshot().calibration_s
            clock.jump_to(clock.now() + calibration_s + FAST_FORWARD_MARGIN_S)
        self.run_worker(self._run_loop(), name="controller loop", exit_on_error=False)
        self.set_interval(1.0 / REFRESH_HZ, self.redraw)
        self.redraw()

    async def _run_loop(self) -> None:
        try:
            self.report = await self.session.run()
        except (BridgeError, ValueError) as exc:  # unreachable, version, envelope conflict
            self.failure = exc
        if self.quitting or self.failure is not None:
            self.exit(0 if self.failure is None else 1)
        else:
            self.note = "the loop has stopped; q quits"

    # -- drawing ---------------------------------------------------------------------------

    def redraw(self) -> None:
        session = self.session
        snap = session.snapshot()
        self.query_one(EstopBanner).show(snap, self.clearing)
        self.query_one(DevicePanel).show(snap, session)
        detector = self.query_one(DetectorPanel)
        detector.show(snap, session, detector.content_size.width)
        stim = self.query_one(StimulationPanel)
        stim.show(snap, session, stim.content_size.width)
        traces = self.query_one(TracesPanel)
        traces.show(session.tap, self.span_s, traces.content_size.width, traces.content_size.height)
        features = self.query_one(FeaturesPanel)
        features.show(snap, features.content_size.height)
        audit = self.query_one(AuditTail)
        audit.show(session.node, audit.content_size.height, audit.content_size.width)
        self.query_one(StatusLine).show(snap, session, self._status_note())

    def _status_note(self) -> str:
        if self.failure is not None:
            return f"FAILED: {self.failure}"
        return self.note

    def say(self, note: str) -> None:
        self.note = note
        self.redraw()

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
        await self.session.estop()
        self.say("E-STOP sent")

    async def action_estop_anywhere(self) -> None:
        await self.action_estop()

    def action_clear_estop(self) -> None:
        if not self.session.snapshot().estop_latched:
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

    def action_manual(self) -> None:
        snap = self.session.snapshot()
        current = snap.requested if snap.requested is not None and snap.requested.enabled else None
        form = SettingForm(
            current.amplitude_ma if current else 0.5,
            current.pulse_width_us if current else 200,
            current.frequency_hz if current else 10.0,
        )
        self.push_screen(form, self._manual_submitted)

    async def _manual_submitted(self, value: SettingInput | None) -> None:
        if value is None:
            return
        await self.send_manual(value)

    async def send_manual(self, value: SettingInput) -> None:
        setting = StimSetting(
            value.amplitude_ma > 0.0, value.amplitude_ma, value.pulse_width_us, value.frequency_hz
        )
        result = await self.session.manual_setting(setting)
        if result.refused_rule is not None:
            self.say(f"REFUSED by {result.refused_rule}: {result.detail}")
        elif result.clamped_rules:
            self.say(f"sent, clamped by {', '.join(result.clamped_rules)}")
        else:
            self.say("manual setting sent; u resumes the policy")

    def action_policy(self) -> None:
        current = self.session.snapshot().policy
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
        self.push_screen(MarkerForm(), self._marker_written)

    async def _marker_written(self, text: str | None) -> None:
        if text:
            await self.session.marker(text)
            self.say(f"marker: {text}")

    def action_span(self) -> None:
        i = SPANS_S.index(self.span_s) if self.span_s in SPANS_S else 0
        self.span_s = SPANS_S[(i + 1) % len(SPANS_S)]
        self.redraw()

    def action_pause(self) -> None:
        clock = self.session.sim_clock
        if clock is None:
            return
        if clock.paused:
            clock.resume()
            self.say("simulated device running")
        else:
            clock.pause()
            self.say("simulated device paused (the controller waits with it)")

    def action_faster(self) -> None:
        self._step_speed(+1)

    def action_slower(self) -> None:
        self._step_speed(-1)

    def _step_speed(self, step: int) -> None:
        clock = self.session.sim_clock
        if clock is None:
            return
        faster = [s for s in SPEEDS if s > clock.rate]
        slower = [s for s in SPEEDS if s < clock.rate]
        if step > 0 and faster:
            clock.rate = faster[0]
        elif step < 0 and slower:
            clock.rate = slower[-1]
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

    async def on_unmount(self) -> None:
        with contextlib.suppress(Exception):
            self.session.node.close(self.session.now())
