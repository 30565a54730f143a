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
from firmware_bridge.clock import ScaledClock
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
#: Further jumps while the detector still calibrates (blanked windows are not credited).
FAST_FORWARD_STEP_S = 30.0
FAST_FORWARD_EXTENSIONS = 120
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
        refresh_hz: float | None = REFRESH_HZ,
    ) -> None:
        """``refresh_hz`` None: redraw only after operator actions and ``redraw`` calls
        (tests that move time themselves)."""
        super().__init__()
        self.refresh_hz = refresh_hz
        self.session = session
        self.fast_forward_calibration = fast_forward_calibration
        self.span_s = 10.0
        self.clearing = False  # first step of clearing the E-stop latch taken
        self.note = ""
        self.failure: BaseException | None = None
        self.report: LoopReport | None = None
        self.quitting = False
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
        self.run_worker(self._run_loop(), name="controller loop", exit_on_error=False)
        if self.fast_forward_calibration and self.session.sim_clock is not None:
            self.run_worker(self._fast_forward(self.session.sim_clock), name="fast-forward")
        if self.refresh_hz is not None:
            self.set_interval(1.0 / self.refresh_hz, self.redraw)
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

    async def _fast_forward(self, clock: ScaledClock) -> None:
        """Jump through the detector's calibration (its credited seconds, which blanking
        can stretch beyond the configured time), then hand over to the clock's rate."""
        calibration_s = self.session.node.snapshot().calibration_s
        await clock.jump_to(clock.now() + calibration_s + FAST_FORWARD_MARGIN_S)
        for _ in range(FAST_FORWARD_EXTENSIONS):
            out = self.session.node.snapshot().detector
            if out is not None and out.state.value != "CALIBRATING":
                break
            await clock.jump_to(clock.now() + FAST_FORWARD_STEP_S)

    # -- drawing ---------------------------------------------------------------------------

    def redraw(self) -> None:
        if not self.estop_banner.is_mounted:
            return  # before the first layout or while leaving
        session = self.session
        snap = session.snapshot()
        self.estop_banner.show(snap, self.clearing)
        self.device_panel.show(snap, session)
        self.detector_panel.show(snap, session, self.detector_panel.content_size.width)
        self.stim_panel.show(snap, session, self.stim_panel.content_size.width)
        traces = self.traces_panel
        traces.show(session.tap, self.span_s, traces.content_size.width, traces.content_size.height)
        self.features_panel.show(snap, self.features_panel.content_size.height)
        audit = self.audit_tail
        audit.show(session.node, audit.content_size.height, audit.content_size.width)
        self.status_line.show(snap, session, self._status_note())

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
            self.session.ramp_limit(self.session.ramp_up_ma_per_s),
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

    async def action_quit(self) -> None:
        """Textual's own quit (ctrl+q) takes the same ramped stop as ``q``."""
        await self.action_quit_console()

    async def on_unmount(self) -> None:
        with contextlib.suppress(Exception):
            self.session.node.close(self.session.now())
