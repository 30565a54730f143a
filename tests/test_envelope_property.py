"""Property: no sequence of requests and device states makes the controller send a
command outside the envelope.

Hypothesis drives one SafetyEnvelope with random sequences of requests (absurd values, NaN,
infinities, negatives included), time steps, STIM_STATE reports (random delivered charge,
device restarts, NaN), STATUS reports (random impedances and fault flags), link changes and
detector states. An independent model of the rules, kept by this test from the same inputs,
checks every setting the envelope lets out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.detector.types import DetectorState
from controller.envelope import (
    EnvelopeConfig,
    EnvelopeDecision,
    FallbackProgramConfig,
    SafetyEnvelope,
    within_envelope,
)
from controller.policy import StimRequest
from firmware_bridge.messages import FaultCode, Status, StimSet, StimSetting, StimState
from tests.test_envelope_rules import implant_envelope, sim_device

SECONDS_PER_DAY = 86_400.0
IMPEDANCE_WINDOW = (250.0, 3000.0)
STOPPING = (1 << FaultCode.IMPEDANCE) | (1 << FaultCode.ESTOP) | (1 << FaultCode.BATTERY_EMPTY)

# --- actions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Advance:
    dt_s: float


@dataclass(frozen=True)
class Request:
    setting: StimSetting


@dataclass(frozen=True)
class Follow:
    """A device that follows the commands: advance, then report what was last sent."""

    dt_s: float


@dataclass(frozen=True)
class Report:
    """An arbitrary STIM_STATE; the charge is added to the device counter or replaces it."""

    enabled: bool
    amplitude_ma: float
    target_ma: float
    charge_is_delta: bool
    charge_uc: float
    watchdog: bool
    estop: bool


@dataclass(frozen=True)
class StatusReport:
    impedance_ohm: tuple[int, ...]
    fault_flags: int


@dataclass(frozen=True)
class Link:
    up: bool


@dataclass(frozen=True)
class Detector:
    state: DetectorState


@dataclass(frozen=True)
class Call:
    """supervise(), fallback_decision() or off_decision()."""

    method: str


Action = Advance | Request | Follow | Report | StatusReport | Link | Detector | Call

any_float = st.floats(allow_nan=True, allow_infinity=True)
amplitudes = st.one_of(any_float, st.floats(-1.0, 15.0), st.sampled_from([0.0, 1.0, 3.0, 12.7]))
pulse_widths = st.one_of(st.integers(-1000, 100_000), st.integers(5, 500))
frequencies = st.one_of(any_float, st.floats(0.0, 300.0), st.just(60.0))
ramps = st.one_of(any_float, st.floats(-1.0, 10.0), st.just(0.0))

absurd_requests = st.builds(
    lambda enabled, a, pw, f, r: Request(StimSetting(enabled, a, pw, f, r)),
    st.sampled_from([True, True, True, False]),
    amplitudes,
    pulse_widths,
    frequencies,
    ramps,
)
plausible_requests = st.builds(
    lambda a, pw, f: Request(StimSetting(True, a, pw, f, 0.0)),
    st.floats(0.0, 6.0),
    st.integers(50, 450),
    st.floats(2.0, 255.0),
)
follows = st.builds(Follow, st.one_of(st.floats(0.0, 5.0), st.floats(0.0, 60.0)))
advances = st.builds(
    Advance,
    st.one_of(
        st.floats(0.0, 3.0),
        st.floats(0.0, 400.0),
        st.just(SECONDS_PER_DAY),
        st.floats(0.0, 1e5),
    ),
)
reports = st.one_of(
    st.builds(
        Report,
        st.booleans(),
        amplitudes,
        amplitudes,
        st.just(True),
        st.floats(0.0, 5000.0),
        st.booleans(),
        st.booleans(),
    ),
    st.builds(
        Report,
        st.booleans(),
        amplitudes,
        amplitudes,
        st.just(False),
        any_float,
        st.booleans(),
        st.booleans(),
    ),
)
statuses = st.builds(
    StatusReport,
    st.one_of(
        st.just((800, 900, 900, 900)),
        st.lists(st.one_of(st.integers(0, 10_000), st.integers(500, 1500)), max_size=4).map(tuple),
    ),
    st.sampled_from(
        [
            0,
            0,
            0,
            0,
            0,
            1 << FaultCode.IMPEDANCE,
            1 << FaultCode.WATCHDOG,
            1 << FaultCode.BATTERY_LOW,
            1 << FaultCode.ESTOP,
        ]
    ),
)
actions: st.SearchStrategy[Action] = st.one_of(
    absurd_requests,
    plausible_requests,
    plausible_requests,
    follows,
    follows,
    follows,
    advances,
    reports,
    statuses,
    st.builds(Link, st.sampled_from([True, True, False])),
    st.builds(Detector, st.sampled_from(list(DetectorState))),
    st.sampled_from([Call("supervise"), Call("fallback"), Call("off")]),
)
# A whole session as a clinic would run it: on, the device follows, off, the device follows.
session_cycles = st.builds(
    lambda on, t1, t2, t3: [on, Follow(t1), Follow(t2), Call("off"), Follow(t3), Follow(t3)],
    plausible_requests,
    st.floats(0.0, 5.0),
    st.floats(0.0, 200.0),
    st.floats(1.0, 5.0),
)
step_lists = st.lists(
    st.one_of(actions.map(lambda action: [action]), session_cycles), min_size=20, max_size=100
).map(lambda chunks: [action for chunk in chunks for action in chunk])
# Most runs start from a measured lead and an idle device, so stimulation is reachable.
READY: list[Action] = [
    StatusReport((800, 900, 900, 900), 0),
    Report(False, 0.0, 0.0, False, 0.0, False, False),
]
prefix = st.sampled_from([[], READY, READY, READY])


@dataclass
class Model:
    """The rules, recomputed from the inputs by the test (independently of the envelope)."""

    config: EnvelopeConfig
    closed_loop: bool
    # One report is trusted for at most: watchdog + full ramp down at the device rate + 1 s.
    stale_cap_s: float = 1.0 + 12.7 / 5.0 + 1.0
    t_s: float = 0.0
    link_up: bool = True
    detector: DetectorState | None = None
    impedance_ok: bool | None = None  # None: not measured yet
    stopping_fault: bool = False
    last_state: StimState | None = None
    last_state_t_s: float | None = None
    last_charge_uc: float | None = None
    device_charge_uc: float = 0.0
    on_time: list[tuple[float, float]] = field(default_factory=list)  # (t, seconds)
    charge: list[tuple[float, float]] = field(default_factory=list)  # (t, µC)
    observed_session_start_s: float | None = None
    last_sent: StimSetting | None = None
    last_sent_t_s: float | None = None
    starting_sends: list[float] = field(default_factory=list)

    def observe_state(self, state: StimState) -> None:
        prev = self.last_state
        if prev is not None and self.last_state_t_s is not None:
            delivering = not math.isfinite(prev.amplitude_ma) or prev.amplitude_ma > 0.0
            dt = min(self.t_s - self.last_state_t_s, self.stale_cap_s)
            if delivering and dt > 0:
                self.on_time.append((self.t_s, dt))
        c = state.delivered_charge_uc
        if math.isfinite(c) and c >= 0.0:
            if self.last_charge_uc is not None:
                delta = c - self.last_charge_uc if c >= self.last_charge_uc else c
                if delta > 0:
                    self.charge.append((self.t_s, delta))
            self.last_charge_uc = c
        active = state.enabled or not math.isfinite(state.amplitude_ma) or state.amplitude_ma > 0
        was_active = prev is not None and (
            prev.enabled or not math.isfinite(prev.amplitude_ma) or prev.amplitude_ma > 0
        )
        if active and not was_active:
            self.observed_session_start_s = self.t_s
        elif not active:
            self.observed_session_start_s = None
        self.last_state, self.last_state_t_s = state, self.t_s

    def in_window(self, entries: list[tuple[float, float]]) -> float:
        return sum(v for t, v in entries if t > self.t_s - SECONDS_PER_DAY)

    def reference_amplitude_ma(self) -> float | None:
        known = []
        if self.last_state is not None:
            known += [self.last_state.amplitude_ma, self.last_state.target_amplitude_ma]
        if self.last_sent is not None:
            known.append(self.last_sent.amplitude_ma if self.last_sent.enabled else 0.0)
        finite = [v for v in known if math.isfinite(v)]
        return min(finite) if finite else None

    def is_starting(self) -> bool:
        observed_idle = self.last_state is None or not (
            self.last_state.enabled
            or not math.isfinite(self.last_state.amplitude_ma)
            or self.last_state.amplitude_ma > 0
        )
        return observed_idle and (self.last_sent is None or not self.last_sent.enabled)


def check_decision(model: Model, env: SafetyEnvelope, decision: EnvelopeDecision) -> None:
    sent = decision.setting
    if sent is None:
        return
    cfg = model.config
    assert model.link_up, "nothing may be sent while the link is down"
    # What the device decodes is what was checked (float32 on the wire).
    assert StimSet.decode(StimSet(1, sent).encode()).setting == sent
    violated = within_envelope(sent, env.effective, model.reference_amplitude_ma())
    assert violated == [], (violated, sent)
    if sent.enabled:
        if model.last_sent_t_s is not None:
            assert model.t_s - model.last_sent_t_s >= cfg.min_change_interval_s
        assert model.impedance_ok is True, "stimulation with an unmeasured or bad lead"
        assert not model.stopping_fault
        assert model.in_window(model.on_time) < cfg.daily_on_time_budget_s
        assert model.in_window(model.charge) < cfg.daily_charge_budget_uc
        if model.observed_session_start_s is not None:
            assert model.t_s - model.observed_session_start_s < cfg.max_session_s
        if model.is_starting():
            recent = [t for t in model.starting_sends if t > model.t_s - SECONDS_PER_DAY]
            assert len(recent) < cfg.max_sessions_per_24h
            model.starting_sends.append(model.t_s)
        if model.closed_loop and model.detector is DetectorState.UNKNOWN:
            assert cfg.fallback.enabled and decision.fallback
            assert sent.amplitude_ma <= cfg.fallback.amplitude_ma
    model.last_sent, model.last_sent_t_s = sent, model.t_s


@settings(max_examples=400)
@given(
    start=prefix,
    steps=step_lists,
    closed_loop=st.booleans(),
    fallback_on=st.booleans(),
    area_cm2=st.sampled_from([0.06, 1.0]),
    on_time_budget_s=st.sampled_from([8.0, 600.0]),
    charge_budget_uc=st.sampled_from([2000.0, 1.0e6]),
    max_sessions=st.sampled_from([1, 2]),
)
def test_no_sequence_sends_a_command_outside_the_envelope(
    start: list[Action],
    steps: list[Action],
    closed_loop: bool,
    fallback_on: bool,
    area_cm2: float,
    on_time_budget_s: float,
    charge_budget_uc: float,
    max_sessions: int,
) -> None:
    fallback = FallbackProgramConfig(
        enabled=fallback_on, amplitude_ma=1.0, pulse_width_us=120, frequency_hz=130.0
    )
    config = implant_envelope(
        max_session_s=300.0,
        max_sessions_per_24h=max_sessions,
        daily_on_time_budget_s=on_time_budget_s,
        daily_charge_budget_uc=charge_budget_uc,
        fallback=fallback,
    )
    device = sim_device(area_cm2)
    env = SafetyEnvelope(config, device, closed_loop=closed_loop)
    lim = device.limits
    stale_cap_s = device.watchdog_ms / 1000 + lim.max_amplitude_ma / lim.max_ramp_rate_ma_per_s + 1
    model = Model(config, closed_loop, stale_cap_s)
    for action in [*start, *steps]:
        apply(action, model, env)


def apply(action: Action, model: Model, env: SafetyEnvelope) -> None:
    """Feed one action to the envelope and the model; check whatever the envelope lets out."""
    match action:
        case Advance(dt_s):
            model.t_s += dt_s
        case Request(setting):
            check_decision(model, env, env.review(StimRequest(setting, "random"), model.t_s))
        case Follow(dt_s):
            model.t_s += dt_s
            sent = model.last_sent
            amp = sent.amplitude_ma if sent is not None and sent.enabled else 0.0
            if sent is not None and sent.enabled:
                model.device_charge_uc += (
                    amp * sent.pulse_width_us * 1e-3 * sent.frequency_hz * dt_s
                )
            observe(
                model,
                env,
                StimState(
                    amp > 0, False, False, False, amp, amp, 250, 60.0, model.device_charge_uc, 1
                ),
            )
        case Report(enabled, amp, target, charge_is_delta, charge_uc, watchdog, estop):
            if charge_is_delta:
                model.device_charge_uc += charge_uc
                charge_uc = model.device_charge_uc
            observe(
                model,
                env,
                StimState(enabled, False, estop, watchdog, amp, target, 250, 60.0, charge_uc, 1),
            )
        case StatusReport(impedance_ohm, fault_flags):
            model.impedance_ok = bool(impedance_ohm) and (
                IMPEDANCE_WINDOW[0] <= impedance_ohm[0] <= IMPEDANCE_WINDOW[1]
            )
            model.stopping_fault = bool(fault_flags & STOPPING)
            env.observe_status(Status(80, fault_flags, impedance_ohm), model.t_s)
        case Link(up):
            model.link_up = up
            env.observe_link(up, model.t_s)
        case Detector(state):
            model.detector = state
            env.observe_detector(state)
        case Call("supervise"):
            decision = env.supervise(model.t_s)
            if decision is not None:
                assert decision.setting is not None  # supervise answers only to send
                check_decision(model, env, decision)
        case Call("fallback"):
            check_decision(model, env, env.fallback_decision(model.t_s, "test"))
        case Call("off"):
            decision = env.off_decision(model.t_s, "test")
            assert decision.setting is None or not decision.setting.enabled
            check_decision(model, env, decision)


def observe(model: Model, env: SafetyEnvelope, state: StimState) -> None:
    model.observe_state(state)
    env.observe_stim_state(state, model.t_s)


def test_the_property_test_can_fail() -> None:
    """The model's checks reject a setting outside the envelope (guards against a vacuous test)."""
    config = implant_envelope()
    env = SafetyEnvelope(config, sim_device())
    model = Model(config, closed_loop=True, impedance_ok=True)
    too_much = EnvelopeDecision(StimSetting(True, 12.0, 250, 60.0, 0.03))
    try:
        check_decision(model, env, too_much)
    except AssertionError:
        pass
    else:
        raise AssertionError("a 3 µC/phase setting on 0.06 cm² passed the model's checks")
    model.link_up = False
    ok_setting = EnvelopeDecision(StimSetting(True, 1.0, 250, 60.0, 0.03))
    try:
        check_decision(model, env, ok_setting)
    except AssertionError:
        pass
    else:
        raise AssertionError("a setting sent while the link was down passed the model's checks")


@settings(max_examples=300)
@given(
    start=prefix,
    steps=step_lists,
    closed_loop=st.booleans(),
    fallback_on=st.booleans(),
    on_time_budget_s=st.sampled_from([8.0, 600.0]),
    charge_budget_uc=st.sampled_from([2000.0, 1.0e6]),
)
def test_supervise_answers_as_if_it_remembered_no_quiet_verdict(
    start: list[Action],
    steps: list[Action],
    closed_loop: bool,
    fallback_on: bool,
    on_time_budget_s: float,
    charge_budget_uc: float,
) -> None:
    """``supervise`` keeps a verdict of nothing to do while its inputs stay the same (the
    loop asks at every window); a twin that forgets it before every call answers the same,
    call for call, and so does every other decision."""
    fallback = FallbackProgramConfig(
        enabled=fallback_on, amplitude_ma=1.0, pulse_width_us=120, frequency_hz=130.0
    )
    config = implant_envelope(
        max_session_s=300.0,
        max_sessions_per_24h=2,
        daily_on_time_budget_s=on_time_budget_s,
        daily_charge_budget_uc=charge_budget_uc,
        fallback=fallback,
    )
    env = SafetyEnvelope(config, sim_device(), closed_loop=closed_loop)
    twin = SafetyEnvelope(config, sim_device(), closed_loop=closed_loop)
    model, twin_model = Model(config, closed_loop), Model(config, closed_loop)
    for action in [*start, *steps]:
        if isinstance(action, Call) and action.method == "supervise":
            twin._quiet = False
            assert env.supervise(model.t_s) == twin.supervise(twin_model.t_s)
            continue
        apply(action, model, env)
        apply(action, twin_model, twin)
        twin._quiet = False
        assert env.supervise(model.t_s) == twin.supervise(twin_model.t_s), action
        assert env.last_sent == twin.last_sent
