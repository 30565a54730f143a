"""Small steps the cases share: answers, the 50 ms answer bound, "nothing changed"."""

from __future__ import annotations

from firmware_bridge.messages import Ack, Nack, NackReason, StimSetting, StimState
from hil.context import CaseContext
from hil.probe import Received

#: A device answers every command within 50 ms of its last byte (docs/protocol.md 3).
ANSWER_LIMIT_MS = 50.0
#: How long the rig waits for an answer it expects (beyond the limit: to measure it).
ANSWER_WAIT_S = 0.5


def reason_of(r: Received | None) -> int | None:
    """NACK reason, 0 for an ACK, None for no answer."""
    if r is None:
        return None
    if isinstance(r.msg, Ack):
        return 0
    if isinstance(r.msg, Nack):
        return r.msg.reason
    return None


def reason_name(code: int | None) -> str:
    if code is None:
        return "no answer"
    if code == 0:
        return "ACK"
    try:
        return NackReason(code).name
    except ValueError:
        return f"reason {code}"


def expect_answer(ctx: CaseContext, name: str, r: Received | None, want: int) -> bool:
    """Check the answer (0 = ACK, else the NACK reason); the code is the measurement."""
    got = reason_of(r)
    ctx.measure(
        f"{name} answer ({reason_name(want)} expected)",
        -1 if got is None else got,
        "code",
        want,
        want,
    )
    return got == want


def answer_time(ctx: CaseContext, name: str, sent_s: float, r: Received | None) -> None:
    ms = float("inf") if r is None else (r.t_s - sent_s) * 1000.0
    ctx.measure(
        f"{name} answer time", ms, "ms", 0.0, ANSWER_LIMIT_MS, marginal_high=0.6 * ANSWER_LIMIT_MS
    )


def same_output(a: StimState, b: StimState) -> bool:
    return (
        a.enabled == b.enabled
        and a.target_amplitude_ma == b.target_amplitude_ma
        and a.pulse_width_us == b.pulse_width_us
        and a.frequency_hz == b.frequency_hz
        and a.last_command_id == b.last_command_id
        and a.estop_latched == b.estop_latched
    )


async def check_unchanged(ctx: CaseContext, name: str, before: StimState | None) -> None:
    """After a refused command: the STIM_STATE a new handshake brings equals the one before."""
    after = await ctx.probe.stim_state_now()
    ctx.check(
        f"{name}: output unchanged",
        before is not None and after is not None and same_output(before, after),
    )


async def start_output(ctx: CaseContext, amplitude_ma: float = 0.5) -> StimSetting:
    """Switch the output on and wait for the ramp to end; returns the setting."""
    setting = ctx.on_setting(amplitude_ma)
    mark = ctx.probe.mark()
    _, r = await ctx.probe.stim(setting)
    if reason_of(r) != 0:
        ctx.check(f"on command accepted (got {reason_name(reason_of(r))})", False)
        return setting
    reached = await ctx.probe.wait_state(
        lambda s: abs(s.amplitude_ma - setting.amplitude_ma) < 1e-4 and not s.ramping,
        ctx.ramp_s(setting.amplitude_ma) + 1.0,
        mark,
    )
    ctx.check(f"output reached {setting.amplitude_ma:g} mA", reached is not None)
    return setting
