"""Properties that must hold for all inputs: the decoder never raises and never grows
without bound; messages round-trip for any field values; the device never stimulates
outside its hard limits whatever bytes or commands it receives."""

from __future__ import annotations

import contextlib
import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.clock import VirtualClock
from firmware_bridge.events import CommandAcked, CommandNacked, CommandTimedOut
from firmware_bridge.framing import MAX_ENCODED, FrameDecoder, encode_frame
from firmware_bridge.lockstep import LockstepPump, RecordingPeer
from firmware_bridge.messages import (
    Estop,
    EstopClear,
    FaultCode,
    Hello,
    MalformedPayload,
    Status,
    StimSet,
    StimSetting,
    StimState,
    UnknownMessageType,
    parse_payload,
)
from firmware_bridge.session import ControllerSession
from simulator.firmware import FirmwareConfig, VirtualFirmware
from simulator.signals import NoiseSource
from simulator.stimulator import LIMIT_REL_TOL
from tests.protocol_fixtures import EXAMPLES, INFO


@given(st.lists(st.binary(max_size=6000), max_size=20))
def test_decoder_never_raises_and_stays_bounded(chunks: list[bytes]) -> None:
    decoder = FrameDecoder()
    for chunk in chunks:
        for frame in decoder.feed(chunk):
            with contextlib.suppress(MalformedPayload, UnknownMessageType):
                parse_payload(frame.msg_type, frame.payload, n_channels=3)
        assert decoder.buffered <= MAX_ENCODED


@given(
    st.sampled_from(EXAMPLES),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=8),
)
def test_mutated_valid_frames_never_crash_and_next_frame_survives(
    msg: object, mutations: list[tuple[int, int]]
) -> None:
    wire = bytearray(encode_frame(msg.MSG_TYPE, msg.encode(), 1, 2))  # type: ignore[attr-defined]
    for pos, value in mutations:
        wire[pos % len(wire)] = value
    decoder = FrameDecoder()
    decoder.feed(bytes(wire))
    good = encode_frame(0x20, b"\x01\x00\x00\x00\x00", 9, 9)
    frames = decoder.feed(b"\x00" + good)
    assert frames and frames[-1].seq == 9


finite = st.floats(allow_nan=False, allow_infinity=False, width=32)


@given(
    st.integers(0, 2**32 - 1),
    st.booleans(),
    finite,
    st.integers(0, 65535),
    finite,
    finite,
)
def test_stim_set_round_trips_for_any_values(
    cid: int, enabled: bool, amp: float, pw: int, freq: float, ramp: float
) -> None:
    msg = StimSet(cid, StimSetting(enabled, amp, pw, freq, ramp))
    assert StimSet.decode(msg.encode()) == msg


@given(
    st.booleans(),
    st.booleans(),
    finite,
    finite,
    st.integers(0, 65535),
    finite,
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(0, 2**32 - 1),
)
def test_stim_state_round_trips(
    en: bool, ramping: bool, amp: float, tgt: float, pw: int, f: float, q: float, last: int
) -> None:
    msg = StimState(en, ramping, False, True, amp, tgt, pw, f, q, last)
    assert StimState.decode(msg.encode()) == msg


@given(st.binary(max_size=300), st.integers(0, 255))
def test_parse_payload_only_raises_protocol_errors(payload: bytes, msg_type: int) -> None:
    with contextlib.suppress(MalformedPayload, UnknownMessageType):
        parse_payload(msg_type, payload, n_channels=INFO.n_channels)


def _assert_within_limits(fw: VirtualFirmware) -> None:
    """Within the hard limits as the protocol compares them (float64, relative 1e-6)."""
    out = fw.output
    lim = fw.config.limits
    up, down = 1.0 + LIMIT_REL_TOL, 1.0 - LIMIT_REL_TOL
    assert 0.0 <= out.amplitude_ma <= lim.max_amplitude_ma * up
    if out.amplitude_ma > 0:
        assert lim.min_pulse_width_us <= out.pulse_width_us <= lim.max_pulse_width_us
        assert lim.min_frequency_hz * down <= out.frequency_hz <= lim.max_frequency_hz * up
        q = out.amplitude_ma * out.pulse_width_us * 1e-3
        assert q <= lim.max_charge_per_phase_uc * up
        assert q / fw.config.electrode_area_cm2 <= lim.max_charge_density_uc_per_cm2 * up
    assert math.isfinite(out.delivered_charge_uc)


any_float = st.one_of(
    st.floats(width=32),
    st.floats(min_value=-1, max_value=20, width=32),
)
settings_strategy = st.builds(
    StimSetting,
    st.booleans(),
    any_float,
    st.integers(0, 65535),
    st.one_of(st.floats(width=32), st.floats(min_value=0, max_value=300, width=32)),
    st.one_of(st.floats(width=32), st.floats(min_value=-1, max_value=20, width=32)),
)


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("set"), settings_strategy, st.floats(0.0, 3.0)),
            st.tuples(st.just("estop"), st.none(), st.floats(0.0, 3.0)),
            st.tuples(st.just("clear"), st.none(), st.floats(0.0, 3.0)),
            st.tuples(st.just("hello"), st.none(), st.floats(0.0, 3.0)),
            st.tuples(st.just("bytes"), st.binary(max_size=64), st.floats(0.0, 3.0)),
        ),
        max_size=12,
    )
)
def test_device_never_stimulates_outside_its_hard_limits(
    commands: list[tuple[str, object, float]],
) -> None:
    fw = VirtualFirmware(NoiseSource(seed=1), FirmwareConfig(seed=1))
    clock = VirtualClock()
    seq = 0
    cid = 1

    def send(msg_type: int, payload: bytes) -> None:
        nonlocal seq
        seq += 1
        fw.receive_data(encode_frame(msg_type, payload, seq, int(clock.now() * 1e6)), clock.now())

    send(Hello.MSG_TYPE, Hello(1, 0, "prop").encode())
    for kind, arg, wait_s in commands:
        if kind == "set":
            assert isinstance(arg, StimSetting)
            send(StimSet.MSG_TYPE, StimSet(cid, arg).encode())
            cid += 1
        elif kind == "estop":
            send(Estop.MSG_TYPE, Estop(cid).encode())
            cid += 1
        elif kind == "clear":
            send(EstopClear.MSG_TYPE, EstopClear(cid).encode())
            cid += 1
        elif kind == "hello":
            send(Hello.MSG_TYPE, Hello(1, 0, "again").encode())
        else:
            assert isinstance(arg, bytes)
            fw.receive_data(arg, clock.now())
        _assert_within_limits(fw)
        # Let time pass in small steps, checking the output all along the ramps.
        end = clock.now() + wait_s
        while clock.now() < end:
            clock.advance_to(min(end, fw.next_deadline()))
            fw.advance_to(clock.now())
            _assert_within_limits(fw)
            fw.data_to_send()


@given(st.lists(st.integers(0, 3), min_size=1, max_size=30), st.integers(0, 2**16))
def test_controller_and_device_agree_under_random_frame_loss(drops: list[int], seed: int) -> None:
    """Whatever frames are lost, every command ends ACKed, NACKed or timed out, and the
    device applies each command id at most once."""
    rng = np.random.default_rng(seed)
    clock = VirtualClock()
    fw = VirtualFirmware(NoiseSource(seed=2), FirmwareConfig(seed=2))
    ctl = RecordingPeer(ControllerSession())
    loss = [0.0, 0.1, 0.3, 0.6][drops[0]]

    def lossy(data: bytes, now: float) -> list[tuple[float, bytes]]:
        return [] if rng.random() < loss else [(now, data)]

    pump = LockstepPump(ctl, fw, clock, a_to_b=lossy, b_to_a=lossy)
    ctl.session.connect(0.0)
    pump.run_until(3.0)
    applied_before = fw.commands_applied
    sent = [
        ctl.session.send_stim_set(StimSetting(True, 1.0 + 0.1 * d, 100, 60.0), clock.now())
        for d in drops[:5]
    ]
    pump.run_until(clock.now() + 3.0)
    outcomes = {
        e.command_id
        for e in ctl.events  # type: ignore[attr-defined]
        if isinstance(e, CommandAcked | CommandNacked | CommandTimedOut)
    }
    if ctl.session.info is not None:
        assert set(sent) <= outcomes
    assert fw.commands_applied - applied_before <= len(sent)


@given(st.integers(0, 0xFFFFFFFF))
def test_active_faults_are_the_codes_whose_bits_are_set_every_time(flags: int) -> None:
    """The per-flags memo gives what reading the bits gives, on the first call and after."""
    expected = [code for code in FaultCode if flags & (1 << code)]
    status = Status(50, flags)
    assert status.active_faults() == expected
    assert status.active_faults() == expected
    status.active_faults().clear()  # each call's list is the caller's own
    assert status.active_faults() == expected
